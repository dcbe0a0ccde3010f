"""Op conformance: activations (engine/ops/act.c, LogSoftmax in engine/ops/softmax.c) and the GELU / Mish
fusions of engine/fuse.c, against PyTorch float64 (forward and input gradient) through opcase.py.

Where torch exports the op, the case is a torch module at every opset where the export differs; ops or
attributes torch never writes (Softsign, ThresholdedRelu with alpha, LogSoftmax's coerced 2-D form on a
4-D tensor) are hand-built ONNX graphs with a reference written from the ONNX operator definition.
Fused chains are checked twice: the fused node must appear in `explaind inspect --json`, and its
numbers must match PyTorch's.
"""
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper

import opcase
from opcase import Lambda


def explaind():
    exe = os.environ.get("EXPLAIND") or str(opcase.REPO / "build" / "explaind")
    assert os.access(exe, os.X_OK), f"{exe} not built (make all)"
    return exe


def graph_ops(path):
    """The op column of `explaind inspect --json` for a model, without the harness's head: what the engine runs
    for the case after fusion."""
    p = subprocess.run([explaind(), "inspect", "--json", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [n["op"] for n in json.loads(p.stdout)["nodes"] if not n["name"].startswith(("/head/", "head_"))]


def assert_fused(case, opset, fused_op, gone):
    """The exported case file runs `fused_op` as one fused node and none of the ops in `gone`."""
    ops = graph_ops(opcase.ops_dir() / f"{case}.op{opset}.onnx")
    assert any(o.startswith(fused_op + " (fused") for o in ops), f"{case} opset {opset}: no fused {fused_op} in {ops}"
    left = [o for o in ops if o in gone]
    assert not left, f"{case} opset {opset}: ops of the chain were not fused: {left} (graph: {ops})"


def check_onnx(*args, unchecked=False, **kwargs):
    """opcase.check_onnx, except that graphs of opset 18 skip onnx.checker: Debian's onnx 1.12 knows opsets up
    to 17 only (it rejects ReduceMean with an axes input, for one). unchecked=True skips it always (ops newer
    than onnx 1.12: Gelu-20, Mish-18)."""
    real = onnx.checker.check_model

    def check(model, *a, **k):
        if not unchecked and max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17:
            real(model, *a, **k)

    onnx.checker.check_model = check
    try:
        return opcase.check_onnx(*args, **kwargs)
    finally:
        onnx.checker.check_model = real


def randomized(module, seed=0):
    """Parameters drawn at random (PReLU's 0.25 everywhere would hide a per-channel indexing error)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 0.8 - 0.2)
    return module


# ---- element-wise ops torch exports as one node ---------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_elu(opset):
    opcase.check_module("elu", nn.ELU(alpha=0.7), (3, 6, 6), opsets=(opset,))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_selu(opset):
    opcase.check_module("selu", nn.SELU(), (3, 6, 6), opsets=(opset,))


@pytest.mark.parametrize("opset", [12, 13, 17])
def test_celu(opset):
    opcase.check_module("celu", nn.CELU(alpha=0.6), (3, 6, 6), opsets=(opset,))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_prelu_per_channel(opset):
    opcase.check_module("prelu_channel", randomized(nn.PReLU(4)), (4, 5, 5), opsets=(opset,))


@pytest.mark.parametrize("opset", [9, 17])
def test_prelu_scalar(opset):
    opcase.check_module("prelu_scalar", randomized(nn.PReLU()), (3, 5, 5), opsets=(opset,))


def test_prelu_after_linear():
    """PReLU(C) on (N, C) features: the slope (C,) broadcasts along the last axis."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(27, 8), randomized(nn.PReLU(8), seed=3))
    opcase.check_module("prelu_linear", net, (3, 3, 3), opsets=(9, 13))


def test_prelu_onnx_broadcast_slopes():
    """ONNX PRelu: slope unidirectionally broadcast to X (Operators.md, PRelu-16): (H, W) and (C, 1, W) slopes."""
    g = torch.Generator().manual_seed(5)
    s_hw = (torch.rand(5, 6, generator=g) - 0.5).numpy().astype(np.float32)
    s_c1w = (torch.rand(3, 1, 6, generator=g) - 0.5).numpy().astype(np.float32)
    from onnx import numpy_helper

    def build(opset):
        return ([helper.make_node("PRelu", ["input", "s1"], ["t"]), helper.make_node("PRelu", ["t", "s2"], ["y"])],
                [numpy_helper.from_array(s_hw, "s1"), numpy_helper.from_array(s_c1w, "s2")])

    def ref(x, opset):
        t = torch.where(x > 0, x, torch.tensor(s_hw, dtype=torch.float64) * x)
        return torch.where(t > 0, t, torch.tensor(s_c1w, dtype=torch.float64) * t)

    opcase.check_onnx("prelu_broadcast", build, ref, (3, 5, 6), opsets=(9, 16))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_softplus(opset):
    opcase.check_module("softplus", nn.Softplus(), (3, 6, 6), opsets=(opset,), x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 4)


def test_softplus_beta():
    """beta != 1 exports as Mul -> Softplus -> Div."""
    opcase.check_module("softplus_beta", nn.Softplus(beta=2.0), (3, 6, 6), opsets=(13,))


def test_softsign():
    """Softsign (Operators.md): y = x / (1 + |x|). torch exports F.softsign as Abs/Add/Div, so the op is built by hand."""
    def build(opset):
        return [helper.make_node("Softsign", ["input"], ["y"])], []

    opcase.check_onnx("softsign", build, lambda x, o: x / (1 + x.abs()), (3, 6, 6), opsets=(9, 13))


@pytest.mark.parametrize("alpha", [None, 0.3])
def test_thresholdedrelu(alpha):
    """ThresholdedRelu (Operators.md): y = x > alpha ? x : 0, alpha default 1.0 (torch exports only threshold 0)."""
    a = 1.0 if alpha is None else alpha
    attrs = {} if alpha is None else {"alpha": alpha}

    def build(opset):
        return [helper.make_node("ThresholdedRelu", ["input"], ["y"], **attrs)], []

    # torch.where(x > a, x, 0): threshold_backward's choice at x == a (0) is the same
    opcase.check_onnx(f"thresholdedrelu_{a}", build, lambda x, o: torch.where(x > a, x, torch.zeros_like(x)),
                      (3, 6, 6), opsets=(10, 13))


def test_elu_selu_celu_attrs():
    """Non-default attributes torch never writes together (Operators.md: Elu alpha; Selu alpha, gamma; Celu alpha)."""
    def build(opset):
        return [helper.make_node("Elu", ["input"], ["a"], alpha=1.5),
                helper.make_node("Selu", ["a"], ["b"], alpha=1.2, gamma=0.9),
                helper.make_node("Celu", ["b"], ["y"], alpha=2.0)], []

    def ref(x, opset):
        a = torch.where(x > 0, x, 1.5 * torch.expm1(x))
        b = 0.9 * torch.where(a > 0, a, 1.2 * torch.expm1(a))
        return torch.clamp(b, min=0) + torch.clamp(2.0 * torch.expm1(b / 2.0), max=0)

    opcase.check_onnx("elu_selu_celu_attrs", build, ref, (3, 6, 6), opsets=(12, 17))


# ---- GELU and Mish: fused chains ---------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_gelu_erf_fused(opset):
    opcase.check_module("gelu_erf", nn.GELU(), (3, 6, 6), opsets=(opset,), x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)
    assert_fused("gelu_erf", opset, "Gelu", {"Erf", "Div", "Mul", "Add"})


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_gelu_tanh_fused(opset):
    opcase.check_module("gelu_tanh", nn.GELU(approximate="tanh"), (3, 6, 6), opsets=(opset,),
                        x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)
    assert_fused("gelu_tanh", opset, "Gelu", {"Tanh", "Mul", "Add"})


def test_gelu_tanh_written_with_pow_fused():
    """HuggingFace's NewGELU: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715·x³))) with torch.pow(x, 3) and ½x computed first."""
    k = (2.0 / np.pi) ** 0.5
    fn = Lambda(lambda x: 0.5 * x * (1.0 + torch.tanh(k * (x + 0.044715 * torch.pow(x, 3.0)))))
    opcase.check_module("gelu_tanh_pow", fn, (3, 6, 6), opsets=(13,), x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)
    assert_fused("gelu_tanh_pow", 13, "Gelu", {"Tanh", "Mul", "Add", "Pow"})


def test_gelu_erf_written_by_hand_fused():
    """x * 0.5 * (1 + erf(x / sqrt 2)) in another order than torch's symbolic: (x·½)·(1 + erf(x·(1/√2)))."""
    fn = Lambda(lambda x: (x * 0.5) * (1.0 + torch.erf(x * 0.7071067811865476)))
    opcase.check_module("gelu_erf_hand", fn, (3, 6, 6), opsets=(13,))
    assert_fused("gelu_erf_hand", 13, "Gelu", {"Erf", "Mul", "Add"})


@pytest.mark.parametrize("approximate", [None, "none", "tanh"])
def test_gelu_onnx_node(approximate):
    """ONNX Gelu-20 (Operators.md): y = 0.5 x (1 + erf(x/√2)), or 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))) with
    approximate="tanh". The loader stops at opset 18, so the node is written in an opset-18 file (onnx 1.12 does
    not know the op: no checker); the op is what the fused chains run."""
    attrs = {} if approximate is None else {"approximate": approximate}

    def build(opset):
        return [helper.make_node("Gelu", ["input"], ["y"], **attrs)], []

    check_onnx(f"gelu_node_{approximate}", build, lambda x, o: F.gelu(x, approximate=approximate or "none"),
               (3, 6, 6), opsets=(18,), unchecked=True, x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)


def test_mish_onnx_node():
    """ONNX Mish-18 (Operators.md): y = x · tanh(softplus(x))."""
    def build(opset):
        return [helper.make_node("Mish", ["input"], ["y"])], []

    check_onnx("mish_node", build, lambda x, o: F.mish(x), (3, 6, 6), opsets=(18,), unchecked=True,
               x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_mish_fused(opset):
    opcase.check_module("mish", nn.Mish(), (3, 6, 6), opsets=(opset,), x=opcase.make_input((3, 6, 6), 2, 1).numpy() * 3)
    assert_fused("mish", opset, "Mish", {"Softplus", "Tanh", "Mul"})


def test_not_gelu_is_not_fused():
    """x·sigmoid(1.702x) ("quick GELU") and tanh-GELU with a wrong constant are not GELU: they stay as they are."""
    fn = Lambda(lambda x: torch.cat([x * torch.sigmoid(1.702 * x),
                                     0.5 * x * (1 + torch.tanh(0.7 * (x + 0.044715 * x * x * x)))], 1))
    opcase.check_module("not_gelu", fn, (3, 6, 6), opsets=(13,))
    ops = graph_ops(opcase.ops_dir() / "not_gelu.op13.onnx")
    assert not any(o.startswith(("Gelu", "Mish")) for o in ops), ops
    assert "Tanh" in ops, ops


def test_gelu_chain_with_outside_use_is_not_fused():
    """An intermediate value of the chain used elsewhere (here erf(x/√2)) keeps the chain unfused, and correct."""
    fn = Lambda(lambda x: torch.cat([0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
                                     torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))], 1))
    opcase.check_module("gelu_shared", fn, (3, 6, 6), opsets=(13,))
    ops = graph_ops(opcase.ops_dir() / "gelu_shared.op13.onnx")
    assert not any(o.startswith("Gelu") for o in ops), ops


def test_fused_gelu_names_still_resolve():
    """cam_layer / value names of nodes folded into a fused Gelu resolve to the fused node's output."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(approximate="tanh"))
    opcase.check_module("gelu_names", net, (3, 6, 6), opsets=(13,))
    path = opcase.ops_dir() / "gelu_names.op13.onnx"
    m = onnx.load(str(path))
    tanh = next(n for n in m.graph.node if n.op_type == "Tanh")
    last = [n for n in m.graph.node if n.name.startswith("/op/op.1/")][-1]
    x = opcase.make_input((3, 6, 6), 1, 1).numpy()
    for alt in (tanh.name, tanh.output[0]):
        rc, info, _, _, err = opcase.run_engine(path, x, extra=["--value", last.name, "--value-alt", alt])
        assert rc == 0, err
        assert info.get("value_alt_same") is True, (alt, info)


# ---- LogSoftmax -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_logsoftmax_inside(opset):
    """LogSoftmax over the features (not the model's last op: the head follows)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.LogSoftmax(dim=1))
    opcase.check_module("logsoftmax_inside", net, (3, 4, 4), opsets=(opset,))


def test_logsoftmax_channels():
    """Opset 13 form: along one axis (here the channels of NCHW)."""
    opcase.check_module("logsoftmax_channels", nn.LogSoftmax(dim=1), (5, 3, 4), opsets=(13, 17))


def test_logsoftmax_coerced_2d():
    """LogSoftmax-11 (Operators.md): the input is coerced to 2-D at axis; here axis=1 on (N, C, H, W) normalizes
    all C·H·W values of an image together. Opset 13 (axis=1) normalizes along C only."""
    def build(opset):
        return [helper.make_node("LogSoftmax", ["input"], ["y"], axis=1)], []

    def ref(x, opset):
        if opset < 13:
            return F.log_softmax(x.reshape(x.shape[0], -1), 1).reshape(x.shape)
        return F.log_softmax(x, 1)

    opcase.check_onnx("logsoftmax_coerced", build, ref, (3, 4, 5), opsets=(9, 11, 13))


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_final_logsoftmax_explains_logits(opset):
    """A model ending in LogSoftmax is explained like one ending in Softmax: the engine's output is the logits
    before it (so the gradient is d logit / d x, not d log-probability / d x)."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 6)).eval()
    net = nn.Sequential(body, nn.LogSoftmax(dim=1)).eval()
    x = opcase.make_input((3, 7, 7), 3, 1).numpy()
    path = opcase.ops_dir() / f"final_logsoftmax.op{opset}.onnx"
    torch.onnx.export(net, torch.tensor(x, dtype=torch.float32), str(path), opset_version=opset,
                      input_names=["input"], output_names=["logprobs"], dynamic_axes={"input": {0: "N"}})
    eng = opcase.run_engine(path, x)
    import copy
    opcase._compare("final_logsoftmax", opset, x, eng, copy.deepcopy(body).double(), 1e-5, 1e-5, "")
    ops = graph_ops(path)
    assert "LogSoftmax" not in ops, ops


# ---- refusals -------------------------------------------------------------------------------------------------
def _model(nodes, inits, in_shape, out_shape, opset):
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_prelu_slope_over_batch_is_refused():
    from onnx import numpy_helper
    s = numpy_helper.from_array(np.full((2, 3, 1, 1), 0.1, np.float32), "s")
    m = _model([helper.make_node("PRelu", ["input", "s"], ["y"])], [s], [3, 4, 4], ["N", 3, 4, 4], 13)
    opcase.check_refused("prelu_batch_slope", m, (3, 4, 4), r"slope varies over the batch|slope dimension 0")


def test_prelu_slope_activation_is_refused():
    m = _model([helper.make_node("Relu", ["input"], ["s"]), helper.make_node("PRelu", ["input", "s"], ["y"])], [],
               [3, 4, 4], ["N", 3, 4, 4], 13)
    opcase.check_refused("prelu_act_slope", m, (3, 4, 4), r"PRelu.*must be a constant")


def test_logsoftmax_over_batch_is_refused():
    m = _model([helper.make_node("LogSoftmax", ["input"], ["y"], axis=0)], [], [3, 4, 4], ["N", 3, 4, 4], 13)
    opcase.check_refused("logsoftmax_batch", m, (3, 4, 4), r"LogSoftmax.*batch")


def test_gelu_bad_approximate_is_refused():
    n = helper.make_node("Gelu", ["input"], ["y"], approximate="fast")
    m = _model([n, helper.make_node("Flatten", ["y"], ["z"])], [], [3, 4, 4], ["N", 48], 13)
    m.graph.output[0].name = "z"
    opcase.check_refused("gelu_bad_approx", m, (3, 4, 4), r"approximate is 'fast'")
