#!/usr/bin/env python3
"""Sanity checks: the cost of one explain request with sanity=model,label, explaind against a
straightforward PyTorch loop, in one run on the same machine, image and thread count (issue "Sanity
checks", section Benchmark).

explaind: `explaind bench --request --sanity model,label` (service_run in-process, as an HTTP worker
runs the request: decode, explain, the cascading top-down model randomization and the
label-randomized twin with every metric, rendering, the JSON document). Warm = the median of repeated
identical requests (the randomized-weight overlays are cached per (model, layer, init, seed), which is
the engine's design); first = a fresh process's first request (overlays built, workspace first touched).
fashion-cnn randomizes every parameterized node (sanity_layers=all), resnet50 its blocks
(sanity_layers=blocks: fc, layer4..layer1, the stem).

PyTorch loop (Quantus MPRT's shape, written plainly): explain the image on the model; explain it on
the label-randomized twin and compare; deepcopy the model once, then per layer (block) from the top:
reset_parameters() of its modules (cascading: earlier resets stay), explain with the original target,
compare. "Compare" computes what explaind reports per step: Spearman of abs-normalized and of
diverging-normalized maps (scipy), SSIM (skimage, Gaussian window, data_range 1), HOG Spearman
(skimage), and the edge Spearman/SSIM against the Sobel map of the input; plus once per request the
Gaussian floor and the entropy rise. Explanations are bench_methods.py's PyTorch implementations.

Twins: fashion-cnn's is models/fashion-cnn-randlabels.onnx when it ships, else a stand-in with the
same architecture (weights permuted; the cost is the same); resnet50's is resnet50 with seed-1 weights.

Goals: fashion-cnn, 3 methods (saliency, gradcam, guided_backprop in one request) with full sanity,
< 20 ms per image; resnet50 blocks: explaind >= 2x faster than the PyTorch loop.

Usage: bench_sanity.py [--threads 1] [--reps 10] [--models fashion-cnn,resnet50] [--write-doc docs/PERFORMANCE.md]
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402
from bench_methods import TorchSide  # noqa: E402

THREE = "saliency,gradcam,guided_backprop"
METHODS = {
    "fashion-cnn": ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "gradcam", "guided_backprop",
                    "guided_gradcam", THREE],
    # IG and SmoothGrad cost ig_steps (smoothgrad_samples) times a saliency step on both sides; on resnet50 they
    # would take minutes per request, beyond the benchmark's budget
    "resnet50": ["saliency", "grad_x_input", "gradcam", "guided_backprop", "guided_gradcam", THREE],
}
FASHION_LAYERS = ["fc", "conv4.conv", "conv3.conv", "cbam.spatial.conv", "cbam.channel.fc2", "cbam.channel.fc1",
                  "conv2.conv", "conv1.conv"]  # every parameterized module, top down
RESNET_BLOCKS = ["fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1"]


# ---- the metrics, as a Python user computes them --------------------------------------------------------
def _np(a):
    if isinstance(a, tuple):
        a = a[0]
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def _to_input_size(m, hw):
    if m.shape[-2:] == hw:
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def abs_norm(a):
    m = np.abs(a).sum(0) if a.ndim == 3 else np.abs(a)
    lo, hi = m.min(), np.percentile(m, 99)
    return np.clip((m - lo) / (hi - lo + 1e-12), 0, 1)


def div_norm(a):
    s = a.sum(0) if a.ndim == 3 else a
    span = abs(np.percentile(s, 99)) + 1e-12
    return np.clip((s + span) / (2 * span), -1, 1)


def mm(a):
    a = a.sum(0) if a.ndim == 3 else a
    return (a - a.min()) / (a.max() - a.min() + 1e-12)


class Compare:
    def __init__(self, x_gray):
        from skimage.filters import sobel
        self.edge = sobel(x_gray)
        side = x_gray.shape[-1]
        self.cell = 16 if side >= 288 else max(4, round(side / 18))

    def hog(self, m):
        from skimage.feature import hog
        return hog(m, orientations=9, pixels_per_cell=(self.cell, self.cell), cells_per_block=(3, 3),
                   block_norm="L2-Hys", feature_vector=True)

    def __call__(self, a, b):
        from scipy.stats import spearmanr
        from skimage.metrics import structural_similarity as ssim
        ma, mb = mm(a), mm(b)
        return dict(
            spearman_abs=spearmanr(abs_norm(a).ravel(), abs_norm(b).ravel())[0],
            spearman=spearmanr(div_norm(a).ravel(), div_norm(b).ravel())[0],
            ssim=ssim(ma, mb, gaussian_weights=True, use_sample_covariance=True, data_range=1, sigma=1.5),
            hog=spearmanr(self.hog(ma), self.hog(mb))[0],
            edge_spearman=spearmanr(abs_norm(b).ravel(), self.edge.ravel())[0],
            edge_ssim=ssim(mb, mm(self.edge), gaussian_weights=True, use_sample_covariance=True, data_range=1,
                           sigma=1.5))


def entropy(m):
    h, _ = np.histogram(m.ravel(), bins=100)
    p = h[h > 0] / h.sum()
    return float(-(p * np.log(p)).sum())


# ---- the PyTorch loop ----------------------------------------------------------------------------------
class TorchSanity:
    def __init__(self, model, net, twin, cam_name, attn_name, x, B, params, layers):
        self.model, self.net, self.twin, self.x, self.B, self.p = model, net, twin, x, B, params
        self.cam_name, self.attn_name, self.layers = cam_name, attn_name, layers
        mean = np.asarray(params["mean"])[:, None, None]
        std = np.asarray(params["std"])[:, None, None]
        px = x[0] * std + mean
        gray = px[0] if px.shape[0] == 1 else np.tensordot([0.2125, 0.7154, 0.0721], px, axes=(0, 0))
        self.compare = Compare(gray)
        self.hw = tuple(x.shape[-2:])

    def _side(self, net):
        get = lambda name: net.get_submodule(name) if name else None  # noqa: E731
        return TorchSide(self.model, net, get(self.cam_name), get(self.attn_name), self.x, self.B, self.p)

    def _explain(self, side, methods, target):
        side.target = target
        return {m: _to_input_size(_np(getattr(side, m)()), self.hw) for m in methods}

    def _modules(self, net, layer):
        mods = []
        for name in layer.split("+"):
            sub = net.get_submodule(name)
            mods += [m for m in sub.modules() if hasattr(m, "reset_parameters")]
        return mods

    def request(self, methods):
        side = self._side(self.net)
        with torch.no_grad():
            target = int(self.net(side.x)[0].argmax())
        e0 = self._explain(side, methods, target)
        rng = np.random.RandomState(0)
        res = {"floor": {m: self.compare(e0[m], rng.randn(*e0[m].shape)) for m in methods}}
        et = self._explain(self._side(self.twin), methods, target)
        res["label"] = {m: self.compare(e0[m], et[m]) for m in methods}
        rnd = copy.deepcopy(self.net)
        torch.manual_seed(0)
        steps = []
        for layer in self.layers:
            for mod in self._modules(rnd, layer):
                mod.reset_parameters()
            e = self._explain(self._side(rnd), methods, target)
            steps.append({m: self.compare(e0[m], e[m]) for m in methods})
        res["steps"] = steps
        res["entropy_rise"] = {m: (entropy(e[m]) - entropy(e0[m])) / entropy(e0[m]) for m in methods}
        return res

    def time(self, methods, reps, warmup):
        wall, cpu = [], []
        for r in range(warmup + reps):
            t, c = time.perf_counter(), time.process_time()
            self.request(methods)
            if r >= warmup:
                wall.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.process_time() - c) * 1e3)
        return statistics.median(wall), statistics.median(cpu)


def setup(model):
    d = bc.bench_models_dir()
    if model == "fashion-cnn":
        net = bc.fashion_module(os.path.join(d, "fashion-cnn.onnx"))
        twin = bc.fashion_module(os.path.join(d, "fashion-cnn-randlabels.onnx"))
        x = bc.preprocess(bc.FASHION_PNG, [0.286], [0.353], True)
        return (os.path.join(d, "fashion-cnn.onnx"), bc.FASHION_PNG, x, net, twin, "conv4", "cbam.spatial.conv",
                dict(ig_steps=50, smoothgrad_samples=25, mean=[0.286], std=[0.353]), "all", FASHION_LAYERS)
    img = bc.bench_image_224()
    x = bc.preprocess(img, bc.IMAGENET_MEAN, bc.IMAGENET_STD, False)
    return (os.path.join(d, "resnet50.onnx"), img, x, bc.resnet50_module(0), bc.resnet50_module(1), "layer4", None,
            dict(ig_steps=50, smoothgrad_samples=25, mean=bc.IMAGENET_MEAN, std=bc.IMAGENET_STD), "blocks",
            RESNET_BLOCKS)


def run_model(model, threads, reps, warmup, methods):
    torch.set_num_threads(threads)
    path, img, x, net, twin, cam, attn, p, layers, tlayers = setup(model)
    args = ["--model", path, "--image", img, "--request", "--sanity", "model,label", "--sanity_layers", layers]
    sets = ";".join(methods)
    bc.log(f"{model}: explaind first requests")
    first = {}
    for m in methods:  # a fresh process each: nothing cached
        first[m] = bc.explaind_bench(args + ["--methods", m, "--reps", 1, "--warmup", 0], threads)[0]
    bc.log(f"{model}: explaind warm requests, reps {reps}")
    warm = {o["methods"]: o for o in bc.explaind_bench(args + ["--methods", sets, "--reps", reps, "--warmup", warmup],
                                                       threads)}
    # the same request with the randomization steps on two threads (a server with an idle worker)
    bc.log(f"{model}: explaind warm requests, steps on two threads, reps {reps}")
    par = bc.explaind_bench(args + ["--methods", THREE, "--reps", reps, "--warmup", warmup, "--parallel-steps"],
                            threads)[0]
    B = next(iter(warm.values()))["batch"]
    ts = TorchSanity(model, net, twin, cam, attn, x, B, p, tlayers)
    tor = {}
    for m in methods:
        bc.log(f"{model}: torch loop {m}, reps {reps}")
        tor[m] = ts.time(m.split(","), reps, warmup)
    torch.set_num_threads(2 * threads)  # against the two-thread request: PyTorch on as many threads
    bc.log(f"{model}: torch loop {THREE} on {2 * threads} threads, reps {reps}")
    tor_par = ts.time(THREE.split(","), reps, warmup)
    torch.set_num_threads(threads)
    doc = json.loads(__import__("subprocess").run(
        [bc.EXPLAIND, "explain", "--compact", "--output", "raw", "--methods", "saliency"] + args[:4] + args[5:],
        capture_output=True, text=True, env=bc.engine_env(threads)).stdout)
    mr = doc["sanity"]["model_randomization"]
    steps = len(next(iter(mr["methods"].values()))["steps"])
    return dict(model=model, layers=layers, first=first, warm=warm, torch=tor, par=par, torch_par=tor_par,
                engine_steps=steps,
                torch_steps=len(tlayers), reps=reps, nodes=(mr.get("nodes_recomputed"), mr.get("nodes_total")))


def render(res):
    rows = []
    for m, w in res["warm"].items():
        tw, tc = res["torch"][m]
        f = res["first"][m]
        speed = tw / w["median_ms"]
        goal = ""
        speed_cpu = tc / w["median_cpu_ms"]
        ok = lambda good: "met" if good else "MISSED"  # noqa: E731
        if res["model"] == "fashion-cnn" and m == THREE:
            goal = (f"< 20 ms per image: wall {bc.fmt_ms(w['median_ms'])} ms {ok(w['median_ms'] < 20)}, CPU "
                    f"{bc.fmt_ms(w['median_cpu_ms'])} ms {ok(w['median_cpu_ms'] < 20)}")
        elif res["model"] == "resnet50":
            goal = f"≥ 2× faster: wall {ok(speed >= 2)}, CPU {ok(speed_cpu >= 2)}"
        name = f"**{m}** (one request)" if "," in m else m
        rows.append([name, bc.fmt_ms(w["median_ms"]), bc.fmt_ms(w["timing_ms"]["sanity"]), bc.fmt_ms(f["median_ms"]),
                     bc.fmt_ms(tw), f"{speed:.2f}×", f"{speed_cpu:.2f}×", goal])
    if res.get("par"):  # the steps on two threads, against PyTorch on two threads
        w, (tw, tc) = res["par"], res["torch_par"]
        ok = lambda good: "met" if good else "MISSED"  # noqa: E731
        goal = (f"< 20 ms per image: wall {bc.fmt_ms(w['median_ms'])} ms {ok(w['median_ms'] < 20)}"
                if res["model"] == "fashion-cnn" else f"≥ 2× faster: wall {ok(tw / w['median_ms'] >= 2)}")
        rows.append([f"**{THREE}** (one request, steps on two threads; PyTorch on two threads)",
                     bc.fmt_ms(w["median_ms"]), bc.fmt_ms(w["timing_ms"]["sanity"]), "–", bc.fmt_ms(tw),
                     f"{tw / w['median_ms']:.2f}×", f"{tc / w['median_cpu_ms']:.2f}×", goal])
    return "\n".join([
        f"**{res['model']}**, sanity=model,label, sanity_layers={res['layers']} (cascading top-down: explaind "
        f"{res['engine_steps']} steps, the PyTorch loop {res['torch_steps']} (its named modules), + the twin); "
        f"reps {res['reps']}:", "",
        bc.md_table(["method", "explaind ms (warm)", "of which sanity", "explaind ms (first request)",
                     "PyTorch loop ms", "speed-up", "speed-up (CPU time)", "goal"], rows,
                    ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---"]), ""])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10, help="fashion-cnn; resnet50 uses max(1, reps // 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--models", default="fashion-cnn,resnet50")
    ap.add_argument("--write-doc")
    a = ap.parse_args()
    header = bc.run_header("`make bench` (tests/bench/bench_sanity.py)", a.threads)
    results = []
    for model in a.models.split(","):
        big = model == "resnet50"
        results.append(run_model(model, a.threads, max(1, a.reps // 5) if big else a.reps, a.warmup, METHODS[model]))
    twin = ("models/fashion-cnn-randlabels.onnx" if not bc.fashion_twin_is_stand_in() else
            "a stand-in for fashion-cnn-randlabels (not shipped yet): the same architecture with permuted weights, "
            "so the same cost")
    body = [header, "",
            "One explain request with sanity=model,label per row, explaind (`explaind bench --request`: the whole "
            "request in-process, with rendering and JSON) against a straightforward PyTorch loop (deepcopy, "
            "reset_parameters per layer, explain, compare with scipy/skimage metrics; tests/bench/bench_sanity.py). "
            f"fashion-cnn's twin: {twin}; resnet50's: resnet50 with seed-1 random weights. Median wall ms; speed-up "
            "= PyTorch loop / explaind warm. Warm requests reuse the cached randomized-weight overlays; the first "
            "request of a fresh process builds them.", ""]
    body += [render(r) for r in results]
    text = "\n".join(body)
    print(text)
    os.makedirs(bc.OUT, exist_ok=True)
    with open(os.path.join(bc.OUT, f"sanity_t{a.threads}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    if a.write_doc:
        bc.write_doc(a.write_doc, f"sanity-t{a.threads}", f"Sanity checks vs a PyTorch loop ({a.threads} thread)", text)


if __name__ == "__main__":
    main()
