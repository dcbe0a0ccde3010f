"""Conformance of every deterministic explanation method with a direct PyTorch implementation.

Reference side: mc_reference.py, torch autograd on the ONNX graph's own weights (mc_onnx.py) in
float64 (forward-only perturbation methods, occlusion and Score-CAM, in float32: they have no kinks
and float32 rounding, ~1e-6 relative, is far below the tolerance). Engine side: build/explaind
explain --output raw,attribution on a PNG exactly the model's input size.

Tolerance, for every method, model and variant: relative L2 error <= 1e-3 AND Pearson >= 0.999 on
the native map (`raw`) and, where there is one, on the C x H x W `attribution`.

Models: resnet18 and mobilenet_v2 (torchvision, 64x64, seeded random weights, calibrated then
perturbed BatchNorm statistics; resnet18 is the engine conformance suite's export, mc_models.py) and
models/fashion-cnn.onnx, the shipped default model (trained, with its CBAM block).

Test inputs: a ReLU (or ReLU6/Clip) input, or a max-pool window's two largest values, within float32
rounding of the kink make two correct float32 implementations disagree on a gradient (one such unit
in resnet50 at 64x64: pre-activation 6.5e-8 against an activation scale of 4.5 gave a 5e-3 gradient
difference). The input is drawn so that no such unit is within 1e-5 x max |input of that node| of its
kink in a float64 PyTorch forward: seeds 0, 1, 2, ... are tried in order and the first clean one is
used (recorded in the report). For the torchvision models no seed among the first 32 (nor among 300,
measured) is clean: with ~2e5 (resnet18) and ~6e5 (mobilenet_v2) rectified units, the closest unit of a
random input sits at 1e-7..1e-6 of its node's scale. There the draw with the widest margin is used
and test_kink_decisions_agree checks, from the engine's own float32 values of those nodes, that the
engine puts every unit closer than 1e-5 on the same side of its kink as the float64 forward, which
is what the margin stands for. IG path points are not checked (a flip there is averaged over the
steps).
"""
import numpy as np
import pytest
import torch

import mc_engine as E
import mc_reference as R
from conftest import KINK_MARGIN, REL_L2_MAX, compare, record_property

IG_RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
# (baseline, steps): 17 steps are 19 points with f(x0) and f(x), two engine batches of 16, the second
# partly filled; 10 steps with the black baseline keep Gauss-Legendre's first node 1.3 % away from the
# constant image (see test_integrated_gradients)
IG_CONFIGS = [("zero", 17), ("black", 10)]
BIG_BLACK_RULES = ("riemann_middle", "gausslegendre")  # black baseline on the 64x64 models (time)


def ig_applies(c, rule, baseline):
    return c.small or baseline == "zero" or rule in BIG_BLACK_RULES
GRAD_METHODS = ["saliency", "grad_x_input", "guided_backprop", "deconvnet"]
CAM_METHODS = ["cam", "gradcam", "gradcam_pp", "xgradcam", "layercam", "scorecam", "eigencam"]
REDUCES = ["abs_sum", "abs_max", "sum", "l2"]


def scorecam_k(c):
    """Score-CAM channels: all on the 28x28 models, the top 32 (Faster Score-CAM) on 64x64 torchvision."""
    return 0 if c.small else 32


def has_attention(c):
    return bool(c.model.attention)


def main_methods(c):
    m = GRAD_METHODS + CAM_METHODS + ["guided_gradcam", "occlusion", "edge", "activations"]
    return m + (["attention"] if has_attention(c) else [])


def alt_layer(c):
    """A second CAM layer: the last ReLU/Clip output of higher resolution than the default layer."""
    if not hasattr(c, "_alt"):
        om = c.om
        doc = main_doc(c)
        default = om.value_name(doc["explanations"]["gradcam"]["layer"])
        names = [(n.name, n.output[0]) for n in om.nodes if n.op_type in ("Relu", "Clip")]
        vals = om.run(torch.as_tensor(c.x, dtype=torch.float64), keep=[v for _, v in names] + [default])
        h = vals[default].shape[-1]
        cands = [nm for nm, v in names if vals[v].dim() == 4 and vals[v].shape[-1] > h]
        c._alt = cands[-1]
    return c._alt


def odd_occlusion(c):
    """A window and stride that do not tile the input: the last windows are clipped at the border."""
    return (5, 3) if c.small else (11, 6)


# ---- engine requests: submitted together so the engine runs while the references compute ----------
def submit_all(c, engine):
    if getattr(c, "_submitted", False):
        return
    c._submitted = True
    engine.submit(c.model, c.png, ",".join(main_methods(c)), target=c.target, scorecam_channels=scorecam_k(c))
    for rule in IG_RULES:
        for b, n in IG_CONFIGS:
            if ig_applies(c, rule, b):
                engine.submit(c.model, c.png, "integrated_gradients", target=c.target, ig_steps=n,
                              ig_method=rule, baseline=b)
    w, s = odd_occlusion(c)
    engine.submit(c.model, c.png, "occlusion", output="raw", target=c.target, occlusion_window=w,
                  occlusion_stride=s, baseline="black")
    for how in REDUCES[1:]:
        engine.submit(c.model, c.png, "grad_x_input", target=c.target, reduce=how)
    for n, _, _ in near_kinks(c):
        engine.submit(c.model, c.png, "activations", output="raw", layer=n.input[0])


@pytest.fixture(scope="module", autouse=True)
def submit_everything(engine, png_dir):
    """Queue every model's engine runs at the start: the engine works ahead while PyTorch computes."""
    from conftest import MODEL_NAMES, get_case

    for name in MODEL_NAMES:
        try:
            c = get_case(name, png_dir)
        except pytest.skip.Exception:
            continue
        c._engine = engine
        submit_all(c, engine)


def main_doc(c, engine=None):
    if engine is not None:
        c._engine = engine
        submit_all(c, engine)
    return c._engine.get(c.model, c.png, ",".join(main_methods(c)), target=c.target, scorecam_channels=scorecam_k(c))


@pytest.fixture
def doc(case, engine):
    return main_doc(case, engine)


def ref_cache(c, key, fn):
    if not hasattr(c, "_refs"):
        c._refs = {}
    if key not in c._refs:
        c._refs[key] = fn()
    return c._refs[key]


def layer_ag(c, layer):
    return ref_cache(c, ("AG", layer), lambda: R.layer_act_grad(c.om, c.x, c.target, layer))


# ---- the forward itself ----------------------------------------------------------------------------------
def test_logits_match_reference(case, doc):
    """The engine's forward: the top-5 logits it reports equal the float64 reference's (same classes)."""
    preds = doc["predictions"]
    idx = [p["index"] for p in preds]
    got = np.array([p["logit"] for p in preds])
    compare("forward", case.name, "top-5 logits", "logits", got, case.logits[idx])
    assert doc["target"]["index"] == case.target


def _windows(n, om):
    """How a max node groups its input (one image, C x H x W) into windows: tensor (..., window)."""
    import torch.nn.functional as F
    from mc_onnx import _attrs

    if n.op_type == "MaxPool":
        a = _attrs(n)
        k, st = a["kernel_shape"], a.get("strides", [1, 1])
        p = list(a.get("pads", [0] * 4))

        def windows(v):
            vp = F.pad(v[None], (p[1], p[3], p[0], p[2]), value=-np.inf)
            return F.unfold(vp.reshape(-1, 1, *vp.shape[-2:]), k, stride=st).transpose(1, 2)
    elif n.op_type == "GlobalMaxPool":
        def windows(v):
            return v.flatten(1)
    else:  # ReduceMax over channels (CBAM)
        def windows(v):
            return v.reshape(v.shape[0], -1).t()
    return windows


def near_kinks(c):
    """Nodes with units within KINK_MARGIN x max|input| of a kink in the float64 forward of the test
    input: [(node, float64 input value of one image, boolean mask of those units / windows)]."""
    if hasattr(c, "_near"):
        return c._near
    om = c.om
    nodes = [n for n in om.nodes if n.op_type in ("Relu", "Clip", "MaxPool", "GlobalMaxPool", "ReduceMax")]
    with torch.no_grad():
        vals = om.run(torch.as_tensor(c.x, dtype=torch.float64), keep=[n.input[0] for n in nodes])
    out = []
    for n in nodes:
        t = vals[n.input[0]][0]
        scale = t.abs().max().item()
        if scale == 0:
            continue
        eps = KINK_MARGIN * scale
        if n.op_type in ("Relu", "Clip"):
            near = torch.zeros_like(t, dtype=torch.bool)
            for b in om.kink_bounds(n):
                near |= (t - b).abs() <= eps
        else:
            top = torch.topk(_windows(n, om)(t), 2, dim=-1).values
            gap = top[..., 0] - top[..., 1]
            near = (gap > 0) & (gap <= eps)
        if near.any():
            out.append((n, t, near))
    c._near = out
    return out


def test_kink_decisions_agree(case, doc, engine):
    """Every unit within 1e-5 x max|input| of a kink in the float64 forward (ReLU/Clip input near a
    bound, max-pool window with two near-equal largest values) is on the same side in the engine's
    float32 forward (read with the `activations` method on the node's input value): then the
    gradients compared below route through the same units. A clean input has nothing to check."""
    checked = flips = 0
    for n, t, near in near_kinks(case):
        e = E.raw(engine.get(case.model, case.png, "activations", output="raw", layer=n.input[0]), "activations")
        e = torch.as_tensor(e.astype(np.float64)).reshape(t.shape)
        if n.op_type in ("Relu", "Clip"):
            for b in case.om.kink_bounds(n):
                sel = near & ((t - b).abs() <= KINK_MARGIN * t.abs().max())
                flips += int(((t[sel] > b) != (e[sel] > b)).sum())
        else:
            w = _windows(n, case.om)
            flips += int((w(t).argmax(-1)[near] != w(e).argmax(-1)[near]).sum())
        checked += int(near.sum())
    record_property("kink decisions agree", case.name, dict(units_near_kink=checked, flips=flips), flips == 0,
                    note=f"input seed {case.seed}, float64 margin {case.margin:.3g} at {case.margin_node}")
    assert flips == 0, f"{flips} of {checked} near-kink units are on the other side in the engine's float32 forward"


# ---- gradient family -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", GRAD_METHODS)
def test_gradient_method(case, doc, method):
    """saliency = Captum Saliency(abs=True) |∂y_c/∂x|; grad_x_input = Captum InputXGradient x ⊙ ∂y_c/∂x;
    guided_backprop = Captum GuidedBackprop (ReLU backward relu(grad_in)); deconvnet = Captum
    Deconvolution (ReLU backward relu(grad_out)). Captum only hooks nn.ReLU modules: ReLU6 (ONNX Clip,
    mobilenet_v2) keeps its ordinary backward in both; the engine modifies every ONNX Relu node, which
    is what Captum does when every ReLU of the torch model is an nn.ReLU module (true of torchvision's
    resnet; for a model calling F.relu, Captum would leave those ReLUs plain). The raw map is the
    abs_sum channel reduction."""
    ref = ref_cache(case, method, lambda: getattr(R, method)(case.om, case.x, case.target))
    compare(method, case.name, "default", "attribution", E.attribution(doc, method), ref)
    compare(method, case.name, "default", "raw", E.raw(doc, method), R.reduce_channels(ref))


@pytest.mark.parametrize("how", REDUCES[1:])
def test_reduce(case, engine, how):
    """`reduce` (abs_max, sum, l2) of grad_x_input's attribution into the raw map."""
    main_doc(case, engine)
    d = engine.get(case.model, case.png, "grad_x_input", target=case.target, reduce=how)
    ref = ref_cache(case, "grad_x_input", lambda: R.grad_x_input(case.om, case.x, case.target))
    compare("grad_x_input", case.name, f"reduce={how}", "raw", E.raw(d, "grad_x_input"), R.reduce_channels(ref, how))


def explain_by_kink_flips(c, out, ref, rule, x0, n):
    """IG path points are not test inputs: they cannot be drawn away from kinks. When the engine's IG
    differs from the reference, go through the units within KINK_MARGIN of a kink (ReLU/Clip bound,
    max-pool runner-up) at some path point (float64, closest first) and move the reference to the other side of a unit when the
    residual r contains that flip's term d with coefficient about one (<r,d>/<d,d> in [0.5, 1.5]: d
    is in r, once). At most FLIP_TRIES units with a nonzero term are tried. A residual parallel to
    the attribution itself (a wrong quadrature weight, not a flip) is not searched.
    Returns (adjusted reference, flips used)."""
    r = out - ref
    if R.rel_l2(out, ref) <= 1e-5 or abs(R.pearson(r, ref)) > 0.9:
        return ref, []
    flipper = R.IgFlips(c.om, c.x, x0, c.target, n, rule)
    adj = ref.copy()
    used, tries = [], 0
    for d_rel, point, node, index in R.ig_kink_candidates(c.om, c.x, x0, n, rule, KINK_MARGIN):
        if R.rel_l2(out, adj) <= 1e-5 or tries >= FLIP_TRIES:
            break
        d = flipper.term(point, node, index)
        if d is None:
            continue
        tries += 1
        dd = float((d * d).sum())
        coef = float(((out - adj) * d).sum()) / dd if dd > 0 else 0.0
        if 0.5 <= coef <= 1.5:
            adj = adj + d
            used.append(dict(point=point, node=node, unit=index, margin=d_rel, coef=coef))
    return adj, used


FLIP_TRIES = 100


@pytest.mark.parametrize("baseline,n", IG_CONFIGS, ids=[f"{b}-{n}" for b, n in IG_CONFIGS])
@pytest.mark.parametrize("rule", IG_RULES)
def test_integrated_gradients(case, engine, rule, baseline, n):
    """Captum IntegratedGradients, method=rule, n_steps=n: (x − x0) ⊙ Σ_i step_i ∂y_c/∂x(x0 + α_i(x − x0))
    with Captum's approximation_methods (riemann step sizes 1/n, trapezoid's ends halved; Gauss-Legendre
    from numpy.polynomial.legendre.leggauss). Baselines: zero tensor, black image preprocessed.
    Also extra.convergence_delta = Σ attribution − (f(x) − f(x0)) (Captum's compute_convergence_delta).

    Kinks on the path: the input is drawn away from kinks, the path points cannot be (on resnet18
    a unit at 1.4e-8 of its kink at α = 0.5 flips in the engine's float32 forward and moves that
    point's gradient by 4 %). So where the engine differs, the reference takes the other side at the
    units within 1e-5 of a kink whose flip explains the difference (explain_by_kink_flips; each flip is
    listed in the report), then the usual tolerance applies to what is left. Max-pool windows whose two
    largest values are that close count as kinks too (the gradient may go to the runner-up).

    The black image is constant, and so is, nearly, every path point close to it: inside a flat
    region all units of a channel share one value, so when one is at a kink (a max-pool tie, a ReLU6
    bound) they all are, and float32 rounding, which differs from position to position in the
    engine's sgemm (PyTorch's conv is exactly translation-invariant there), decides each of them.
    The gradient at the black image differs by 10-25 % between PyTorch float32, float64 and the
    engine on the max-pool models, at α = 0.005 by 4 % between PyTorch float32 and float64 on
    mobilenet_v2. Hence with the black baseline: 10 steps (Gauss-Legendre's first node at α = 0.013
    instead of 0.005 for 17), and riemann_left / riemann_trapezoid, whose first point is the black
    image itself, not compared on models with max pooling. The zero baseline has no such problem:
    there every value is exactly the bias, in any implementation. On the 64x64 models the black
    baseline runs with riemann_middle and gausslegendre only (time; the rules are model-independent
    code, all five run with both baselines on the 28x28 models).

    How close to the black image a path point must be for rounding to decide depends on the CPU's
    kernels: on a 2026-12 machine (Xeon with AVX-512, OpenBLAS core SkylakeX), PyTorch's own float32 IG
    (gausslegendre, 10 steps, mobilenet_v2) is 2.6 % (rel L2) from the float64 reference, and the
    engine 0.28 % after the kink flips; on the machines of earlier runs the engine stayed under 1e-3.
    With the black baseline the engine is therefore held to max(1e-3, PyTorch float32's rel L2 to
    float64) on the same path: no further from the exact answer than PyTorch itself. The report
    records that bound.

    convergence_delta is checked against the engine's own attribution, Σ out − (f(x) − f(x0)) with
    the reference's f values: the attribution itself is compared above, this checks the formula (the
    sum, the sign, the baseline's logit), within the logits' tolerance."""
    if not ig_applies(case, rule, baseline):
        pytest.skip("black baseline on a 64x64 model: riemann_middle and gausslegendre only (time)")
    has_max = any(op in case.om.op_types for op in ("MaxPool", "GlobalMaxPool", "ReduceMax"))
    if baseline == "black" and rule in ("riemann_left", "riemann_trapezoid") and has_max:
        pytest.skip("gradient at a constant image through max pooling: tie-breaking decided by rounding")
    main_doc(case, engine)
    d = engine.get(case.model, case.png, "integrated_gradients", target=case.target, ig_steps=n, ig_method=rule,
                   baseline=baseline)
    x0 = R.baseline(baseline, case.model, case.x)
    ref, fx, fx0 = ref_cache(case, ("ig", rule, baseline, n),
                             lambda: R.integrated_gradients(case.om, case.x, x0, case.target, n, rule))
    out = E.attribution(d, "integrated_gradients")
    adj, flips = explain_by_kink_flips(case, out, ref, rule, x0, n)
    note = ""
    if flips:
        note = (f"{len(flips)} path-point unit(s) taken on the engine's side of their kink, margins "
                + ", ".join(f"{f['margin']:.2g}" for f in flips)
                + f"; before: rel L2 {R.rel_l2(out, ref):.3g}, Pearson {R.pearson(out, ref):.6f}")
    rel_max = REL_L2_MAX
    if baseline == "black":
        r32 = ref_cache(case, ("ig32", rule, baseline, n),
                        lambda: R.integrated_gradients(case.om32, case.x, x0, case.target, n, rule)[0])
        torch32 = R.rel_l2(r32, ref)
        if torch32 > REL_L2_MAX:
            rel_max = torch32
            note = (note + "; " if note else "") + (f"PyTorch float32 is {torch32:.3g} (rel L2) from the float64 "
                                                    f"reference on this path: bound {rel_max:.3g}")
    variant = f"{rule}, {baseline}, {n} steps"
    flips = [dict(f, unit=str(f["unit"])) for f in flips]
    compare("integrated_gradients", case.name, variant, "attribution", out, adj, note, flips, rel_max)
    compare("integrated_gradients", case.name, variant, "raw", E.raw(d, "integrated_gradients"),
            R.reduce_channels(adj), note, flips, rel_max)
    delta = d["explanations"]["integrated_gradients"]["extra"]["convergence_delta"]
    own_delta = float(out.astype(np.float64).sum()) - (fx - fx0)
    tol = 2e-4 * max(abs(fx), abs(fx0)) + 1e-6 * float(np.abs(out).sum()) + 1e-6
    assert abs(delta - own_delta) <= tol, (delta, own_delta, tol)


# ---- CAM family -----------------------------------------------------------------------------------------
def test_default_layer(case, doc):
    """Without `layer`, the CAM family uses the sidecar's cam_layer, or the auto-detected last 4-D value
    before global pooling (resnet18: layer4's last ReLU; mobilenet_v2: the last ReLU6 of features)."""
    layer = doc["explanations"]["gradcam"]["layer"]
    expected = {"resnet18": "/layer4/layer4.1/relu_1/Relu",
                "mobilenet_v2": "/features/features.18/features.18.2/Clip"}.get(case.name, case.model.cam_layer)
    assert case.om.value_name(layer) == case.om.value_name(expected), (layer, expected)
    for m in CAM_METHODS + ["guided_gradcam", "activations"]:
        assert doc["explanations"][m]["layer"] == layer, m


def cam_reference(c, method, layer, channels):
    if method == "cam":
        return R.cam(c.om, c.x, c.target, layer)
    if method == "scorecam":
        return R.scorecam(c.om32, c.x, c.target, layer, channels)
    A, G = layer_ag(c, layer)
    if method == "eigencam":
        return R.eigencam(A)
    return getattr(R, method)(A, G)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_method(case, doc, method):
    """At the default layer, native resolution, after ReLU, unnormalized:
    cam = Zhou et al. 2016 ReLU(Σ_k W_ck A_k) for the GAP + linear head (mobilenet_v2's ONNX is
    GAP -> Flatten -> Gemm: the exporter drops the classifier's Dropout in eval mode, so CAM applies);
    gradcam = Captum LayerGradCam(relu_attributions=True); gradcam_pp, xgradcam, layercam, scorecam,
    eigencam = pytorch-grad-cam's get_cam_weights / get_cam_image (Score-CAM: UpsamplingBilinear2d,
    i.e. align_corners=True, softmax of the target logits of the masked inputs; all channels on the
    28x28 models, the 32 of highest mean activation on the 64x64 ones; Eigen-CAM: numpy SVD of the
    centred activations, first right singular vector, sign chosen so that the projection correlates
    positively with the channel-summed activation, the engine's convention)."""
    layer = doc["explanations"][method]["layer"]
    ref = ref_cache(case, ("cam", method, layer), lambda: cam_reference(case, method, layer, scorecam_k(case)))
    assert ref.max() > 0, f"{method}: the reference map is all zero for this target; the comparison would be empty"
    compare(method, case.name, "default layer", "raw", E.raw(doc, method), ref)


@pytest.mark.parametrize("method", [m for m in CAM_METHODS if m != "cam"] + ["guided_gradcam", "activations"])
def test_cam_method_other_layer(case, engine, method):
    """The same references at a higher-resolution layer (`layer` = the last ReLU/Clip above the default
    layer's resolution), where the head is not GAP + linear."""
    main_doc(case, engine)
    layer = alt_layer(case)
    k = 16
    methods = "gradcam,gradcam_pp,xgradcam,layercam,scorecam,eigencam,guided_gradcam,activations"
    d = engine.get(case.model, case.png, methods, target=case.target, layer=layer, scorecam_channels=k)
    if method == "guided_gradcam":
        ref = ref_cache(case, ("ggc", layer), lambda: R.guided_gradcam(case.om, case.x, case.target, layer))
        compare(method, case.name, f"layer {layer}", "attribution", E.attribution(d, method), ref)
        compare(method, case.name, f"layer {layer}", "raw", E.raw(d, method), R.reduce_channels(ref))
        return
    if method == "activations":
        compare(method, case.name, f"layer {layer}", "raw", E.raw(d, method), R.layer_value(case.om, case.x, layer))
        return
    ref = ref_cache(case, ("cam", method, layer), lambda: cam_reference(case, method, layer, k))
    compare(method, case.name, f"layer {layer}", "raw", E.raw(d, method), ref)


def test_cam_rejects_layer_not_feeding_gap(case, engine):
    """cam needs the layer to feed global average pooling and one linear layer: at another layer the
    CLI exits with status 1 and says why (the HTTP API answers 422 with the same detail)."""
    main_doc(case, engine)
    layer = alt_layer(case)
    with pytest.raises(E.EngineError) as ei:
        engine.get(case.model, case.png, "cam", output="raw", target=case.target, layer=layer)
    assert ei.value.status == 1, ei.value.stderr
    assert "422" in ei.value.stderr and "global average pooling" in ei.value.stderr, ei.value.stderr


def test_cam_rejects_head_that_is_not_one_linear_layer(engine, png_dir):
    """A GAP head followed by Linear-ReLU-Linear (mlp-head, a small model built for this test) is not
    CAM's head: exit status 1 (HTTP 422) and a message naming the reason."""
    import mc_models as M

    m = M.export("mlp-head")
    png = png_dir / "mlp-head.png"
    M.save_png(M.draw_image(0, m), png)
    with pytest.raises(E.EngineError) as ei:
        engine.get(m, png, "cam", output="raw")
    assert ei.value.status == 1, ei.value.stderr
    assert "422" in ei.value.stderr and "linear" in ei.value.stderr, ei.value.stderr
    d = engine.get(m, png, "gradcam", output="raw")  # the gradient CAM family still applies
    assert "gradcam" in d["explanations"]


def test_mobilenet_v2_onnx_head_is_gap_linear(png_dir):
    """What mobilenet_v2's classifier (Dropout + Linear after adaptive_avg_pool2d) becomes in ONNX:
    GlobalAveragePool -> Flatten -> Gemm, no Dropout node (eval-mode export). So cam applies to it;
    test_cam_method checks it numerically."""
    import mc_models as M

    om = M.export("mobilenet_v2").torch_model()
    assert "Dropout" not in om.op_types
    tail = [n.op_type for n in om.nodes][-3:]
    assert tail == ["GlobalAveragePool", "Flatten", "Gemm"], tail


def test_guided_gradcam(case, doc):
    """Captum GuidedGradCam: guided backprop ⊙ nearest-upsampled LayerGradCam(relu) at the default layer."""
    layer = doc["explanations"]["guided_gradcam"]["layer"]
    ref = ref_cache(case, ("ggc", layer), lambda: R.guided_gradcam(case.om, case.x, case.target, layer))
    compare("guided_gradcam", case.name, "default layer", "attribution", E.attribution(doc, "guided_gradcam"), ref)
    compare("guided_gradcam", case.name, "default layer", "raw", E.raw(doc, "guided_gradcam"), R.reduce_channels(ref))


# ---- perturbation, internals, baseline -------------------------------------------------------------------
def test_occlusion_default(case, doc):
    """Captum Occlusion, window side/8 rounded (8 at 64, 4 at 28), stride half the window, zero baseline:
    the mean over the windows covering a pixel of f(x) − f(x with the window set to the baseline)."""
    side = case.model.height
    w = max(1, int(np.floor(side / 8 + 0.5)))
    s = max(1, w // 2)
    ex = doc["explanations"]["occlusion"]["extra"]
    assert (ex["window"], ex["stride"]) == (w, s)
    ref = ref_cache(case, ("occ", w, s, "zero"),
                    lambda: R.occlusion(case.om32, case.x, case.target, w, s, np.zeros_like(case.x)))
    compare("occlusion", case.name, f"window {w}, stride {s}, zero", "raw", E.raw(doc, "occlusion"), ref)


def test_occlusion_clipped_windows(case, engine):
    """Captum Occlusion with a window and stride that do not tile the input (windows at k·s,
    k < ceil((side − w)/s) + 1, clipped at the border) and the black baseline."""
    main_doc(case, engine)
    w, s = odd_occlusion(case)
    d = engine.get(case.model, case.png, "occlusion", output="raw", target=case.target, occlusion_window=w,
                   occlusion_stride=s, baseline="black")
    x0 = R.baseline("black", case.model, case.x)
    ref = ref_cache(case, ("occ", w, s, "black"), lambda: R.occlusion(case.om32, case.x, case.target, w, s, x0))
    compare("occlusion", case.name, f"window {w}, stride {s}, black", "raw", E.raw(d, "occlusion"), ref)


def test_edge(case, doc):
    """edge = skimage.filters.sobel (0.19) of the grayscale input (pixel/scale; rgb2gray for rgb).
    skimage 0.19 does not zero the border when no mask is given (older versions did)."""
    compare("edge", case.name, "skimage 0.19 sobel", "raw", E.raw(doc, "edge"), R.edge(case.px, case.model))


def test_edge_interior(case, doc):
    """The same without the one-pixel border: separates the border convention from the filter itself."""
    out = E.raw(doc, "edge")[1:-1, 1:-1]
    ref = R.edge(case.px, case.model)[1:-1, 1:-1]
    compare("edge", case.name, "interior (border excluded)", "raw", out, ref)


def test_activations(case, doc):
    """activations = the layer's value (K x h x w) in the forward pass."""
    layer = doc["explanations"]["activations"]["layer"]
    compare("activations", case.name, "default layer", "raw", E.raw(doc, "activations"),
            R.layer_value(case.om, case.x, layer))


def test_attention(case, doc):
    """attention = the CBAM spatial attention map: the output of the sidecar's attention layer
    (sigmoid(conv7x7([mean_c F; max_c F]))), as h x w."""
    if not has_attention(case):
        pytest.skip(f"{case.name} declares no attention_layers")
    e = doc["explanations"]["attention"]
    ref = R.layer_value(case.om, case.x, case.model.attention[0])
    assert case.om.value_name(e["layer"]) == case.om.value_name(case.model.attention[0])
    compare("attention", case.name, case.model.attention[0], "raw", E.raw(doc, "attention"),
            ref.reshape(E.raw(doc, "attention").shape))
