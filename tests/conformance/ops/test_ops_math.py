"""Op conformance, math: Pow (constant exponent, and a constant base), Sqrt, Reciprocal, Exp, Log, Neg, Abs, Erf,
Max, Min, Sum, Mean (variadic, numpy broadcasting, constant or activation inputs) and Where on a constant mask.

check_module cases: torch 1.13's export, reference the same module in float64 (torch autograd); these ops export
identically in opsets 9..17 (Pow's exponent may be an integer from 12: a check_onnx case), so each runs at a few.
Boundaries follow PyTorch's backward, checked on inputs that hit them exactly: Abs at 0 (sgn 0 = 0), Pow at
x = 0 (p·x^(p-1)), Max/Min ties (torch.maximum/minimum give each tied input half the gradient).  check_onnx
cases: forms torch never writes (Sum/Mean, Max/Min of three inputs, an int64 exponent), with a float64 torch
reference from the ONNX operator definitions.  Tolerances: the harness default 1e-5, except where a case says why.
"""
import numpy as np
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

import opcase
from opcase import Lambda


def f32(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def away_from_zero(shape, n=2, seed=5):
    """sign · U(0.5, 2): no value near a pole (Reciprocal)."""
    g = torch.Generator().manual_seed(seed)
    mag = torch.rand((n,) + shape, generator=g, dtype=torch.float64) * 1.5 + 0.5
    sign = torch.where(torch.rand((n,) + shape, generator=g) < 0.5, -1.0, 1.0).double()
    return (mag * sign).numpy()


def with_exact(shape, value, frac=0.3, n=2, seed=7):
    """N(0, 1) with a fraction of the entries set exactly to `value` (a kink or a tie)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + shape, generator=g, dtype=torch.float64)
    x[torch.rand((n,) + shape, generator=g) < frac] = value
    return x.numpy()


def model_of(nodes, inits, in_shape, opset):
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


# ---------------------------------------------------------------------------------------------------------------
# Pow
# ---------------------------------------------------------------------------------------------------------------
def test_pow_integer_exponents():
    opcase.check_module("pow3", Lambda(lambda x: torch.pow(x, 3)), (3, 4, 5), opsets=(9, 13, 17))
    opcase.check_module("pow2", Lambda(lambda x: x ** 2 - x), (3, 4, 5), opsets=(13,))


def test_pow_at_zero_follows_torch():
    """x = 0 exactly: torch's pow_backward gives p·0^(p-1): 0 for p = 3 and 2, dy for p = 1."""
    x = with_exact((3, 4, 4), 0.0, frac=0.4)
    opcase.check_module("pow_at_zero", Lambda(lambda x: torch.pow(x, 3) + torch.pow(x, 2) + torch.pow(x, 1.0)),
                        (3, 4, 4), opsets=(13,), x=x)


def test_pow_fractional_and_negative_exponents():
    opcase.check_module("pow_frac", Lambda(lambda x: x ** 0.5 + x ** -1.5 + x ** 2.5), (3, 4, 5), opsets=(9, 17),
                        input_range=(0.3, 2.0))


def test_pow_constant_base():
    """2 ** x exports as Pow(2.0, x): dy · y · ln 2."""
    opcase.check_module("pow_base", Lambda(lambda x: torch.pow(2.0, x)), (3, 4, 5), opsets=(9, 13))


def test_pow_int64_exponent_and_zero_exponent():
    """Pow-12+: the exponent may be an integer tensor; Pow(x, 0) = 1 with a zero gradient (pow_backward)."""
    def build(opset):
        return [helper.make_node("Pow", ["input", "p"], ["a"]), helper.make_node("Pow", ["input", "z"], ["b"]),
                helper.make_node("Add", ["a", "b"], ["y"])], \
            [numpy_helper.from_array(np.array(3, np.int64), "p"), f32("z", 0.0)]

    opcase.check_onnx("pow_int_exponent", build, lambda x, o: x ** 3 + x ** 0, (2, 3, 3), opsets=(13, 15))


# ---------------------------------------------------------------------------------------------------------------
# unary math
# ---------------------------------------------------------------------------------------------------------------
def test_sqrt_log():
    opcase.check_module("sqrt", Lambda(torch.sqrt), (3, 4, 5), opsets=(9, 13), input_range=(0.2, 3.0))
    opcase.check_module("log", Lambda(torch.log), (3, 4, 5), opsets=(9, 13), input_range=(0.2, 3.0))


def test_reciprocal():
    opcase.check_module("reciprocal", Lambda(lambda x: 1 / x), (3, 4, 5), opsets=(9, 13, 17),
                        x=away_from_zero((3, 4, 5)))


def test_exp_neg_erf():
    opcase.check_module("exp", Lambda(torch.exp), (3, 4, 5), opsets=(9, 13))
    opcase.check_module("neg", Lambda(lambda x: -x), (3, 4, 5), opsets=(9, 13))
    opcase.check_module("erf", Lambda(torch.erf), (3, 4, 5), opsets=(9, 13, 17))


def test_gelu_erf_form():
    """The Erf form of GELU as torch <= opset 17 exports it: x · 0.5 · (1 + erf(x / √2)) (Div, Erf, Add, Mul)."""
    opcase.check_module("gelu_erf", nn.GELU(), (3, 4, 5), opsets=(13, 17))


def test_abs_with_zeros():
    """sgn(0) = 0 (torch's abs backward): exact zeros in the input get a zero gradient."""
    opcase.check_module("abs", Lambda(torch.abs), (3, 4, 5), opsets=(9, 13), x=with_exact((3, 4, 5), 0.0))


# ---------------------------------------------------------------------------------------------------------------
# Max, Min, Sum, Mean
# ---------------------------------------------------------------------------------------------------------------
def test_maximum_minimum_ties_split_the_gradient():
    """torch.maximum(2x, x + 0.5) ties exactly where x = 0.5: each branch gets half of dy, so the input gets
    0.5·2 + 0.5·1 = 1.5 there (the first branch alone would give 2, the second 1). Same for minimum."""
    x = with_exact((3, 4, 4), 0.5, frac=0.4)
    opcase.check_module("maximum_ties", Lambda(lambda x: torch.maximum(2 * x, x + 0.5)), (3, 4, 4), opsets=(9, 13, 17),
                        x=x)
    opcase.check_module("minimum_ties", Lambda(lambda x: torch.minimum(2 * x, x + 0.5)), (3, 4, 4), opsets=(13,), x=x)


def test_maximum_broadcasting():
    """An activation broadcast over channels (the channel mean) and a per-channel constant."""
    c = torch.tensor([-0.2, 0.1, 0.4]).view(3, 1, 1)
    opcase.check_module("maximum_bcast", Lambda(lambda x: torch.maximum(x, x.mean(1, keepdim=True))), (3, 4, 5),
                        opsets=(13,))
    opcase.check_module("minimum_const", Lambda(lambda x: torch.minimum(x, c) + torch.max(x, -x)), (3, 4, 5),
                        opsets=(9, 17))


def test_max_min_three_inputs():
    """ONNX Max/Min of three inputs (two activations and a (C,1,1) constant), numpy broadcasting: the element-wise
    max/min over all inputs. N(0,1) inputs: no exact ties."""
    c = np.array([-0.3, 0.2, 0.6], np.float32).reshape(3, 1, 1)

    for op, fn in (("Max", torch.maximum), ("Min", torch.minimum)):
        def build(opset, op=op):
            return [helper.make_node("Mul", ["input", "k"], ["b"]),
                    helper.make_node(op, ["input", "b", "c"], ["y"])], [f32("k", -0.7), f32("c", c)]

        def ref(x, opset, fn=fn):
            return fn(fn(x, -0.7 * x), torch.tensor(c, dtype=torch.float64))

        opcase.check_onnx(f"{op.lower()}3", build, ref, (3, 4, 5), opsets=(8, 13))


def test_sum_mean():
    """ONNX Sum/Mean (variadic): an activation, a broadcast activation (channel mean), a (1, C, 1, 1) constant; a
    one-input Sum (the identity) and Mean(x, x) (one value used twice: its gradient accumulates)."""
    c = np.array([0.5, -1.0, 2.0], np.float32).reshape(1, 3, 1, 1)

    for op in ("Sum", "Mean"):
        def build(opset, op=op):
            return [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
                    helper.make_node(op, ["input", "m", "c"], ["s"]),
                    helper.make_node("Sum", ["s"], ["s1"]),
                    helper.make_node("Mean", ["s1", "s1"], ["y"])], [f32("c", c)]

        def ref(x, opset, op=op):
            s = x + x.mean(1, keepdim=True) + torch.tensor(c, dtype=torch.float64)
            return s / 3 if op == "Mean" else s

        opcase.check_onnx(f"{op.lower()}_bcast", build, ref, (3, 4, 5), opsets=(8, 13))


def test_variadic_refusals():
    m = model_of([helper.make_node("Max", ["input", "c"], ["y"])], [f32("c", np.zeros((2, 3, 4, 4)))], (3, 4, 4), 13)
    opcase.check_refused("max_const_batch", m, (3, 4, 4), r"Max.*leading dimension 2 over the batch")
    m = model_of([helper.make_node("Sum", ["input", "c"], ["y"])], [f32("c", np.zeros((1, 1, 3, 4, 4)))], (3, 4, 4), 13)
    opcase.check_refused("sum_moves_batch", m, (3, 4, 4), r"Sum.*rank 4, below the output's 5")


# ---------------------------------------------------------------------------------------------------------------
# Where
# ---------------------------------------------------------------------------------------------------------------
def test_where_constant_mask():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(1, 3, 4, 5, generator=g) > 0.5
    mask_hw = torch.rand(4, 5, generator=g) > 0.5
    opcase.check_module("where_mask", Lambda(lambda x: torch.where(mask, x, x * 2)), (3, 4, 5), opsets=(9, 13, 17))
    opcase.check_module("where_const_branch", Lambda(lambda x: torch.where(mask_hw, x, torch.tensor(0.25))), (3, 4, 5),
                        opsets=(9, 17))


def test_where_onnx_broadcast_branches():
    """Where-16: condition (C, 1, W), a (C, 1, 1) constant "true" branch, the activation as the "false" branch."""
    cond = np.array([[[1, 0, 1, 1, 0]], [[0, 0, 1, 0, 1]], [[1, 1, 0, 0, 0]]], dtype=bool)
    a = np.array([0.3, -0.4, 1.1], np.float32).reshape(3, 1, 1)

    def build(opset):
        return [helper.make_node("Where", ["cond", "a", "input"], ["y"])], \
            [numpy_helper.from_array(cond, "cond"), f32("a", a)]

    def ref(x, opset):
        return torch.where(torch.tensor(cond), torch.tensor(a, dtype=torch.float64), x)

    opcase.check_onnx("where_bcast", build, ref, (3, 4, 5), opsets=(9, 16))


def test_where_refuses_a_batch_sized_condition():
    cond = numpy_helper.from_array(np.ones((2, 3, 4, 4), dtype=bool), "cond")
    m = model_of([helper.make_node("Where", ["cond", "input", "input"], ["y"])], [cond], (3, 4, 4), 13)
    opcase.check_refused("where_cond_batch", m, (3, 4, 4), r"Where.*leading dimension 2 over the batch")


# ---------------------------------------------------------------------------------------------------------------
# constant-only versions, evaluated at load (engine/fold.c)
# ---------------------------------------------------------------------------------------------------------------
def test_constant_subgraphs_fold():
    """A constant subgraph through every op of this group (and Expand, Tile, Transpose, Cast to BOOL) is evaluated at
    load; only Mul with the input runs. Reference: the same ONNX definitions in torch float64."""
    c = np.array([[0.5, -1.5, 2.0]], np.float32)            # (1, 3)

    def build(opset):
        n = helper.make_node
        return [n("Abs", ["c"], ["a"]), n("Exp", ["a"], ["e"]), n("Log", ["e"], ["l"]),    # |c|
                n("Sqrt", ["l"], ["s"]), n("Reciprocal", ["s"], ["r"]), n("Neg", ["r"], ["ng"]),
                n("Erf", ["c"], ["ef"]), n("Pow", ["c", "two"], ["p"]),
                n("Max", ["ng", "ef", "c"], ["mx"]), n("Min", ["ng", "ef"], ["mn"]),
                n("Sum", ["mx", "mn", "p"], ["sm"]), n("Mean", ["sm", "c"], ["mean"]),
                n("Cast", ["c"], ["cb"], to=TensorProto.BOOL), n("Where", ["cb", "mean", "c"], ["w"]),  # all true
                n("Tile", ["w", "rep"], ["t"]),                     # (1, 3) -> (2, 6)
                n("Transpose", ["t"], ["tt"], perm=[1, 0]),          # (6, 2)
                n("Reshape", ["tt", "r3"], ["t3"]),                  # (3, 1, 4)
                n("Expand", ["t3", "shape"], ["k"]),                 # (1, 3, 4, 4): a new axis in front, 1 -> 4
                n("Mul", ["input", "k"], ["y"])], \
            [f32("c", c), f32("two", 2.0), numpy_helper.from_array(np.array([2, 2], np.int64), "rep"),
             numpy_helper.from_array(np.array([1, 3, 4, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array([3, 1, 4], np.int64), "r3")]

    def ref(x, opset):
        t = torch.tensor(c, dtype=torch.float64)
        ng = -1 / torch.sqrt(torch.log(torch.exp(t.abs())))
        ef = torch.erf(t)
        mx = torch.maximum(torch.maximum(ng, ef), t)
        mn = torch.minimum(ng, ef)
        mean = (mx + mn + t ** 2 + t) / 2
        k = torch.where(t != 0, mean, t).repeat(2, 2).t().reshape(3, 1, 4).expand(1, 3, 4, 4)
        return x * k

    opcase.check_onnx("constant_fold_math", build, ref, (3, 4, 4), opsets=(13,))


def test_pow_exponent_tensor_broadcast():
    """Pow-15 with a constant exponent tensor broadcast over the input (per channel, per column): y = x^p
    elementwise (ONNX Pow, numpy broadcasting); positive inputs so fractional exponents stay real."""
    pc = np.array([2.0, 0.5, -1.0], np.float32).reshape(3, 1, 1)
    pw = np.array([1.0, 3.0, 0.0, 2.5, -0.5], np.float32)

    def build(opset):
        return [helper.make_node("Pow", ["input", "pc"], ["a"]), helper.make_node("Pow", ["input", "pw"], ["b"]),
                helper.make_node("Add", ["a", "b"], ["y"])], [f32("pc", pc), f32("pw", pw)]

    def ref(x, opset):
        return x ** torch.tensor(pc, dtype=torch.float64) + x ** torch.tensor(pw, dtype=torch.float64)

    opcase.check_onnx("pow_tensor_exponent", build, ref, (3, 4, 5), opsets=(13, 15), input_range=(0.3, 2.0))
    m = model_of([helper.make_node("Pow", ["input", "p"], ["y"])], [f32("p", np.ones((2, 3, 4, 4)))], (3, 4, 4), 13)
    opcase.check_refused("pow_exponent_batch", m, (3, 4, 4), r"Pow.*exponent.*batch")
