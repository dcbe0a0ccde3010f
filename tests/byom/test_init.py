"""`explaind init MODEL.onnx`: the sidecar it writes, what it prints, and what it refuses; and
`explaind inspect`'s preprocessing lines. The reference for the sidecar's numbers is
torchvision's own ImageNet weights transform (ResNet18_Weights.IMAGENET1K_V1.transforms(): its
resize and crop sizes, mean and std), read from torchvision, not typed here."""
import json
import subprocess

import pytest
import torch
import torchvision

torch.set_num_threads(1)


def export(path, C=3, H=224, W=224, K=10, dynamic=False):
    torch.manual_seed(0)
    if C == 3 and H == W == 224:
        m = torchvision.models.resnet18(num_classes=K)
    else:
        m = torch.nn.Sequential(torch.nn.Conv2d(C, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, K))
    kw = {"dynamic_axes": {"input": {2: "h", 3: "w"}}} if dynamic else {}
    torch.onnx.export(m.eval(), torch.zeros(1, C, H, W), str(path), opset_version=13, input_names=["input"],
                      output_names=["logits"], **kw)
    return path


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    return export(tmp_path_factory.mktemp("init") / "resnet18.onnx")


def run(binary, *args):
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_imagenet_preset_is_torchvisions_recipe(binary, resnet, tmp_path):
    model = tmp_path / "resnet18.onnx"
    model.symlink_to(resnet)
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    p = run(binary, "init", model, "--labels", tmp_path / "classes.txt")
    assert p.returncode == 0, p.stderr
    sc = json.loads((tmp_path / "resnet18.json").read_text())
    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert sc["input"]["resize"] == tf.resize_size[0] == 256 and sc["input"]["crop"] == [tf.crop_size[0]] * 2
    assert sc["input"]["mean"] == pytest.approx(tf.mean) and sc["input"]["std"] == pytest.approx(tf.std)
    assert sc["input"]["scale"] == 255 and sc["input"]["channel_order"] == "rgb"
    assert sc["cam_layer"] == "/layer4/layer4.1/relu_1/Relu" and sc["labels_file"] == "classes.txt"
    out = p.stdout
    assert "guessed:" in out and "check:" in out
    for w in ("3 x 224 x 224", "Resize(256), CenterCrop((224, 224))", "module layer4.1.relu", "512 x 7 x 7", "10 from classes.txt",
              "the labels are in the order of the model's 10 outputs", "channel order"):
        assert w in out, out
    # the sidecar loads, and inspect shows it with no warning
    p = run(binary, "inspect", model)
    assert p.returncode == 0 and "resize: shorter side to 256, then center crop 224x224" in p.stdout, p.stdout
    assert "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in p.stdout and "warning" not in p.stdout


def test_init_never_overwrites_without_force(binary, resnet, tmp_path):
    model = tmp_path / "resnet18.onnx"
    model.symlink_to(resnet)
    (tmp_path / "resnet18.json").write_text('{"labels_file": "mine.txt"}')
    p = run(binary, "init", model)
    assert p.returncode == 2 and "exists" in p.stderr and "--force" in p.stderr
    assert (tmp_path / "resnet18.json").read_text() == '{"labels_file": "mine.txt"}'
    p = run(binary, "init", model, "--force", "--preset", "imagenet-bgr")
    assert p.returncode == 0, p.stderr
    sc = json.loads((tmp_path / "resnet18.json").read_text())["input"]
    assert sc["channel_order"] == "bgr" and sc["scale"] == 1 and sc["mean"] == pytest.approx([103.939, 116.779, 123.68])
    assert sc["resize"] == "stretch" and not (tmp_path / "resnet18.json.tmp").exists()


def test_labels_elsewhere_are_copied_in_and_counted(binary, resnet, tmp_path):
    (tmp_path / "m").mkdir()
    model = tmp_path / "m" / "resnet18.onnx"
    model.symlink_to(resnet)
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    assert run(binary, "init", model, "--labels", tmp_path / "labels.txt").returncode == 0
    assert json.loads((tmp_path / "m" / "resnet18.json").read_text())["labels"] == [f"c{i}" for i in range(10)]
    (tmp_path / "nine.txt").write_text("".join(f"c{i}\n" for i in range(9)))
    p = run(binary, "init", model, "--labels", tmp_path / "nine.txt", "--force")
    assert p.returncode == 2 and "9 labels but the model has 10 outputs" in p.stderr


def test_gray_and_four_channel_models(binary, tmp_path):
    gray = export(tmp_path / "gray.onnx", C=1, H=28, W=28)
    p = run(binary, "init", gray, "--preset", "imagenet")
    assert p.returncode == 2 and "3-channel" in p.stderr and not (tmp_path / "gray.json").exists()
    assert run(binary, "init", gray).returncode == 0  # default preset for 1 channel: none
    sc = json.loads((tmp_path / "gray.json").read_text())["input"]
    assert sc["color"] == "gray" and sc["height"] == sc["width"] == 28 and sc["mean"] == [0] and sc["std"] == [1]
    four = export(tmp_path / "four.onnx", C=4, H=32, W=32)
    assert run(binary, "init", four).returncode == 0
    assert json.loads((tmp_path / "four.json").read_text())["input"]["color"] == "rgba"
    five = export(tmp_path / "five.onnx", C=5, H=16, W=16)
    p = run(binary, "init", five)
    assert p.returncode == 0 and "float32 .npy tensors" in p.stdout
    sc = json.loads((tmp_path / "five.json").read_text())["input"]
    assert sc["color"] == "none" and sc["channels"] == 5


def test_symbolic_input_size_needs_size(binary, tmp_path):
    dyn = export(tmp_path / "dyn.onnx", C=3, H=40, W=40, dynamic=True)
    p = run(binary, "init", dyn, "--preset", "none")
    assert p.returncode == 2 and "--size" in p.stderr
    p = run(binary, "init", dyn, "--preset", "none", "--size", "48x64")
    assert p.returncode == 0, p.stderr
    sc = json.loads((tmp_path / "dyn.json").read_text())["input"]
    assert sc["height"] == 48 and sc["width"] == 64
    assert "48x64" in run(binary, "inspect", dyn).stdout


def test_a_sidecar_size_that_contradicts_a_static_graph_is_an_error(binary, resnet, tmp_path):
    model = tmp_path / "resnet18.onnx"
    model.symlink_to(resnet)
    (tmp_path / "resnet18.json").write_text(json.dumps({"input": {"height": 256, "width": 256}}))
    p = run(binary, "inspect", model)
    assert p.returncode == 2 and "input.height is 256 but the graph input 'input' is 224 high" in p.stderr, p.stderr
    (tmp_path / "resnet18.json").write_text(json.dumps({"input": {"resize": 256, "crop": 240}}))
    p = run(binary, "inspect", model)
    assert p.returncode == 2 and "is 224" in p.stderr, p.stderr


@pytest.mark.parametrize("sidecar,words", [
    ({"input": {"mean": [0.5, 0.5]}}, ["2 values", "3 channels"]),
    ({"input": {"color": "gray"}}, ["means 1 channel but the graph takes 3"]),
    ({"input": {"channels": 4}}, ["channels is 4"]),
    ({"input": {"crop": 224}}, ["crop needs input.resize to be a size"]),
    ({"input": {"resize": "bilinear"}}, ["input.resize must be"]),
    ({"input": {"channel_order": "brg"}}, ["channel_order"]),
    ({"input": {"resize": 256, "crop": 224, "height": 200}}, ["contradicts"]),
    ({"input": {"colour": "rgb"}}, ["unknown key 'colour'"]),
])
def test_bad_input_specs_are_load_errors(binary, resnet, tmp_path, sidecar, words):
    model = tmp_path / "resnet18.onnx"
    model.symlink_to(resnet)
    (tmp_path / "resnet18.json").write_text(json.dumps(sidecar))
    p = run(binary, "inspect", model)
    assert p.returncode == 2, p.stdout
    for w in words:
        assert w in p.stderr, p.stderr


def test_inspect_names_the_defaults_of_a_model_without_sidecar(binary, resnet, tmp_path):
    model = tmp_path / "resnet18.onnx"
    model.symlink_to(resnet)
    p = run(binary, "inspect", model, "--json")
    doc = json.loads(p.stdout)
    assert doc["preprocessing"]["sidecar"] is False and "mean" in doc["preprocessing"]["defaults"]
    assert "no sidecar resnet18.json" in doc["defaults_note"] and "--preset imagenet" in doc["defaults_note"]
