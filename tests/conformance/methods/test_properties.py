"""Properties of the stochastic methods, and the fusion of passes.

SmoothGrad/VarGrad, the uniform baseline and every other random choice draw from the request seed
(test_seeded_methods.py draws the same numbers again and compares with PyTorch number for number);
these tests check what must hold whatever the numbers:
  - SmoothGrad with smoothgrad_noise 0 equals its base method (saliency, grad_x_input,
    guided_backprop, integrated_gradients): every sample is the input itself (to the rounding of a
    batched vs a single-image pass, relative L2 <= 1e-5);
  - VarGrad is a variance: >= 0 everywhere;
  - Integrated Gradients at 256 steps satisfies completeness: |Σ attr − (f(x) − f(x0))| <= 1 % of
    |f(x) − f(x0)|, from extra.convergence_delta and recomputed from the attribution and the float64
    reference's f(x), f(x0);
  - the same seed gives the same bytes of the whole explanations object (time_ms removed: it is a
    measurement), and another seed another SmoothGrad map.
Fusion: `passes` counts each batched forward and backward (docs/API.md). The expected counts are
derived from engine/explain/explain.c and the method files, with B = 16 (config max_batch; the
workspace budget does not lower it for these models):
  first forward 1; one ordinary backward if any of saliency, grad_x_input, gradcam, gradcam_pp,
  xgradcam, layercam, guided_gradcam; one guided backward if guided_backprop or guided_gradcam;
  deconvnet +1 forward +1 backward; IG with n steps: n + 2 points (f(x0) and f(x) ride along),
  ceil((n + 2)/B) forwards, a backward for each batch that starts before point n (ceil(n/B));
  SmoothGrad N samples (gradient bases): ceil(N/B) forwards and backwards; Score-CAM k channels:
  ceil(k/B) forwards; occlusion with W windows: ceil(W/B) forwards; cam, eigencam, activations,
  attention, edge: nothing.
"""
import json
import math

import numpy as np
import pytest

import mc_engine as E
import mc_reference as R
from conftest import MODEL_NAMES, get_case, record_property

B = 16
SG_ZERO_NOISE_TOL = 1e-5
BASES = ["saliency", "grad_x_input", "guided_backprop", "integrated_gradients"]


@pytest.fixture(scope="module")
def cases(png_dir):
    out = {}
    for name in MODEL_NAMES:
        try:
            out[name] = get_case(name, png_dir)
        except pytest.skip.Exception:
            pass
    return out


def need(cases, name):
    if name not in cases:
        get_case(name, None)  # skips with the reason
    return cases[name]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_smoothgrad_zero_noise_equals_base(cases, engine, name, base):
    """smoothgrad (type smoothgrad, 4 samples) with smoothgrad_noise 0 = its base method, to float32
    rounding: each sample is x itself, but the 4 run as one batch and the base as a single image, and
    the engine's batched and single passes sum in different orders. Relative L2 <= 1e-5 (was 1e-6:
    mobilenet_v2 measured 1.15e-6; the engine conformance suite measures batch vs single at up to
    4e-5 on deeper models and bounds it by 1e-4)."""
    c = need(cases, name)
    extra = dict(ig_steps=8) if base == "integrated_gradients" else {}
    d = engine.get(c.model, c.png, f"smoothgrad,{base}", target=c.target, smoothgrad_noise=0, smoothgrad_samples=4,
                   smoothgrad_base=base, **extra)
    sg = E.attribution(d, "smoothgrad")
    ref = E.attribution(d, base)
    rel = R.rel_l2(sg, ref)
    record_property(f"smoothgrad(noise 0) = {base}", name, rel, rel <= SG_ZERO_NOISE_TOL, "relative L2")
    assert rel <= SG_ZERO_NOISE_TOL, rel


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_vargrad_is_nonnegative(cases, engine, name):
    """smoothgrad_type vargrad = E[a²] − E[a]² over the samples: >= 0 in the attribution and the raw map."""
    c = need(cases, name)
    d = engine.get(c.model, c.png, "smoothgrad", target=c.target, smoothgrad_type="vargrad", smoothgrad_samples=8,
                   smoothgrad_base="grad_x_input")
    a = E.attribution(d, "smoothgrad")
    r = E.raw(d, "smoothgrad")
    record_property("vargrad >= 0", name, float(min(a.min(), r.min())), bool(a.min() >= 0 and r.min() >= 0), "minimum")
    assert a.min() >= 0 and r.min() >= 0, (a.min(), r.min())
    assert a.max() > 0


@pytest.mark.parametrize("baseline", ["zero", "black"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_ig_completeness_256_steps(cases, engine, name, baseline):
    """IG (gausslegendre, 256 steps): |Σ attribution − (f(x) − f(x0))| <= 1 % |f(x) − f(x0)|, read from
    extra.convergence_delta and recomputed from the attribution with the float64 reference's logits;
    the engine's f_input / f_baseline extras equal those logits.

    Target: the class whose logit moves most between x0 and x. With random weights the top-1 logit
    barely moves (f(x) − f(x0) = 0.01..0.4 against Σ|attr| = 2..100 here) and a 256-point quadrature
    of an integrand with thousands of kinks is not within 1 % of so small a difference, in PyTorch
    either (measured in float32 on random-weight models: 1.4 % a 28x28 CBAM net, 6 % resnet18 with the black
    baseline).
    mobilenet_v2 (random weights) is not tested: its path integrand is so rough that PyTorch's own
    256-step IG misses completeness by 18 % (zero) and 8 % (black) even for that target (5.5 % at
    1024 steps for the top-1 class), so the property does not hold for the model at 256 steps."""
    if name == "mobilenet_v2":
        pytest.skip("random-weight mobilenet_v2: PyTorch's own 256-step IG misses completeness by 8-18 %")
    if name == "resnet18" and baseline == "black":
        pytest.skip("resnet18: zero baseline only (time); the black baseline runs on the 28x28 models")
    c = need(cases, name)
    x0 = R.baseline(baseline, c.model, c.x)
    lg = R.logits(c.om, np.concatenate([c.x, x0]))
    target = int(np.abs(lg[0] - lg[1]).argmax())
    f = lg[:, target]
    d = engine.get(c.model, c.png, "integrated_gradients", target=target, ig_steps=256, baseline=baseline)
    e = d["explanations"]["integrated_gradients"]
    diff = f[0] - f[1]
    total = float(E.attribution(d, "integrated_gradients").astype(np.float64).sum())
    delta = e["extra"]["convergence_delta"]
    recomputed = total - diff
    rel = abs(recomputed) / abs(diff)
    record_property(f"IG completeness, 256 steps, {baseline}", name, rel, rel <= 0.01,
                    f"|Σ attr − (f(x) − f(x0))| / |f(x) − f(x0)|, target {target}, f(x) − f(x0) = {diff:.4g}; "
                    f"engine's convergence_delta {delta:.3g}")
    assert abs(e["extra"]["f_input"] - f[0]) <= 1e-4 * max(1.0, abs(f[0]))
    assert abs(e["extra"]["f_baseline"] - f[1]) <= 1e-4 * max(1.0, abs(f[1]))
    assert abs(delta) <= 0.01 * abs(diff), (delta, diff)
    assert rel <= 0.01, (recomputed, diff)
    assert abs(delta - recomputed) <= 1e-4 * abs(diff) + 1e-5


def _without_time(doc):
    ex = json.loads(json.dumps(doc["explanations"]))
    for v in ex.values():
        v.pop("time_ms", None)
    return json.dumps(ex, sort_keys=True).encode()


@pytest.mark.parametrize("name", ["resnet18", "fashion-cnn"])
def test_same_seed_same_bytes(cases, engine, name):
    """Two runs with seed 7 give byte-identical explanations objects (every method the model supports,
    with heatmap_png, overlay_png, raw and attribution; time_ms removed); seed 8 changes the SmoothGrad
    map. Random parts: SmoothGrad noise (vargrad here), the uniform IG and occlusion baseline."""
    c = need(cases, name)
    methods = ("saliency,grad_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,cam,gradcam,"
               "gradcam_pp,xgradcam,layercam,scorecam,eigencam,guided_gradcam,occlusion,activations,edge")
    if c.model.attention:
        methods += ",attention"
    kw = dict(target=c.target, seed=7, baseline="uniform", smoothgrad_type="vargrad", smoothgrad_samples=8,
              ig_steps=8, scorecam_channels=8)
    if not c.small:  # fewer occlusion windows on 64x64
        kw.update(occlusion_window=16, occlusion_stride=16)
    out = "heatmap_png,overlay_png,raw,attribution"
    # the cache of EnginePool would return the first document twice: run the CLI directly
    a = E.run(c.model, c.png, methods, out, **kw)
    b = E.run(c.model, c.png, methods, out, **kw)
    assert _without_time(a) == _without_time(b)
    kw["seed"] = 8
    d = E.run(c.model, c.png, "smoothgrad", "raw", **{k: v for k, v in kw.items() if k != "baseline"})
    assert not np.array_equal(E.raw(d, "smoothgrad"), E.raw(a, "smoothgrad"))
    record_property("same seed, same bytes; other seed, other map", name, True, True)


def ig_passes(n):
    return 1 + math.ceil((n + 2) / B), math.ceil(n / B)


FUSED8 = "saliency,grad_x_input,gradcam,gradcam_pp,xgradcam,layercam,guided_backprop,guided_gradcam"
PASS_CASES = [  # (methods, params, expected (forward, backward), also on resnet18)
    (FUSED8, {}, (1, 2)),
    ("gradcam", {}, (1, 1)),
    ("saliency", {}, (1, 1)),
    ("guided_backprop", {}, (1, 1)),
    ("gradcam,gradcam_pp,xgradcam,layercam", {}, (1, 1)),
    ("guided_gradcam", {}, (1, 2)),
    ("cam,eigencam,activations,edge", {}, (1, 0)),
    ("deconvnet", {}, (2, 1)),
    ("integrated_gradients", dict(ig_steps=50), ig_passes(50)),      # 52 points: 4 batches, all with gradients
    ("integrated_gradients", dict(ig_steps=48), ig_passes(48)),      # 50 points: the 4th batch is forward-only
    ("saliency,integrated_gradients", dict(ig_steps=50), (ig_passes(50)[0], ig_passes(50)[1] + 1)),
    ("smoothgrad", dict(smoothgrad_samples=25), (1 + 2, 2)),
    ("scorecam", dict(scorecam_channels=20), (1 + 2, 0)),
]


@pytest.mark.parametrize("methods,params,expected", PASS_CASES, ids=[f"{m}|{p}" for m, p, _ in PASS_CASES])
@pytest.mark.parametrize("name", ["resnet18", "fashion-cnn"])
def test_passes(cases, engine, name, methods, params, expected):
    """`passes` {forward, backward} as derived from the engine's plan (module docstring): the request
    of gradient methods fused over one forward shows {1, 2}, gradcam alone {1, 1}, IG with 50 steps
    1 + ceil(52/16) forwards and ceil(50/16) backwards. The counts do not depend on the model; the
    batched cases run on fashion-cnn only (time)."""
    if name == "resnet18" and params:
        pytest.skip("batched pass counts are checked on fashion-cnn (same plan, cheaper)")
    c = need(cases, name)
    d = engine.get(c.model, c.png, methods, output="raw", target=c.target, **params)
    got = (d["passes"]["forward"], d["passes"]["backward"])
    record_property(f"passes {methods} {params}", name, list(got), got == expected, f"expected {list(expected)}")
    assert got == expected, f"{methods} {params}: passes {got}, expected {expected}"


@pytest.mark.parametrize("name", ["fashion-cnn"])
def test_passes_occlusion(cases, engine, name):
    """occlusion: the first forward and ceil(windows/16) forwards of occluded inputs, no backward."""
    c = need(cases, name)
    d = engine.get(c.model, c.png, "occlusion", output="raw", target=c.target)
    w = d["explanations"]["occlusion"]["extra"]
    side = c.model.height
    n = math.ceil((side - w["window"]) / w["stride"]) + 1
    assert w["windows"] == n * n
    assert (d["passes"]["forward"], d["passes"]["backward"]) == (1 + math.ceil(n * n / B), 0)
