"""docs/MODELS.md's examples run: every fenced block marked `example=NAME` is taken from the file.

- `python example=export` is executed as written: it exports torchvision's resnet18 (random
  weights: weights=None) to resnet18.onnx; `sh example=init` runs `explaind init` on it, and the
  sidecar it writes must give the same preprocessing and CAM layer as the torchvision example's;
- each worked example's `json` block is the sidecar of a model of the shape the example describes
  (the exported resnet18 for `torchvision`; small CNNs built here with torch for `keras-caffe`
  (3 x 224 x 224), `grayscale` (1 x 28 x 28) and `rgba` (4 x 64 x 64)), served by a real server;
- each worked example's `python` block is executed to make the tensor `x` from `cat.jpg` (a photo:
  scikit-image's chelsea) or `icon.png` (the same photo with a transparent border), and the
  server's logits for that file must equal the torch model's logits on `x` within 1e-3 of the
  largest logit;
- `python example=rgba-tensor` is executed against the server with the rgba example's `x`.
The reference is the torch module and the documented torchvision/PIL code, never the server."""
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

DOC = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"
WORKED = {"torchvision": ("resnet18", "cat.jpg"), "keras-caffe": ("kerasnet", "cat.jpg"),
          "grayscale": ("mnist", "cat.jpg"), "rgba": ("icons", "icon.png")}
torch.set_num_threads(1)


def blocks():
    out = {}
    for lang, name, body in re.findall(r"```(json|python|sh) example=([\w-]+)\n(.*?)```", DOC.read_text(), re.S):
        out.setdefault(name, {})[lang] = body
    return out


def test_the_doc_has_every_example():
    b = blocks()
    assert set(b) == {"export", "init", "rgba-tensor", *WORKED}, sorted(b)
    for name in WORKED:
        assert set(b[name]) == {"json", "python"}, name
        json.loads(b[name]["json"])  # valid JSON
    assert "## Model zoo" in DOC.read_text()


def _run(code, cwd, **ns):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 — the documentation's own example
    finally:
        os.chdir(old)
    return ns


def _cnn(C, K, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(C, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, K)).eval()


def _export(m, shape, path):
    torch.onnx.export(m, torch.zeros(*shape), str(path), opset_version=13, input_names=["input"], output_names=["logits"])


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory, start_server):
    from skimage import data
    work = tmp_path_factory.mktemp("models-doc")
    models_dir = work / "models"
    models_dir.mkdir()
    photo = Image.fromarray(data.chelsea())
    photo.save(work / "cat.jpg", "JPEG", quality=90)
    a = np.array(photo.convert("RGBA"))
    a[:40, :, 3] = 0  # a transparent border, a half-transparent band
    a[-40:, :, 3] = 128
    Image.fromarray(a, "RGBA").save(work / "icon.png")
    b = blocks()
    torch.manual_seed(0)
    ns = _run(b["export"]["python"], work)
    os.replace(work / "resnet18.onnx", models_dir / "resnet18.onnx")
    torch_models = {"resnet18": ns["model"], "kerasnet": _cnn(3, 5, 1), "mnist": _cnn(1, 10, 2), "icons": _cnn(4, 7, 3)}
    _export(torch_models["kerasnet"], (1, 3, 224, 224), models_dir / "kerasnet.onnx")
    _export(torch_models["mnist"], (1, 1, 28, 28), models_dir / "mnist.onnx")
    _export(torch_models["icons"], (1, 4, 64, 64), models_dir / "icons.onnx")
    (models_dir / "imagenet_classes.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
    for example, (model, _) in WORKED.items():
        (models_dir / f"{model}.json").write_text(b[example]["json"])
    server = start_server(models_dir=str(models_dir))
    yield {"work": work, "server": server, "models": torch_models, "blocks": b}
    assert server.stop() == 0


@pytest.mark.parametrize("example", sorted(WORKED))
def test_worked_example_matches_torch(doc_env, example):
    model, image = WORKED[example]
    x = _run(doc_env["blocks"][example]["python"], doc_env["work"])["x"]
    want = doc_env["models"][model](x).detach().numpy()[0]
    with open(doc_env["work"] / image, "rb") as f:
        r = doc_env["server"].client().post(f"/v1/models/{model}/predict", params={"top_k": len(want)}, data=f.read())
    assert r.status_code == 200, r.text
    got = np.array([p["logit"] for p in sorted(r.json()["predictions"], key=lambda p: p["index"])])
    tol = 1e-3 * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tol, f"{example}: max |diff| {np.abs(got - want).max()} (tol {tol})"


def test_sidecar_settings_are_what_the_server_reports(doc_env):
    c = doc_env["server"].client()
    tv = c.get("/v1/models/resnet18").json()
    assert tv["cam_layer"] == "/layer4/layer4.1/relu_1/Relu" and tv["labels"][999] == "class 999"
    assert tv["input"]["resize_size"] == 256 and tv["input"]["crop"] == [224, 224]
    assert c.get("/v1/models/kerasnet").json()["input"]["channel_order"] == "bgr"
    assert c.get("/v1/models/mnist").json()["input"]["invert"] is True
    assert c.get("/v1/models/icons").json()["input"]["color"] == "rgba"


def test_tensor_upload_example(doc_env):
    s = doc_env["server"]
    x = _run(doc_env["blocks"]["rgba"]["python"], doc_env["work"])["x"]
    ns = _run(doc_env["blocks"]["rgba-tensor"]["python"], doc_env["work"], x=x, url=s.base)
    want = doc_env["models"]["icons"](x).detach().numpy()[0]
    got = np.array([ns["logits"][i] for i in range(len(want))])
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, float(np.abs(want).max()))


def test_init_example_writes_the_torchvision_example(doc_env, binary, tmp_path):
    """The `explaind init` command of the doc, run in a folder with the export and the labels,
    writes a sidecar equivalent to the hand-written torchvision example."""
    import subprocess
    work = tmp_path / "init"
    work.mkdir()
    models_dir = doc_env["work"] / "models"
    (work / "resnet18.onnx").symlink_to(models_dir / "resnet18.onnx")
    (work / "imagenet_classes.txt").symlink_to(models_dir / "imagenet_classes.txt")
    cmd = doc_env["blocks"]["init"]["sh"].replace("build/explaind", binary)
    p = subprocess.run(["bash", "-c", "set -eu\n" + cmd], cwd=work, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    written = json.loads((work / "resnet18.json").read_text())
    assert written["labels_file"] == "imagenet_classes.txt"

    def inspect(path):
        q = subprocess.run([binary, "inspect", str(path), "--json"], capture_output=True, text=True, timeout=300)
        assert q.returncode == 0, q.stderr
        d = json.loads(q.stdout)
        pre = {k: v for k, v in d["preprocessing"].items() if k != "defaults"}
        return pre, d["cam_layer"]
    assert inspect(work / "resnet18.onnx") == inspect(models_dir / "resnet18.onnx")

