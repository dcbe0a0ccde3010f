#!/usr/bin/python3
"""Pure-torch stand-in for build/tools/conformance_run: executes an ONNX graph node by node with torch ops.

It implements the conformance_run command line, so the whole pytest harness can be run without the C engine
(make conformance-dry-run):
    CONFORMANCE_RUN="/usr/bin/python3 tests/conformance/ref_engine.py" /usr/bin/python3 -m pytest \
        tests/conformance/test_engine.py
That exercises every comparison and every error case of the harness against an independent float32
implementation of the same graphs (one whose rounding differs from both PyTorch modules' and the engine's,
so the float64 models' near-kink decisions are exercised too).

It is NOT the engine under test and is never used as a reference for numbers: references always come from
the torch module itself (export_models.py, harness.py).

CLI (same as conformance_run, whose header describes the outputs):
  ref_engine.py --model M.onnx --input X.f32 --n N --out PREFIX [--value NAME] [--value-alt NAME] [--target K]
                [--single] [--threads T] [--dump LIST] [--no-fold-bn]
  exit 0 + one JSON line on stdout; on a load error exit 2 and "error: <message>" on stderr.
"""
import argparse
import json
import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

MIN_OPSET, MAX_OPSET = 7, 18


class LoadError(Exception):
    """A problem with the model file: reported as 'error: ...' with exit status 2."""


class NodeError(Exception):
    """A node cannot be evaluated (shape mismatch, bad attribute...)."""


# ----------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------
_NP_OF_ONNX = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.BOOL: np.bool_,
}


def _external_bytes(t, base_dir):
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    parts = Path(loc).parts
    if not loc or loc.startswith(("/", "\\")) or os.path.isabs(loc) or ".." in parts or "\\" in loc or ":" in loc:
        raise LoadError(f"initializer '{t.name}': external data location '{loc}' must be a plain relative "
                        "path inside the model directory")
    path = Path(base_dir) / loc
    if not path.is_file():
        raise LoadError(f"initializer '{t.name}': external data file '{loc}' not found")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError as e:
        raise LoadError(f"initializer '{t.name}': bad external data offset/length: {e}")
    size = path.stat().st_size
    if length is None:
        length = size - offset
    if offset < 0 or length < 0 or offset > size or length > size - offset:
        raise LoadError(f"initializer '{t.name}': external data range offset={offset} length={length} exceeds "
                        f"file '{loc}' of {size} bytes")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _tensor_to_torch(t, base_dir):
    if t.data_type not in _NP_OF_ONNX:
        raise LoadError(f"initializer '{t.name}': unsupported data type {t.data_type}")
    dt = np.dtype(_NP_OF_ONNX[t.data_type]).newbyteorder("<")
    count = int(np.prod(t.dims)) if len(t.dims) else 1
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raw = _external_bytes(t, base_dir)
        if len(raw) != count * dt.itemsize:
            raise LoadError(f"initializer '{t.name}': external data has {len(raw)} bytes, dims {list(t.dims)} "
                            f"need {count * dt.itemsize}")
        arr = np.frombuffer(raw, dtype=dt).reshape(tuple(t.dims))
    else:
        try:
            arr = numpy_helper.to_array(t)
        except Exception as e:  # size does not match dims, ...
            raise LoadError(f"initializer '{t.name}': {e}")
        if arr.size != count:
            raise LoadError(f"initializer '{t.name}': {arr.size} elements, dims {list(t.dims)} need {count}")
    return torch.from_numpy(np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True))


class Model:
    """A loaded, validated ONNX graph that can run forward with torch ops (autograd-friendly)."""

    def __init__(self, path):
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise LoadError(f"cannot read '{path}': {e}")
        m = onnx.ModelProto()
        try:
            m.ParseFromString(data)
        except Exception as e:
            raise LoadError(f"'{path}' is not a valid ONNX protobuf: {e}")
        if not m.HasField("graph") or len(m.graph.node) == 0 or len(m.graph.output) == 0:
            raise LoadError(f"'{path}' has no graph (or no nodes / outputs)")
        self.opset = None
        for imp in m.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = imp.version
        if self.opset is None:
            raise LoadError("model imports no default-domain opset")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise LoadError(f"opset {self.opset} not supported (supported {MIN_OPSET}..{MAX_OPSET})")
        g = m.graph
        self.params = {}
        for t in g.initializer:
            self.params[t.name] = _tensor_to_torch(t, path.parent)
        inputs = [i for i in g.input if i.name not in self.params]
        if len(inputs) != 1:
            raise LoadError(f"expected exactly one graph input, found {len(inputs)}")
        self.input_name = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            raise LoadError(f"graph input '{self.input_name}' must be 4-D NCHW, has rank {len(dims)}")
        self.input_chw = []
        for d in dims[1:]:
            if not d.HasField("dim_value"):
                raise LoadError(f"graph input '{self.input_name}': C, H, W must be static")
            self.input_chw.append(d.dim_value)
        self.output_name = g.output[0].name
        self.nodes = list(g.node)
        defined = set(self.params) | {self.input_name}
        self.producer = {}
        for n in self.nodes:
            if n.domain not in ("", "ai.onnx") or n.op_type not in OPS:
                raise LoadError(f"node '{n.name}': unsupported op type '{n.op_type}'"
                                f"{' (domain ' + n.domain + ')' if n.domain else ''} at opset {self.opset}")
            for i in n.input:
                if i and i not in defined:
                    raise LoadError(f"node '{n.name}' ({n.op_type}): input '{i}' is not defined "
                                    "(missing initializer or not topologically sorted)")
            for o in n.output:
                if o:
                    defined.add(o)
                    self.producer[o] = n
        if self.output_name not in defined:
            raise LoadError(f"graph output '{self.output_name}' is produced by no node")
        self.node_by_name = {n.name: n for n in self.nodes if n.name}
        # shape check: one forward on a zero image (raises LoadError naming the node)
        with torch.no_grad():
            self.run(torch.zeros(1, *self.input_chw))

    def resolve_value(self, name):
        """--value NAME: a value name, or a node name (its first output)."""
        if name in self.producer:
            return name
        if name in self.node_by_name:
            return self.node_by_name[name].output[0]
        raise LoadError(f"--value '{name}': no node or value of that name")

    def run(self, x, capture=None, keep=None, dump=()):
        """Forward; returns (logits, captured value or None); the values named in dump go into keep."""
        env = dict(self.params)
        env[self.input_name] = x
        for n in self.nodes:
            args = [env[i] if i else None for i in n.input]
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            try:
                outs = OPS[n.op_type](args, attrs, self.opset)
            except LoadError:
                raise
            except Exception as e:
                raise LoadError(f"node '{n.name}' ({n.op_type}, opset {self.opset}): {e}")
            if not isinstance(outs, (tuple, list)):
                outs = (outs,)
            for name, v in zip(n.output, outs):
                if name:
                    env[name] = v
        if keep is not None:
            keep.update({d: env[d] for d in dump})
        return env[self.output_name], (env[capture] if capture else None)


# ----------------------------------------------------------------------------------------------------------
# operators (ONNX semantics, opsets 7..18 for the attribute/input changes that matter here)
# ----------------------------------------------------------------------------------------------------------
def _ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def _pads4(attrs, nd=2):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NodeError(f"auto_pad={attrs['auto_pad']} not supported")
    p = list(attrs.get("pads", [0] * (2 * nd)))
    return p[0], p[1], p[2], p[3]  # top, left, bottom, right


def _need4(x, what):
    if x.dim() != 4:
        raise NodeError(f"{what} expects a 4-D input, got shape {list(x.shape)}")


def op_conv(a, at, opset):
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    _need4(x, "Conv")
    group = at.get("group", 1)
    if w.dim() != 4:
        raise NodeError(f"weight must be 4-D, got {list(w.shape)}")
    if w.shape[1] * group != x.shape[1]:
        raise NodeError(f"weight {list(w.shape)} with group={group} expects {w.shape[1] * group} input "
                        f"channels, input has {x.shape[1]}")
    if w.shape[0] % group:
        raise NodeError(f"output channels {w.shape[0]} not divisible by group {group}")
    if b is not None and list(b.shape) != [w.shape[0]]:
        raise NodeError(f"bias shape {list(b.shape)} does not match {w.shape[0]} output channels")
    ks = at.get("kernel_shape")
    if ks is not None and list(ks) != list(w.shape[2:]):
        raise NodeError(f"kernel_shape {ks} does not match weight {list(w.shape)}")
    t, l, bo, r = _pads4(at)
    s = at.get("strides", [1, 1])
    d = at.get("dilations", [1, 1])
    if (t, l) == (bo, r):
        return F.conv2d(x, w, b, stride=s, padding=(t, l), dilation=d, groups=group)
    return F.conv2d(F.pad(x, (l, r, t, bo)), w, b, stride=s, dilation=d, groups=group)


def _pool_out(n, k, s, p0, p1, d, ceil):
    eff = (k - 1) * d + 1
    v = (n + p0 + p1 - eff) / s
    return int(math.ceil(v) if ceil else math.floor(v)) + 1


def op_maxpool(a, at, opset):
    x = a[0]
    _need4(x, "MaxPool")
    if at.get("storage_order", 0):
        raise NodeError("storage_order=1 not supported")
    k = at["kernel_shape"]
    s = at.get("strides", [1, 1])
    d = at.get("dilations", [1, 1])
    t, l, bo, r = _pads4(at)
    ceil = bool(at.get("ceil_mode", 0))
    if (t, l) == (bo, r) and t <= k[0] // 2 and l <= k[1] // 2:
        return F.max_pool2d(x, k, s, (t, l), d, ceil_mode=ceil)
    xp = F.pad(x, (l, r, t, bo), value=-math.inf)
    return F.max_pool2d(xp, k, s, 0, d, ceil_mode=ceil)


def op_avgpool(a, at, opset):
    x = a[0]
    _need4(x, "AveragePool")
    k = at["kernel_shape"]
    s = at.get("strides", [1, 1])
    t, l, bo, r = _pads4(at)
    ceil = bool(at.get("ceil_mode", 0))
    cip = bool(at.get("count_include_pad", 0))
    H, W = x.shape[2], x.shape[3]
    oh = _pool_out(H, k[0], s[0], t, bo, 1, ceil)
    ow = _pool_out(W, k[1], s[1], l, r, 1, ceil)
    # windows are clipped at the padded border (the ceil_mode overhang counts nowhere), like torch
    eh = max(0, (oh - 1) * s[0] + k[0] - (H + t + bo))
    ew = max(0, (ow - 1) * s[1] + k[1] - (W + l + r))
    xp = F.pad(x, (l, r + ew, t, bo + eh))
    ones = torch.ones(1, 1, H, W, dtype=x.dtype)
    if cip:
        mask = F.pad(F.pad(ones, (l, r, t, bo), value=1.0), (0, ew, 0, eh))
    else:
        mask = F.pad(ones, (l, r + ew, t, bo + eh))
    ssum = F.avg_pool2d(xp, k, s, divisor_override=1)
    cnt = F.avg_pool2d(mask, k, s, divisor_override=1)
    return ssum[:, :, :oh, :ow] / cnt[:, :, :oh, :ow]


def op_bn(a, at, opset):
    x, sc, b, mean, var = a[:5]
    if at.get("training_mode", 0):
        raise NodeError("training_mode=1 not supported")
    C = x.shape[1]
    for nm, t in (("scale", sc), ("B", b), ("mean", mean), ("var", var)):
        if list(t.shape) != [C]:
            raise NodeError(f"{nm} has shape {list(t.shape)}, input has {C} channels")
    return F.batch_norm(x, mean, var, sc, b, False, 0.0, at.get("epsilon", 1e-5))


def op_clip(a, at, opset):
    x = a[0]
    if opset < 11:
        lo, hi = at.get("min", -3.4028234663852886e38), at.get("max", 3.4028234663852886e38)
    else:
        lo = float(a[1]) if len(a) > 1 and a[1] is not None else None
        hi = float(a[2]) if len(a) > 2 and a[2] is not None else None
    return torch.clamp(x, lo, hi)


def op_gemm(a, at, opset):
    A, B = a[0], a[1]
    C = a[2] if len(a) > 2 else None
    if at.get("transA", 0):
        A = A.t()
    if at.get("transB", 0):
        B = B.t()
    if A.dim() != 2 or B.dim() != 2 or A.shape[1] != B.shape[0]:
        raise NodeError(f"Gemm shapes {list(A.shape)} x {list(B.shape)} do not match")
    y = at.get("alpha", 1.0) * (A @ B)
    if C is not None:
        y = y + at.get("beta", 1.0) * C
    return y


def op_matmul(a, at, opset):
    if a[0].shape[-1] != a[1].shape[-2 if a[1].dim() > 1 else 0]:
        raise NodeError(f"MatMul shapes {list(a[0].shape)} x {list(a[1].shape)} do not match")
    return torch.matmul(a[0], a[1])


def op_reshape(a, at, opset):
    x, shape = a[0], _ints(a[1])
    allowzero = at.get("allowzero", 0)
    out = [x.shape[i] if (v == 0 and not allowzero) else v for i, v in enumerate(shape)]
    return x.reshape(out)


def op_flatten(a, at, opset):
    x = a[0]
    ax = at.get("axis", 1)
    if ax < 0:
        ax += x.dim()
    return x.reshape(int(np.prod(x.shape[:ax])), -1)


def op_shape(a, at, opset):
    sh = list(a[0].shape)
    st, en = at.get("start", 0), at.get("end", len(sh))
    return torch.tensor(sh[st:en], dtype=torch.int64)


def op_gather(a, at, opset):
    x, idx = a[0], a[1].long()
    ax = at.get("axis", 0)
    if ax < 0:
        ax += x.dim()
    idx = torch.where(idx < 0, idx + x.shape[ax], idx)
    if idx.dim() == 0:
        return x.select(ax, int(idx))
    out = torch.index_select(x, ax, idx.reshape(-1))
    return out.reshape(list(x.shape[:ax]) + list(idx.shape) + list(x.shape[ax + 1:]))


def _axes(a, at, opset, since):
    if opset >= since:
        return _ints(a[1]) if len(a) > 1 and a[1] is not None else None
    return list(at["axes"]) if "axes" in at else None


def op_unsqueeze(a, at, opset):
    x = a[0]
    axes = _axes(a, at, opset, 13)
    r = x.dim() + len(axes)
    for ax in sorted(v + r if v < 0 else v for v in axes):
        x = x.unsqueeze(ax)
    return x


def op_squeeze(a, at, opset):
    x = a[0]
    axes = _axes(a, at, opset, 13)
    if axes is None:
        return x.squeeze()
    axes = sorted((v + x.dim() if v < 0 else v for v in axes), reverse=True)
    for ax in axes:
        if x.shape[ax] != 1:
            raise NodeError(f"cannot squeeze axis {ax} of size {x.shape[ax]}")
        x = x.squeeze(ax)
    return x


def op_concat(a, at, opset):
    return torch.cat(a, dim=at["axis"])


def op_constant(a, at, opset):
    if "value" in at:
        return torch.from_numpy(numpy_helper.to_array(at["value"]).copy())
    for k, dt in (("value_float", torch.float32), ("value_floats", torch.float32),
                  ("value_int", torch.int64), ("value_ints", torch.int64)):
        if k in at:
            return torch.tensor(at[k], dtype=dt)
    raise NodeError("unsupported Constant attribute")


def op_pad(a, at, opset):
    x = a[0]
    mode = at.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if opset < 11:
        pads, value = list(at["pads"]), at.get("value", 0.0)
    else:
        pads = _ints(a[1])
        value = float(a[2]) if len(a) > 2 and a[2] is not None else 0.0
    n = x.dim()
    if len(pads) != 2 * n:
        raise NodeError(f"pads has {len(pads)} entries for a rank-{n} input")
    tp = []
    for d in reversed(range(n)):
        tp += [pads[d], pads[d + n]]
    while len(tp) > 4 and tp[-1] == 0 and tp[-2] == 0:  # torch pads trailing dims only
        tp = tp[:-2]
    if mode == "constant":
        return F.pad(x, tp, value=value)
    if mode in ("reflect", "edge"):
        return F.pad(x, tp, mode="reflect" if mode == "reflect" else "replicate")
    raise NodeError(f"Pad mode {mode} not supported")


def _reduce(fn):
    def op(a, at, opset):
        x = a[0]
        axes = list(at["axes"]) if "axes" in at else None
        if axes is None and len(a) > 1 and a[1] is not None:
            axes = _ints(a[1])
        keep = bool(at.get("keepdims", 1))
        if axes is None or len(axes) == 0:
            axes = list(range(x.dim()))
        return fn(x, [v + x.dim() if v < 0 else v for v in axes], keep)
    return op


def op_binary(fn):
    def op(a, at, opset):
        x, y = a[0], a[1]
        try:
            torch.broadcast_shapes(x.shape, y.shape)
        except RuntimeError:
            raise NodeError(f"shapes {list(x.shape)} and {list(y.shape)} do not broadcast")
        return fn(x, y)
    return op


def op_slice(a, at, opset):
    x = a[0]
    if opset < 10:
        starts, ends = list(at["starts"]), list(at["ends"])
        axes = list(at.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(a[1]), _ints(a[2])
        axes = _ints(a[3]) if len(a) > 3 and a[3] is not None else list(range(len(starts)))
        steps = _ints(a[4]) if len(a) > 4 and a[4] is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if ax < 0:
            ax += x.dim()
        n = x.shape[ax]
        if st == 0:
            raise NodeError("Slice step 0")
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if st > 0:
            s, e = max(0, min(n, s)), max(0, min(n, e))
        else:
            s, e = max(0, min(n - 1, s)), max(-1, min(n - 1, e))
        x = torch.index_select(x, ax, torch.arange(s, e, st, dtype=torch.long))
    return x


_TORCH_OF_ONNX = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
                  onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32,
                  onnx.TensorProto.BOOL: torch.bool, onnx.TensorProto.UINT8: torch.uint8,
                  onnx.TensorProto.INT8: torch.int8}


def op_cast(a, at, opset):
    if at["to"] not in _TORCH_OF_ONNX:
        raise NodeError(f"Cast to type {at['to']} not supported")
    return a[0].to(_TORCH_OF_ONNX[at["to"]])


def op_constant_of_shape(a, at, opset):
    shape = _ints(a[0])
    if "value" in at:
        v = torch.from_numpy(numpy_helper.to_array(at["value"]).copy()).reshape(-1)
        return torch.full(shape, v[0].item(), dtype=v.dtype)
    return torch.zeros(shape, dtype=torch.float32)


def op_dropout(a, at, opset):
    return a[0]


OPS = {
    "Conv": op_conv,
    "MaxPool": op_maxpool,
    "AveragePool": op_avgpool,
    "GlobalAveragePool": lambda a, at, o: a[0].mean((2, 3), keepdim=True),
    "GlobalMaxPool": lambda a, at, o: F.adaptive_max_pool2d(a[0], 1),
    "BatchNormalization": op_bn,
    "Relu": lambda a, at, o: torch.relu(a[0]),
    "LeakyRelu": lambda a, at, o: F.leaky_relu(a[0], at.get("alpha", 0.01)),
    "Sigmoid": lambda a, at, o: torch.sigmoid(a[0]),
    "Tanh": lambda a, at, o: torch.tanh(a[0]),
    "HardSigmoid": lambda a, at, o: torch.clamp(at.get("alpha", 0.2) * a[0] + at.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda a, at, o: F.hardswish(a[0]),
    "Clip": op_clip,
    "Add": op_binary(torch.add),
    "Sub": op_binary(torch.sub),
    "Mul": op_binary(torch.mul),
    "Div": op_binary(torch.div),
    "Gemm": op_gemm,
    "MatMul": op_matmul,
    "Flatten": op_flatten,
    "Reshape": op_reshape,
    "Shape": op_shape,
    "Gather": op_gather,
    "Unsqueeze": op_unsqueeze,
    "Squeeze": op_squeeze,
    "Concat": op_concat,
    "Constant": op_constant,
    "Identity": lambda a, at, o: a[0],
    "Dropout": op_dropout,
    "Pad": op_pad,
    "Slice": op_slice,
    "Cast": op_cast,
    "ConstantOfShape": op_constant_of_shape,
    "Transpose": lambda a, at, o: a[0].permute(*(at.get("perm") or reversed(range(a[0].dim())))),
    "ReduceMean": _reduce(lambda x, ax, k: x.mean(ax, keepdim=k)),
    "ReduceMax": _reduce(lambda x, ax, k: x.amax(ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(ax, keepdim=k)),
}


# ----------------------------------------------------------------------------------------------------------
# the job conformance_run does
# ----------------------------------------------------------------------------------------------------------
def forward_backward(model, x, value=None, target=-1, dump=()):
    """One forward on the batch x, backward from each image's argmax logit (and from class `target` for every
    image when target >= 0). Returns dict of numpy arrays: logits, input_grad, [value, value_grad],
    [fixed.input_grad, fixed.value_grad], dump (list), targets, fixed_targets."""
    xi = x.clone().requires_grad_(True)
    keep = {}
    with torch.enable_grad():
        logits, v = model.run(xi, capture=value, keep=keep, dump=dump)
        if logits.dim() != 2:
            raise LoadError(f"output '{model.output_name}' has shape {list(logits.shape)}, expected N x classes")
        if target >= logits.shape[1]:
            raise LoadError(f"--target {target} out of range (0..{logits.shape[1] - 1})")
        out = {"logits": logits.detach().numpy(), "dump": [keep[d].detach().numpy() for d in dump]}
        wrt = [xi] + ([v] if v is not None else [])
        for tag, tg in (("", logits.argmax(1)), ("fixed.", torch.full((x.shape[0],), target, dtype=torch.long))):
            if tag and target < 0:
                break
            grads = torch.autograd.grad(logits.gather(1, tg[:, None]).sum(), wrt, allow_unused=True,
                                        retain_graph=True)
            out[tag + "input_grad"] = grads[0].numpy()
            if v is not None:
                out[tag + "value_grad"] = (grads[1] if grads[1] is not None else torch.zeros_like(v)).numpy()
            out[tag + "targets"] = tg.tolist()
    if v is not None:
        out["value"] = v.detach().numpy()
    return out


def write_outputs(prefix, res, keys=("logits", "input_grad", "value", "value_grad")):
    for k in keys:
        if k in res:
            np.ascontiguousarray(res[k], dtype="<f4").tofile(f"{prefix}.{k}.f32")
    if res.get("dump"):
        np.concatenate([d.reshape(-1) for d in res["dump"]]).astype("<f4").tofile(f"{prefix}.dump.f32")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--value")
    ap.add_argument("--value-alt")
    ap.add_argument("--target", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--single", action="store_true")
    ap.add_argument("--dump")
    ap.add_argument("--no-fold-bn", action="store_true")  # this implementation never folds
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # deterministic, and the harness runs the engine next to torch
    info = {}
    try:
        model = Model(args.model)
        value = model.resolve_value(args.value) if args.value else None
        dump = [model.resolve_value(ln.strip()) for ln in open(args.dump) if ln.strip()] if args.dump else []
        C, H, W = model.input_chw
        raw = np.fromfile(args.input, dtype="<f4")
        if raw.size != args.n * C * H * W:
            raise LoadError(f"input '{args.input}' has {raw.size} floats, expected {args.n}x{C}x{H}x{W}")
        x = torch.from_numpy(raw.astype(np.float32).reshape(args.n, C, H, W))
        res = forward_backward(model, x, value, args.target, dump)
        write_outputs(f"{args.out}.batch", res)
        info["logits_shape"] = list(res["logits"].shape)
        if value:
            info.update(value_shape=list(res["value"].shape), value_name=value)
        if args.value_alt:
            info["value_alt_same"] = model.resolve_value(args.value_alt) == value
        info["targets"] = res["targets"]
        if args.target >= 0:
            write_outputs(f"{args.out}.fixed", {"input_grad": res["fixed.input_grad"],
                                                "value_grad": res.get("fixed.value_grad")}
                          if value else {"input_grad": res["fixed.input_grad"]})
            info["fixed_targets"] = res["fixed.targets"]
        singles = []
        if args.single or args.threads:
            singles = [forward_backward(model, x[i:i + 1], value, -1, dump) for i in range(args.n)]
        if args.single:
            cat = {k: np.concatenate([s[k] for s in singles]) for k in ("logits", "input_grad", "value", "value_grad")
                   if k in singles[0]}
            cat["dump"] = [np.concatenate([s["dump"][j] for s in singles]) for j in range(len(dump))]
            write_outputs(f"{args.out}.single", cat)
            info["single_targets"] = [s["targets"][0] for s in singles]
        if args.threads:
            results = [None] * args.threads

            def job(t):
                results[t] = forward_backward(model, x[t % args.n:t % args.n + 1], value, -1)

            ths = [threading.Thread(target=job, args=(t,)) for t in range(args.threads)]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            if any(r is None for r in results):
                raise LoadError("a worker thread failed")
            for t, r in enumerate(results):
                write_outputs(f"{args.out}.t{t}", r)
            info["thread_targets"] = [r["targets"][0] for r in results]
        info["dump_sizes"] = [int(np.prod(d.shape[1:])) for d in res["dump"]]
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
