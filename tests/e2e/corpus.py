#!/usr/bin/env python3
"""Byte-identity corpus: a fixed list of requests answered by one explaind binary, written to a
directory (--record DIR) or compared byte for byte with a directory recorded earlier (--check DIR).

A refactoring that must not change behaviour records the corpus from the commit it starts from and
checks it after each step (`make corpus-check BASE=<commit>` does both, building BASE in a
temporary worktree). The requests cover every method with its defaults and with parameters,
predict, sanity, activations, filter visualization, the KServe routes, the model documents and a
few 4xx answers, through the server and through the CLI (`explaind explain ... --compact`).

What differs between two runs of the same binary is masked before the comparison, and only that:
request ids, durations (time_ms, timing_ms members, uptime) and the server's port. Every other byte
of the status line's code, the Content-Type and the body must match.

usage: corpus.py (--record DIR | --check DIR) [--bin build/explaind]
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from server import Server  # noqa: E402

FASHION = REPO / "tests" / "data" / "fashion"
BOOT = FASHION / "test_00000_ankle_boot.png"
SHIRT = FASHION / "test_00004_shirt.png"
M = "/v1/models/fashion-cnn"

# every method alone with its defaults (raw maps, so every float is compared), then with parameters
METHODS = ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "guided_backprop", "deconvnet", "cam",
           "gradcam", "gradcam_pp", "xgradcam", "layercam", "scorecam", "eigencam", "guided_gradcam", "occlusion",
           "activations", "attention", "edge"]
WITH_PARAMS = [
    "methods=integrated_gradients&ig_steps=8&ig_method=riemann_trapezoid&baseline=blur&reduce=l2",
    "methods=integrated_gradients&ig_steps=5&baseline=uniform&seed=7&output=attribution",
    "methods=smoothgrad&smoothgrad_samples=4&smoothgrad_noise=0.3&smoothgrad_type=vargrad&smoothgrad_base=grad_x_input&seed=3",
    "methods=smoothgrad&smoothgrad_samples=3&smoothgrad_type=smoothgrad_sq&smoothgrad_base=integrated_gradients&ig_steps=4",
    "methods=scorecam&scorecam_channels=4",
    "methods=occlusion&occlusion_window=7&occlusion_stride=3&baseline=black",
    "methods=gradcam,saliency,guided_gradcam,layercam&target=3&layer=conv3",
    "methods=gradcam,saliency&target=Bag&output=heatmap_png,overlay_png&colormap=viridis&alpha=0.3",
    "methods=saliency,gradcam&output=heatmap_png&size=model&clip_percentile=90&colormap=turbo",
    "methods=gradcam,guided_backprop,edge&output=overlay_png&colormap=inferno",
    "methods=gradcam&output=heatmap_png&colormap=gray&clip_percentile=100",
    "methods=activations&output=raw,heatmap_png&layer=conv1",
    "methods=saliency,gradcam,eigencam&faithfulness=true&faithfulness_steps=5",
    "methods=saliency,grad_x_input,gradcam,gradcam_pp,xgradcam,layercam,guided_backprop,guided_gradcam,cam,eigencam,edge&output=raw&reduce=abs_max",
    "methods=deconvnet,grad_x_input&reduce=sum&output=raw,attribution",
    "top_k=3&methods=gradcam&output=raw",
]
SANITY = [
    "methods=gradcam,saliency&sanity=model&sanity_layers=groups",
    "methods=gradcam&sanity=model&sanity_order=independent&sanity_layers=blocks&sanity_init=normal&sanity_init_std=0.05",
    "methods=saliency&sanity=model,random_logit&sanity_order=cascading_bottom_up&sanity_target=argmax&seed=5",
    "methods=gradcam&sanity=model&sanity_noise_samples=2&sanity_layers=groups",
]
# (method, path, kind, payload): kind "none", "png" (raw image body), "json" (JSON body), "form" (multipart)
HTTP = [
    ("GET", "/healthz", "none", None),
    ("GET", "/v1/models", "none", None),
    ("GET", M, "none", None),
    ("GET", "/v2/health/live", "none", None),
    ("GET", "/v2/models/fashion-cnn/ready", "none", None),
    ("GET", "/v1/models/fashion-paper-cnn", "none", None),
    ("POST", "/v1/models/fashion-paper-cnn/explain?methods=gradcam,saliency,scorecam&output=raw", "png", None),
    ("POST", "/v1/models/fashion-paper-cnn/explain?methods=cam", "png", None),
    ("POST", M + "/predict", "png", None),
    ("POST", M + "/predict?top_k=10", "png", None),
    ("POST", M + "/explain", "png", None),  # the defaults
    *[("POST", f"{M}/explain?methods={m}&output=raw", "png", None) for m in METHODS],
    *[("POST", f"{M}/explain?{q}", "png", None) for q in WITH_PARAMS],
    ("POST", M + "/explain", "json", {"image": "BOOT", "methods": ["gradcam", "saliency"], "output": ["raw"], "target": 2}),
    ("POST", M + "/explain", "form", {"methods": "gradcam,xgradcam", "output": "raw,heatmap_png"}),
    *[("POST", f"{M}/sanity?{q}", "sanity", None) for q in SANITY],
    ("POST", M + "/sanity?methods=gradcam&sanity=label&per_image=true", "sanity2", None),
    ("POST", M + "/layers/conv3/activations", "png", None),
    ("POST", M + "/layers/conv1/activations?top_k=2&colormap=gray&output=raw", "png", None),
    ("POST", M + "/layers/conv3/filters/2/visualize?steps=6&seed=4", "none", None),
    ("POST", M + "/layers/logits/filters/1/visualize?steps=4&jitter=2&blur_every=2&blur_sigma=0.8&output=raw", "none", None),
    ("POST", M + ":predict", "json", {"instances": [{"b64": "BOOT"}, {"b64": "SHIRT"}], "parameters": {"top_k": 2}}),
    ("POST", M + ":explain", "json", {"instances": [{"b64": "BOOT"}, {"b64": "SHIRT"}],
                                      "parameters": {"methods": ["gradcam", "saliency"], "output": ["raw"]}}),
    ("POST", M + ":explain?methods=edge", "json", {"instances": [{"b64": "BOOT"}]}),
    # 4xx
    ("GET", "/v1/models/nope", "none", None),
    ("POST", M + "/explain?methods=nope", "png", None),
    ("POST", M + "/explain?ig_steps=0&methods=integrated_gradients", "png", None),
    ("POST", M + "/explain?smoothgrad_base=cam", "png", None),
    ("POST", M + "/explain?layer=nope&methods=gradcam", "png", None),
    ("POST", M + "/explain?target=Nope", "png", None),
    ("POST", M + "/explain?ig_method=riemann_trapezoid&ig_steps=1&methods=integrated_gradients", "png", None),
    ("POST", M + "/explain?occlusion_window=99&methods=occlusion", "png", None),
    ("POST", M + "/explain?occlusion_window=4&occlusion_stride=5&methods=occlusion", "png", None),
    ("POST", M + "/predict?methods=gradcam", "png", None),
    ("POST", M + "/layers/nope/activations", "png", None),
    ("POST", M + ":explain", "json", {"instances": [{"b64": "BOOT"}], "parameters": {"ig_steps": 0}}),
    ("POST", M + "/explain", "json", {"image": "BOOT", "methods": "gradcam", "alpha": True}),
    ("GET", M + "/explain", "none", None),
]
CLI = [
    ["predict", "--top_k", "3"],
    ["explain", "--methods", "gradcam,saliency,integrated_gradients", "--ig_steps", "6", "--output", "raw"],
    ["explain", "--methods", "smoothgrad,occlusion", "--smoothgrad_samples", "3", "--seed", "9", "--output", "raw,heatmap_png"],
    ["explain", "--methods", "nope"],
]

VOLATILE = [
    (re.compile(rb'"(request_id|requestId)": ?"[^"]*"'), rb'"\1":"-"'),
    (re.compile(rb'"([a-z_]*_ms|time_ms|timing_ms|uptime_s|uptime_seconds)": ?-?[0-9.eE+-]+'), rb'"\1":0'),
    (re.compile(rb'127\.0\.0\.1:[0-9]+'), rb'127.0.0.1:PORT'),
]


def mask(b):
    for rx, rep in VOLATILE:
        b = rx.sub(rep, b)
    # timing_ms objects hold per-stage durations whose keys do not end in _ms
    b = re.sub(rb'"timing_ms": ?\{[^{}]*\}', b'"timing_ms":{}', b)
    return b


def b64(p):
    return base64.b64encode(p.read_bytes()).decode()


def payload(obj):
    s = json.dumps(obj)
    return s.replace('"BOOT"', json.dumps(b64(BOOT))).replace('"SHIRT"', json.dumps(b64(SHIRT)))


def http_cases(server):
    import requests
    s = requests.Session()
    for i, (method, path, kind, body) in enumerate(HTTP):
        kw = {}
        if kind == "png":
            kw = {"data": BOOT.read_bytes(), "headers": {"Content-Type": "image/png"}}
        elif kind == "json":
            kw = {"data": payload(body), "headers": {"Content-Type": "application/json"}}
        elif kind == "form":
            kw = {"files": {"image": ("boot.png", BOOT.read_bytes(), "image/png")}, "data": body}
        elif kind in ("sanity", "sanity2"):
            imgs = [BOOT] if kind == "sanity" else [BOOT, SHIRT]
            kw = {"files": [("image", (p.name, p.read_bytes(), "image/png")) for p in imgs]}
        r = s.request(method, server.url(path), timeout=600, **kw)
        head = f"{r.status_code} {r.headers.get('Content-Type', '')}\n".encode()
        yield f"http-{i:03d}", f"{method} {path}", head + mask(r.content)


def cli_cases(binary, workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
    cfg = Path(workdir) / "empty-config.json"
    cfg.write_text("{}\n")
    env["EXPLAIND_CONFIG"] = str(cfg)
    for i, args in enumerate(CLI):
        cmd = [binary, args[0], "--model", str(REPO / "models" / "fashion-cnn.onnx"), "--image", str(BOOT),
               *(["--compact"] if args[0] != "predict" else []), *args[1:]]
        p = subprocess.run(cmd, capture_output=True, timeout=600)
        yield f"cli-{i:03d}", " ".join(args), f"exit {p.returncode}\n".encode() + mask(p.stdout) + b"\n--stderr--\n" + mask(p.stderr)


def run(binary):
    with tempfile.TemporaryDirectory() as d:
        srv = Server(binary, str(REPO / "models"), d, workers=1).start()
        try:
            yield from http_cases(srv)
        finally:
            srv.stop()
        yield from cli_cases(binary, d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="DIR")
    g.add_argument("--check", metavar="DIR")
    ap.add_argument("--bin", default=str(REPO / "build" / "explaind"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if a.record:
        out = Path(a.record)
        out.mkdir(parents=True, exist_ok=True)
        index = []
        for name, what, data in run(binary):
            (out / name).write_bytes(data)
            index.append(f"{name} {what}")
        (out / "INDEX").write_text("\n".join(index) + "\n")
        print(f"corpus: recorded {len(index)} answers into {out}")
        return 0
    base = Path(a.check)
    bad = n = 0
    for name, what, data in run(binary):
        n += 1
        ref = base / name
        if not ref.exists():
            print(f"corpus: {name} ({what}): not in {base}")
            bad += 1
        elif ref.read_bytes() != data:
            old = ref.read_bytes()
            at = next((k for k in range(min(len(old), len(data))) if old[k] != data[k]), min(len(old), len(data)))
            print(f"corpus: {name} ({what}): differs at byte {at}: {old[max(0, at - 60):at + 60]!r} != {data[max(0, at - 60):at + 60]!r}")
            bad += 1
    print(f"corpus: {n - bad}/{n} answers byte-identical to {base}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
