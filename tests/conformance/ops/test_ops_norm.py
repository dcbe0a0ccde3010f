"""Op conformance: normalizations and norms (engine/ops/layernorm.c, instancenorm.c, lp.c, reduce.c) and the
LayerNorm fusion of engine/fuse.c, against PyTorch float64 (forward and input gradient) through opcase.py;
then real models that need them: torchvision's convnext_tiny (decomposed LayerNorm at opset 13, the
LayerNormalization op at 17) and a small network mixing PReLU, ELU, both GELUs, InstanceNorm2d and a final
LogSoftmax.

Torch exports nn.LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add] below opset 17 and as
LayerNormalization from 17; both must run (the first as one fused node). Opset 18 forms (Reduce* axes as an
input) and attributes torch never writes are hand-built ONNX graphs with references written from the ONNX
operator definitions.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import opcase
from test_ops_act import Lambda, assert_fused, check_onnx, graph_ops, randomized


def affine(module, seed=0):
    """Random scale and bias (the defaults, ones and zeros, would hide an indexing error)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.rand(p.shape, generator=g) * (1.0 if "weight" in name else 0.6) + (0.5 if "weight" in name else -0.3))
    return module


LN_CHAIN = {"ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Mul", "Add"}

# ---- LayerNorm ------------------------------------------------------------------------------------------------
LN_SHAPES = {"last": [7], "hw": [5, 7], "chw": [3, 5, 7]}


@pytest.mark.parametrize("opset", [9, 11, 13, 16])
@pytest.mark.parametrize("which", list(LN_SHAPES))
def test_layernorm_decomposed_is_fused(which, opset):
    case = f"layernorm_{which}"
    opcase.check_module(case, affine(nn.LayerNorm(LN_SHAPES[which], eps=1e-4)), (3, 5, 7), opsets=(opset,))
    assert_fused(case, opset, "LayerNormalization", LN_CHAIN)


@pytest.mark.parametrize("which", list(LN_SHAPES))
def test_layernorm_op17(which):
    case = f"layernorm17_{which}"
    opcase.check_module(case, affine(nn.LayerNorm(LN_SHAPES[which])), (3, 5, 7), opsets=(17,))
    assert graph_ops(opcase.ops_dir() / f"{case}.op17.onnx") == ["LayerNormalization"]


def test_layernorm_without_affine_is_fused():
    """elementwise_affine=False: the chain ends at the Div (torch 1.13 cannot export this at opset 17)."""
    opcase.check_module("layernorm_noaffine", nn.LayerNorm([5, 7], elementwise_affine=False), (3, 5, 7), opsets=(13,))
    assert_fused("layernorm_noaffine", 13, "LayerNormalization", LN_CHAIN)


def test_layernorm_on_features():
    """LayerNorm on (N, F) features after a Linear, as in a transformer-style head."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), affine(nn.LayerNorm(16)), nn.ReLU())
    opcase.check_module("layernorm_features", net, (3, 4, 4), opsets=(13, 17))
    assert_fused("layernorm_features", 13, "LayerNormalization", LN_CHAIN)


def test_layernorm_ill_conditioned():
    """A large mean over a small spread (|μ| / σ = 1e3): statistics in double keep the engine near float64."""
    x = opcase.make_input((4, 5, 7), 2, 1).numpy() * 0.05 + 50.0
    opcase.check_module("layernorm_offset", affine(nn.LayerNorm([7])), (4, 5, 7), opsets=(13, 17), x=x,
                        tol_fwd=1e-4, tol_grad=1e-4,
                        why="x - μ loses 3 decimal digits in float32 input; PyTorch float32 is further off")


class LayerNormChannelsFirst(nn.Module):
    """ConvNeXt's original LayerNorm with data_format="channels_first" (facebookresearch/ConvNeXt, models/convnext.py)."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_layernorm_channels_first_is_fused(opset):
    """Normalizing the channels of NCHW (a block that ends before the last axis): one fused node."""
    net = nn.Sequential(nn.Conv2d(3, 6, 3), affine(LayerNormChannelsFirst(6)))
    opcase.check_module("layernorm_cfirst", net, (3, 7, 8), opsets=(opset,))
    assert_fused("layernorm_cfirst", opset, "LayerNormalization", LN_CHAIN)


class LayerNorm2dPermute(nn.Module):
    """torchvision's LayerNorm2d (models/convnext.py): permute to NHWC, LayerNorm over C, permute back."""

    def __init__(self, c):
        super().__init__()
        self.ln = affine(nn.LayerNorm(c, eps=1e-6))

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("opset", [13, 17])
def test_layernorm2d_permute(opset):
    net = nn.Sequential(nn.Conv2d(3, 6, 3), LayerNorm2dPermute(6))
    opcase.check_module("layernorm2d_permute", net, (3, 7, 8), opsets=(opset,))
    if opset < 17:
        assert_fused("layernorm2d_permute", opset, "LayerNormalization", LN_CHAIN)


def test_layernorm_scale_along_other_axes_stays_separate():
    """A Mul after the normalization whose constant varies along a non-normalized axis (here per channel after a
    LayerNorm over W) is not LayerNorm's scale: the chain up to the Div is fused, the Mul and Add stay."""
    class LnThenChannelAffine(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(3)
            self.ln = nn.LayerNorm(7, elementwise_affine=False)
            self.w = nn.Parameter(torch.rand(3, 1, 1, generator=g) + 0.5)
            self.b = nn.Parameter(torch.rand(3, 1, 1, generator=g) - 0.5)

        def forward(self, x):
            return self.ln(x) * self.w + self.b

    net = LnThenChannelAffine()
    opcase.check_module("layernorm_chscale", net, (3, 5, 7), opsets=(13,))
    ops = graph_ops(opcase.ops_dir() / "layernorm_chscale.op13.onnx")
    assert ops == ["LayerNormalization (fused from 7 nodes)", "Mul", "Add"], ops


def _ln_chain(opset, x="input", axes=(-1,), square="Pow", inverse="Div", eps=1e-5, scale=None, bias=None):
    """The decomposition by hand (opset 18: ReduceMean takes axes as an input)."""
    nodes, inits = [], []

    def rmean(i, o):
        if opset >= 18:
            name = f"{o}_axes"
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), name))
            return helper.make_node("ReduceMean", [i, name], [o], keepdims=1)
        return helper.make_node("ReduceMean", [i], [o], axes=list(axes), keepdims=1)

    inits += [numpy_helper.from_array(np.array(2.0, np.float32), "two"), numpy_helper.from_array(np.array(eps, np.float32), "eps"),
              numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes += [rmean(x, "mu"), helper.make_node("Sub", [x, "mu"], ["d"])]
    nodes.append(helper.make_node("Pow", ["d", "two"], ["d2"]) if square == "Pow" else helper.make_node("Mul", ["d", "d"], ["d2"]))
    nodes += [rmean("d2", "var"), helper.make_node("Add", ["eps", "var"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"])]
    out = "xh"
    if inverse == "Div":
        nodes.append(helper.make_node("Div", ["d", "sd"], ["xh"]))
    else:
        nodes += [helper.make_node("Reciprocal", ["sd"], ["r"]) if inverse == "Reciprocal"
                  else helper.make_node("Div", ["one", "sd"], ["r"]), helper.make_node("Mul", ["r", "d"], ["xh"])]
    if scale is not None:
        inits.append(numpy_helper.from_array(scale, "scale"))
        nodes.append(helper.make_node("Mul", ["scale", out], ["xs"]))
        out = "xs"
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "bias"))
        nodes.append(helper.make_node("Add", [out, "bias"], ["xb"]))
        out = "xb"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    return nodes, inits


def _ln_ref(x, dims, eps, scale=None, bias=None):
    """LayerNormalization (Operators.md, LayerNormalization-17): mean and biased variance over `dims`."""
    mu = x.mean(dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dims, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    if scale is not None:
        y = y * torch.tensor(scale, dtype=torch.float64)
    if bias is not None:
        y = y + torch.tensor(bias, dtype=torch.float64)
    return y


@pytest.mark.parametrize("variant", [("Pow", "Div"), ("Mul", "Reciprocal"), ("Pow", "OneDiv")])
def test_layernorm_chain_variants_are_fused(variant):
    """The same chain spelled differently (x·x for the square, 1/σ times the difference) at opsets 13 and 18."""
    square, inverse = variant
    g = np.random.default_rng(4)
    scale, bias = (g.random(7) + 0.5).astype(np.float32), (g.random((1, 7)) - 0.5).astype(np.float32)
    case = f"lnchain_{square}_{inverse}"
    check_onnx(case, lambda o: _ln_chain(o, square=square, inverse=inverse, eps=1e-3, scale=scale, bias=bias),
                      lambda x, o: _ln_ref(x, (3,), 1e-3, scale, bias), (3, 5, 7), opsets=(13, 18))
    for opset in (13, 18):
        assert_fused(case, opset, "LayerNormalization", LN_CHAIN | {"Reciprocal"})


@pytest.mark.parametrize("axis", [1, 2, -1, -2])
def test_layernormalization_axis_attrs(axis):
    """LayerNormalization-17 with axis, epsilon, a broadcast Scale of lower rank and no B, at opsets 17 and 18."""
    shape = (4, 5, 6)
    dims = tuple(range(axis if axis > 0 else axis + 4, 4))
    g = np.random.default_rng(7)
    sc_shape = tuple(1 if k == 0 else shape[d - 1] for k, d in enumerate(dims))  # first normalized dim broadcast
    scale = (g.random(sc_shape) + 0.5).astype(np.float32)

    def build(opset):
        return ([helper.make_node("LayerNormalization", ["input", "scale"], ["y"], axis=axis, epsilon=1e-2)],
                [numpy_helper.from_array(scale, "scale")])

    check_onnx(f"layernormalization_axis{axis}", build, lambda x, o: _ln_ref(x, dims, 1e-2, scale),
                      shape, opsets=(17, 18))


def _refuse_model(nodes, inits, in_shape, opset, outputs=None):
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(in_shape))],
                          outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_layernormalization_over_batch_is_refused():
    sc = numpy_helper.from_array(np.ones((2, 3, 4, 4), np.float32), "s")
    m = _refuse_model([helper.make_node("LayerNormalization", ["input", "s"], ["y"], axis=0)], [sc], (3, 4, 4), 17)
    opcase.check_refused("layernorm_axis0", m, (3, 4, 4), r"LayerNormalization.*batch")


def test_layernormalization_mean_output_is_refused():
    sc = numpy_helper.from_array(np.ones(4, np.float32), "s")
    nodes = [helper.make_node("LayerNormalization", ["input", "s"], ["t", "mean"], axis=-1),
             helper.make_node("Add", ["t", "mean"], ["y"])]
    m = _refuse_model(nodes, [sc], (3, 4, 4), 17)
    opcase.check_refused("layernorm_mean_out", m, (3, 4, 4), r"only the first output")


def test_layernormalization_bad_scale_is_refused():
    sc = numpy_helper.from_array(np.ones(3, np.float32), "s")  # C, but the normalized axis is W
    m = _refuse_model([helper.make_node("LayerNormalization", ["input", "s"], ["y"], axis=-1)], [sc], (3, 4, 4), 17)
    opcase.check_refused("layernorm_bad_scale", m, (3, 4, 4), r"Scale and B must be")


# ---- InstanceNorm, GroupNorm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_instancenorm2d(opset):
    opcase.check_module("instancenorm2d", nn.InstanceNorm2d(4), (4, 5, 6), opsets=(opset,))


@pytest.mark.parametrize("opset", [9, 17])
def test_instancenorm2d_affine(opset):
    opcase.check_module("instancenorm2d_affine", affine(nn.InstanceNorm2d(4, affine=True, eps=1e-3)), (4, 5, 6),
                        opsets=(opset,))


def test_instancenorm1d():
    opcase.check_module("instancenorm1d", affine(nn.InstanceNorm1d(4, affine=True)), (4, 9), opsets=(13,))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_groupnorm(opset):
    """nn.GroupNorm exports as Reshape (N, G, -1) -> InstanceNormalization -> Reshape -> Mul -> Add."""
    opcase.check_module("groupnorm", affine(nn.GroupNorm(3, 6)), (6, 4, 5), opsets=(opset,))


def test_instancenorm_onnx_epsilon():
    """InstanceNormalization (Operators.md): y = scale (x - mean) / sqrt(var + epsilon) + B over the spatial dims."""
    g = np.random.default_rng(2)
    s, b = (g.random(3) + 0.5).astype(np.float32), (g.random(3) - 0.5).astype(np.float32)

    def build(opset):
        return ([helper.make_node("InstanceNormalization", ["input", "s", "b"], ["y"], epsilon=0.05)],
                [numpy_helper.from_array(s, "s"), numpy_helper.from_array(b, "b")])

    check_onnx("instancenorm_eps", build,
                      lambda x, o: _ln_ref(x, (2, 3), 0.05, s.reshape(3, 1, 1), b.reshape(3, 1, 1)),
                      (3, 4, 5), opsets=(9, 13))


# ---- Lp norms --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [1, -1])
def test_lpnormalization(p, axis):
    """LpNormalization (Operators.md): y = x / ‖x‖ₚ along axis (no ε)."""
    def build(opset):
        return [helper.make_node("LpNormalization", ["input"], ["y"], axis=axis, p=p)], []

    check_onnx(f"lpnorm_p{p}_axis{axis}", build, lambda x, o: x / x.norm(p, dim=axis, keepdim=True),
                      (4, 5, 6), opsets=(9, 13))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_globallppool(p):
    """GlobalLpPool-2 (Operators.md): y = (Σ_spatial |x|ᵖ)^(1/p), output (N, C, 1, 1)."""
    def build(opset):
        return [helper.make_node("GlobalLpPool", ["input"], ["y"], p=p)], []

    check_onnx(f"globallppool_p{p}", build,
                      lambda x, o: torch.linalg.vector_norm(x, p, dim=(2, 3), keepdim=True), (4, 5, 6), opsets=(9, 13))


def test_globallppool_default_p():
    def build(opset):
        return [helper.make_node("GlobalLpPool", ["input"], ["y"])], []

    check_onnx("globallppool_default", build, lambda x, o: torch.linalg.vector_norm(x, 2, dim=(2, 3), keepdim=True),
                      (4, 5, 6), opsets=(13,))


# ---- reductions ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_reducel2_torch_norm(opset):
    opcase.check_module("reducel2", Lambda(lambda x: torch.norm(x, p=2, dim=1, keepdim=True)), (4, 5, 6), opsets=(opset,))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_reducelogsumexp_torch(opset):
    opcase.check_module("reducelse", Lambda(lambda x: torch.logsumexp(x * 3, dim=1, keepdim=True)), (4, 5, 6),
                        opsets=(opset,))


def test_logsumexp_large_values():
    """Values around 100: exp overflows float32 without the max subtraction."""
    x = opcase.make_input((4, 5, 6), 2, 1).numpy() + 100.0
    opcase.check_module("reducelse_large", Lambda(lambda x: torch.logsumexp(x, dim=(2, 3))), (4, 5, 6), opsets=(13,), x=x)


REDUCE_REFS = {
    "ReduceMean": lambda x, d, k: x.mean(d, keepdim=k),
    "ReduceSum": lambda x, d, k: x.sum(d, keepdim=k),
    "ReduceMax": lambda x, d, k: x.amax(d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.linalg.vector_norm(x, 2, dim=d, keepdim=k),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
}


@pytest.mark.parametrize("op", list(REDUCE_REFS))
@pytest.mark.parametrize("axes,keep", [((2, 3), 1), ((-1,), 0), ((1, 2), 0)])
def test_reduce_axes_input_opset18(op, axes, keep):
    """Reduce*-18 (Operators.md): axes is an optional int64 input; keepdims."""
    def build(opset):
        if opset >= 18 or (op == "ReduceSum" and opset >= 13):
            return ([helper.make_node(op, ["input", "axes"], ["y"], keepdims=keep)],
                    [numpy_helper.from_array(np.array(axes, np.int64), "axes")])
        return [helper.make_node(op, ["input"], ["y"], axes=list(axes), keepdims=keep)], []

    check_onnx(f"{op}_{'_'.join(map(str, axes))}_k{keep}", build,
                      lambda x, o: REDUCE_REFS[op](x, axes, bool(keep)), (4, 5, 6), opsets=(13, 18))


@pytest.mark.parametrize("op", list(REDUCE_REFS))
def test_reduce_noop_with_empty_axes(op):
    """noop_with_empty_axes=1 and no axes: the identity (ReduceSum from opset 13, all of them from 18)."""
    def build(opset):
        return [helper.make_node(op, ["input"], ["y"], keepdims=1, noop_with_empty_axes=1)], []

    check_onnx(f"{op}_noop", build, lambda x, o: x, (4, 5, 6), opsets=(13,) if op == "ReduceSum" else (18,))


def test_reduce_all_axes_is_refused():
    m = _refuse_model([helper.make_node("ReduceL2", ["input"], ["y"], keepdims=1)], [], (3, 4, 4), 18)
    opcase.check_refused("reducel2_all", m, (3, 4, 4), r"ReduceL2.*all axes.*batch")


def test_reduce_axes_attribute_at_opset18_is_refused():
    m = _refuse_model([helper.make_node("ReduceMean", ["input"], ["y"], axes=[2, 3])], [], (3, 4, 4), 18)
    opcase.check_refused("reducemean_attr18", m, (3, 4, 4), r"ReduceMean.*axes must be a constant int64 input")


def test_lpnormalization_over_batch_is_refused():
    m = _refuse_model([helper.make_node("LpNormalization", ["input"], ["y"], axis=0)], [], (3, 4, 4), 13)
    opcase.check_refused("lpnorm_axis0", m, (3, 4, 4), r"LpNormalization.*batch")


# ---- real models -------------------------------------------------------------------------------------------------
def _convnext_tiny():
    """torchvision's convnext_tiny, random weights, made sensitive: layer_scale is 1e-6 at init (the residual
    branches would vanish from the logits), so it and every LayerNorm's scale and bias are drawn at random."""
    import torchvision
    torch.manual_seed(0)
    m = torchvision.models.convnext_tiny(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.1)
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(mod.bias.shape, generator=g) * 0.4 - 0.2)
    return m


@pytest.mark.parametrize("opset", [13, 17])
def test_convnext_tiny(opset):
    """convnext_tiny at 64x64: logits within 1e-4 (relative to max |logit|), input gradient within 1e-3 relative L2
    of PyTorch float64; LayerNorm fused at opset 13, the LayerNormalization op at 17; GELU fused at both."""
    x = opcase.make_input((3, 64, 64), 2, 1).numpy()
    opcase.check_module("convnext_tiny", _convnext_tiny(), (3, 64, 64), opsets=(opset,), x=x, tol_fwd=1e-4,
                        tol_grad=1e-3, why="a 50-layer network in float32")
    ops = graph_ops(opcase.ops_dir() / f"convnext_tiny.op{opset}.onnx")
    m = _convnext_tiny()
    n_ln = sum(isinstance(mod, nn.LayerNorm) for mod in m.modules())
    n_gelu = sum(isinstance(mod, nn.GELU) for mod in m.modules())
    assert (n_ln, n_gelu) == (23, 18)
    assert sum(o.startswith("LayerNormalization") for o in ops) == n_ln, ops
    assert sum(o.startswith("Gelu (fused") for o in ops) == n_gelu, ops
    assert not {"Erf", "Pow", "Sqrt", "ReduceMean"} & set(ops), ops


class MixedNet(nn.Module):
    """PReLU, ELU, GELU (erf and tanh), InstanceNorm2d, ending in LogSoftmax."""

    def __init__(self):
        super().__init__()
        self.c1, self.a1 = nn.Conv2d(3, 8, 3, padding=1), randomized(nn.PReLU(8), 2)
        self.c2, self.a2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ELU(0.8)
        self.n2 = affine(nn.InstanceNorm2d(8, affine=True), 4)
        self.a3 = nn.GELU()
        self.c3, self.a4 = nn.Conv2d(8, 12, 3, padding=1), nn.GELU(approximate="tanh")
        self.fc = nn.Linear(12, 5)

    def logits(self, x):
        x = self.a1(self.c1(x))
        x = self.a3(self.n2(self.a2(self.c2(x))))
        x = self.a4(self.c3(x))
        return self.fc(x.mean((2, 3)))

    def forward(self, x):
        return F.log_softmax(self.logits(x), 1)


@pytest.mark.parametrize("opset", [12, 13, 17])
def test_mixed_model_with_final_logsoftmax(opset):
    """The final LogSoftmax is stripped: the engine's output is the logits before it, compared with float64 torch."""
    torch.manual_seed(0)
    net = MixedNet().eval()
    x = opcase.make_input((3, 16, 16), 3, 1).numpy()
    path = opcase.ops_dir() / f"mixed_logsoftmax.op{opset}.onnx"
    torch.onnx.export(net, torch.tensor(x, dtype=torch.float32), str(path), opset_version=opset, input_names=["input"],
                      output_names=["logprobs"], dynamic_axes={"input": {0: "N"}})
    net64 = copy.deepcopy(net).double()
    net32 = copy.deepcopy(net)
    opcase._compare("mixed_logsoftmax", opset, x, opcase.run_engine(path, x), net64.logits, 1e-5, 1e-5, "",
                    ref_fn32=net32.logits)
    ops = graph_ops(path)
    for op in ("PRelu", "Elu", "InstanceNormalization", "Gelu (fused from 5 nodes)", "Gelu (fused from 9 nodes)"):
        assert op in ops, (op, ops)
    assert "LogSoftmax" not in ops and "Erf" not in ops and "Tanh" not in ops, ops
