#!/usr/bin/env python3
"""explaind against what a user would run instead: Captum or pytorch-grad-cam in a PyTorch process on
the same machine, one request at a time (issue "Speed", section Benchmarks). A benchmark, never a
test: nothing here asserts a time.

explaind side: `build/explaind serve` with the default config (workers = cores; a request borrows
idle cores when the build has them) on 127.0.0.1, one HTTP request at a time, the image as the raw
PNG body, the method's parameters in the query, default output (PNG heatmaps and raw maps as base64
JSON). The time is the client's wall clock: upload, decode, preprocessing, the engine, rendering,
the JSON and its transfer.

PyTorch side: torch.set_num_threads(--threads, default: every core), float32, the torchvision module
that was exported (random weights, torch.manual_seed(0)), the same preprocessed tensor. Captum and
pytorch-grad-cam are not Debian packages, so each row re-implements the library call in plain
PyTorch as the library defines it (tests/bench/bench_methods.py's TorchSide; the file and function
each row follows):
  predict               a no-grad forward and softmax (what a serving process does)
  saliency              captum/attr/_core/saliency.py Saliency.attribute: |d y_c / d x|
  grad_x_input          captum/attr/_core/input_x_gradient.py InputXGradient.attribute
  integrated_gradients  captum/attr/_core/integrated_gradients.py IntegratedGradients.attribute,
                        method gausslegendre, n_steps 50, zero baseline; internal_batch_size = None
                        (Captum's default: all 50 steps in one batch)
  smoothgrad            captum/attr/_core/noise_tunnel.py NoiseTunnel(Saliency), nt_type smoothgrad,
                        nt_samples 25, stdev 0.15 (max - min); nt_samples_batch_size None (one batch)
  guided_backprop       captum/attr/_core/guided_backprop_deconvnet.py GuidedBackprop (ReLU backward
                        rule on every ReLU)
  gradcam (Captum)      captum/attr/_core/layer/grad_cam.py LayerGradCam.attribute: gradients to the
                        layer only (the backward stops there), weights = mean gradient, ReLU
  gradcam (pytorch-grad-cam)  pytorch_grad_cam/base_cam.py BaseCAM.forward + grad_cam.py: forward
                        and backward hooks on the layer, loss.backward() with the model's parameters
                        requiring gradients (its default), ReLU, then utils/image.py scale_cam_image
                        (min-max, resized to the input: cv2.resize bilinear, here F.interpolate)
  scorecam              pytorch_grad_cam/score_cam.py ScoreCAM: bilinear upsampled, min-max
                        normalised activations as masks, batch_size 16; both sides restricted to the
                        --scorecam-channels channels of highest mean activation (explaind's
                        scorecam_channels; 0 = all, 2048 forwards on resnet50)
  occlusion             captum/attr/_core/occlusion.py Occlusion.attribute, window (3, 56, 56),
                        strides 28, zero baseline, perturbations_per_eval 16
  fused 8               one explaind request with 8 methods (saliency, grad_x_input, gradcam,
                        gradcam_pp, xgradcam, layercam, guided_backprop, guided_gradcam) against the
                        8 library calls one after the other (the sum of their PyTorch times)

Models (224 x 224, skimage's chelsea photo): resnet50, resnet18, vgg16, mobilenet_v2,
efficientnet_b0. The CAM layer is set by module path on both sides (layer4, features).

Usage: bench_peers.py [--models resnet50,...] [--rows predict,...] [--threads N] [--reps 5]
                      [--heavy-reps 1] [--serve-flag KEY=VALUE ...] [--write-doc docs/PERFORMANCE.md]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402
import bench_methods as bm  # noqa: E402
from loadtest import Server  # noqa: E402

MODELS = ["resnet50", "resnet18", "vgg16", "mobilenet_v2", "efficientnet_b0"]
CAM_MODULE = {"resnet50": "layer4", "resnet18": "layer4", "vgg16": "features", "mobilenet_v2": "features",
              "efficientnet_b0": "features"}
FUSED8 = bm.FUSED8
# row -> (explaind methods, explaind query parameters, PyTorch function name)
ROWS = {
    "predict": (None, {}, "predict"),
    "saliency": ("saliency", {}, "saliency"),
    "grad_x_input": ("grad_x_input", {}, "grad_x_input"),
    "integrated_gradients": ("integrated_gradients", {"ig_steps": 50}, "integrated_gradients"),
    "smoothgrad": ("smoothgrad", {"smoothgrad_samples": 25}, "smoothgrad"),
    "guided_backprop": ("guided_backprop", {}, "guided_backprop"),
    "gradcam_captum": ("gradcam", {}, "gradcam"),
    "gradcam_pgc": ("gradcam", {}, "gradcam_pgc"),
    "scorecam": ("scorecam", {}, "scorecam"),
    "occlusion": ("occlusion", {"occlusion_window": 56, "occlusion_stride": 28}, "occlusion"),
    "fused8": (",".join(FUSED8), {}, None),
}
LABEL = {"gradcam_captum": "Grad-CAM (Captum LayerGradCam)", "gradcam_pgc": "Grad-CAM (pytorch-grad-cam)",
         "integrated_gradients": "integrated gradients, 50 steps", "smoothgrad": "SmoothGrad, 25 samples",
         "fused8": "**8 methods fused in one request**"}
HEAVY = {"integrated_gradients", "smoothgrad", "scorecam", "occlusion"}
GOAL = 0.8


class PeerSide(bm.TorchSide):
    """TorchSide with the library defaults this benchmark names (one batch for IG and SmoothGrad, as
    Captum without internal_batch_size), plus predict and pytorch-grad-cam's Grad-CAM."""

    def predict(self):
        with self.torch.no_grad():
            return self.torch.softmax(self.net(self.x), 1)

    def gradcam_pgc(self):
        torch = self.torch
        F = torch.nn.functional
        box = {}

        def fwd(mod, inp, out):
            box["A"] = out.detach()
            out.register_hook(lambda g: box.__setitem__("G", g.detach()))

        for p in self.net.parameters():  # pytorch-grad-cam leaves the model's parameters trainable
            p.requires_grad_(True)
        h = self.cam_module.register_forward_hook(fwd)
        try:
            out = self.net(self.x)
            c = int(out[0].argmax())
            self.net.zero_grad()
            out[0, c].backward(retain_graph=True)
        finally:
            h.remove()
            for p in self.net.parameters():
                p.requires_grad_(False)
        A, G = box["A"][0], box["G"][0]
        cam = (G.mean((1, 2))[:, None, None] * A).sum(0).clamp_min(0)
        cam = (cam - cam.min()) / (1e-7 + cam.max())
        return F.interpolate(cam[None, None], size=self.x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def torch_module(arch):
    import torch
    import torchvision
    torch.manual_seed(0)
    kw = {"init_weights": True} if arch.startswith("vgg") else {}
    m = getattr(torchvision.models, arch)(**kw).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def model_dir(arch):
    """build/bench/peers/<arch>.onnx with its sidecar (stretch, ImageNet normalisation, CAM layer by
    module path); exported once."""
    import torch
    d = os.path.join(bc.OUT, "peers", arch)
    os.makedirs(d, exist_ok=True)
    onnx_path = os.path.join(d, arch + ".onnx")
    if not os.path.exists(onnx_path):
        torch.onnx.export(torch_module(arch), torch.randn(1, 3, 224, 224), onnx_path + ".tmp", opset_version=13,
                          input_names=["input"], output_names=["logits"])
        os.replace(onnx_path + ".tmp", onnx_path)
    side = {"labels": [f"class_{i}" for i in range(1000)], "cam_layer": CAM_MODULE[arch],
            "input": {"color": "rgb", "height": 224, "width": 224, "scale": 255, "mean": bc.IMAGENET_MEAN,
                      "std": bc.IMAGENET_STD, "resize": "stretch"}}
    with open(os.path.join(d, arch + ".json"), "w") as f:
        json.dump(side, f)
    return d


def cam_module(net, arch):
    return getattr(net, CAM_MODULE[arch])


class Client:
    def __init__(self, server):
        self.host, self.port = "127.0.0.1", server.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def post(self, path, body):
        self.conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"POST {path}: {r.status} {data[:300]!r}")
        return data

    def time(self, path, body, reps, warmup):
        wall = []
        for i in range(warmup + reps):
            t = time.perf_counter()
            self.post(path, body)
            if i >= warmup:
                wall.append((time.perf_counter() - t) * 1e3)
        return statistics.median(wall)


def query(params):
    return "&".join(f"{k}={v}" for k, v in params.items())


def run_model(arch, rows, threads, reps, heavy_reps, scorecam_k, serve_flags):
    import torch
    torch.set_num_threads(threads)
    d = model_dir(arch)
    img = bc.bench_image_224()
    png = open(img, "rb").read()
    res = {"model": arch, "explaind": {}, "torch": {}}
    srv = Server(d, os.path.join(bc.OUT, f"peers-serve-{arch}.log"), 0, extra=serve_flags)
    try:
        cl = Client(srv)
        for row in rows:
            methods, params, _ = ROWS[row]
            params = dict(params)
            if row == "scorecam" and scorecam_k:
                params["scorecam_channels"] = scorecam_k
            if methods is None:
                path = f"/v1/models/{arch}/predict"
            else:
                path = f"/v1/models/{arch}/explain?" + query(dict(methods=methods, **params))
            r, w = (heavy_reps, 1) if row in HEAVY else (reps, 2)
            bc.log(f"{arch}: explaind {row}, reps {r}")
            res["explaind"][row] = cl.time(path, png, r, w)
    finally:
        srv.stop()
    net = torch_module(arch)
    x = bc.preprocess(img, bc.IMAGENET_MEAN, bc.IMAGENET_STD, False)
    p = dict(ig_steps=50, smoothgrad_samples=25, scorecam_channels=scorecam_k, occlusion_window=56,
             occlusion_stride=28, mean=bc.IMAGENET_MEAN, std=bc.IMAGENET_STD)
    side = PeerSide(arch, net, cam_module(net, arch), None, x, 16, p)
    for row in rows:
        fn = ROWS[row][2]
        r, w = (heavy_reps, 1) if row in HEAVY else (reps, 2)
        if fn is None:
            continue
        side.B = 50 if row in ("integrated_gradients", "smoothgrad") else 16
        bc.log(f"{arch}: torch {row}, reps {r}")
        res["torch"][row] = side.time(fn, r, w)[0]
    if "fused8" in rows:
        parts = {"saliency": "saliency", "grad_x_input": "grad_x_input", "gradcam": "gradcam",
                 "gradcam_pp": "gradcam_pp", "xgradcam": "xgradcam", "layercam": "layercam",
                 "guided_backprop": "guided_backprop", "guided_gradcam": "guided_gradcam"}
        tot = 0.0
        for m in FUSED8:
            key = {"gradcam": "gradcam_captum"}.get(m, m)
            t = res["torch"].get(key)
            if t is None:
                t = side.time(parts[m], reps, 1)[0]
            tot += t
        res["torch"]["fused8"] = tot
    return res


def render(results, threads, reps, heavy_reps, serve_flags, scorecam_k):
    rows = []
    verdicts = []
    for res in results:
        for row, e in res["explaind"].items():
            t = res["torch"].get(row)
            if t is None:
                continue
            ratio = e / t
            goal = ""
            if res["model"] in ("resnet50", "resnet18", "vgg16"):
                goal = f"≤ {GOAL}×: " + ("met" if ratio <= GOAL else "MISSED")
                verdicts.append(ratio <= GOAL)
            rows.append([res["model"], LABEL.get(row, row.replace("_", " ")), bc.fmt_ms(e), bc.fmt_ms(t),
                         f"{ratio:.2f}×", goal])
    met = sum(verdicts)
    flags = " ".join(serve_flags) if serve_flags else "none (the default config)"
    head = bc.run_header("`make bench-peers` (tests/bench/bench_peers.py)", threads,
                         extra=f"explaind serve flags: {flags}. PyTorch threads: {threads}.")
    text = [head, "",
            "One request at a time. explaind: HTTP round trip on loopback (raw PNG body, default output: PNG "
            "heatmaps and raw maps in JSON). PyTorch: the library call re-implemented in plain PyTorch as the "
            "library defines it (tests/bench/bench_peers.py names the file and function per row), on the "
            f"preprocessed tensor. Median wall ms over {reps} reps ({heavy_reps} for IG, SmoothGrad, Score-CAM, "
            f"occlusion). Score-CAM: {scorecam_k or 'all'} channels on both sides. Ratio = explaind / PyTorch "
            f"(below 1: explaind is faster). Goal: every row ≤ {GOAL}× for resnet50, resnet18 and vgg16: "
            + (f"**{met} of {len(verdicts)} met**." if verdicts else "none of those models ran here."), "",
            bc.md_table(["model", "request", "explaind ms", "PyTorch ms", "ratio", "goal"], rows,
                        ["---", "---", "---:", "---:", "---:", "---"])]
    return "\n".join(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--heavy-reps", type=int, default=1)
    ap.add_argument("--scorecam-channels", type=int, default=64)
    ap.add_argument("--serve-flag", action="append", default=[], help="KEY=VALUE passed to explaind serve as --KEY VALUE")
    ap.add_argument("--marker", default=None, help="docs/PERFORMANCE.md block (default: peers-t<threads>)")
    ap.add_argument("--write-doc")
    a = ap.parse_args()
    flags = []
    for kv in a.serve_flag:
        k, v = kv.split("=", 1)
        flags += [f"--{k}", v]
    rows = a.rows.split(",")
    results = [run_model(m, rows, a.threads, a.reps, a.heavy_reps, a.scorecam_channels, flags)
               for m in a.models.split(",")]
    text = render(results, a.threads, a.reps, a.heavy_reps, a.serve_flag, a.scorecam_channels)
    print(text)
    os.makedirs(bc.OUT, exist_ok=True)
    marker = a.marker or f"peers-t{a.threads}"
    with open(os.path.join(bc.OUT, f"{marker}.json"), "w") as f:
        json.dump(results, f, indent=1)
    if a.write_doc:
        bc.write_doc(a.write_doc, marker, f"explaind vs PyTorch + Captum / pytorch-grad-cam ({a.threads} threads)", text)


if __name__ == "__main__":
    main()
