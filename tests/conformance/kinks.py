"""Kinks of a torch forward: where ReLU-type gradients are discontinuous, and what to do about them.

A ReLU whose pre-activation z is within float32 rounding of 0 may come out on either side in two
correct float32 implementations (different summation orders), and its gradient then moves by that
unit's whole contribution: one such unit moved resnet18's input gradient by 6e-3 relative between
torch float32 and float64.  The same holds for every kink of the networks here:

  kind         torch call                       ONNX op              kinks
  relu         F.relu (nn.ReLU)                 Relu                 z = 0
  clip         F.hardtanh (nn.ReLU6)            Clip                 z = min, z = max
  leaky        F.leaky_relu (nn.LeakyReLU)      LeakyRelu            z = 0
  hardswish    F.hardswish (nn.Hardswish)       HardSwish (opset 14) or HardSigmoid (+ Mul)   z = +-3
  hardsigmoid  F.hardsigmoid (nn.Hardsigmoid)   HardSigmoid          z = +-3
  maxpool      F.max_pool2d (nn.MaxPool2d)      MaxPool              a window's two largest values tie
  gmaxpool     F.adaptive_max_pool2d(x, 1)      GlobalMaxPool        idem over the whole map
  amax         Tensor.amax(1) (CBAM)            ReduceMax            idem over the channels

record() runs a module with those functionals patched and returns one Call per kink op executed, in
execution order (the order torch.onnx.export writes the nodes in, which onnx_inputs() relies on and
checks).  For each unit (a window for the max ops) Call.dist() is its distance to the nearest kink
(the gap between the two largest values for a window; exact ties, which both sides break alike or
which only ReLU zeros produce, count as far).

near_kink() is the definition the suite uses: a unit is near its kink when its float64 distance is
below KINK_FACTOR x the float32 rounding error measured at that node on that image (max over the
node of |torch float32 - torch float64| of the pre-activations), and never below ULP_FLOOR x the
node's max |z|.  The measured errors range from 2e-7 (cbam) to 1.4e-4 (inception_v3) of the node's
max |z|, so one fixed relative margin would be either far too wide for the small nets or far too
narrow for the deep ones.

decide() gives each unit's side of its kink (pointwise ops: the region index; max ops: the position
of the largest value in the window, first on ties) from any values of that node, the float64 ones
or an engine's float32 ones.  forward_with() reruns the module in float64 with the backward of
chosen units following other decisions: the reference for a float32 run that took those sides.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

KINK_FACTOR = 4.0
ULP_FLOOR = 2.0 ** -23          # float32 machine epsilon: no float32 error estimate goes below it
ONNX_OPS = {"relu": {"Relu"}, "clip": {"Clip"}, "leaky": {"LeakyRelu"}, "hardswish": {"HardSwish", "HardSigmoid"},
            "hardsigmoid": {"HardSigmoid"}, "maxpool": {"MaxPool"}, "gmaxpool": {"GlobalMaxPool", "MaxPool"},
            "amax": {"ReduceMax"}}
KINK_OPS = set().union(*ONNX_OPS.values())
MAX_KINDS = ("maxpool", "gmaxpool", "amax")


class Call:
    """One executed kink op: kind, its input z (detached, batch-major), and what the kind needs:
    bounds (pointwise kinks, increasing), slope (leaky), pool (kernel, stride, padding, output h, w)."""

    def __init__(self, kind, z, bounds=(), slope=None, pool=None):
        self.kind, self.z, self.bounds, self.slope, self.pool = kind, z.detach().clone(), tuple(bounds), slope, pool

    @property
    def n(self):
        return self.z.shape[0]

    def windows(self, z=None):
        """Max ops: (N, units, window) view of z (default: the recorded input); -inf pads."""
        z = self.z if z is None else z
        n = z.shape[0]
        if self.kind == "gmaxpool":
            return z.reshape(n, z.shape[1], -1)
        if self.kind == "amax":
            return z.reshape(n, z.shape[1], -1).transpose(1, 2)
        (kh, kw), (sh, sw), (ph, pw), (ho, wo) = self.pool
        H, W = z.shape[-2:]
        hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
        zp = F.pad(z, (pw, max(0, wp - W - pw), ph, max(0, hp - H - ph)), value=-float("inf"))[..., :hp, :wp]
        c = z.shape[1]
        win = F.unfold(zp.reshape(n * c, 1, hp, wp), (kh, kw), stride=(sh, sw))  # (n c, k, L)
        return win.transpose(1, 2).reshape(n, c * ho * wo, kh * kw)

    def dist(self):
        """(N, units) float64 distance of each unit to its nearest kink (max ops: top-1 minus top-2 of
        each window; exact ties: +inf)."""
        if self.kind in MAX_KINDS:
            top = self.windows().double().topk(2, dim=-1).values
            gap = top[..., 0] - top[..., 1]
            return torch.where(gap > 0, gap, torch.full_like(gap, float("inf")))
        z = self.z.double().reshape(self.n, -1)
        return torch.stack([(z - b).abs() for b in self.bounds]).min(0).values

    def scale(self):
        """(N,) max |z| per image: the node's scale."""
        return self.z.double().reshape(self.n, -1).abs().max(1).values

    def decide(self, z=None):
        """(N, units) int64: the side of the kink each unit is on (pointwise: the number of bounds
        below z, i.e. the region; max ops: argmax within the window, first on ties)."""
        z = self.z if z is None else z
        if self.kind in MAX_KINDS:
            return self.windows(z).argmax(-1)
        z = z.reshape(z.shape[0], -1)
        return sum((z > b).long() for b in self.bounds)


def near_kink(c64, c32, factor=KINK_FACTOR):
    """(N, units) bool: units of the float64 call c64 nearer their kink than factor x the float32
    error measured at that node and image (c32: the same call in the float32 run), and the
    (N,) float32 error relative to the node's scale."""
    scale = c64.scale().clamp_min(1e-300)
    err = (c32.z.double() - c64.z.double()).reshape(c64.n, -1).abs().max(1).values / scale
    thr = factor * torch.maximum(err, torch.full_like(err, ULP_FLOOR)) * scale
    return c64.dist() < thr[:, None], err


# ---- patching ---------------------------------------------------------------------------------------------
class _State:
    def __init__(self, overrides=None):
        self.calls = []
        self.overrides = overrides or {}   # call index -> (N, units) int64 decisions to follow in backward


def _pointwise_deriv(kind, z, region, slope):
    """d f / d z of the pointwise kink op in the given region (same shape as z)."""
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    if kind == "relu":
        return torch.where(region == 1, one, zero)
    if kind == "leaky":
        return torch.where(region == 1, one, one * slope)
    if kind == "clip":
        return torch.where(region == 1, one, zero)
    if kind == "hardsigmoid":
        return torch.where(region == 1, one / 6, zero)
    if kind == "hardswish":
        return torch.where(region == 0, zero, torch.where(region == 1, (2 * z + 3) / 6, one))
    raise ValueError(kind)


def _pointwise(st, kind, native, z, bounds=(), slope=None):
    call = Call(kind, z, bounds, slope)
    idx = len(st.calls)
    st.calls.append(call)
    y = native()
    if idx not in st.overrides:
        return y
    region = st.overrides[idx].reshape(z.shape).to(z.device)
    d = _pointwise_deriv(kind, z.detach(), region, slope)
    return y.detach() + (z - z.detach()) * d   # value f(z), gradient d: the chosen sides


def _max(st, kind, native, z, pool=None, keep=None):
    call = Call(kind, z, pool=pool)
    idx = len(st.calls)
    st.calls.append(call)
    y = native()
    if idx not in st.overrides:
        return y
    win = call.windows(z)                                   # differentiable view of z
    pick = st.overrides[idx].to(z.device)[..., None]        # (N, units, 1)
    v = win.gather(-1, pick)[..., 0]                        # the chosen element of each window
    return v.reshape(y.shape)


@contextlib.contextmanager
def patched(state):
    saved = {k: getattr(F, k) for k in ("relu", "hardtanh", "leaky_relu", "hardswish", "hardsigmoid",
                                         "max_pool2d", "adaptive_max_pool2d")}
    amax = torch.Tensor.amax

    def relu(x, inplace=False):
        return _pointwise(state, "relu", lambda: saved["relu"](x), x, (0.0,))

    def hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
        return _pointwise(state, "clip", lambda: saved["hardtanh"](x, min_val, max_val), x, (min_val, max_val))

    def leaky_relu(x, negative_slope=0.01, inplace=False):
        return _pointwise(state, "leaky", lambda: saved["leaky_relu"](x, negative_slope), x, (0.0,), negative_slope)

    def hardswish(x, inplace=False):
        return _pointwise(state, "hardswish", lambda: saved["hardswish"](x), x, (-3.0, 3.0))

    def hardsigmoid(x, inplace=False):
        return _pointwise(state, "hardsigmoid", lambda: saved["hardsigmoid"](x), x, (-3.0, 3.0))

    def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        from torch.nn.modules.utils import _pair
        assert _pair(dilation) == (1, 1) and not return_indices
        y = saved["max_pool2d"](x, kernel_size, stride, padding, dilation, ceil_mode)
        st = stride if stride not in (None, [], ()) else kernel_size
        pool = (_pair(kernel_size), _pair(st), _pair(padding), tuple(y.shape[-2:]))
        return _max(state, "maxpool", lambda: y, x, pool)

    def adaptive_max_pool2d(x, output_size, return_indices=False):
        assert output_size in (1, (1, 1), [1, 1]) and not return_indices
        return _max(state, "gmaxpool", lambda: saved["adaptive_max_pool2d"](x, output_size), x)

    def tensor_amax(self, dim=(), keepdim=False):
        if self.dim() == 4 and dim in (1, (1,), [1]):
            return _max(state, "amax", lambda: amax(self, dim, keepdim), self)
        return amax(self, dim, keepdim)

    for k, fn in (("relu", relu), ("hardtanh", hardtanh), ("leaky_relu", leaky_relu), ("hardswish", hardswish),
                  ("hardsigmoid", hardsigmoid), ("max_pool2d", max_pool2d),
                  ("adaptive_max_pool2d", adaptive_max_pool2d)):
        setattr(F, k, fn)
    torch.Tensor.amax = tensor_amax
    try:
        yield state
    finally:
        for k, fn in saved.items():
            setattr(F, k, fn)
        torch.Tensor.amax = amax


def record(model, x):
    """Forward without gradients; returns (logits, [Call, ...])."""
    st = _State()
    with torch.no_grad(), patched(st):
        y = model(x)
    return y, st.calls


def forward_with(model, x, overrides=None):
    """Forward (with autograd) in which the backward of call i follows overrides[i] ((N, units)
    decisions as decide() gives them) instead of the sides of x's own values. Returns (logits, calls)."""
    st = _State(overrides)
    with patched(st):
        y = model(x)
    return y, st.calls


def onnx_inputs(proto, calls):
    """The ONNX value name of each call's input: the k-th kink node of the graph (in node order) is the
    k-th call. Raises if the kinds do not line up (a kink op that record() does not see, or the reverse)."""
    nodes = [n for n in proto.graph.node if n.op_type in KINK_OPS]
    # opset < 14 writes Hardswish as HardSigmoid + Mul: one HardSigmoid node per hardswish call
    if len(nodes) != len(calls):
        raise RuntimeError(f"{len(calls)} kink ops executed by torch, {len(nodes)} kink nodes in the ONNX graph "
                           f"({sorted({n.op_type for n in nodes})})")
    names = []
    for i, (n, c) in enumerate(zip(nodes, calls)):
        if n.op_type not in ONNX_OPS[c.kind]:
            raise RuntimeError(f"kink op {i}: torch {c.kind} but ONNX node {n.name} is {n.op_type}")
        names.append(n.input[0])
    return names


def units_summary(calls64, calls32, n, factor=KINK_FACTOR):
    """Per image (n images): the number of near-kink units, and the smallest distance / (factor x float32
    error) over the network (>= 1: every unit clear of its kink)."""
    count = torch.zeros(n, dtype=torch.long)
    ratio = torch.full((n,), float("inf"), dtype=torch.float64)
    for c64, c32 in zip(calls64, calls32):
        near, err = near_kink(c64, c32, factor)
        count += near.sum(1)
        thr = factor * torch.maximum(err, torch.full_like(err, ULP_FLOOR)) * c64.scale().clamp_min(1e-300)
        ratio = torch.minimum(ratio, (c64.dist() / thr[:, None]).min(1).values)
    return count, ratio


def as_numpy_units(mask):
    """(N, units) bool -> list of [image, unit] pairs (for JSON)."""
    return [[int(i), int(u)] for i, u in torch.nonzero(mask).tolist()]


def units_to_mask(pairs, shape):
    m = torch.zeros(shape, dtype=torch.bool)
    if pairs:
        p = torch.as_tensor(pairs)
        m[p[:, 0], p[:, 1]] = True
    return m


__all__ = ["KINK_FACTOR", "ULP_FLOOR", "Call", "near_kink", "record", "forward_with", "onnx_inputs",
           "units_summary", "np"]
