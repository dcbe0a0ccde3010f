#!/usr/bin/python3
"""make test-valgrind: a short e2e session against the real build/explaind running under
`valgrind --leak-check=full`, then SIGTERM. Passes when every request got its expected status,
the server exited 0 after draining, valgrind reported 0 errors and 0 bytes definitely lost.

The session: health, readiness, metrics, model list and info, the OpenAPI document and the
dashboard; predict and explain (gradient, CAM, perturbation and internals methods, raw and PNG
outputs) as raw PNG and JPEG bodies, multipart, JSON and KServe; a sanity check; activations; a
filter visualization; and the 4xx cases (truncated PNG, GIF, bad JSON, bad base64, unknown and
out-of-range parameters, unknown model and layer, KServe unknown field, oversized headers).

  valgrind_session.py BUILD/explaind [--log PATH]
OPENBLAS_CORETYPE=Haswell keeps OpenBLAS on AVX2 kernels: valgrind does not decode AVX-512.
Under valgrind one fashion-cnn forward pass takes ~2 s, so the multi-pass methods run with the
fewest passes that still go through their code (ig_steps=2, occlusion 2x2 windows, one sanity
layer, faithfulness_steps=2, filter steps=2): the session takes a few minutes.
"""
import base64
import os
import signal
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build", "explaind"))
LOG = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else os.path.join(os.path.dirname(BIN), "valgrind.log")
M = "/v1/models/fashion-cnn"
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from server import Server  # noqa: E402  (the e2e suite's server process wrapper)


def main():
    png = open(os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png"), "rb").read()
    jpeg = open(os.path.join(REPO, "tests", "data", "decode", "gray.jpg"), "rb").read()
    gif = open(os.path.join(REPO, "tests", "data", "decode", "tiny.gif"), "rb").read()
    b64 = base64.b64encode(png).decode()
    tmp = tempfile.mkdtemp(prefix="explaind-valgrind-")
    valgrind = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                "--error-exitcode=99", "--num-callers=30", f"--log-file={LOG}"]
    srv = Server(BIN, os.path.join(REPO, "models"), tmp, wrapper=valgrind, env={"OPENBLAS_CORETYPE": "Haswell"},
                 workers=2, request_timeout_ms=600000, drain_timeout_ms=600000)
    t0 = time.time()
    try:
        srv.start(timeout=600)
    except RuntimeError as e:
        sys.exit(f"explaind under valgrind did not get ready ({e}); see {LOG}")
    base = srv.base
    print(f"valgrind: server ready after {time.time() - t0:.0f} s")

    s = requests.Session()
    cases = [
        ("GET", "/healthz", {}, 200), ("GET", "/readyz", {}, 200), ("GET", "/metrics", {}, 200),
        ("GET", "/v1/models", {}, 200), ("GET", M, {}, 200), ("GET", "/openapi.yaml", {}, 200), ("GET", "/", {}, 200),
        ("POST", M + "/predict", {"data": png, "headers": {"Content-Type": "image/png"}}, 200),
        ("POST", M + "/explain?methods=gradcam,saliency,grad_x_input,guided_backprop,deconvnet,guided_gradcam"
                     "&output=raw,attribution,heatmap_png,overlay_png",
         {"data": png, "headers": {"Content-Type": "image/png"}}, 200),
        ("POST", M + "/explain?methods=integrated_gradients,smoothgrad&ig_steps=2&smoothgrad_samples=2&smoothgrad_base=saliency",
         {"data": jpeg, "headers": {"Content-Type": "image/jpeg"}}, 200),
        ("POST", M + "/explain", {"files": {"image": ("b.png", png, "image/png")},
                                  "data": {"methods": "cam,gradcam_pp,xgradcam,layercam,eigencam,scorecam,edge,attention,activations",
                                           "scorecam_channels": "2"}}, 200),
        ("POST", M + "/explain", {"json": {"image": b64, "methods": ["occlusion"], "occlusion_window": 14, "occlusion_stride": 14, "size": "model"}}, 200),
        ("POST", M + ":explain", {"json": {"instances": [{"b64": b64}], "parameters": {"methods": ["gradcam"]}}}, 200),
        ("POST", M + ":predict", {"json": {"instances": [{"b64": b64}, {"image_bytes": {"b64": b64}}]}}, 200),
        ("POST", M + "/explain?methods=gradcam&sanity=model,random_logit&sanity_layers=/fc/Gemm&faithfulness=true&faithfulness_steps=2",
         {"data": png, "headers": {"Content-Type": "image/png"}}, 200),
        ("POST", M + "/sanity", {"json": {"images": [b64, b64], "methods": ["saliency"], "sanity": "model", "sanity_layers": "/fc/Gemm"}}, 200),
        ("POST", M + "/layers/%2Fconv4%2FRelu/activations", {"data": png, "headers": {"Content-Type": "image/png"}}, 200),
        ("POST", M + "/layers/%2Fconv1%2Fconv%2FConv/filters/0/visualize?steps=2", {}, 200),
        ("POST", M + "/explain", {"data": png[:200], "headers": {"Content-Type": "image/png"}}, 400),
        ("POST", M + "/explain", {"data": gif, "headers": {"Content-Type": "image/gif"}}, 415),
        ("POST", M + "/explain", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", M + "/explain", {"json": {"image": "!!!"}}, 400),
        ("POST", M + "/explain?ig_stepz=3", {"data": png, "headers": {"Content-Type": "image/png"}}, 422),
        ("POST", M + "/explain?ig_steps=100000", {"data": png, "headers": {"Content-Type": "image/png"}}, 422),
        ("POST", M + "/explain?alpha=NaN", {"data": png, "headers": {"Content-Type": "image/png"}}, 422),
        ("POST", M + ":explain", {"json": {"instances": [{"b64": b64}], "bogus_field": 1}}, 422),
        ("POST", "/v1/models/..%2Fetc/explain", {"data": png}, 404),
        ("POST", M + "/layers/nope/activations", {"data": png, "headers": {"Content-Type": "image/png"}}, 404),
        ("POST", M + "/explain", {"data": png, "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", "/healthz", {"headers": {"X-Long": "a" * 20000}}, 431),
        ("GET", "/healthz", {}, 200),
    ]
    failed = 0
    for method, path, kw, want in cases:
        t1 = time.time()
        r = s.request(method, base + path, timeout=600, **kw)
        print(f"  {r.status_code} {time.time() - t1:6.1f} s  {method} {path[:100]}", flush=True)
        ok = r.status_code == want
        if ok and want == 200 and method == "POST":
            doc = r.json()
            ok = isinstance(doc, dict) and len(doc) > 0
        if not ok:
            failed += 1
            print(f"FAIL {method} {path[:90]}: {r.status_code} (wanted {want}) {r.text[:300]}")
    s.close()
    rc = srv.stop(signal.SIGTERM, timeout=600)
    log = open(LOG).read()
    summary = [l.split("== ", 1)[-1] for l in log.splitlines()
               if "definitely lost" in l or "ERROR SUMMARY" in l or "All heap blocks were freed" in l
               or "indirectly lost" in l or "possibly lost" in l or "still reachable" in l]
    print("\n".join(summary))
    definite = [l for l in summary if "definitely lost:" in l]
    no_definite = all(" 0 bytes in 0 blocks" in l for l in definite) or any("All heap blocks were freed" in l for l in summary)
    no_errors = any("ERROR SUMMARY: 0 errors" in l for l in summary)
    if rc != 0:
        print(f"FAIL the server exited {rc} on SIGTERM (99: valgrind found errors); see {LOG}")
    if not no_definite:
        print(f"FAIL definitely lost memory; see {LOG}")
    if not no_errors:
        print(f"FAIL valgrind errors; see {LOG}")
    checks = len(cases) + 3
    nfail = failed + (rc != 0) + (not no_definite) + (not no_errors)
    print(f"valgrind session ({time.time() - t0:.0f} s, log {LOG})")
    print(f"test-valgrind: {checks - nfail} passed, {nfail} failed")
    sys.exit(1 if nfail else 0)


if __name__ == "__main__":
    main()
