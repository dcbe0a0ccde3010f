"""Checks of the committed models in models/ (onnx + torch only; the engine's own tests do the
real inference checks). Run: /usr/bin/python3 -m pytest -q tests/models   (~20 s)

For every models/<name>.onnx with a sidecar models/<name>.json:
  - the ONNX file passes onnx.checker, opset 13, input "input" [1,1,28,28], output "logits" [1,10],
    only ops of the engine's set, no Softmax;
  - the sidecar has only allowed keys, 10 labels, the Fashion-MNIST input spec, a cam_layer and
    attention_layers that are node names of the graph (cam_layer a 4-D activation), randomization
    groups that name every parameterized node exactly once, and an existing twin;
  - a label-randomized twin has exactly the architecture of the model that names it;
  - loading the ONNX initializers back into the PyTorch module (by node name) reproduces the test
    accuracy stated in models/metrics/<name>.json (and in models/README.md), and twins still fit
    their permuted training labels.
"""
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import train  # noqa: E402  (models/train.py: architectures, data loading, ONNX -> module)

REQUIRED = ["fashion-cnn", "fashion-cnn-randlabels"]
NAMES = [n for n in train.ORDER if os.path.exists(os.path.join(MODELS, n + ".onnx"))]
ALLOWED_KEYS = {"labels", "input", "cam_layer", "attention_layers", "label_randomized_twin",
                "randomization_groups"}
INPUT_SPEC = {"color": "gray", "height": 28, "width": 28, "scale": 255, "mean": [0.2860],
              "std": [0.3530], "resize": "stretch", "invert": False}
HAVE_DATA = os.path.exists(os.path.join(train.DATA_DIR, "t10k-images-idx3-ubyte.gz"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def load(name):
    m = onnx.load(os.path.join(MODELS, name + ".onnx"))
    with open(os.path.join(MODELS, name + ".json")) as f:
        sc = json.load(f)
    return m, sc


def metrics(name):
    with open(os.path.join(MODELS, "metrics", name + ".json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def data():
    if not HAVE_DATA:
        pytest.fail("dataset-fashion-mnist is not installed (make deps-test installs it): the models cannot be checked")
    d = train.load_fashion()
    return {"x_test": train.normalize(d["test"][0]), "y_test": d["test"][1],
            "x_train": train.normalize(d["train"][0][:10000]), "y_train": d["train"][1]}


def test_required_models_present():
    for n in REQUIRED:
        assert n in NAMES, f"models/{n}.onnx missing"
        assert os.path.exists(os.path.join(MODELS, n + ".json")), f"models/{n}.json missing"


@pytest.mark.parametrize("name", NAMES)
def test_onnx_graph(name):
    m, _ = load(name)
    onnx.checker.check_model(m, full_check=True)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [13]
    ops = {nd.op_type for nd in m.graph.node}
    assert ops <= train.ALLOWED_OPS - {"Shape", "Gather"}, ops - train.ALLOWED_OPS
    assert "Softmax" not in ops
    inits = {t.name for t in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    assert [i.name for i in inputs] == ["input"]
    assert [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 10]
    assert len({nd.name for nd in m.graph.node}) == len(m.graph.node), "duplicate node names"
    assert os.path.getsize(os.path.join(MODELS, name + ".onnx")) < 15 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_sidecar(name):
    m, sc = load(name)
    assert set(sc) <= ALLOWED_KEYS, set(sc) - ALLOWED_KEYS
    assert {"labels", "input", "cam_layer", "attention_layers"} <= set(sc)
    assert sc["labels"] == train.LABELS and len(sc["labels"]) == 10
    assert sc["input"] == INPUT_SPEC
    nodes = {nd.name: nd for nd in m.graph.node}
    # cam_layer: a node of the graph whose output is a 4-D activation
    assert sc["cam_layer"] in nodes, sc["cam_layer"]
    shapes = onnx.shape_inference.infer_shapes(m).graph.value_info
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in shapes}
    assert len(dims[nodes[sc["cam_layer"]].output[0]]) == 4
    for layer in sc["attention_layers"]:
        assert layer in nodes, layer
        assert nodes[layer].op_type == "Sigmoid"
        d = dims[nodes[layer].output[0]]
        assert len(d) == 4 and d[1] == 1, (layer, d)  # a one-channel spatial attention map
    # randomization groups: every parameterized node exactly once, top-down (the Gemm first)
    groups = sc.get("randomization_groups")
    if groups is not None:
        flat = [n for g in groups for n in g]
        params = [nd.name for nd in m.graph.node if nd.op_type in ("Conv", "Gemm", "MatMul")]
        assert sorted(flat) == sorted(params)
        assert nodes[groups[0][0]].op_type == "Gemm" and nodes[groups[0][0]].output[0] == "logits"
        order = {n: i for i, n in enumerate(params)}
        firsts = [max(order[n] for n in g) for g in groups]
        assert firsts == sorted(firsts, reverse=True), "groups are not top-down"
    twin = sc.get("label_randomized_twin")
    if twin is not None:
        assert twin in REQUIRED + train.ORDER and twin.endswith("-randlabels")
        assert os.path.exists(os.path.join(MODELS, twin + ".onnx")), twin


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("-randlabels")])
def test_twin_same_architecture(name):
    m, sc = load(name)
    twin = sc.get("label_randomized_twin")
    if not twin:  # only an extra model may ship before its twin is trained, and the README says so
        assert name not in REQUIRED, f"{name} names no label-randomized twin"
        with open(os.path.join(MODELS, "README.md")) as f:
            assert f"`{name}-randlabels` is not trained yet" in f.read(), f"{name} ships without a twin, unexplained"
        return
    t, tsc = load(twin)
    assert "label_randomized_twin" not in tsc
    sig = lambda g: [(nd.op_type, nd.name, len(nd.input)) for nd in g.graph.node]  # noqa: E731
    assert sig(m) == sig(t)
    shp = lambda g: sorted(tuple(i.dims) for i in g.graph.initializer)  # noqa: E731
    assert shp(m) == shp(t)
    for k in ("cam_layer", "attention_layers", "randomization_groups", "labels", "input"):
        assert sc.get(k) == tsc.get(k), k
    w = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    tw = {i.name: onnx.numpy_helper.to_array(i) for i in t.graph.initializer}
    assert any(not np.array_equal(w[k], tw[k]) for k in w), "twin has the same weights"


def _predict(mod, x):
    with torch.no_grad():
        return torch.cat([mod(x[i:i + 200]).argmax(1) for i in range(0, len(x), 200)]).numpy()


@pytest.mark.parametrize("name", NAMES)
def test_stated_accuracy(name, data):
    m, _ = load(name)
    stated = metrics(name)
    mod = train.onnx_to_module(m, stated["arch"])
    pred = _predict(mod, data["x_test"])
    correct = int((pred == data["y_test"]).sum())
    # the ONNX weights reproduce the figure measured at export time to the image
    assert correct == stated["test_correct_onnx_weights"]
    # ... which is the trained module's figure up to float rounding of the BN folding
    assert abs(correct - stated["test_correct"]) <= 2
    with open(os.path.join(MODELS, "README.md")) as f:
        assert f"{stated['test_correct'] / 100:.2f}%" in f.read(), "README does not state it"
    if name.endswith("-randlabels"):
        assert correct < 1500, "a label-randomized twin must be near chance on true labels"
        y_perm = train.permuted_labels(data["y_train"], stated["config"]["label_seed"])
        fit = (_predict(mod, data["x_train"]) == y_perm[:10000]).mean()
        # the fit stated in metrics/ and README (60,000 images) holds on the first 10,000, and is
        # well above the 10% of chance; the aim is >= 95% (models/README.md says where we are)
        assert abs(fit - stated["train_accuracy_on_fit_labels"]) < 0.02, (fit, stated["train_accuracy_on_fit_labels"])
        assert fit > 0.2, f"twin fits only {fit:.3f} of its permuted training labels"
        with open(os.path.join(MODELS, "README.md")) as f:
            assert f"{stated['train_accuracy_on_fit_labels'] * 100:.2f}%" in f.read(), "README does not state the fit"
    elif name == "fashion-cnn":
        assert correct >= 9000


def test_precise_bn():
    """train.precise_bn (the memorization runs' BN recalibration) sets every BatchNorm's running
    statistics to the population mean and unbiased variance of the given images, leaves weights
    and the original module alone, and returns a module without BatchNorm unchanged."""
    torch.manual_seed(0)
    model = train.build("fashion-cnn")
    x = torch.randn(400, 1, 28, 28) * 1.5 + 0.3
    model.train()
    with torch.no_grad():
        model(x[:32])  # the EMA now follows one batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = train.precise_bn(model, x, batch=200)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"precise_bn changed the original's {k}"
    assert not m.training
    after = m.state_dict()
    for k, v in before.items():
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(after[k], v), f"precise_bn changed the weight {k}"
    # conv1's BN sees the conv1 output of all 400 images: 2 batches of 200, equal sizes, so the
    # cumulative average of the batch statistics is the population mean and (per-batch unbiased)
    # variance averaged over the two batches
    with torch.no_grad():
        z = model.conv1.conv(x)
    mean = z.mean((0, 2, 3))
    var = (z[:200].var((0, 2, 3), unbiased=True) + z[200:].var((0, 2, 3), unbiased=True)) / 2
    assert torch.allclose(m.conv1.bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    assert torch.allclose(m.conv1.bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(before["conv1.bn.running_mean"], mean, rtol=1e-2, atol=1e-3)
    paper = train.build("paper-cnn")
    p2 = train.precise_bn(paper, x)
    for k, v in paper.state_dict().items():
        assert torch.equal(p2.state_dict()[k], v)
