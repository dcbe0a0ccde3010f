"""One op (or a small module) through the engine, against PyTorch float64: the op conformance harness.

Every case is a network  op(x) -> Flatten -> linear head (seeded, 6 classes)  so that the engine sees an
image classifier (it needs an (N, classes) output) and so that the gradient the engine computes for
each image, d logit[argmax] / d x, is a random projection of the op's Jacobian: every output element
of the op contributes, with a weight the op cannot predict.

Two ways to state a case:
  check_module(name, module, shape, opsets)     a torch module; torch.onnx.export writes the ONNX graph
                                                for each opset, the reference is the same module in float64
                                                (torch autograd).  Use this whenever torch exports the op.
  check_onnx(name, build, ref, shape, opsets)   an ONNX graph built with onnx.helper (attributes torch never
                                                exports: Resize modes, ConvTranspose output_shape, ...) and
                                                a float64 torch reference function written from the ONNX
                                                operator specification (cite the section in the case).
Both compare, for a batch of images:
  logits      max|engine - ref| <= tol_fwd * max|ref|      (float64 reference)
  input grad  ||engine - ref|| / ||ref|| <= tol_grad        (float64 reference, same target per image)
and record PyTorch float32's own error against float64 next to the engine's (check_module only), so a
tolerance can be judged against the yardstick.  Defaults are tight (1e-5): one op in float32 should be
within a few ulps; a case that needs more says why in its `why` argument.

The engine side is build/tools/conformance_run (tests/conformance/conformance_run.c), the same tool
the model conformance suite uses.  Files go to $OPS_DIR (default <repo>/build/ops).

Refusals: check_refused(name, build, shape, pattern) asserts that loading fails with exit status 2 and an
"error: ..." message matching the pattern (ops that would mix the images of a batch, for instance).
"""
import atexit
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CLASSES = 6
RESULTS = []   # (case, opset, metric, engine_err, torch32_err, tol) for the summary printed at the end


class Lambda(nn.Module):
    """A module around a function, for cases that are one expression (torch.onnx exports the
    graph the function traces)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def ops_dir():
    d = Path(os.environ.get("OPS_DIR", REPO / "build" / "ops")).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


def engine_tool():
    env = os.environ.get("CONFORMANCE_RUN")
    exe = Path(env) if env else REPO / "build" / "tools" / "conformance_run"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise AssertionError(f"engine tool not found: {exe} (make build/tools/conformance_run)")
    return str(exe)


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def max_rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


class Head(nn.Module):
    """Flatten + a seeded linear layer to CLASSES outputs (the classifier the engine expects)."""

    def __init__(self, features, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(CLASSES, features, generator=g) / features ** 0.5)
        self.b = nn.Parameter(torch.randn(CLASSES, generator=g) * 0.1)

    def forward(self, y):
        return torch.flatten(y, 1) @ self.w.t() + self.b


class WithHead(nn.Module):
    def __init__(self, op, head):
        super().__init__()
        self.op, self.head = op, head

    def forward(self, x):
        return self.head(self.op(x))


def make_input(shape, n, seed, low=None, high=None):
    g = torch.Generator().manual_seed(seed)
    if low is not None:
        return torch.rand((n,) + tuple(shape), generator=g, dtype=torch.float64) * (high - low) + low
    return torch.randn((n,) + tuple(shape), generator=g, dtype=torch.float64)


def run_engine(onnx_path, x, extra=()):
    """conformance_run on x (float64 array n x ...); returns (rc, info, logits, input_grad, stderr)."""
    d = onnx_path.parent
    prefix = d / (onnx_path.stem + ".eng")
    xin = d / (onnx_path.stem + ".input.f32")
    np.ascontiguousarray(x, dtype="<f4").tofile(xin)
    n = x.shape[0]
    cmd = [engine_tool(), "--model", str(onnx_path), "--input", str(xin), "--n", str(n), "--out", str(prefix),
           *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return p.returncode, None, None, None, p.stderr
    info = next(json.loads(l) for l in p.stdout.splitlines() if l.strip().startswith("{"))
    logits = np.fromfile(f"{prefix}.batch.logits.f32", dtype="<f4").astype(np.float64).reshape(n, -1)
    grad = np.fromfile(f"{prefix}.batch.input_grad.f32", dtype="<f4").astype(np.float64).reshape(x.shape)
    return 0, info, logits, grad, p.stderr


def _reference(fn64, x64, targets):
    x = torch.tensor(x64, dtype=torch.float64, requires_grad=True)
    y = fn64(x)
    sel = y[torch.arange(y.shape[0]), torch.tensor(targets)].sum()
    (g,) = torch.autograd.grad(sel, x)
    return y.detach().numpy(), g.numpy()


def _compare(case, opset, x, eng, ref_fn64, tol_fwd, tol_grad, why, ref_fn32=None):
    rc, info, logits, grad, stderr = eng
    assert rc == 0, f"{case} opset {opset}: the engine refused or failed (exit {rc}):\n{stderr.strip()[-1500:]}"
    targets = list(info["targets"])
    ref_logits, ref_grad = _reference(ref_fn64, x, targets)
    assert list(np.argmax(ref_logits, 1)) == targets, \
        f"{case} opset {opset}: argmax targets differ from float64 torch: {targets} vs {list(np.argmax(ref_logits, 1))}"
    e_fwd, e_grad = max_rel(logits, ref_logits), rel_l2(grad, ref_grad)
    t_fwd = t_grad = None
    if ref_fn32 is not None:
        x32 = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        y32 = ref_fn32(x32)
        (g32,) = torch.autograd.grad(y32[torch.arange(y32.shape[0]), torch.tensor(targets)].sum(), x32)
        t_fwd = max_rel(y32.detach().double().numpy(), ref_logits)
        t_grad = rel_l2(g32.double().numpy(), ref_grad)
    RESULTS.append((case, opset, "logits", e_fwd, t_fwd, tol_fwd))
    RESULTS.append((case, opset, "input_grad", e_grad, t_grad, tol_grad))
    note = f" ({why})" if why else ""
    assert e_fwd <= tol_fwd, f"{case} opset {opset}: logits max rel error {e_fwd:.3g} > {tol_fwd:g}{note}"
    assert e_grad <= tol_grad, f"{case} opset {opset}: input grad rel L2 {e_grad:.3g} > {tol_grad:g}{note}"
    return e_fwd, e_grad


def check_module(case, module, shape, opsets=(13,), n=2, seed=0, tol_fwd=1e-5, tol_grad=1e-5, why="",
                 input_range=None, x=None, export_kwargs=None):
    """Export module (+ head) at each opset, run the engine, compare with the float64 module.
    shape: per-image input shape (C, H, W) or any rank >= 2 the engine accepts.
    input_range: (low, high) for uniform inputs (e.g. strictly positive for Log/Sqrt); default N(0, 1).
    Returns {opset: (logits_err, grad_err)}."""
    torch.manual_seed(seed)
    module = module.float().eval()
    if x is None:
        x = make_input(shape, n, seed + 1, *(input_range or (None, None))).numpy()
    with torch.no_grad():
        feats = module(torch.tensor(x[:1], dtype=torch.float32)).numel()
    net32 = WithHead(module, Head(feats, seed + 2)).eval()
    net64 = copy.deepcopy(net32).double()     # the reference: the same parameters in float64
    out = {}
    for opset in opsets:
        path = ops_dir() / f"{case}.op{opset}.onnx"
        torch.onnx.export(net32, torch.tensor(x, dtype=torch.float32), str(path), opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True,
                          **(export_kwargs or {}))
        eng = run_engine(path, x)
        out[opset] = _compare(case, opset, x, eng, net64, tol_fwd, tol_grad, why, ref_fn32=net32)
    return out


def _head_nodes(features, seed, y_name):
    """ONNX nodes + initializers for Flatten + MatMul + Add on value y_name; the same numbers as Head."""
    head = Head(features, seed)
    w = head.w.detach().numpy().T.astype(np.float32)       # features x CLASSES
    b = head.b.detach().numpy().astype(np.float32)
    nodes = [helper.make_node("Flatten", [y_name], ["_flat"], axis=1, name="head_flatten"),
             helper.make_node("MatMul", ["_flat", "_head_w"], ["_mm"], name="head_matmul"),
             helper.make_node("Add", ["_mm", "_head_b"], ["logits"], name="head_add")]
    inits = [numpy_helper.from_array(w, "_head_w"), numpy_helper.from_array(b, "_head_b")]
    return head.double(), nodes, inits


def onnx_model(nodes, inits, in_shape, opset, in_name="input", out_name="y", seed=0, features=None):
    """A model: input (N, *in_shape) -> nodes (whose final output is out_name) -> head -> logits.
    features: elements per image of out_name (needed for the head)."""
    head, hnodes, hinits = _head_nodes(features, seed + 2, out_name)
    graph = helper.make_graph(
        list(nodes) + hnodes, "opcase",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["N"] + list(in_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=list(inits) + hinits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="opcase")
    m.ir_version = 7 if opset < 15 else 8
    return m, head


def check_onnx(case, build, ref, shape, opsets=(13,), n=2, seed=0, tol_fwd=1e-5, tol_grad=1e-5, why="",
               input_range=None, x=None):
    """build(opset) -> (nodes, initializers) computing value "y" from "input";
    ref(x64 torch tensor, opset) -> y, written from the ONNX operator specification, differentiable in torch."""
    if x is None:
        x = make_input(shape, n, seed + 1, *(input_range or (None, None))).numpy()
    out = {}
    for opset in opsets:
        with torch.no_grad():
            feats = ref(torch.tensor(x[:1]), opset).numel()
        nodes, inits = build(opset)
        model, head = onnx_model(nodes, inits, shape, opset, seed=seed, features=feats)
        onnx.checker.check_model(model)
        path = ops_dir() / f"{case}.op{opset}.onnx"
        onnx.save(model, str(path))
        eng = run_engine(path, x)
        out[opset] = _compare(case, opset, x, eng, lambda t, o=opset: head(ref(t, o)), tol_fwd, tol_grad, why)
    return out


def check_refused(case, model, x_shape, pattern, n=1):
    """model: an onnx ModelProto. Loading must fail with exit 2 and an error matching pattern."""
    path = ops_dir() / f"{case}.refused.onnx"
    onnx.save(model, str(path))
    x = np.zeros((n,) + tuple(x_shape))
    rc, _, _, _, stderr = run_engine(path, x)
    assert rc == 2, f"{case}: expected a load error (exit 2), got exit {rc}\n{stderr}"
    assert re.search(pattern, stderr), f"{case}: error does not match /{pattern}/:\n{stderr}"
    return stderr


def summary():
    """The measured errors of this process's cases, one line each (written to $OPS_DIR/summary.txt at exit)."""
    lines = [f"{'case':40s} {'opset':>5s} {'metric':10s} {'engine':>10s} {'torch f32':>10s} {'tol':>8s}"]
    for case, opset, metric, e, t, tol in RESULTS:
        ts = f"{t:10.2e}" if t is not None else f"{'-':>10s}"
        lines.append(f"{case:40s} {opset:5d} {metric:10s} {e:10.2e} {ts} {tol:8.0e}")
    return "\n".join(lines)


@atexit.register
def _write_summary():
    if RESULTS:
        (ops_dir() / "summary.txt").write_text(summary() + "\n")
