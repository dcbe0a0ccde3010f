"""sanity_layers=auto at real size (engine/sanity/budget.c, docs/MODELS.md): on torchvision's
resnet50 at 224 x 224 (random weights), the default sanity request (Grad-CAM, sanity=model) keeps
one step per layer (54) within the 300 GFLOP budget, a saliency request falls back to the six
blocks (conv1, layer1..layer4, fc), and the answer states the choice and its estimate; the steps
equal those of the explicit `sanity_layers=all`. The choice is a function of the request and the
model only, never of the machine. No timing is asserted: how long these take is in docs/MODELS.md."""
import json
import subprocess

import pytest
import torch
import torchvision

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    from PIL import Image
    from skimage import data
    d = tmp_path_factory.mktemp("r50")
    torch.manual_seed(0)
    m = torchvision.models.resnet50().eval()
    torch.onnx.export(m, torch.zeros(1, 3, 224, 224), str(d / "resnet50.onnx"), opset_version=13, input_names=["input"],
                      output_names=["logits"])
    Image.fromarray(data.chelsea()).save(d / "cat.jpg", quality=90)
    return d


def sanity(binary, d, *args):
    p = subprocess.run([binary, "explain", "--model", str(d / "resnet50.onnx"), "--image", str(d / "cat.jpg"),
                        "--sanity", "model", "--output", "raw", "--compact", *args], capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["sanity"]["model_randomization"]


def test_default_request_keeps_every_layer_within_the_budget(binary, resnet50):
    mr = sanity(binary, resnet50, "--methods", "gradcam")
    la = mr["layers_auto"]
    assert mr["layers"] == "auto" and la["chose"] == "all" and la["steps"] == la["all_steps"] == 54
    assert la["estimated_gflop"] <= la["budget_gflop"] == 300
    # 53 convolutions and fc; torch's exporter folded every BatchNorm into its convolution
    assert len(mr["steps"]) == 54 and mr["steps"][0]["randomized"] == ["/fc/Gemm"]
    explicit = sanity(binary, resnet50, "--methods", "gradcam", "--sanity_layers", "all")
    assert explicit["steps"] == mr["steps"] and "layers_auto" not in explicit


def test_saliency_falls_back_to_blocks(binary, resnet50):
    mr = sanity(binary, resnet50, "--methods", "saliency")
    la = mr["layers_auto"]
    assert la["chose"] == "blocks" and la["steps"] == la["block_steps"] == 6 and la["all_steps"] == 54
    assert [s["randomized"][-1] for s in mr["steps"]] == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]  # cumulative
    assert la["estimated_gflop"] <= 300


def test_bottom_up_blocks_start_at_the_input(binary, resnet50):
    # (a smaller budget cutting the cascade is checked through the server: tests/e2e/test_byom.py)
    mr = sanity(binary, resnet50, "--methods", "saliency", "--sanity_order", "cascading_bottom_up")
    assert [s["randomized"] for s in mr["steps"]][0] == ["conv1"]  # bottom-up: the input side first
