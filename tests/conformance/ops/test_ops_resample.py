"""Op conformance for the resampling ops: Resize (opsets 10, 11, 13, 18), Upsample (7-9) and ConvTranspose.

References:
  torch modules    nn.Upsample / F.interpolate / nn.ConvTranspose2d, exported by torch.onnx at each opset; the
                   reference is the same module in float64 (forward and autograd input gradient).
  ONNX-built       the modes torch never emits (every coordinate_transformation_mode x nearest_mode, cubic with
                   exclude_outside and cubic_coeff_a, tf_crop_and_resize, opset 18's antialias / axes /
                   keep_aspect_ratio_policy, Upsample-7/9 and Resize-10 linear). The reference is the ONNX
                   project's own Resize reference, onnx/backend/test/case/node/resize.py (interpolate_1d_with_x,
                   nearest_coeffs, linear_coeffs, cubic_coeffs: the code that generated the backend test data;
                   the spec is onnx/defs/tensor/defs.cc, docs/Operators.md "Resize"), applied to unit vectors to
                   get each axis' interpolation matrix in float64; the 2-D op is then y = A_h · x · A_wᵀ in torch
                   (Resize is separable: the reference interpolates axis by axis), differentiable. Opset 18's
                   antialias kernels are not in onnx 1.12: they are transcribed from the spec (Resize-18,
                   "antialias": the kernel stretched by 1/scale, normalized) in the form onnx 1.13's
                   reference uses, and fed to the same interpolate_1d_with_x; PyTorch's own antialiased
                   F.interpolate is a second, independent reference for them (exclude_outside=1, a = -0.5).
  backend cases    /usr/include/onnx/backend/test/data/{node,pytorch-converted}: expected outputs computed by ONNX.
The harness (opcase.py) checks the input gradient against the reference's autograd, i.e. the transpose of the
map, which is what PyTorch's upsample_*_backward and conv_transpose's backward compute.
"""
import glob
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.case.node import resize as onnx_resize

import opcase
from opcase import Lambda


# ---- torch modules -------------------------------------------------------------------------------------------------
NEAREST_OPSETS = (9, 10, 11, 13, 17)
SMOOTH_OPSETS = (11, 13, 17)   # torch exports linear/cubic as Resize-11+ semantics; at 9/10 see test_upsample_linear_*


@pytest.mark.parametrize("name,fn,shape", [
    ("up_nearest_x2", nn.Upsample(scale_factor=2, mode="nearest"), (3, 5, 6)),
    ("up_nearest_x3x2", nn.Upsample(scale_factor=(3, 2), mode="nearest"), (2, 4, 5)),
    ("up_nearest_size", Lambda(lambda x: F.interpolate(x, size=(11, 7), mode="nearest")), (2, 5, 4)),
    ("up_nearest_down", Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="nearest")), (2, 8, 10)),
    ("up_nearest_0p7", Lambda(lambda x: F.interpolate(x, scale_factor=0.7, mode="nearest")), (2, 10, 10)),
])
def test_torch_nearest(name, fn, shape):
    # torch 1.13 cannot export the size= form at opsets 9 and 10 with a dynamic batch (its symbolic fails)
    opsets = NEAREST_OPSETS[2:] if name == "up_nearest_size" else NEAREST_OPSETS
    opcase.check_module(name, fn, shape, opsets=opsets)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("form", ["x2", "size_up", "size_down", "scale_0p7"])
def test_torch_smooth(mode, align, form):
    kw = {"x2": dict(scale_factor=2), "size_up": dict(size=(9, 13)), "size_down": dict(size=(4, 3)),
          "scale_0p7": dict(scale_factor=0.7)}[form]
    shape = (2, 10, 10) if form == "scale_0p7" else (3, 6, 7)
    fn = Lambda(lambda x: F.interpolate(x, mode=mode, align_corners=align, **kw))
    opcase.check_module(f"up_{mode}_{'ac' if align else 'hp'}_{form}", fn, shape, opsets=SMOOTH_OPSETS)


class ConvTOutputSize(nn.Module):
    """nn.ConvTranspose2d given output_size at call time (exported as output_padding)."""

    def __init__(self, conv, size):
        super().__init__()
        self.conv, self.size = conv, size

    def forward(self, x):
        return self.conv(x, output_size=self.size)


@pytest.mark.parametrize("name,mod,shape", [
    ("convt_basic", nn.ConvTranspose2d(3, 4, 3), (3, 5, 6)),
    ("convt_s2_p1_op1", nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1), (3, 5, 4)),
    ("convt_s3x2_pad", nn.ConvTranspose2d(4, 2, (3, 4), stride=(3, 2), padding=(1, 2)), (4, 4, 5)),
    ("convt_dil2", nn.ConvTranspose2d(3, 4, 3, dilation=2, padding=1), (3, 5, 5)),
    ("convt_groups", nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, bias=False), (4, 4, 4)),
    ("convt_depthwise", nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=4), (4, 5, 5)),
    ("convt_k4s2p1", nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1, bias=False), (8, 6, 6)),
    ("convt_output_size", ConvTOutputSize(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1), [10, 11]), (3, 5, 6)),
    ("convt_dil_op", nn.ConvTranspose2d(2, 3, 3, stride=3, dilation=2, output_padding=2), (2, 3, 4)),
])
def test_torch_convtranspose(name, mod, shape):
    opcase.check_module(name, mod, shape, opsets=(9, 13, 17))


# ---- the ONNX reference for hand-built Resize / Upsample -----------------------------------------------------------
def _linear_coeffs_antialias(ratio, scale):
    """Resize-18 antialias, linear: the triangle kernel stretched by 1/scale (scale < 1), normalized."""
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    footprint = 2 - 2 * start
    args = (np.arange(start, start + footprint) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return np.array(coeffs) / sum(coeffs)


def _cubic_coeffs_antialias(ratio, scale, A):
    """Resize-18 antialias, cubic: Keys' kernel (coefficient A) stretched by 1/scale (scale < 1), normalized."""
    scale = min(scale, 1.0)

    def k(x):
        x = abs(x)
        if x <= 1:
            return (A + 2) * x ** 3 - (A + 3) * x ** 2 + 1
        if x < 2:
            return A * x ** 3 - 5 * A * x ** 2 + 8 * A * x - 4 * A
        return 0.0
    i_start = int(np.floor(-2 / scale) + 1)
    coeffs = [k(scale * (i - ratio)) for i in range(i_start, 2 - i_start)]
    return np.array(coeffs) / sum(coeffs)


def axis_matrix(n_in, scale, n_out, mode="nearest", coord="half_pixel", nearest="round_prefer_floor", A=-0.75,
                exclude=False, roi=(0.0, 1.0), antialias=False):
    """(A, outside) for one axis from ONNX's reference: y[o] = sum_i A[o, i] x[i], or extrapolation_value where
    outside[o]. scale is what the reference receives (the given scale, or out/in for sizes)."""
    if mode == "nearest":
        coeffs = lambda r: onnx_resize.nearest_coeffs(r, mode=nearest)
    elif mode == "linear":
        coeffs = (lambda r: _linear_coeffs_antialias(r, scale)) if antialias else onnx_resize.linear_coeffs
    else:
        coeffs = (lambda r: _cubic_coeffs_antialias(r, scale, A)) if antialias else \
            (lambda r: onnx_resize.cubic_coeffs(r, A=A))
    mat = np.zeros((n_out, n_in))
    outside = np.zeros(n_out)
    for o in range(n_out):
        # tf_half_pixel_for_nn (Resize-11): x_original = (x_resized + 0.5) / scale, i.e. asymmetric at o + 0.5
        xo, cm = (o + 0.5, "asymmetric") if coord == "tf_half_pixel_for_nn" else (o, coord)
        kw = dict(roi=np.array(roi), coordinate_transformation_mode=cm, exclude_outside=exclude)
        for i in range(n_in):
            e = np.zeros(n_in)
            e[i] = 1
            mat[o, i] = onnx_resize.interpolate_1d_with_x(e, scale, xo, coeffs, extrapolation_value=0.0, **kw)
        outside[o] = onnx_resize.interpolate_1d_with_x(np.zeros(n_in), scale, xo, coeffs, extrapolation_value=1.0, **kw)
    return mat, outside


def resize_ref(hw_in, out_hw, scale_hw, extrap=0.0, **kw):
    """A torch float64 function x (N,C,H,W) -> Resize(x), from two axis matrices; roi=(rh, rw) pairs if given."""
    roi = kw.pop("roi", None)
    mats = []
    for a in range(2):
        akw = dict(kw, roi=roi[a]) if roi is not None else kw
        mats.append(axis_matrix(hw_in[a], scale_hw[a], out_hw[a], **akw))
    (mh, oh), (mw, ow) = mats
    mh, mw = torch.tensor(mh), torch.tensor(mw)
    mask = torch.tensor(1 - np.outer(1 - oh, 1 - ow))

    def ref(x, opset):
        return torch.einsum("oi,ncij,pj->ncop", mh, x, mw) + extrap * mask
    return ref


def check_onnx_any(case, build, ref, shape, opsets, **kw):
    """opcase.check_onnx, without onnx 1.12's checker for opset 18 (it does not know Resize-18's attributes)."""
    from_18 = [o for o in opsets if o >= 18]
    rest = [o for o in opsets if o < 18]
    if rest:
        opcase.check_onnx(case, build, ref, shape, opsets=tuple(rest), **kw)
    if not from_18:
        return
    x = opcase.make_input(shape, kw.get("n", 2), kw.get("seed", 0) + 1).numpy()
    for opset in from_18:
        with torch.no_grad():
            feats = ref(torch.tensor(x[:1]), opset).numel()
        nodes, inits = build(opset)
        model, head = opcase.onnx_model(nodes, inits, shape, opset, seed=kw.get("seed", 0), features=feats)
        path = opcase.ops_dir() / f"{case}.op{opset}.onnx"
        onnx.save(model, str(path))
        eng = opcase.run_engine(path, x)
        opcase._compare(case, opset, x, eng, lambda t, o=opset: head(ref(t, o)), kw.get("tol_fwd", 1e-5),
                        kw.get("tol_grad", 1e-5), kw.get("why", ""))


def f32(v):
    return float(np.float32(v))


def resize_nodes(opset, attrs, scales=None, sizes=None, roi=None):
    """Resize node(s) for opset 10 (X, scales), 11 (X, roi, scales[, sizes]; empty tensors for omitted ones),
    13+ ("" for omitted inputs)."""
    inits = []
    if opset < 11:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        return [helper.make_node("Resize", ["input", "scales"], ["y"], **attrs)], inits
    names = []
    for nm, val, dt in (("roi", roi, np.float32), ("scales", scales, np.float32), ("sizes", sizes, np.int64)):
        if val is None:
            if nm == "sizes":
                continue
            if opset < 13:
                inits.append(numpy_helper.from_array(np.zeros((0,), dt), nm))
                names.append(nm)
            else:
                names.append("")
        else:
            inits.append(numpy_helper.from_array(np.array(val, dt), nm))
            names.append(nm)
    return [helper.make_node("Resize", ["input"] + names, ["y"], **attrs)], inits


def out_len(n_in, s):
    """floor(in * scale), the product in float32 (the engine's rule; the cases avoid values where it matters)."""
    return int(np.floor(np.float32(n_in) * np.float32(s)))


COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


# tf_half_pixel_for_nn with ceil / round_prefer_ceil maps channel c to c + 1 when the channel axis is listed
# (refused: test_refused_channel_shift; with opset 18's axes = [2, 3] it runs: test_resize18_tf_half_pixel_ceil_axes)
NEAREST_CASES = [(c, m) for c in COORDS + ["tf_half_pixel_for_nn"] for m in NEAREST
                 if not (c == "tf_half_pixel_for_nn" and m in ("round_prefer_ceil", "ceil"))]


@pytest.mark.parametrize("coord,nearest", NEAREST_CASES)
@pytest.mark.parametrize("form", ["sizes_up", "sizes_down", "scales"])
def test_resize_nearest_modes(coord, nearest, form):
    """Every coordinate_transformation_mode x nearest_mode (torch only emits asymmetric + floor)."""
    shape = (2, 5, 6)
    opsets = (11,) if coord == "tf_half_pixel_for_nn" else (11, 13, 18)
    if form == "scales":
        sc = (f32(1.7), f32(0.6))
        out = (out_len(5, sc[0]), out_len(6, sc[1]))
        scale_ref = sc
    else:
        out = (8, 9) if form == "sizes_up" else (3, 4)
        scale_ref = (out[0] / 5, out[1] / 6)
    attrs = dict(mode="nearest", coordinate_transformation_mode=coord, nearest_mode=nearest)
    ref = resize_ref((5, 6), out, scale_ref, mode="nearest", coord=coord, nearest=nearest)

    def build(opset):
        if form == "scales":
            return resize_nodes(opset, attrs, scales=[1, 1, *sc])
        return resize_nodes(opset, attrs, sizes=[1, 2, *out])
    check_onnx_any(f"rs_nearest_{coord}_{nearest}_{form}", build, ref, shape, opsets)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("form", ["scales_up", "scales_down", "sizes_up", "sizes_down"])
def test_resize_smooth_modes(mode, coord, form):
    shape = (2, 6, 7)
    if form.startswith("scales"):
        sc = (f32(2.0), f32(1.5)) if form == "scales_up" else (f32(0.5), f32(0.6))
        out = (out_len(6, sc[0]), out_len(7, sc[1]))
        scale_ref = sc
    else:
        out = (9, 11) if form == "sizes_up" else (4, 3)
        scale_ref = (out[0] / 6, out[1] / 7)
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    ref = resize_ref((6, 7), out, scale_ref, mode=mode, coord=coord)

    def build(opset):
        if form.startswith("scales"):
            return resize_nodes(opset, attrs, scales=[1, 1, *sc])
        return resize_nodes(opset, attrs, sizes=[1, 2, *out])
    check_onnx_any(f"rs_{mode}_{coord}_{form}", build, ref, shape, (11, 13, 18))


@pytest.mark.parametrize("A", [-0.75, -0.5])
@pytest.mark.parametrize("exclude", [0, 1])
@pytest.mark.parametrize("coord", ["half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("up", [True, False])
def test_resize_cubic_coeffs(A, exclude, coord, up):
    """cubic_coeff_a and exclude_outside (the backend cases use A = -0.5 with exclude_outside)."""
    shape = (2, 5, 6)
    sc = (f32(2.0), f32(1.5)) if up else (f32(0.8), f32(0.5))
    out = (out_len(5, sc[0]), out_len(6, sc[1]))
    attrs = dict(mode="cubic", coordinate_transformation_mode=coord, cubic_coeff_a=A, exclude_outside=exclude)
    ref = resize_ref((5, 6), out, sc, mode="cubic", coord=coord, A=A, exclude=bool(exclude))
    check_onnx_any(f"rs_cubic_{coord}_A{A}_ex{exclude}_{'up' if up else 'down'}",
                   lambda o: resize_nodes(o, attrs, scales=[1, 1, *sc]), ref, shape, (11, 13))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("roi", [(0.2, 0.9, 0.1, 0.7), (0.4, 1.3, -0.2, 1.6)])
def test_resize_tf_crop_and_resize(mode, roi):
    """tf_crop_and_resize with a roi inside the image, and one reaching outside (extrapolation_value there)."""
    shape = (2, 6, 7)
    out = (5, 4)
    attrs = dict(mode=mode, coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=2.5)
    roi32 = [f32(v) for v in roi]
    ref = resize_ref((6, 7), out, (out[0] / 6, out[1] / 7), extrap=2.5, mode=mode, coord="tf_crop_and_resize",
                     roi=((roi32[0], roi32[1]), (roi32[2], roi32[3])))
    full_roi = [0, 0, roi32[0], roi32[2], 1, 1, roi32[1], roi32[3]]
    check_onnx_any(f"rs_tfcrop_{mode}_{roi[3]}", lambda o: resize_nodes(o, attrs, sizes=[1, 2, *out], roi=full_roi),
                   ref, shape, (11, 13, 18))


# ---- opset 18 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("form", ["scales", "sizes", "up"])
@pytest.mark.parametrize("coord", ["half_pixel", "align_corners"])
def test_resize18_antialias(mode, form, coord):
    """antialias=1: downsampling stretches the kernel by 1/scale (upsampling is unchanged)."""
    shape = (2, 12, 10)
    if form == "scales":
        sc = (f32(0.5), f32(0.3))
        out = (out_len(12, sc[0]), out_len(10, sc[1]))
        scale_ref = sc
    elif form == "sizes":
        out = (5, 4)
        scale_ref = (5 / 12, 4 / 10)
    else:
        out = (15, 7)
        scale_ref = (15 / 12, 7 / 10)
    attrs = dict(mode=mode, coordinate_transformation_mode=coord, antialias=1)
    ref = resize_ref((12, 10), out, scale_ref, mode=mode, coord=coord, antialias=True)

    def build(opset):
        if form == "scales":
            return resize_nodes(opset, attrs, scales=[1, 1, *sc])
        return resize_nodes(opset, attrs, sizes=[1, 2, *out])
    check_onnx_any(f"rs18_aa_{mode}_{form}_{coord}", build, ref, shape, (18,))


def test_resize18_antialias_exclude_outside():
    shape = (2, 9, 11)
    attrs = dict(mode="cubic", antialias=1, exclude_outside=1, cubic_coeff_a=-0.5)
    ref = resize_ref((9, 11), (4, 5), (4 / 9, 5 / 11), mode="cubic", A=-0.5, exclude=True, antialias=True)
    check_onnx_any("rs18_aa_cubic_exclude", lambda o: resize_nodes(o, attrs, sizes=[1, 2, 4, 5]), ref, shape, (18,))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(5, 4), (3, 7)])
def test_resize18_antialias_vs_pytorch(mode, size):
    """PyTorch's own antialiased interpolation (F.interpolate(antialias=True), align_corners=False: the PIL-style
    kernel over the in-image taps only, bicubic with a = -0.5) is Resize-18 with half_pixel, antialias=1,
    exclude_outside=1 (cubic_coeff_a=-0.5): an independent reference for forward and backward."""
    attrs = dict(mode="linear" if mode == "bilinear" else "cubic", antialias=1, exclude_outside=1)
    if mode == "bicubic":
        attrs["cubic_coeff_a"] = -0.5
    ref = lambda x, o: F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    check_onnx_any(f"rs18_aa_torch_{mode}_{size[0]}x{size[1]}", lambda o: resize_nodes(o, attrs, sizes=[1, 2, *size]),
                   ref, (2, 12, 10), (18,))


@pytest.mark.parametrize("axes", [(2, 3), (-1, -2), (3,)])
def test_resize18_axes(axes):
    """axes: scales / sizes / roi list only those axes; the others are not resized."""
    shape = (3, 5, 6)
    per = {2: f32(1.6), 3: f32(0.5)}
    sc = [per[a % 4] for a in axes]
    sh = per[2] if 2 in [a % 4 for a in axes] else 1.0
    sw = per[3] if 3 in [a % 4 for a in axes] else 1.0
    out = (out_len(5, sh), out_len(6, sw))
    ref = resize_ref((5, 6), out, (sh, sw), mode="linear", coord="half_pixel")
    attrs = dict(mode="linear", axes=list(axes))
    check_onnx_any(f"rs18_axes_{'_'.join(map(str, axes))}", lambda o: resize_nodes(o, attrs, scales=sc), ref, shape,
                   (18,))


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes", [None, (2, 3)])
def test_resize18_keep_aspect_ratio(policy, axes):
    """keep_aspect_ratio_policy (sizes only): one scale, min (not_larger) or max (not_smaller) of sizes/in over
    the axes; out = round-half-up(scale * in) (Resize-18 spec)."""
    shape = (2, 6, 9)
    want = (10, 12)
    r = (want[0] / 6, want[1] / 9)
    if axes is None and policy != "stretch":
        # the batch and channel axes count too (sizes 1 and 2: ratio 1): not_larger gives scale min(1, ...) = 1;
        # not_smaller scales the batch and the channels too, which is refused
        r = r + (1.0,)
        if policy == "not_smaller":
            node, inits = resize_nodes(18, dict(mode="linear", keep_aspect_ratio_policy=policy), sizes=[1, 2, *want])
            opcase.check_refused("rs18_keep_not_smaller_all", single_node_model(node[0], inits, shape, 18), shape,
                                 r"batch")
            return
    s = {"stretch": None, "not_larger": min(r), "not_smaller": max(r)}[policy]
    out = want if s is None else (int(s * 6 + 0.5), int(s * 9 + 0.5))
    scale_ref = (out[0] / 6, out[1] / 9) if s is None else (s, s)
    ref = resize_ref((6, 9), out, scale_ref, mode="linear", coord="half_pixel")
    attrs = dict(mode="linear", keep_aspect_ratio_policy=policy)
    sizes = list(want) if axes else [1, 2, *want]
    if axes:
        attrs["axes"] = list(axes)
    check_onnx_any(f"rs18_keep_{policy}_{'axes' if axes else 'all'}", lambda o: resize_nodes(o, attrs, sizes=sizes),
                   ref, shape, (18,))


@pytest.mark.parametrize("axes", [(2, 3), (3,)])
def test_resize18_tf_half_pixel_ceil_axes(axes):
    """With axes listing H and W (or W only) the other axes are not resized at all, so tf_half_pixel_for_nn + ceil,
    which would move channel c to c + 1 (and row h to h + 1), leaves them alone."""
    attrs = dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="ceil",
                 axes=list(axes))
    out = (7, 4) if axes == (2, 3) else (5, 4)
    mh = axis_matrix(5, out[0] / 5, out[0], "nearest", "tf_half_pixel_for_nn", "ceil")[0] if 2 in axes else np.eye(5)
    mw = axis_matrix(6, 4 / 6, 4, "nearest", "tf_half_pixel_for_nn", "ceil")[0]
    mh, mw = torch.tensor(mh), torch.tensor(mw)
    ref = lambda x, o: torch.einsum("oi,ncij,pj->ncop", mh, x, mw)
    sizes = list(out) if axes == (2, 3) else [4]
    check_onnx_any(f"rs18_tfnn_ceil_axes{len(axes)}", lambda o: resize_nodes(o, attrs, sizes=sizes), ref, (2, 5, 6),
                   (18,))


# ---- Upsample (7, 9) and Resize-10: asymmetric coordinates, nearest = floor -----------------------------------------
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(2.0, 3.0), (1.5, 2.5), (0.5, 0.75)])
@pytest.mark.parametrize("op", ["Upsample7", "Upsample9", "Resize10"])
def test_upsample_and_resize10(mode, scales, op):
    """Upsample-7 (scales attribute), Upsample-9 and Resize-10 (scales input): ONNX's reference with asymmetric
    coordinates; nearest rounds down (the Upsample test data is np.repeat; PyTorch's nearest is floor too)."""
    shape = (2, 4, 6)
    sc = [f32(s) for s in scales]
    out = (out_len(4, sc[0]), out_len(6, sc[1]))
    ref = resize_ref((4, 6), out, sc, mode=mode, coord="asymmetric", nearest="floor")
    opset = {"Upsample7": 7, "Upsample9": 9, "Resize10": 10}[op]

    def build(o):
        if op == "Upsample7":
            return [helper.make_node("Upsample", ["input"], ["y"], mode=mode, scales=[1.0, 1.0, *sc])], []
        if op == "Upsample9":
            return ([helper.make_node("Upsample", ["input", "scales"], ["y"], mode=mode)],
                    [numpy_helper.from_array(np.array([1, 1, *sc], np.float32), "scales")])
        return resize_nodes(o, dict(mode=mode), scales=[1, 1, *sc])
    check_onnx_any(f"{op}_{mode}_{scales[0]}_{scales[1]}", build, ref, shape, (opset,))


# ---- ConvTranspose attributes torch does not emit ------------------------------------------------------------------
def convt_ref(w, b, stride, pad_b, out_hw, dil=(1, 1), groups=1):
    """ConvTranspose as PyTorch's conv_transpose2d on the uncropped output (padding 0), then the ONNX output
    window: rows/cols [pad_begin, pad_begin + out) of it, zeros beyond its end (output_shape / output_padding)."""
    wt, bt = torch.tensor(w, dtype=torch.float64), None if b is None else torch.tensor(b, dtype=torch.float64)

    def ref(x, opset):
        y = F.conv_transpose2d(x, wt, None, stride=stride, dilation=dil, groups=groups)
        pad = [0, max(0, pad_b[1] + out_hw[1] - y.shape[3]), 0, max(0, pad_b[0] + out_hw[0] - y.shape[2])]
        y = F.pad(y, pad)[:, :, pad_b[0]:pad_b[0] + out_hw[0], pad_b[1]:pad_b[1] + out_hw[1]]
        return y if bt is None else y + bt.view(1, -1, 1, 1)
    return ref


@pytest.mark.parametrize("case", ["output_shape", "output_shape_odd", "same_upper", "same_lower", "valid",
                                  "output_shape_4"])
def test_convtranspose_onnx_attrs(case):
    """output_shape and auto_pad (ONNX onnx/defs/nn/defs.cc, docs/Operators.md "ConvTranspose"):
    total = stride·(in-1) + output_padding + dil·(k-1) + 1 - out; SAME_UPPER: begin = total // 2, otherwise
    begin = total - total // 2; SAME_*: out = in·stride. Negative totals pad at the end."""
    g = torch.Generator().manual_seed(3)
    C, M, k, shape = 3, 4, 3, (3, 4, 5)
    w = (torch.randn(C, M, k, k, generator=g) / 3).numpy().astype(np.float32)
    b = (torch.randn(M, generator=g) * 0.1).numpy().astype(np.float32)
    stride = (2, 3)
    full = (stride[0] * 3 + k, stride[1] * 4 + k)     # uncropped output: 9 x 15
    attrs = dict(strides=list(stride))
    if case in ("output_shape", "output_shape_4"):
        out = (8, 13)
        attrs["output_shape"] = list(out) if case == "output_shape" else [1, M, *out]
        totals = (full[0] - out[0], full[1] - out[1])
        pad_b = tuple(t - t // 2 for t in totals)
    elif case == "output_shape_odd":
        out = (11, 14)                                  # H larger than the full output: zeros at the end
        attrs["output_shape"] = list(out)
        attrs["output_padding"] = [1, 0]
        totals = (full[0] + 1 - out[0], full[1] - out[1])
        pad_b = tuple(max(0, t - t // 2) for t in totals)
    elif case in ("same_upper", "same_lower"):
        out = (4 * stride[0], 5 * stride[1])
        attrs["auto_pad"] = case.upper()
        totals = (full[0] - out[0], full[1] - out[1])
        pad_b = tuple(t // 2 if case == "same_upper" else t - t // 2 for t in totals)
    else:
        out = full
        attrs["auto_pad"] = "VALID"
        pad_b = (0, 0)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes = [helper.make_node("ConvTranspose", ["input", "w", "b"], ["y"], **attrs)]
    opcase.check_onnx(f"convt_{case}", lambda o: (nodes, inits), convt_ref(w, b, stride, pad_b, out), shape,
                      opsets=(11, 13))


# ---- refusals ------------------------------------------------------------------------------------------------------
def single_node_model(node, inits, in_shape, opset, extra_nodes=()):
    g = helper.make_graph(list(extra_nodes) + [node], "refuse",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return m


@pytest.mark.parametrize("name,scales,pattern", [
    ("batch", [2, 1, 2, 2], r"batch"),
    ("channel", [1, 2, 2, 2], r"channel"),
    ("zero", [1, 1, 0, 2], r"positive"),
    ("nan", [1, 1, float("nan"), 2], r"positive"),
])
def test_refused_scales(name, scales, pattern):
    node, inits = resize_nodes(13, dict(mode="linear"), scales=scales)
    opcase.check_refused(f"rs_refuse_{name}", single_node_model(node[0], inits, (3, 4, 4), 13), (3, 4, 4), pattern)


def test_refused_channel_shift():
    """tf_half_pixel_for_nn + ceil maps channel c to c + 1 (x = c + 0.5 rounds up): the spec moves channels."""
    node, inits = resize_nodes(11, dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
                                        nearest_mode="ceil"), sizes=[1, 3, 8, 8])
    opcase.check_refused("rs_refuse_tfnn_ceil", single_node_model(node[0], inits, (3, 4, 4), 11), (3, 4, 4),
                         r"batch axis|channel")


@pytest.mark.parametrize("name,opset,attrs,kw,pattern", [
    ("both", 13, dict(mode="linear"), dict(scales=[1, 1, 2, 2], sizes=[1, 3, 8, 8]), r"exactly one of scales and sizes"),
    ("neither", 13, dict(mode="linear"), dict(), r"exactly one of scales and sizes"),
    ("mode", 13, dict(mode="area"), dict(scales=[1, 1, 2, 2]), r"mode 'area' is not supported"),
    ("coord", 18, dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), dict(scales=[1, 1, 2, 2]),
     r"half_pixel_symmetric' is not supported"),
    ("cubic10", 10, dict(mode="cubic"), dict(scales=[1, 1, 2, 2]), r"mode 'cubic' is not supported"),
    ("tfcrop_noroi", 13, dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
     dict(sizes=[1, 3, 8, 8]), r"roi"),
    ("keep_policy", 18, dict(mode="linear", keep_aspect_ratio_policy="fit"), dict(sizes=[1, 3, 8, 8]), r"not supported"),
    ("axes_range", 18, dict(mode="linear", axes=[2, 4]), dict(scales=[2, 2]), r"out of range"),
    ("huge", 13, dict(mode="nearest"), dict(scales=[1, 1, 1e6, 1e6]), r"too large|pixels"),
])
def test_refused_resize_attrs(name, opset, attrs, kw, pattern):
    node, inits = resize_nodes(opset, attrs, **kw)
    m = single_node_model(node[0], inits, (3, 4, 4), opset)
    opcase.check_refused(f"rs_refuse_{name}", m, (3, 4, 4), pattern)


def test_refused_activation_scales():
    """scales computed from the image (not a constant)."""
    extra = [helper.make_node("Flatten", ["input"], ["sc"], axis=1)]
    node = helper.make_node("Resize", ["input", "", "sc"], ["y"], mode="nearest")
    m = single_node_model(node, [], (3, 4, 4), 13, extra)
    opcase.check_refused("rs_refuse_act_scales", m, (3, 4, 4), r"input 2 \('sc'\) must be a constant")


def test_refused_rank3():
    node, inits = resize_nodes(13, dict(mode="linear"), scales=[1, 1, 2])
    m = single_node_model(node[0], inits, (3, 8), 13)
    opcase.check_refused("rs_refuse_rank3", m, (3, 8), r"4-D")


def test_refused_upsample_at_opset10():
    node = helper.make_node("Upsample", ["input", "scales"], ["y"], mode="nearest")
    m = single_node_model(node, [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")], (3, 4, 4), 10)
    opcase.check_refused("up_refuse_op10", m, (3, 4, 4), r"Upsample \(implemented for opsets 7\.\.9\)")


def test_refused_convtranspose_activation_weight():
    """ConvTranspose whose weight is computed from the image."""
    extra = [helper.make_node("Relu", ["input"], ["wact"])]
    node = helper.make_node("ConvTranspose", ["input", "wact"], ["y"])
    m = single_node_model(node, [], (3, 3, 3), 13, extra)
    opcase.check_refused("convt_refuse_actw", m, (3, 3, 3), r"only a constant weight")


def test_refused_convtranspose_1d():
    w = numpy_helper.from_array(np.ones((3, 2, 3), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["input", "w"], ["y"])
    opcase.check_refused("convt_refuse_1d", single_node_model(node, [w], (3, 7), 13), (3, 7), r"2-D")


@pytest.mark.parametrize("name,attrs,wshape,pattern", [
    ("groups", dict(group=2), (3, 2, 3, 3), r"group 2 does not divide"),
    ("wchan", dict(), (4, 2, 3, 3), r"input channels"),
    ("neg_pad", dict(pads=[-1, 0, 0, 0]), (3, 2, 3, 3), r">= 0"),
    ("outshape", dict(output_shape=[0, 5]), (3, 2, 3, 3), r">= 1"),
    ("autopad", dict(auto_pad="SAME"), (3, 2, 3, 3), r"unknown auto_pad"),
    ("crop_all", dict(pads=[5, 5, 5, 5]), (3, 2, 3, 3), r"out of range"),
])
def test_refused_convtranspose_attrs(name, attrs, wshape, pattern):
    w = numpy_helper.from_array(np.ones(wshape, np.float32), "w")
    node = helper.make_node("ConvTranspose", ["input", "w"], ["y"], **attrs)
    opcase.check_refused(f"convt_refuse_{name}", single_node_model(node, [w], (3, 4, 4), 13), (3, 4, 4), pattern)


# ---- the ONNX backend cases of these ops ---------------------------------------------------------------------------
BACKEND = Path("/usr/include/onnx/backend/test/data")
BACKEND_GLOBS = ["node/test_resize_*", "node/test_upsample_*", "node/test_convtranspose*",
                 "pytorch-converted/test_ConvTranspose*"]
BACKEND_CASES = sorted(p for gl in BACKEND_GLOBS for p in glob.glob(str(BACKEND / gl)))


def _pb(path):
    t = onnx.TensorProto()
    t.ParseFromString(Path(path).read_bytes())
    return numpy_helper.to_array(t)


def test_backend_cases_present():
    """The package libonnx-testdata 1.12 has 23 Resize, 1 Upsample, 10 ConvTranspose cases (8 + 2 pytorch-converted)
    for these ops; a missing package fails here rather than passing vacuously."""
    names = [os.path.basename(c) for c in BACKEND_CASES]
    assert sum(n.startswith("test_resize") for n in names) >= 23, names
    assert sum(n.startswith("test_upsample") for n in names) >= 1, names
    assert sum(n.lower().startswith("test_convtranspose") for n in names) >= 12, names


@pytest.mark.parametrize("case", BACKEND_CASES, ids=[os.path.basename(c) for c in BACKEND_CASES])
def test_backend_case(case):
    """One backend case: extra inputs become initializers, a Flatten(axis=1) makes the (N, k) output the engine
    expects. 4-D cases must match ONNX's expected output; the 1-D / 3-D ConvTranspose cases must be refused."""
    name = os.path.basename(case)
    m = onnx.load(f"{case}/model.onnx")
    ins = [_pb(f) for f in sorted(glob.glob(f"{case}/test_data_set_0/input_*.pb"))]
    expected = _pb(f"{case}/test_data_set_0/output_0.pb")
    g = m.graph
    inits = {i.name for i in g.initializer}
    real = [i for i in g.input if i.name not in inits]
    for vi, a in zip(real[1:], ins[1:]):
        g.initializer.append(numpy_helper.from_array(a, vi.name))
    first = real[0]
    del g.input[:]
    g.input.append(first)
    y = g.output[0].name
    g.node.append(helper.make_node("Flatten", [y], ["flat_out"], axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("flat_out", TensorProto.FLOAT, None))
    if m.opset_import[0].version < 7:
        # pytorch-converted files are opset 6; the loader starts at 7 and ConvTranspose-1 = ConvTranspose-11 here
        m.opset_import[0].version = 7
    path = opcase.ops_dir() / f"backend_{name}.onnx"
    onnx.save(m, str(path))
    x = ins[0].astype(np.float64)
    rc, info, logits, grad, stderr = opcase.run_engine(path, x)
    if ins[0].ndim != 4:
        assert rc == 2 and re.search(r"only 2-D transposed convolution", stderr), f"{name}: {rc} {stderr}"
        return
    assert rc == 0, f"{name}: refused or failed:\n{stderr}"
    e = expected.reshape(x.shape[0], -1).astype(np.float64)
    assert logits.shape == e.shape, f"{name}: output {logits.shape} vs expected {e.shape}"
    err = float(np.abs(logits - e).max())
    assert err <= 1e-5 * max(1.0, float(np.abs(e).max())), f"{name}: max error {err:.3g}"
    opcase.RESULTS.append((f"backend {name}"[:40], m.opset_import[0].version, "output", err, None, 1e-5))


# ---- models ------------------------------------------------------------------------------------------------------------
class Decoder(nn.Module):
    """A decoder-style classifier: Conv -> ConvTranspose -> Upsample -> Conv -> pool -> head."""

    def __init__(self, up_mode="bilinear"):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        kw = dict(align_corners=False) if up_mode != "nearest" else {}
        self.up = nn.Upsample(scale_factor=2, mode=up_mode, **kw)
        self.conv = nn.Sequential(nn.Conv2d(6, 12, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.conv(self.up(self.dec(self.enc(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _randomize_bn(m, seed):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m


@pytest.mark.parametrize("up_mode", ["nearest", "bilinear", "bicubic"])
def test_decoder_model(up_mode):
    torch.manual_seed(5)
    net = _randomize_bn(Decoder(up_mode), 6)
    opsets = (9, 11, 13, 17) if up_mode == "nearest" else (11, 13, 17)
    opcase.check_module(f"decoder_{up_mode}", net, (3, 16, 20), opsets=opsets)


class SegAsClassifier(nn.Module):
    """A torchvision segmentation net read as a classifier: the 'out' map averaged over the image."""

    def __init__(self, seg):
        super().__init__()
        self.seg = seg

    def forward(self, x):
        return self.seg(x)["out"].mean(dim=(2, 3))


def test_torchvision_lraspp_mobilenet_v3():
    """torchvision 0.14's classifiers contain no Upsample/Resize/ConvTranspose (only vision_transformer mentions
    interpolate, to resize position embeddings at checkpoint load, not in forward). Its segmentation nets do:
    lraspp_mobilenet_v3_large (random weights) upsamples with F.interpolate(bilinear) twice, sizes taken from
    Shape of activations; averaged over the image it is a 21-class classifier."""
    import torchvision
    torch.manual_seed(0)
    seg = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    _randomize_bn(seg, 1)
    opcase.check_module("tv_lraspp_mnv3", SegAsClassifier(seg), (3, 64, 80), opsets=(11, 13, 17))


def test_decoder_sanity_randomizes_convtranspose(tmp_path):
    """The sanity checks' model randomization re-initializes a ConvTranspose layer (a parameterized layer, w_in/b_in
    like Conv): `explaind sanity` with sanity_layers naming it must run and report it."""
    from PIL import Image
    torch.manual_seed(5)
    net = _randomize_bn(Decoder("bilinear"), 6).eval()
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), opset_version=13, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load(str(path))
    ct = [n.name for n in m.graph.node if n.op_type == "ConvTranspose"]
    assert len(ct) == 1, [n.op_type for n in m.graph.node]
    img = tmp_path / "img.png"
    Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)).save(img)
    exe = Path(opcase.engine_tool()).parents[1] / "explaind"
    assert exe.is_file(), f"{exe} not built (make all)"
    p = subprocess.run([str(exe), "sanity", "--model", str(path), "--images", str(img), "--sanity", "model",
                        "--sanity-layers", ct[0], "--compact"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert ct[0] in p.stdout, p.stdout[:2000]
