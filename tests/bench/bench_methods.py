#!/usr/bin/env python3
"""Explanation methods: explaind against an equivalent PyTorch implementation, in one run on the same
machine, image and thread count (issue "Explanation methods", section Benchmark).

Models: the shipped fashion-cnn (1x28x28, tests/data/fashion/test_00000_ankle_boot.png) and
torchvision resnet50 at 224 with seeded random weights (skimage's chelsea photo resized to 224).
The engine side is `explaind bench --methods ... --image` (explain_run in-process, model and
workspace loaded once: one explain request without decoding or rendering). The PyTorch side is
written by hand after Captum's and pytorch-grad-cam's definitions (neither library is installed),
float32, parameters frozen, on the nn.Module that was exported (fashion-cnn: models/train.py's
module with the ONNX weights; resnet50: torchvision's, BatchNorm unfolded as a PyTorch user runs it):
  saliency / grad_x_input   one forward, torch.autograd.grad of the top logit to the input
  integrated_gradients      Captum IntegratedGradients: gausslegendre, 50 steps, zero baseline, the
                            steps in batches of B (internal_batch_size = the engine's workspace batch),
                            plus f(baseline) for the convergence delta (the engine always reports it)
  smoothgrad                Captum NoiseTunnel(Saliency): 25 samples, stdev 0.15·(max−min), batches of B
  guided_backprop/deconvnet Captum's ReLU backward rules (relu of grad_in / of grad_out) on every ReLU
  cam, gradcam, gradcam_pp, xgradcam, layercam, eigencam, activations, attention
                            a forward hook on the CAM layer (gradients: autograd.grad to the hooked
                            activation, so the backward stops there, as Captum LayerGradCam);
                            weights as pytorch-grad-cam; eigencam its numpy SVD (full_matrices=True)
  scorecam                  pytorch-grad-cam ScoreCAM: bilinear (align_corners) masks, batches of B;
                            resnet50 uses the engine's top-k option (scorecam_channels, both sides)
  guided_gradcam            Captum GuidedGradCam: LayerGradCam then GuidedBackprop (2 fwd, 2 bwd)
  occlusion                 Captum Occlusion, perturbations_per_eval = B (resnet50: window 56, stride 28)
  edge                      the forward (every request predicts) + Sobel as F.conv2d
The fused 8-method request (saliency, grad_x_input, gradcam, gradcam_pp, xgradcam, layercam,
guided_backprop, guided_gradcam) is one engine request; it is set against its parts measured alone
(both engines) and against one saliency request.

Times are medians over --reps after warm-up, wall clock; the CPU-time ratio (process CPU time, one
thread) is shown too because the machine is shared and waiting for a core inflates wall time.
Goals: gradcam <= 0.5x PyTorch forward + full input gradient (the saliency row's PyTorch time);
integrated_gradients (50 steps) <= 1.0x PyTorch batched; fused 8 <= 3x a single saliency request.

Usage: bench_methods.py [--threads 1] [--reps 20] [--heavy-reps 3] [--models fashion-cnn,resnet50]
                        [--methods a,b] [--write-doc docs/PERFORMANCE.md]
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

FUSED8 = ["saliency", "grad_x_input", "gradcam", "gradcam_pp", "xgradcam", "layercam", "guided_backprop",
          "guided_gradcam"]
ALL = ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "guided_backprop", "deconvnet", "cam",
       "gradcam", "gradcam_pp", "xgradcam", "layercam", "scorecam", "eigencam", "guided_gradcam", "occlusion",
       "activations", "attention", "edge"]
HEAVY = {"integrated_gradients", "smoothgrad", "scorecam", "occlusion"}


# ---- PyTorch side --------------------------------------------------------------------------------------
class _Guided:
    """Captum GuidedBackprop / Deconvolution: the backward of every ReLU replaced."""

    class G(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.clamp_min(0)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return (g * (y > 0).to(g.dtype)).clamp_min(0)

    class D(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, g):
            return g.clamp_min(0)


@contextlib.contextmanager
def relu_rule(kind):
    """Route torch.nn.functional.relu (what nn.ReLU and F.relu call) through a modified backward."""
    import torch.nn.functional as F
    fn = _Guided.G if kind == "guided" else _Guided.D
    old = F.relu
    F.relu = lambda x, inplace=False: fn.apply(x)
    try:
        yield
    finally:
        F.relu = old


class TorchSide:
    def __init__(self, name, net, cam_module, attn_module, x, B, params):
        import torch
        self.torch = torch
        self.name, self.net, self.B, self.p = name, net, B, params
        self.cam_module, self.attn_module = cam_module, attn_module
        self.x = torch.from_numpy(x)
        self.head = getattr(net, "fc", None)  # GAP + fc heads (cam); bench_peers.py also runs others
        self.target = None  # None: the top-1 class of the image (a request's default); else fixed

    # one forward with the CAM layer's activation captured (requires_grad: backward stops there)
    def _forward_layer(self, x, need_grad):
        torch = self.torch
        box = {}

        def hook(mod, inp, out):
            a = out.detach().requires_grad_(need_grad)
            box["A"] = a
            return a

        h = self.cam_module.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(need_grad):
                y = self.net(x)
        finally:
            h.remove()
        return y, box["A"]

    def _layer_grad(self):
        y, A = self._forward_layer(self.x, True)
        c = self._pick(y)
        (G,) = self.torch.autograd.grad(y[0, c], A)
        return A[0], G[0], c

    def _input_grad(self, rule=None):
        torch = self.torch
        xg = self.x.clone().requires_grad_(True)
        with (relu_rule(rule) if rule else contextlib.nullcontext()):
            y = self.net(xg)
            c = self._pick(y)
            (g,) = torch.autograd.grad(y[0, c], xg)
        return g, c

    def _pick(self, y):
        return self.target if self.target is not None else int(y[0].argmax())

    def _target(self):
        with self.torch.no_grad():
            return self._pick(self.net(self.x))

    @staticmethod
    def _weighted(A, w):
        return (w[:, None, None] * A).sum(0).clamp_min(0)

    # ---- methods ----
    def saliency(self):
        g, _ = self._input_grad()
        return g.abs()[0].sum(0)

    def grad_x_input(self):
        g, _ = self._input_grad()
        return (self.x * g)[0].abs().sum(0)

    def guided_backprop(self):
        g, _ = self._input_grad("guided")
        return g[0].abs().sum(0)

    def deconvnet(self):
        g, _ = self._input_grad("deconv")
        return g[0].abs().sum(0)

    def integrated_gradients(self):
        torch = self.torch
        n = self.p["ig_steps"]
        t, w = np.polynomial.legendre.leggauss(n)
        steps, alphas = torch.tensor(0.5 * w, dtype=torch.float32), torch.tensor(0.5 * (1 + t), dtype=torch.float32)
        c = self._target()
        x, x0 = self.x, torch.zeros_like(self.x)
        tot = torch.zeros_like(x[0])
        for s in range(0, n, self.B):
            a = alphas[s:s + self.B].view(-1, 1, 1, 1)
            pts = (x0 + a * (x - x0)).requires_grad_(True)
            out = self.net(pts)
            (g,) = torch.autograd.grad(out[:, c].sum(), pts)
            tot += (g * steps[s:s + self.B].view(-1, 1, 1, 1)).sum(0)
        attr = tot * (x - x0)[0]
        with torch.no_grad():
            f0 = self.net(x0)[0, c]
        return attr, f0

    def smoothgrad(self):
        torch = self.torch
        n = self.p["smoothgrad_samples"]
        c = self._target()
        sd = 0.15 * float(self.x.max() - self.x.min())
        gen = torch.Generator().manual_seed(0)
        acc = torch.zeros_like(self.x[0])
        for s in range(0, n, self.B):
            k = min(self.B, n - s)
            xn = (self.x + sd * torch.randn((k,) + tuple(self.x.shape[1:]), generator=gen)).requires_grad_(True)
            out = self.net(xn)
            (g,) = torch.autograd.grad(out[:, c].sum(), xn)
            acc += g.abs().sum(0)
        return acc / n

    def cam(self):
        y, A = self._forward_layer(self.x, False)
        c = self._pick(y)
        return self._weighted(A[0], self.head.weight[c])

    def gradcam(self):
        A, G, _ = self._layer_grad()
        return self._weighted(A, G.mean((1, 2)))

    def gradcam_pp(self):
        A, G, _ = self._layer_grad()
        g2 = G * G
        g3 = g2 * G
        sa = A.sum((1, 2))[:, None, None]
        aij = g2 / (2 * g2 + sa * g3 + 1e-6)
        aij = self.torch.where(G != 0, aij, self.torch.zeros_like(aij))
        w = (G.clamp_min(0) * aij).sum((1, 2))
        return self._weighted(A, w)

    def xgradcam(self):
        A, G, _ = self._layer_grad()
        sa = A.sum((1, 2))[:, None, None]
        w = (G * A / (sa + 1e-7)).sum((1, 2))
        return self._weighted(A, w)

    def layercam(self):
        A, G, _ = self._layer_grad()
        return (G.clamp_min(0) * A).sum(0).clamp_min(0)

    def scorecam(self):
        torch = self.torch
        F = torch.nn.functional
        y, A = self._forward_layer(self.x, False)
        c = self._pick(y)
        A = A[0]
        K = A.shape[0]
        k = self.p.get("scorecam_channels", 0)
        if 0 < k < K:
            A = A[torch.argsort(-A.mean((1, 2)), stable=True)[:k]]
        with torch.no_grad():
            up = F.interpolate(A[None], size=self.x.shape[-2:], mode="bilinear", align_corners=True)[0]
            flat = up.reshape(up.shape[0], -1)
            mx, mn = flat.max(1).values[:, None, None], flat.min(1).values[:, None, None]
            up = (up - mn) / (mx - mn + 1e-8)
            scores = []
            for s in range(0, up.shape[0], self.B):
                scores.append(self.net(self.x * up[s:s + self.B, None])[:, c])
            w = torch.softmax(torch.cat(scores), 0)
        return self._weighted(A, w)

    def eigencam(self):
        _, A = self._forward_layer(self.x, False)
        a = A[0].numpy()
        K = a.shape[0]
        M = a.reshape(K, -1).T.copy()
        M = M - M.mean(axis=0)
        _, _, VT = np.linalg.svd(M, full_matrices=True)
        return np.maximum((M @ VT[0]).reshape(a.shape[1:]), 0)

    def guided_gradcam(self):
        gc = self.gradcam()
        g, _ = self._input_grad("guided")
        up = self.torch.nn.functional.interpolate(gc[None, None], size=self.x.shape[-2:], mode="nearest")[0]
        return g[0] * up

    def occlusion(self):
        torch = self.torch
        H, W = self.x.shape[-2:]
        side = min(H, W)
        w = self.p.get("occlusion_window") or max(1, int(np.floor(side / 8 + 0.5)))
        s = self.p.get("occlusion_stride") or max(1, w // 2)
        ny, nx = int(np.ceil((H - w) / s)) + 1, int(np.ceil((W - w) / s)) + 1
        with torch.no_grad():
            y = self.net(self.x)
            c = self._pick(y)
            y = y[0]
            f = y[c]
            tot = torch.zeros(H, W)
            cnt = torch.zeros(H, W)
            wins = [(i * s, j * s) for i in range(ny) for j in range(nx)]
            for b in range(0, len(wins), self.B):
                chunk = wins[b:b + self.B]
                masks = torch.zeros(len(chunk), 1, H, W)
                for k, (y0, x0) in enumerate(chunk):
                    masks[k, 0, y0:y0 + w, x0:x0 + w] = 1
                d = f - self.net(self.x * (1 - masks))[:, c]
                tot += (d.view(-1, 1, 1) * masks[:, 0]).sum(0)
                cnt += masks[:, 0].sum(0)
        return tot / cnt

    def activations(self):
        _, A = self._forward_layer(self.x, False)
        A = A[0]
        mean, mx = A.mean((1, 2)), A.amax((1, 2))
        top = self.torch.argsort(-mean, stable=True)[:16]
        return A[top], mean, mx

    def attention(self):
        torch = self.torch
        box = {}
        h = self.attn_module.register_forward_hook(lambda m, i, o: box.__setitem__("a", torch.sigmoid(o)))
        try:
            with torch.no_grad():
                self.net(self.x)
        finally:
            h.remove()
        return box["a"][0, 0]

    def edge(self):
        torch = self.torch
        F = torch.nn.functional
        with torch.no_grad():
            self.net(self.x)  # the prediction every request returns
            mean = torch.tensor(self.p["mean"]).view(1, -1, 1, 1)
            std = torch.tensor(self.p["std"]).view(1, -1, 1, 1)
            px = self.x * std + mean
            if px.shape[1] == 3:
                px = (px * torch.tensor([0.2125, 0.7154, 0.0721]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            k = torch.tensor([[1., 2., 1.], [0., 0., 0.], [-1., -2., -1.]]) / 4
            p = F.pad(px, (1, 1, 1, 1), mode="reflect")
            h = F.conv2d(p, k.view(1, 1, 3, 3))
            v = F.conv2d(p, k.t().contiguous().view(1, 1, 3, 3))
            return ((h * h + v * v) / 2).sqrt()[0, 0]

    def time(self, method, reps, warmup):
        fn = getattr(self, method)
        wall, cpu = [], []
        for r in range(warmup + reps):
            t, c = time.perf_counter(), time.process_time()
            fn()
            if r >= warmup:
                wall.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.process_time() - c) * 1e3)
        return statistics.median(wall), statistics.median(cpu)


# ---- the two models ---------------------------------------------------------------------------------------
def setup(model):
    """(engine model path, image, input tensor, torch module, CAM module, attention module, method params)"""
    if model == "fashion-cnn":
        net = bc.fashion_module()
        x = bc.preprocess(bc.FASHION_PNG, [0.286], [0.353], True)
        return (bc.FASHION_ONNX, bc.FASHION_PNG, x, net, net.conv4, net.cbam.spatial.conv,
                dict(ig_steps=50, smoothgrad_samples=25, mean=[0.286], std=[0.353]), {})
    if model == "resnet50":
        d = bc.bench_models_dir()
        img = bc.bench_image_224()
        net = bc.resnet50_module(0)
        x = bc.preprocess(img, bc.IMAGENET_MEAN, bc.IMAGENET_STD, False)
        p = dict(ig_steps=50, smoothgrad_samples=25, scorecam_channels=32, occlusion_window=56, occlusion_stride=28,
                 mean=bc.IMAGENET_MEAN, std=bc.IMAGENET_STD)
        eng = {"scorecam_channels": 32, "occlusion_window": 56, "occlusion_stride": 28}
        return (os.path.join(d, "resnet50.onnx"), img, x, net, net.layer4, None, p, eng)
    raise SystemExit(f"unknown model {model}")


def run_model(model, methods, threads, reps, heavy_reps, warmup):
    import torch
    torch.set_num_threads(threads)
    path, img, x, net, cam_mod, attn_mod, p, eng_params = setup(model)
    if attn_mod is None:
        methods = [m for m in methods if m != "attention"]
    light = [m for m in methods if m not in HEAVY]
    heavy = [m for m in methods if m in HEAVY]
    extra = []
    for k, v in eng_params.items():
        extra += [f"--{k}", v]
    eng = {}
    groups = [(light + [",".join(FUSED8)], reps, warmup), (heavy, heavy_reps, 1)]
    for sets, r, w in groups:
        if not sets:
            continue
        bc.log(f"{model}: explaind {len(sets)} request(s), reps {r}")
        for o in bc.explaind_bench(["--model", path, "--image", img, "--methods", ";".join(sets), "--reps", r,
                                    "--warmup", w] + extra, threads):
            eng[o["methods"]] = o
    B = next(iter(eng.values()))["batch"]
    side = TorchSide(model, net, cam_mod, attn_mod, x, B, p)
    tor = {}
    for m in light + heavy:
        r, w = (heavy_reps, 1) if m in HEAVY else (reps, warmup)
        bc.log(f"{model}: torch {m}, reps {r}")
        tor[m] = side.time(m, r, w)
    for m in FUSED8:  # the parts of the fused request, for its sum
        if m not in tor:
            tor[m] = side.time(m, reps, warmup)
    return dict(model=model, batch=B, engine=eng, torch=tor, params=eng_params)


GOALS = {"gradcam": "≤ 0.5× PyTorch forward + input gradient", "integrated_gradients": "≤ 1.0×",
         "fused": "≤ 3× explaind saliency"}


def verdict(wall, cpu, limit):
    """Both measures against the goal: wall clock (what a caller waits, inflated when other work holds
    the cores) and CPU time (the compute itself, one thread)."""
    ok = lambda v: "met" if v <= limit else "MISSED"  # noqa: E731
    return f"wall {wall:.2f}× {ok(wall)}, CPU {cpu:.2f}× {ok(cpu)}"


def render(results, threads, reps, heavy_reps):
    out = []
    for res in results:
        eng, tor, model = res["engine"], res["torch"], res["model"]
        rows = []
        for m in ALL:
            if m not in eng or m not in tor:
                continue
            e, (tw, tc) = eng[m], tor[m]
            ratio, ratio_cpu = e["median_ms"] / tw, e["median_cpu_ms"] / tc
            goal = ""
            if m == "gradcam":  # against PyTorch's forward + full input gradient (the saliency row)
                ref_w, ref_c = tor["saliency"]
                goal = f"{GOALS[m]}: " + verdict(e["median_ms"] / ref_w, e["median_cpu_ms"] / ref_c, 0.5)
            elif m == "integrated_gradients":
                goal = f"{GOALS[m]}: " + verdict(ratio, ratio_cpu, 1.0)
            rows.append([m, bc.fmt_ms(e["median_ms"]), bc.fmt_ms(tw), f"{ratio:.2f}×", f"{ratio_cpu:.2f}×",
                         f"{e['forward']}/{e['backward']}", goal])
        f = eng.get(",".join(FUSED8))
        if f:
            parts_e = sum(eng[m]["median_ms"] for m in FUSED8 if m in eng)
            parts_t = sum(tor[m][0] for m in FUSED8)
            sal = eng["saliency"]
            fused_goal = verdict(f["median_ms"] / sal["median_ms"], f["median_cpu_ms"] / sal["median_cpu_ms"], 3.0)
            rows.append(["**fused 8** (one request)", bc.fmt_ms(f["median_ms"]), bc.fmt_ms(parts_t) + " (sum of 8)",
                         f"{f['median_ms'] / parts_t:.2f}×", f"{f['median_cpu_ms'] / sum(tor[m][1] for m in FUSED8):.2f}×",
                         f"{f['forward']}/{f['backward']}",
                         f"{GOALS['fused']}: {fused_goal}; explaind's 8 parts alone "
                         f"{bc.fmt_ms(parts_e)} ms (fusion {parts_e / f['median_ms']:.1f}× faster)"])
        prm = ", ".join(f"{k} {v}" for k, v in res["params"].items())
        out.append(f"**{model}** (workspace batch {res['batch']} on both sides for batched methods"
                   f"{'; ' + prm if prm else ''}; reps {reps}, {heavy_reps} for IG, SmoothGrad, Score-CAM, occlusion):")
        out.append("")
        out.append(bc.md_table(["method", "explaind ms", "PyTorch ms", "ratio", "ratio (CPU time)", "passes fwd/bwd",
                                "goal"], rows, ["---", "---:", "---:", "---:", "---:", "---:", "---"]))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20, help="fashion-cnn reps; resnet50 uses max(2, reps // 7)")
    ap.add_argument("--heavy-reps", type=int, default=3, help="reps of IG, SmoothGrad, Score-CAM, occlusion (fashion-cnn; resnet50: 1)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", default="fashion-cnn,resnet50")
    ap.add_argument("--methods", default=",".join(ALL))
    ap.add_argument("--write-doc")
    a = ap.parse_args()
    header = bc.run_header("`make bench` (tests/bench/bench_methods.py)", a.threads)
    results = []
    for model in a.models.split(","):
        big = model == "resnet50"
        reps = max(2, a.reps // 7) if big else a.reps
        heavy = 1 if big else a.heavy_reps
        results.append(run_model(model, a.methods.split(","), a.threads, reps, heavy, 1 if big else a.warmup))
        results[-1]["reps"], results[-1]["heavy"] = reps, heavy
    body = [header, "",
            "explaind: `explaind bench --methods` (explain_run in-process: forward, backward passes and the method; no "
            "decoding or rendering). PyTorch: the same computation written after Captum's / pytorch-grad-cam's "
            "definitions (tests/bench/bench_methods.py says how per method), float32, on the exported nn.Module. "
            "Median wall ms; ratio = explaind / PyTorch (below 1 is faster); the CPU-time ratio is steadier on a "
            "shared machine. Passes are the engine's forward/backward passes (each over a batch).", ""]
    for res in results:
        body.append(render([res], a.threads, res["reps"], res["heavy"]))
    text = "\n".join(body)
    print(text)
    os.makedirs(bc.OUT, exist_ok=True)
    with open(os.path.join(bc.OUT, f"methods_t{a.threads}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    if a.write_doc:
        bc.write_doc(a.write_doc, f"methods-t{a.threads}", f"Explanation methods vs PyTorch ({a.threads} thread)", text)


if __name__ == "__main__":
    main()
