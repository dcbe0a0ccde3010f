"""Op conformance for ops the engine had before the coverage work, through the op harness (opcase.py):
they prove the harness itself (a wrong forward or backward in any of them fails here) and serve as
the pattern for the per-group files (test_ops_<group>.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import opcase
from opcase import Lambda


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_conv_relu_maxpool_ceil(opset):
    torch_net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True))
    opcase.check_module("conv_relu_maxpool_ceil", torch_net, (3, 11, 11), opsets=(opset,))


def test_leakyrelu_avgpool():
    net = nn.Sequential(nn.LeakyReLU(0.2), nn.AvgPool2d(3, 2, 1, count_include_pad=False))
    opcase.check_module("leakyrelu_avgpool", net, (4, 9, 9), opsets=(11, 17))


@pytest.mark.parametrize("how", ["gap", "reducemean"])
def test_global_average_pool_of_a_letterbox_band_does_not_drift(how):
    """A 112 x 112 map whose top 40 rows are one value (a white letterbox band after normalization, 2.64),
    the rest N(0, 1): a float running sum over it drifts by thousands of ulps (regnet_y_3_2gf's
    squeeze-excitation on chelsea letterboxed on white: 38 x PyTorch float32's error at the first SE,
    tests/zoo/zoo_check.py); GlobalAveragePool and ReduceMean sum in double."""
    import numpy as np
    x = opcase.make_input((3, 112, 112), 2, 7).numpy()
    x[:, :, :40, :] = np.float32((1 - 0.406) / 0.225)
    pool = nn.AdaptiveAvgPool2d(1) if how == "gap" else Lambda(lambda t: t.mean((2, 3), keepdim=True))
    opcase.check_module(f"letterbox_{how}", pool, (3, 112, 112), opsets=(13,), x=x, tol_fwd=1e-6)


def test_sigmoid_gate():
    opcase.check_module("sigmoid_gate", Lambda(lambda x: x * torch.sigmoid(x)), (3, 5, 5), opsets=(13,))


def test_pool_mixing_batch_is_refused():
    from onnx import helper, TensorProto
    nodes = [helper.make_node("ReduceMean", ["input"], ["y"], axes=[0, 1], keepdims=1)]
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    opcase.check_refused("reducemean_batch", m, (3, 4, 4), r"batch")


def test_onnx_built_case_hardsigmoid_attrs():
    """check_onnx path: HardSigmoid with non-default alpha/beta (ONNX spec: y = max(0, min(1, alpha*x + beta)))."""
    from onnx import helper

    def build(opset):
        return [helper.make_node("HardSigmoid", ["input"], ["y"], alpha=0.3, beta=0.4)], []

    def ref(x, opset):
        return torch.clamp(0.3 * x + 0.4, 0, 1)

    opcase.check_onnx("hardsigmoid_attrs", build, ref, (2, 5, 5), opsets=(9, 13))



def test_activation_of_lower_rank_than_the_result_is_refused():
    """(N, C) + constant (1, 1, C) broadcasts to (1, N, C): the activation's batch axis would move to axis 1,
    mixing images; the engine refuses it instead of computing a wrong per-image result."""
    import numpy as np
    from onnx import helper, numpy_helper, TensorProto
    nodes = [helper.make_node("Flatten", ["input"], ["f"], axis=1),
             helper.make_node("Add", ["f", "c"], ["y"])]
    c = numpy_helper.from_array(np.ones((1, 1, 48), np.float32), "c")
    g = helper.make_graph(nodes, "refuse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "N", 48])], initializer=[c])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    opcase.check_refused("add_rank_below_result", m, (3, 4, 4), r"batch axis")
