"""Op conformance, data movement: Transpose, Slice, Split (rewritten into Slices at load), Gather, Expand, Tile,
DepthToSpace, SpaceToDepth, ConstantOfShape and Cast in the graphs torch emits, Pad's opset-18 form, and a real
model (torchvision shufflenet_v2_x0_5 exported at opset 9, where torch writes its x.chunk(2, dim=1) as Split).

check_module cases: torch 1.13 exports the module at the opsets where its export differs, the reference is the
same module in float64 (torch autograd).  check_onnx cases: forms torch never writes (opset 18, attributes,
index tensors of rank 2, DCR mode, ...), with a float64 torch reference written from the ONNX operator
specification (onnx/docs/Operators.md of ONNX 1.12 + Split-18/Pad-18 of ONNX 1.13; the section is named in each
case).  Refusals: every form that would mix the images of a batch is refused at load with a clear message.
Data movement is linear, so forward and gradient are exact up to float32 rounding of the head: tolerances stay
at the harness default (1e-5).
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import opcase
from opcase import Lambda

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -2 ** 63


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model_of(nodes, inits, in_shape, out_shape, opset):
    """A bare model (no head) for refusal cases: input (N, *in_shape) -> nodes -> y."""
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return m


def check_onnx(case, build, ref, shape, opsets, **kw):
    """opcase.check_onnx; opset-18 models skip onnx.checker: ONNX 1.12 (Debian's) knows schemas up to opset 17
    and rejects opset 18's new forms (Split's num_outputs, Pad's axes input) as unknown."""
    old = [o for o in opsets if o < 18]
    if old:
        opcase.check_onnx(case, build, ref, shape, opsets=tuple(old), **kw)
    if 18 in opsets:
        saved = opcase.onnx.checker.check_model
        opcase.onnx.checker.check_model = lambda m: None
        try:
            opcase.check_onnx(case, build, ref, shape, opsets=(18,), **kw)
        finally:
            opcase.onnx.checker.check_model = saved


def onnx_slice_ref(x, starts, ends, axes, steps):
    """ONNX Slice-13 (Operators.md), as its text says: negative starts/ends get dims[axis] added; then for
    positive steps start and end are clamped to [0, d], for negative steps start to [0, d-1] and end to [-1, d-1];
    the elements are start, start + step, ... up to (excluding) end."""
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a % x.dim()
        d = x.shape[a]
        s, e = s + d if s < 0 else s, e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        x = x.index_select(a, torch.tensor(list(range(s, e, st)), dtype=torch.long))
    return x


# ---------------------------------------------------------------------------------------------------------------
# Transpose
# ---------------------------------------------------------------------------------------------------------------
def test_transpose_permute_nhwc():
    opcase.check_module("transpose_nhwc", Lambda(lambda x: x.permute(0, 2, 3, 1) * 1.5), (3, 4, 5), opsets=(9, 13, 17))


def test_transpose_channel_shuffle_5d():
    """ShuffleNet's channel shuffle: Reshape to 5-D, Transpose(0, 2, 1, 3, 4), Reshape back."""
    def shuffle(x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
    opcase.check_module("transpose_shuffle", Lambda(shuffle), (6, 4, 3), opsets=(9, 13, 17))


def test_transpose_rank3_and_inner_axes():
    opcase.check_module("transpose_inner", Lambda(lambda x: x.transpose(2, 3).flatten(2).transpose(1, 2)), (4, 3, 5),
                        opsets=(13,))


def test_transpose_refuses_moving_the_batch():
    for perm, case in (([1, 0, 2, 3], "transpose_perm_batch"), (None, "transpose_default_reverses")):
        kw = {"perm": perm} if perm else {}
        m = model_of([helper.make_node("Transpose", ["input"], ["y"], **kw)], [], (3, 4, 5), None, 13)
        opcase.check_refused(case, m, (3, 4, 5), r"Transpose.*batch")


# ---------------------------------------------------------------------------------------------------------------
# Slice (opsets 9 attributes, 10+ inputs; negative steps from torch's flip)
# ---------------------------------------------------------------------------------------------------------------
def test_slice_basic_attribute_form():
    opcase.check_module("slice_narrow", Lambda(lambda x: x[:, 1:3, 2:, :-1]), (4, 5, 6), opsets=(9, 13))


def test_slice_steps():
    opcase.check_module("slice_steps", Lambda(lambda x: x[:, :, 1:5:2, ::3]), (3, 6, 7), opsets=(11, 17))


def test_slice_negative_start():
    opcase.check_module("slice_neg_start", Lambda(lambda x: x[:, :, -3:] - x[:, :, :3]), (2, 5, 4), opsets=(9, 13))


def test_slice_flip_negative_steps():
    """torch exports x.flip(d) as Slice(start -1, end -INT64_MAX, step -1)."""
    opcase.check_module("slice_flip", Lambda(lambda x: x.flip(2) + 0.5 * x.flip(3)), (3, 4, 5), opsets=(11, 13, 17))


def test_slice_onnx_forms():
    """Slice-13/18 forms torch never writes: default axes, negative axes, steps < -1, start/end beyond the axis
    (INT64_MIN/MAX), an axis-0 entry that keeps the whole batch. Reference: ONNX Slice (numpy semantics)."""
    cases = [  # starts, ends, axes, steps (None: input omitted)
        ([0, 1, 4], [1 << 40, -1, -100], None, [1, 2, -2]),
        ([-1, 1], [INT64_MIN, INT64_MAX], [-1, -3], [-3, 1]),
        ([0, 5, 0], [INT64_MAX, INT64_MIN, 3], [0, 2, 3], [1, -1, 1]),
        ([INT64_MAX, 2], [-100, INT64_MAX], [3, 1], [-2, 1]),   # a start past the end with a negative step
        ([-100, 3], [INT64_MIN, -100], [2, 3], [-1, -1]),        # a start before the axis with a negative step: [0]
    ]
    for k, (s, e, a, st) in enumerate(cases):
        def build(opset, s=s, e=e, a=a, st=st):
            inits = [i64("s", s), i64("e", e)]
            ins = ["input", "s", "e"]
            if a is not None:
                inits.append(i64("a", a))
                ins.append("a")
            elif st is not None:
                ins.append("")  # axes omitted: 0, 1, ...
            if st is not None:
                inits.append(i64("st", st))
                ins.append("st")
            return [helper.make_node("Slice", ins, ["y"])], inits

        def ref(x, opset, s=s, e=e, a=a, st=st):
            axes = a if a is not None else list(range(len(s)))
            # an axis-0 entry keeps every image (start 0, end >= 2^31 - 1, step 1): the reference leaves the batch
            pairs = [(si, ei, ai, sti) for si, ei, ai, sti in zip(s, e, axes, st or [1] * len(s)) if ai % 4 != 0]
            return onnx_slice_ref(x, *zip(*pairs))

        check_onnx(f"slice_onnx_{k}", build, ref, (3, 6, 7), opsets=(10, 13, 18))


def test_slice_of_a_constant_folds():
    """The same ONNX Slice semantics when the data is a constant (evaluated at load, engine/fold.c)."""
    c = np.arange(5 * 6, dtype=np.float32).reshape(5, 6) / 10
    cases = [([-100, 4], [INT64_MIN, 0], [0, 1], [-1, -2]), ([1, INT64_MAX], [INT64_MAX, -100], [0, 1], [2, -3])]

    for k, (s, e, a, st) in enumerate(cases):
        def build(opset, s=s, e=e, a=a, st=st):
            return [helper.make_node("Slice", ["c", "s", "e", "a", "st"], ["cs"]),
                    helper.make_node("Mul", ["input", "cs"], ["y"])], \
                [numpy_helper.from_array(c, "c"), i64("s", s), i64("e", e), i64("a", a), i64("st", st)]

        def ref(x, opset, s=s, e=e, a=a, st=st):
            return x * onnx_slice_ref(torch.tensor(c, dtype=torch.float64), s, e, a, st)

        cs = onnx_slice_ref(torch.tensor(c), s, e, a, st)
        check_onnx(f"slice_const_{k}", build, ref, (2,) + tuple(cs.shape), opsets=(13,))


def test_slice_of_a_shape_to_int64_max():
    """Shape -> Slice(start 3, end INT64_MAX) -> Cast -> Mul: the folded end must stay INT64_MAX (as a double it
    would not) so the slice is [W], not empty."""
    def build(opset):
        return [helper.make_node("Shape", ["input"], ["s"]), helper.make_node("Slice", ["s", "b", "e"], ["w"]),
                helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["input", "wf"], ["y"])], [i64("b", [3]), i64("e", [INT64_MAX])]

    check_onnx("slice_shape_int64_max", build, lambda x, o: x * x.shape[3], (2, 3, 5), opsets=(13,))


def test_slice_opset9_attributes_with_axes():
    def build(opset):
        return [helper.make_node("Slice", ["input"], ["y"], starts=[-2, 1], ends=[INT64_MAX, 3], axes=[3, 1])], []

    def ref(x, opset):  # Slice-1: starts/ends/axes attributes, no steps
        return onnx_slice_ref(x, [-2, 1], [INT64_MAX, 3], [3, 1], [1, 1])

    check_onnx("slice_attr_axes", build, ref, (4, 3, 5), opsets=(9,))


def test_slice_refuses_selecting_images():
    for case, s, e, st in (("slice_batch_start", [1], [INT64_MAX], [1]), ("slice_batch_end", [0], [1], [1]),
                           ("slice_batch_reverse", [-1], [INT64_MIN], [-1])):
        m = model_of([helper.make_node("Slice", ["input", "s", "e", "a", "st"], ["y"])],
                     [i64("s", s), i64("e", e), i64("a", [0]), i64("st", st)], (3, 4, 4), None, 13)
        opcase.check_refused(case, m, (3, 4, 4), r"Slice.*axis 0.*images of the batch")


def test_slice_refuses_an_empty_result():
    m = model_of([helper.make_node("Slice", ["input", "s", "e", "a"], ["y"])],
                 [i64("s", [3]), i64("e", [1]), i64("a", [2])], (3, 4, 4), None, 13)
    opcase.check_refused("slice_empty", m, (3, 4, 4), r"Slice.*empty")


# ---------------------------------------------------------------------------------------------------------------
# Split (rewritten into Slices at load: engine/split.c)
# ---------------------------------------------------------------------------------------------------------------
def test_split_torch_split_sizes():
    """torch.split with sizes: Split with the split attribute (opsets 9, 11) or input (13, 17); every output used."""
    def f(x):
        a, b, c = torch.split(x, [1, 3, 2], dim=1)
        return torch.cat([c * 2, a, b - 1], 1)
    opcase.check_module("split_sizes", Lambda(f), (6, 3, 4), opsets=(9, 11, 13, 17))


def test_split_chunk_and_unbind():
    """x.chunk(3, 1) at opset 9 is Split with equal sizes (later opsets write Slices); x.unbind(1) is Split +
    Squeeze in every opset, here with only one output used (the others are pruned)."""
    opcase.check_module("split_chunk", Lambda(lambda x: torch.cat(x.chunk(3, dim=1)[::-1], 1)), (6, 3, 4), opsets=(9,))
    opcase.check_module("split_unbind", Lambda(lambda x: x.unbind(1)[1] * 3), (3, 4, 5), opsets=(9, 13, 17))


def test_split_repeat_interleave_graph():
    """x.repeat_interleave(2, 1): Splits of a constant (folded) and of the activation, Expand, Reshape, Concat."""
    opcase.check_module("split_repeat_interleave", Lambda(lambda x: x.repeat_interleave(2, dim=1)), (3, 4, 5),
                        opsets=(9, 13, 17))


def test_split_onnx_forms():
    """Split-2..11 attribute without split (equal parts) and a negative axis; Split-13 without the split input
    (equal parts); Split-18 num_outputs with an uneven last chunk (ceil(7/3) = 3: 3, 3, 1). Reference: ONNX Split."""
    def build(opset):
        if opset == 18:
            n = helper.make_node("Split", ["input"], ["a", "b", "c"], axis=-1, num_outputs=3)
        else:
            n = helper.make_node("Split", ["input"], ["a", "b", "c"], axis=-1)
        return [n, helper.make_node("Concat", ["c", "a", "b"], ["y"], axis=3)], []

    def ref(x, opset):
        a, b, c = torch.split(x, [3, 3, 1] if opset == 18 else [2, 2, 2], dim=3)
        return torch.cat([c, a, b], 3)

    check_onnx("split_equal", build, ref, (2, 3, 6), opsets=(9, 11, 13))
    check_onnx("split_num_outputs", build, ref, (2, 3, 7), opsets=(18,))

    def build_sizes(opset):
        if opset >= 13:
            return [helper.make_node("Split", ["input", "sz"], ["a", "", "c"], axis=2),
                    helper.make_node("Mul", ["a", "c"], ["y"])], [i64("sz", [2, 1, 2])]
        return [helper.make_node("Split", ["input"], ["a", "", "c"], axis=2, split=[2, 1, 2]),
                helper.make_node("Mul", ["a", "c"], ["y"])], []

    def ref_sizes(x, opset):
        a, _, c = torch.split(x, [2, 1, 2], dim=2)
        return a * c

    check_onnx("split_sizes_omitted_output", build_sizes, ref_sizes, (3, 5, 4), opsets=(9, 13, 18))


def test_split_zero_size_output_unused():
    def build(opset):
        return [helper.make_node("Split", ["input", "sz"], ["a", "b", "c"], axis=1),
                helper.make_node("Sub", ["a", "c"], ["y"])], [i64("sz", [2, 0, 2])]

    def ref(x, opset):
        return x[:, :2] - x[:, 2:]

    check_onnx("split_zero_size", build, ref, (4, 3, 3), opsets=(13,))


def test_split_of_a_constant_folds():
    def build(opset):
        c = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(1, 4, 1, 3) / 7, "c")
        return [helper.make_node("Split", ["c", "sz"], ["c0", "c1"], axis=1),
                helper.make_node("Mul", ["input", "c1"], ["t"]),
                helper.make_node("Add", ["t", "c0"], ["y"])], [c, i64("sz", [1, 3])]

    def ref(x, opset):
        c = torch.arange(12, dtype=torch.float64).reshape(1, 4, 1, 3) / 7
        return x * c[:, 1:] + c[:, :1]

    check_onnx("split_constant", build, ref, (3, 2, 3), opsets=(13,))


def test_split_refuses_the_batch_axis_and_bad_sizes():
    m = model_of([helper.make_node("Split", ["input"], ["y", "z"], axis=0)], [], (3, 4, 4), None, 13)
    opcase.check_refused("split_batch", m, (3, 4, 4), r"Split.*axis 0.*batch")
    m = model_of([helper.make_node("Split", ["input", "sz"], ["y", "z"], axis=1)], [i64("sz", [2, 2])], (3, 4, 4), None, 13)
    opcase.check_refused("split_bad_sizes", m, (3, 4, 4), r"Split.*add up to 4, not the axis length 3")
    m = model_of([helper.make_node("Split", ["input"], ["y", "z"], axis=1)], [], (3, 4, 4), None, 13)
    opcase.check_refused("split_not_equal", m, (3, 4, 4), r"Split.*does not split into 2 equal parts")


# ---------------------------------------------------------------------------------------------------------------
# Gather
# ---------------------------------------------------------------------------------------------------------------
def test_gather_scalar_index():
    """x[:, 3] (a scalar index drops the axis) and x[:, :, -1] (Gather with -1 from opset 11; Slice+Squeeze at 9)."""
    opcase.check_module("gather_scalar", Lambda(lambda x: x[:, 3] * 2 + x[:, :, -1]), (4, 4, 4),
                        opsets=(9, 11, 17))


def test_gather_index_list_with_repeats():
    """x[:, [2, 0, 2]]: a 1-D index with a repeated entry (its gradient adds up) and a 2-D index with -1."""
    idx2 = torch.tensor([[0, 3], [-1, 1]])
    opcase.check_module("gather_list", Lambda(lambda x: x[:, [2, 0, 2]] * 1.5), (3, 4, 5), opsets=(9, 13))
    opcase.check_module("gather_2d", Lambda(lambda x: x[:, :, idx2]), (3, 4, 5), opsets=(13, 17))


def test_gather_onnx_rank2_indices_inner_axis():
    """Gather-13 on axis -1 with rank-2 constant indices, negatives included. Reference: ONNX Gather
    (output shape = x.shape[:axis] + indices.shape + x.shape[axis+1:])."""
    ind = np.array([[4, -5, 0], [-1, 2, 2]], dtype=np.int64)

    def build(opset):
        return [helper.make_node("Gather", ["input", "ind"], ["y"], axis=-1)], [i64("ind", ind)]

    def ref(x, opset):
        k = torch.tensor(ind % 5)
        return x[..., k]

    check_onnx("gather_rank2", build, ref, (2, 3, 5), opsets=(11, 13))


def test_gather_refusals():
    m = model_of([helper.make_node("Gather", ["input", "ind"], ["y"], axis=0)], [i64("ind", [0])], (3, 4, 4), None, 13)
    opcase.check_refused("gather_batch", m, (3, 4, 4), r"Gather.*axis 0.*batch")
    m = model_of([helper.make_node("Gather", ["input", "ind"], ["y"], axis=1)], [i64("ind", [3])], (3, 4, 4), None, 13)
    opcase.check_refused("gather_out_of_range", m, (3, 4, 4), r"Gather.*index 3 out of range")


# ---------------------------------------------------------------------------------------------------------------
# Expand, Tile, ConstantOfShape
# ---------------------------------------------------------------------------------------------------------------
def test_expand_torch():
    """x[:, :1].expand(-1, 3, -1, -1) (the -1s resolved by ConstantOfShape/Equal/Where, folded) and expand_as of a
    channel mean (Expand whose shape is Shape of an activation)."""
    opcase.check_module("expand_channel", Lambda(lambda x: x[:, :1].expand(-1, 3, -1, -1) * x), (3, 4, 5),
                        opsets=(9, 13, 17))
    opcase.check_module("expand_as", Lambda(lambda x: x.mean(1, keepdim=True).expand_as(x) - x), (3, 4, 5),
                        opsets=(13,))
    # broadcast along C and W with H between them: the gradient sums C runs of W copies into each element
    opcase.check_module("expand_two_axes", Lambda(lambda x: x[:, :1, :, :1].expand(-1, 3, -1, 5)), (3, 4, 5),
                        opsets=(13,))


def test_expand_onnx_shorter_shape():
    """Expand-13 with a shape shorter than the input's rank (right-aligned, numpy rules) and 1s that keep a dim."""
    def build(opset):
        return [helper.make_node("Expand", ["input", "sh"], ["y"])], [i64("sh", [1, 4, 1])]

    def ref(x, opset):
        return x.expand(-1, -1, 4, 5)

    check_onnx("expand_short_shape", build, ref, (2, 1, 5), opsets=(8, 13))


def test_tile_torch_repeat():
    opcase.check_module("tile_repeat", Lambda(lambda x: x.repeat(1, 2, 1, 3)), (2, 3, 4), opsets=(9, 13, 17))


def test_expand_and_tile_refusals():
    m = model_of([helper.make_node("Expand", ["input", "sh"], ["y"])], [i64("sh", [2, 3, 4, 4])], (3, 4, 4), None, 13)
    opcase.check_refused("expand_batch", m, (3, 4, 4), r"Expand.*batch dimension")
    m = model_of([helper.make_node("Expand", ["input", "sh"], ["y"])], [i64("sh", [2, 1, 3, 4, 4])], (3, 4, 4), None, 13)
    opcase.check_refused("expand_new_axes", m, (3, 4, 4), r"Expand.*move the batch")
    m = model_of([helper.make_node("Tile", ["input", "r"], ["y"])], [i64("r", [2, 1, 1, 1])], (3, 4, 4), None, 13)
    opcase.check_refused("tile_batch", m, (3, 4, 4), r"Tile.*repeats\[0\] = 2")


def test_constant_of_shape_in_torch_graphs():
    """zeros_like / ones_like / full_like / new_zeros: Shape of an activation -> ConstantOfShape (folded at load,
    the batch planned as 1) used in Add, Mul and Concat with the activation."""
    opcase.check_module("cos_like", Lambda(lambda x: (x + torch.zeros_like(x)) * torch.ones_like(x[:, :1])), (3, 4, 5),
                        opsets=(9, 13, 17))
    # x.shape[2:]: Slice of a Shape with end INT64_MAX, folded (the end must stay INT64_MAX through the folding)
    opcase.check_module("cos_shape_slice", Lambda(lambda x: x * torch.ones(x.shape[2:]) + torch.zeros(x.shape[1:2])[:, None, None]),
                        (3, 4, 5), opsets=(9, 13))
    opcase.check_module("cos_concat", Lambda(lambda x: torch.cat([x, torch.full_like(x, 0.5),
                                                                  x.new_zeros(x.shape[0], 1, 4, 5)], 1)),
                        (3, 4, 5), opsets=(9, 17))


def test_cast_in_torch_graphs_and_on_activations():
    """x / sqrt(W): Shape -> Gather -> Cast(int64) -> Cast(float) -> Sqrt, all folded; a Cast to FLOAT of the
    activation runs as the identity."""
    opcase.check_module("cast_shape_arith", Lambda(lambda x: x / torch.tensor(x.shape[-1]).float().sqrt()), (3, 4, 5),
                        opsets=(9, 13, 17))

    def build(opset):
        return [helper.make_node("Cast", ["input"], ["y"], to=TensorProto.FLOAT)], []

    check_onnx("cast_identity", build, lambda x, o: x, (2, 3, 3), opsets=(9, 13))


def test_cast_of_an_activation_to_int_is_refused():
    m = model_of([helper.make_node("Cast", ["input"], ["y"], to=TensorProto.INT64)], [], (3, 4, 4), None, 13)
    opcase.check_refused("cast_to_int64", m, (3, 4, 4), r"Cast.*INT64.*float32")


# ---------------------------------------------------------------------------------------------------------------
# DepthToSpace / SpaceToDepth
# ---------------------------------------------------------------------------------------------------------------
def test_pixel_shuffle_and_unshuffle():
    """nn.PixelShuffle: Reshape/Transpose at opset 9, DepthToSpace CRD from 11; nn.PixelUnshuffle: 6-D
    Reshape/Transpose in every opset."""
    opcase.check_module("pixel_shuffle", nn.PixelShuffle(2), (8, 3, 4), opsets=(9, 11, 17))
    opcase.check_module("pixel_unshuffle", nn.PixelUnshuffle(2), (2, 4, 6), opsets=(9, 17))


def d2s_ref(x, b, mode):
    """ONNX DepthToSpace (Operators.md): DCR reshape [N, b, b, C/b², H, W], transpose [0, 3, 4, 1, 5, 2];
    CRD reshape [N, C/b², b, b, H, W], transpose [0, 1, 4, 2, 5, 3]; reshape [N, C/b², H·b, W·b]."""
    n, c, h, w = x.shape
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


def test_depth_to_space_onnx_modes():
    for mode, b, opsets in (("DCR", 2, (9, 13)), ("DCR", 3, (11,)), ("CRD", 3, (11, 13))):
        def build(opset, mode=mode, b=b):
            kw = {"mode": mode} if opset >= 11 else {}
            return [helper.make_node("DepthToSpace", ["input"], ["y"], blocksize=b, **kw)], []

        check_onnx(f"depth_to_space_{mode}_{b}", build, lambda x, o, b=b, mode=mode: d2s_ref(x, b, mode),
                          (2 * b * b, 3, 2), opsets=opsets)


def test_space_to_depth_onnx():
    """ONNX SpaceToDepth: reshape [N, C, H/b, b, W/b, b], transpose [0, 3, 5, 1, 2, 4], reshape [N, C·b², H/b, W/b]."""
    def ref(x, opset, b=2):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)

    def build(opset):
        return [helper.make_node("SpaceToDepth", ["input"], ["y"], blocksize=2)], []

    check_onnx("space_to_depth", build, ref, (3, 4, 6), opsets=(9, 13))


def test_depth_space_refusals():
    m = model_of([helper.make_node("DepthToSpace", ["input"], ["y"], blocksize=2)], [], (6, 4, 4), None, 13)
    opcase.check_refused("d2s_channels", m, (6, 4, 4), r"DepthToSpace.*not a multiple of blocksize")
    m = model_of([helper.make_node("SpaceToDepth", ["input"], ["y"], blocksize=3)], [], (2, 4, 4), None, 13)
    opcase.check_refused("s2d_pixels", m, (2, 4, 4), r"SpaceToDepth.*not a multiple of blocksize")


# ---------------------------------------------------------------------------------------------------------------
# Pad, opset 18 (axes input)
# ---------------------------------------------------------------------------------------------------------------
def test_pad_opset18():
    """Pad-18 (ONNX 1.13 Operators.md): pads without axes cover every axis; with axes, pads holds the begins and then
    the ends of the listed axes (negative axes count from the back), every other axis gets none."""
    def build_all(opset):
        return [helper.make_node("Pad", ["input", "p", "v"], ["y"], mode="constant")], \
            [i64("p", [0, 0, 1, 2, 0, 1, 0, 1]), numpy_helper.from_array(np.array(0.25, np.float32), "v")]

    check_onnx("pad18_no_axes", build_all, lambda x, o: F.pad(x, (2, 1, 1, 0, 0, 1), value=0.25), (2, 4, 5),
                      opsets=(13, 18))

    def build_axes(opset):
        return [helper.make_node("Pad", ["input", "p", "", "ax"], ["y"], mode="reflect")], \
            [i64("p", [2, 1, 0, 2]), i64("ax", [-1, 2])]

    check_onnx("pad18_axes", build_axes, lambda x, o: F.pad(x, (2, 0, 1, 2), mode="reflect"), (2, 4, 5),
                      opsets=(18,))


# ---------------------------------------------------------------------------------------------------------------
# A real model: shufflenet_v2_x0_5 at opset 9 (Split). Its opset-14 export (Slices) is a Spec of
# tests/conformance/export_models.py, with that suite's kink-aware inputs and tolerances.
# ---------------------------------------------------------------------------------------------------------------
def test_shufflenet_v2_opset9_split():
    """torchvision shufflenet_v2_x0_5 at 64 x 64, exported at opset 9 with a static batch of 1 (torch cannot export
    its x.chunk(2, dim=1) with a dynamic batch at opset 9): channel shuffle (5-D Reshape -> Transpose -> Reshape) and
    13 Splits. The engine runs a batch of 2 images through it. The input batch and weights are those of the
    export_models Spec "shufflenet_v2_x0_5" (kink-free inputs, the suite's tolerances: logits 1e-4 of max|logit|,
    input gradient rel L2 1e-3 against float64)."""
    import sys
    import warnings
    import copy
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import export_models

    spec = export_models.SPEC_BY_NAME["shufflenet_v2_x0_5"]
    torch.set_num_threads(1)
    model = export_models.make_model(spec)
    model64 = copy.deepcopy(model).double()
    x, info = export_models.select_inputs(spec, model, model64)
    assert info["policy"] == "kink-free", info
    x = x[:2]
    path = opcase.ops_dir() / "shufflenet_v2_x0_5.op9.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x[:1], str(path), opset_version=9, input_names=["input"], output_names=["logits"])
    import onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Split", "Transpose", "Reshape"} <= ops, ops
    eng = opcase.run_engine(path, x.numpy().astype(np.float64))
    opcase._compare("shufflenet_v2_x0_5_split", 9, x.numpy().astype(np.float64), eng, model64, 1e-4, 1e-3,
                    "a full network in float32", ref_fn32=model)
