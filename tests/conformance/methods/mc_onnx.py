"""A small ONNX -> PyTorch interpreter: the reference side of the methods conformance suite.

It runs an ONNX graph with torch.nn.functional on the graph's own initializers, so the reference
sees exactly the weights the engine loads (no second copy of a torchvision module whose BatchNorm
the exporter folded differently). Everything is differentiable with torch autograd, in the dtype
asked for (float64 for references, float32 to mimic a float32 run).

ReLU backward rules (the only thing guided backprop and deconvnet change), per Captum's
ModifiedReluGradientAttribution hook on nn.ReLU modules:
    plain:   grad_in = grad_out * [x > 0]
    guided:  grad_in = relu(grad_out * [x > 0])      (Captum GuidedBackprop: relu of grad_input)
    deconv:  grad_in = relu(grad_out)                (Captum Deconvolution: relu of grad_output)
Every ONNX Relu node gets the rule, as if each were an nn.ReLU module; Clip (ReLU6) keeps its plain
rule, as Captum leaves nn.ReLU6 alone.

Supported ops: the set torchvision's resnet/mobilenet and a CBAM network export to at opset 13:
Conv, Relu, Clip, Sigmoid, Add, Sub, Mul, Div, MaxPool, AveragePool, GlobalAveragePool,
GlobalMaxPool, ReduceMean, ReduceMax, Concat, Flatten, Reshape, Squeeze, Unsqueeze, Gemm, MatMul,
BatchNormalization, Identity, Dropout (inference), Constant, Pad.
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


class _ReluGuided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clamp_min(0)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * (x > 0).to(g.dtype)).clamp_min(0)


class _ReluToggled(torch.autograd.Function):
    """Plain ReLU/Clip backward, except that the units in `flip` (flat indices into the input tensor)
    take the other side of their kink: used to reproduce a float32 run that rounded a unit within
    rounding distance of its kink to the other side."""

    @staticmethod
    def forward(ctx, x, lo, hi, flip):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi, ctx.flip = lo, hi, flip
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        inside = x > ctx.lo
        if ctx.hi is not None:
            inside = inside & (x < ctx.hi)
        m = inside.to(g.dtype).flatten().clone()
        m[ctx.flip] = 1 - m[ctx.flip]
        return g * m.view_as(g), None, None, None


class _ReluDeconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp_min(0)


def _attrs(node):
    out = {}
    for a in node.attribute:
        out[a.name] = onnx.helper.get_attribute_value(a)
    return out


class OnnxModule:
    """model = OnnxModule(path); values = model.run(x, relu='plain', keep=names) -> dict name->tensor.

    run() returns the graph output under 'output' and every value named in keep (ONNX value
    names). Tensors stay in the autograd graph, so torch.autograd.grad(logit, [x, values[name]])
    gives input and layer gradients in one backward pass."""

    def __init__(self, path, dtype=torch.float64):
        self.path = str(path)
        self.model = onnx.load(self.path)
        g = self.model.graph
        self.dtype = dtype
        self.consts = {}
        for t in g.initializer:
            self.consts[t.name] = self._tensor(numpy_helper.to_array(t))
        self.nodes = list(g.node)
        for n in self.nodes:  # Constant nodes are constants: known before any run (Clip bounds)
            if n.op_type == "Constant":
                self.consts[n.output[0]] = self._tensor(numpy_helper.to_array(_attrs(n)["value"]))
        init = set(self.consts)
        self.input_name = [i.name for i in g.input if i.name not in init][0]
        self.output_name = g.output[0].name
        dims = [d.dim_value for d in [i for i in g.input if i.name == self.input_name][0].type.tensor_type.shape.dim]
        self.input_shape = tuple(dims)
        self.op_types = sorted({n.op_type for n in self.nodes})
        self.node_by_output = {o: n for n in self.nodes for o in n.output}
        self.node_output = {n.name: n.output[0] for n in self.nodes if n.name}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def _tensor(self, a):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            return torch.from_numpy(a.astype(np.float64 if self.dtype == torch.float64 else np.float32))
        return torch.from_numpy(a.copy())

    # ---- helpers for the tests -------------------------------------------------------------------
    def value_name(self, name):
        """An ONNX node name or value name (API.md `layer` accepts both) -> the value name."""
        return self.node_output.get(name, name)

    def values_of_op(self, op_type):
        """(node name, input value name, output value name) of every node of that op type, in order."""
        return [(n.name, n.input[0], n.output[0]) for n in self.nodes if n.op_type == op_type]

    def kink_bounds(self, node):
        """Where a Relu/Clip node's backward switches: [0] for Relu, [min, max] for Clip."""
        if node.op_type == "Relu":
            return [0.0]
        a = _attrs(node)
        b = []
        for k, key in ((1, "min"), (2, "max")):
            if len(node.input) > k and node.input[k]:
                b.append(float(self.consts[node.input[k]]))
            elif key in a:
                b.append(float(a[key]))
        return b

    def max_windows(self, node, shape):
        """The windows a MaxPool / GlobalMaxPool / ReduceMax(channels) node takes the maximum over, for
        one image of input shape (C, H, W): LongTensor (outputs, window) of flat input indices (-1 for
        padding), row k belonging to flat output index k."""
        C, H, W = shape
        idx = torch.arange(C * H * W, dtype=torch.float64).reshape(C, 1, H, W)
        if node.op_type == "MaxPool":
            a = _attrs(node)
            k, st = a["kernel_shape"], a.get("strides", [1, 1])
            p = list(a.get("pads", [0] * 4))
            ip = F.pad(idx, (p[1], p[3], p[0], p[2]), value=-1.0)
            u = F.unfold(ip, k, stride=st)  # (C, window, L)
            return u.transpose(1, 2).reshape(-1, u.shape[1]).long()
        if node.op_type == "GlobalMaxPool":
            return idx.reshape(C, H * W).long()
        axes = list(_attrs(node).get("axes", []))
        assert axes == [1], f"ReduceMax over {axes}"
        return idx.reshape(C, H * W).t().long()

    def gemm_after(self, value):
        """The head as the engine's CAM check reads it: value -> GlobalAveragePool -> Flatten* -> Gemm.
        Returns (W, b) of that Gemm or None."""
        cur = self.value_name(value)
        cons = self.consumers.get(cur, [])
        if len(cons) != 1 or cons[0].op_type != "GlobalAveragePool":
            return None
        cur = cons[0].output[0]
        while True:
            cons = self.consumers.get(cur, [])
            if len(cons) != 1:
                return None
            n = cons[0]
            if n.op_type in ("Flatten", "Reshape", "Squeeze"):
                cur = n.output[0]
                continue
            if n.op_type == "Gemm" and n.output[0] == self.output_name:
                a = _attrs(n)
                W = self.consts[n.input[1]]
                if not a.get("transB", 0):
                    W = W.t()
                b = self.consts[n.input[2]] if len(n.input) > 2 and n.input[2] else None
                return W, b
            return None

    # ---- the interpreter ---------------------------------------------------------------------------
    def run(self, x, relu="plain", keep=(), flip=None):
        """flip: {node name: [flat indices]} of Relu/Clip units whose backward takes the other side."""
        self._flip = flip or {}
        env = dict(self.consts)
        env[self.input_name] = x
        for n in self.nodes:
            ins = [env[i] if i else None for i in n.input]
            outs = self._op(n, ins, relu)
            for name, v in zip(n.output, outs):
                env[name] = v
        res = {k: env[self.value_name(k)] for k in keep if self.value_name(k) in env}
        if self.output_name in env:
            res["output"] = env[self.output_name]
        return res

    def _op(self, n, ins, relu):
        a = _attrs(n)
        t = n.op_type
        x = ins[0] if ins else None
        if t == "Conv":
            k = a.get("kernel_shape")
            pads = list(a.get("pads", [0] * 4))
            st = a.get("strides", [1, 1])
            dil = a.get("dilations", [1, 1])
            grp = a.get("group", 1)
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise NotImplementedError("auto_pad")
            b = ins[2] if len(ins) > 2 else None
            if pads[0] == pads[2] and pads[1] == pads[3]:
                return [F.conv2d(x, ins[1], b, st, (pads[0], pads[1]), dil, grp)]
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            return [F.conv2d(x, ins[1], b, st, 0, dil, grp)]
        if n.name in self._flip and t in ("Relu", "Clip"):
            lo, hi = 0.0, None
            if t == "Clip":
                lo = float(ins[1]) if len(ins) > 1 and ins[1] is not None else float(a.get("min", -np.inf))
                hi = float(ins[2]) if len(ins) > 2 and ins[2] is not None else float(a.get("max", np.inf))
            return [_ReluToggled.apply(x, lo, hi, list(self._flip[n.name]))]
        if t == "Relu":
            if relu == "guided":
                return [_ReluGuided.apply(x)]
            if relu == "deconv":
                return [_ReluDeconv.apply(x)]
            return [F.relu(x)]
        if t == "Clip":
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
            lo = float(lo) if lo is not None else None
            hi = float(hi) if hi is not None else None
            if lo is not None and hi is not None:
                return [F.hardtanh(x, lo, hi)]  # torch's ReLU6 is hardtanh(0, 6): same backward
            return [torch.clamp(x, lo, hi)]
        if t == "Sigmoid":
            return [torch.sigmoid(x)]
        if t in ("Add", "Sub", "Mul", "Div"):
            y = ins[1]
            return [{"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[t](x, y)]
        if t in ("MaxPool", "AveragePool"):
            k = a["kernel_shape"]
            st = a.get("strides", [1, 1])
            pads = list(a.get("pads", [0] * 4))
            ceil = bool(a.get("ceil_mode", 0))
            if t == "MaxPool":
                dil = a.get("dilations", [1, 1])
                if pads[0] == pads[2] and pads[1] == pads[3]:
                    return [F.max_pool2d(x, k, st, (pads[0], pads[1]), dil, ceil)]
                x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=-float("inf"))
                return [F.max_pool2d(x, k, st, 0, dil, ceil)]
            cip = bool(a.get("count_include_pad", 0))
            return [F.avg_pool2d(x, k, st, (pads[0], pads[1]), ceil, cip)]
        if t == "GlobalAveragePool":
            return [x.mean(dim=(2, 3), keepdim=True)]
        if t == "GlobalMaxPool":
            return [F.adaptive_max_pool2d(x, 1)]
        if t in ("ReduceMean", "ReduceMax"):
            axes = tuple(a.get("axes", range(x.dim())))
            kd = bool(a.get("keepdims", 1))
            if t == "ReduceMean":
                return [x.mean(dim=axes, keepdim=kd)]
            return [torch.amax(x, dim=axes, keepdim=kd)]
        if t == "Concat":
            return [torch.cat(ins, dim=a["axis"])]
        if t == "Flatten":
            ax = a.get("axis", 1)
            return [x.reshape(int(np.prod(x.shape[:ax])), -1)]
        if t == "Reshape":
            shape = [int(s) for s in ins[1].tolist()]
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return [x.reshape(shape)]
        if t == "Squeeze":
            axes = [int(v) for v in ins[1].tolist()] if len(ins) > 1 else a.get("axes")
            for ax in sorted(axes, reverse=True):
                x = x.squeeze(ax)
            return [x]
        if t == "Unsqueeze":
            axes = [int(v) for v in ins[1].tolist()] if len(ins) > 1 else a.get("axes")
            for ax in sorted(axes):
                x = x.unsqueeze(ax)
            return [x]
        if t == "Gemm":
            A, B = ins[0], ins[1]
            if a.get("transA", 0):
                A = A.t()
            if a.get("transB", 0):
                B = B.t()
            y = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2 and ins[2] is not None:
                y = y + a.get("beta", 1.0) * ins[2]
            return [y]
        if t == "MatMul":
            return [x @ ins[1]]
        if t == "BatchNormalization":
            return [F.batch_norm(x, ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))]
        if t in ("Identity", "Dropout"):
            return [x] + ([None] if len(n.output) > 1 else [])
        if t == "Constant":
            return [self._tensor(numpy_helper.to_array(a["value"]))]
        if t == "Pad":
            pads = [int(v) for v in ins[1].tolist()]
            r = len(pads) // 2
            tp = []
            for i in reversed(range(r)):
                tp += [pads[i], pads[i + r]]
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            val = float(ins[2]) if len(ins) > 2 and ins[2] is not None else 0.0
            return [F.pad(x, tp, mode=mode, value=val) if mode == "constant" else F.pad(x, tp, mode=mode)]
        raise NotImplementedError(f"ONNX op {t} ({n.name})")
