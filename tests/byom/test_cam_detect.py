"""The auto-detected CAM layer of torchvision's classifiers (graph_detect_cam_value): the last
feature map with spatial extent before global pooling — never a pooled map the head then
flattens — and PyTorch module paths that name the same node.

Each model is torchvision's architecture with random weights, exported at a reduced input size
where the architecture allows it (AlexNet's and VGG's AdaptiveAvgPool2d((6, 6)) / ((7, 7)) export
only when the feature map divides, so they stay at 224, with their classifier's hidden layers
narrowed to 64 units to keep the files small: the layers that matter here are before it).
Independent reference: the torch module pytorch-grad-cam's users pick (model.features for AlexNet,
VGG and MobileNetV2, model.layer4 for ResNet, ...) run with a forward hook; the engine's CAM layer
must be that module's last node and have that module's output shape. For DenseNet (whose last map
is a functional ReLU after `features`) the reference is the input of the global pooling.
docs/MODELS.md's table lists the same nodes."""
import json
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

torch.set_num_threads(1)
DOC = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"


class Head2x2(torch.nn.Module):
    """A custom head: AdaptiveAvgPool2d((2, 2)) then flatten and one linear layer."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())
        self.avgpool = torch.nn.AdaptiveAvgPool2d((2, 2))
        self.fc = torch.nn.Linear(32 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def narrow_classifier(m, first):
    """AlexNet/VGG with 64-unit hidden layers (the classifier is after the CAM layer)."""
    idx = [i for i, l in enumerate(m.classifier) if isinstance(l, torch.nn.Linear)]
    m.classifier[idx[0]] = torch.nn.Linear(first, 64)
    m.classifier[idx[1]] = torch.nn.Linear(64, 64)
    m.classifier[idx[2]] = torch.nn.Linear(64, 10)
    return m


def build(name):
    torch.manual_seed(0)
    if name == "head2x2":
        return Head2x2()
    kw = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    m = getattr(torchvision.models, name)(num_classes=10, **kw)
    if name == "alexnet":
        narrow_classifier(m, 256 * 6 * 6)
    if name == "vgg11":
        narrow_classifier(m, 512 * 7 * 7)
    return m


# model, input side, expected node, module path naming it, reference module ("input:" = the input of that module)
CASES = [
    ("alexnet", 224, "/features/features.12/MaxPool", "features", "features"),
    ("vgg11", 224, "/features/features.20/MaxPool", "features", "features"),
    ("resnet18", 64, "/layer4/layer4.1/relu_1/Relu", "layer4", "layer4"),
    ("densenet121", 64, "/Relu", None, "input:classifier"),
    ("mobilenet_v2", 64, "/features/features.18/features.18.2/Clip", "features", "features"),
    ("squeezenet1_1", 64, "/classifier/classifier.2/Relu", "classifier.2", "classifier.2"),
    ("inception_v3", 139, "/Mixed_7c/Concat", "Mixed_7c", "Mixed_7c"),
    ("head2x2", 32, "/features/features.4/Relu", "features", "features"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("cam")
    cache = {}

    def get(name, side):
        if name not in cache:
            m = build(name).eval()
            path = d / f"{name}.onnx"
            torch.onnx.export(m, torch.zeros(1, 3, side, side), str(path), opset_version=13, input_names=["input"],
                              output_names=["logits"])
            cache[name] = (m, path)
        return cache[name]
    return get


def reference_shape(m, side, ref):
    """The reference module's output (or input) shape, from a torch forward hook."""
    where, _, path = ref.rpartition(":")
    mod = m.get_submodule(path)
    got = {}
    h = mod.register_forward_hook(lambda _m, i, o: got.update(shape=tuple((i[0] if where else o).shape)))
    with torch.no_grad():
        m(torch.zeros(1, 3, side, side))
    h.remove()
    if where:  # DenseNet's classifier reads the pooled, flattened map: the map is features' output
        with torch.no_grad():
            return tuple(m.features(torch.zeros(1, 3, side, side)).shape)
    return got["shape"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_auto_detected_cam_layer(binary, exported, case):
    name, side, node, module, ref = case
    m, path = exported(name, side)
    p = subprocess.run([binary, "inspect", str(path), "--json"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cam_layer"] == node
    assert doc["cam_layer_from"] == "auto"
    shape = next(n["shape"] for n in doc["nodes"] if n["name"] == node)
    want = reference_shape(m, side, ref)
    assert [1, *shape] == list(want), f"{name}: engine {shape}, torch {want}"
    assert shape[1] > 1 or shape[2] > 1, "the CAM layer must have spatial extent"
    assert node in DOC.read_text(), f"docs/MODELS.md's table does not list {node}"


@pytest.mark.parametrize("case", [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]])
def test_module_path_names_the_same_node(binary, exported, case, tmp_path):
    """A sidecar's cam_layer as a PyTorch module path resolves to the auto-detected node."""
    name, side, node, module, _ = case
    _, path = exported(name, side)
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.onnx").symlink_to(path)
    (d / f"{name}.json").write_text(json.dumps({"cam_layer": module}))
    p = subprocess.run([binary, "inspect", str(d / f"{name}.onnx"), "--json"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cam_layer"] == node and doc["cam_layer_from"] == "sidecar"


def test_unknown_sidecar_cam_layer_is_a_load_error_with_suggestions(binary, exported, tmp_path):
    _, path = exported("vgg11", 224)
    (tmp_path / "vgg11.onnx").symlink_to(path)
    (tmp_path / "vgg11.json").write_text(json.dumps({"cam_layer": "features.40"}))
    p = subprocess.run([binary, "inspect", str(tmp_path / "vgg11.onnx")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2
    assert "cam_layer 'features.40'" in p.stderr and "closest: 'features.0'" in p.stderr, p.stderr
    assert p.stderr.count("'features.") >= 5


def test_a_pooled_map_is_not_a_cam_layer_but_a_named_one_is_accepted(binary, exported, tmp_path):
    """Naming the 2x2 pooled map explicitly is the user's choice (it is 4-D); auto-detection never picks it."""
    _, path = exported("head2x2", 32)
    (tmp_path / "h.onnx").symlink_to(path)
    (tmp_path / "h.json").write_text(json.dumps({"cam_layer": "avgpool"}))
    p = subprocess.run([binary, "inspect", str(tmp_path / "h.onnx"), "--json"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cam_layer"] == "/avgpool/AveragePool"
    assert next(n["shape"] for n in doc["nodes"] if n["name"] == doc["cam_layer"])[1:] == [2, 2]
