"""Bringing your own model, through the server (docs/MODELS.md): the whole preprocessing in
GET /v1/models/{m}, the warning for a model without a sidecar, layers named by PyTorch module path
(422 with the closest names otherwise), RGBA uploads for a 4-channel model, float32 .npy tensor
uploads (and their 4xx), a model of 5 channels that takes tensors only, sanity_layers=auto, and
504s that name the parameters that shorten the work.

The references are torch itself (the exported module's own logits on the tensor torchvision's
transforms make), never the server. The models here have random weights and are exported at small
sizes: resnet18 at 64x64 with torchvision's recipe scaled (Resize(73), CenterCrop(64)), a 4-channel
CNN at 32x32 and a 5-channel one at 16x16."""
import base64
import io
import json
import re

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

from helpers import png_image

torch.set_num_threads(1)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _small_cnn(C, K=6):
    torch.manual_seed(C)
    return torch.nn.Sequential(
        torch.nn.Conv2d(C, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, K)).eval()


def _export(m, shape, path):
    torch.onnx.export(m, torch.zeros(*shape), str(path), opset_version=13, input_names=["input"], output_names=["logits"])


@pytest.fixture(scope="module")
def byom(tmp_path_factory):
    d = tmp_path_factory.mktemp("byom")
    torch.manual_seed(0)
    rn = torchvision.models.resnet18(num_classes=10).eval()
    _export(rn, (1, 3, 64, 64), d / "tv.onnx")
    (d / "tv.json").write_text(json.dumps({"input": {"resize": 73, "crop": 64, "mean": MEAN, "std": STD},
                                           "cam_layer": "layer4"}))
    _export(rn, (1, 3, 64, 64), d / "nosidecar.onnx")
    four = _small_cnn(4)
    _export(four, (1, 4, 32, 32), d / "icons.onnx")
    (d / "icons.json").write_text(json.dumps({"input": {"color": "rgba", "mean": [0.5], "std": [0.5]}}))
    five = _small_cnn(5)
    _export(five, (1, 5, 16, 16), d / "bands.onnx")
    (d / "bands.json").write_text(json.dumps({"input": {"color": "none", "mean": [0.1, 0.2, 0.3, 0.4, 0.5],
                                                         "std": [1, 2, 3, 4, 5]}}))
    return {"dir": str(d), "tv": rn, "icons": four, "bands": five}


@pytest.fixture(scope="module")
def srv(start_server, byom):
    s = start_server(models_dir=byom["dir"])
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def photo():
    from skimage import data
    return Image.fromarray(data.chelsea())  # 451 x 300, a real photo


def _png(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


def _npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _logits(doc):
    return np.array([p["logit"] for p in sorted(doc["predictions"], key=lambda p: p["index"])])


def _close(got, want):
    tol = 1e-3 * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tol, f"max |diff| {np.abs(got - want).max()} > {tol}"


# ---- what the server says about a model ------------------------------------------------------------
def test_model_info_shows_the_whole_preprocessing(srv):
    info = srv.client().get("/v1/models/tv").json()
    inp = info["input"]
    assert inp["color"] == "rgb" and inp["channels"] == 3 and inp["channel_order"] == "rgb"
    assert inp["resize"] == "resize_crop" and inp["resize_size"] == 73 and inp["crop"] == [64, 64]
    assert inp["height"] == inp["width"] == 64 and inp["scale"] == 255 and not inp["invert"]
    assert inp["mean"] == pytest.approx(MEAN) and inp["std"] == pytest.approx(STD)
    assert inp["sidecar"] and inp["defaults"] == ["color", "channel_order", "scale"]
    assert info["cam_layer"] == "/layer4/layer4.1/relu_1/Relu"  # the sidecar's module path, resolved
    ns = srv.client().get("/v1/models/nosidecar").json()["input"]
    assert not ns["sidecar"] and set(ns["defaults"]) >= {"mean", "std", "scale", "resize", "color"}
    assert ns["mean"] == [0, 0, 0] and ns["std"] == [1, 1, 1] and ns["resize"] == "stretch"
    bands = srv.client().get("/v1/models/bands").json()
    assert bands["input"]["color"] == "none" and bands["input"]["channels"] == 5 and len(bands["input_mean"]) == 5


def test_a_model_without_sidecar_is_logged_with_the_defaults_it_gets(srv):
    lines = [r for r in srv.log_records() if "no sidecar" in r.get("msg", "")]
    assert len(lines) == 1 and lines[0]["level"] == "warn", srv.log()[-3000:]
    msg = lines[0]["msg"]
    assert "nosidecar.json" in msg
    for default in ("color rgb", "pixels / 255, mean 0, std 1", "channel_order rgb", "resize stretch to 64x64",
                    "labels class_0..class_9", "cam_layer auto-detected (/layer4/layer4.1/relu_1/Relu)", "explaind init"):
        assert default in msg, msg
    assert not any("tv.json" in r.get("msg", "") for r in srv.log_records())  # a full sidecar: no warning


# ---- preprocessing through the server -------------------------------------------------------------
def test_torchvision_recipe_logits_match_torch(srv, byom, photo):
    x = T.Compose([T.Resize(73), T.CenterCrop(64), T.ToTensor(), T.Normalize(MEAN, STD)])(photo).unsqueeze(0)
    want = byom["tv"](x).detach().numpy()[0]
    got = _logits(srv.client().post("/v1/models/tv/predict?top_k=10", data=_png(photo)).json())
    _close(got, want)
    # the same tensor as an .npy upload gives the same logits
    got_t = _logits(srv.client().post("/v1/models/tv/predict?top_k=10", data=_npy(x.numpy()),
                                      headers={"Content-Type": "application/x-npy"}).json())
    _close(got_t, want)


def test_an_extreme_aspect_ratio_is_413_not_a_huge_resize(srv):
    strip = Image.new("RGB", (4000, 1), (200, 100, 50))  # shorter side to 73: 292000 x 73, over 16 M pixels
    r = srv.client().post("/v1/models/tv/predict", data=_png(strip))
    assert r.status_code == 413 and "16 M pixels" in r.json()["detail"], r.text


def test_rgba_png_feeds_the_alpha_channel(srv, byom, photo):
    rgba = photo.convert("RGBA")
    a = np.array(rgba)
    a[..., 3] = np.linspace(0, 255, a.shape[1], dtype=np.uint8)[None, :]  # alpha ramp left to right
    rgba = Image.fromarray(a, "RGBA")
    x = T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Normalize([0.5] * 4, [0.5] * 4)])(rgba).unsqueeze(0)
    want = byom["icons"](x).detach().numpy()[0]
    c = srv.client()
    got = _logits(c.post("/v1/models/icons/predict?top_k=6", data=_png(rgba)).json())
    _close(got, want)
    opaque = _logits(c.post("/v1/models/icons/predict?top_k=6", data=_png(rgba.convert("RGB"))).json())
    assert np.abs(opaque - got).max() > 1e-4  # the alpha matters: an opaque copy is another input
    doc = c.post("/v1/models/icons/explain?methods=gradcam,saliency", data=_png(rgba)).json()
    ov = png_image(doc["explanations"]["gradcam"]["overlay_png"])
    assert ov.size == rgba.size and ov.mode == "RGB"  # drawn over the upload, without its alpha
    assert doc["input"]["tensor_shape"] == [1, 4, 32, 32]


def test_tensor_uploads_in_every_encoding(srv, byom):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 32, 32)).astype(np.float32)
    want = byom["icons"](torch.from_numpy(x)).detach().numpy()[0]
    c = srv.client()
    for arr in (x, x[0]):  # (1, C, H, W) and (C, H, W)
        r = c.post("/v1/models/icons/predict?top_k=6", data=_npy(arr), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        _close(_logits(r.json()), want)
        assert r.json()["input"]["format"] == "npy"
    r = c.post("/v1/models/icons/predict", files={"image": ("x.npy", _npy(x))}, data={"top_k": "6"})
    _close(_logits(r.json()), want)
    r = c.post("/v1/models/icons/predict", json={"image": base64.b64encode(_npy(x)).decode(), "top_k": 6})
    _close(_logits(r.json()), want)
    big_endian = x.astype(">f4")
    _close(_logits(c.post("/v1/models/icons/predict?top_k=6", data=_npy(big_endian)).json()), want)
    doc = c.post("/v1/models/icons/explain?methods=gradcam&size=input", data=_npy(x)).json()
    assert png_image(doc["explanations"]["gradcam"]["overlay_png"]).size == (32, 32)


BAD_TENSORS = [
    ("wrong shape", _npy(np.zeros((3, 32, 32), np.float32)), 422, ["(3, 32, 32)", "(1, 4, 32, 32)"]),
    ("wrong size", _npy(np.zeros((1, 4, 16, 16), np.float32)), 422, ["(1, 4, 16, 16)", "(4, 32, 32)"]),
    ("as many elements, another shape", _npy(np.zeros((1, 2, 64, 32), np.float32)), 422, ["(1, 2, 64, 32)", "(4, 32, 32)"]),
    ("flat", _npy(np.zeros(4 * 32 * 32, np.float32)), 422, ["(4096)", "(1, 4, 32, 32)"]),
    ("more elements than the model", _npy(np.zeros((2, 4, 32, 32), np.float32)), 422, ["(1, 4, 32, 32)"]),
    ("float64", _npy(np.zeros((1, 4, 32, 32))), 422, ["<f8", "float32"]),
    ("int8", _npy(np.zeros((4, 32, 32), np.int8)), 422, ["float32"]),
    ("fortran order", _npy(np.asfortranarray(np.zeros((4, 32, 32), np.float32))), 422, ["Fortran"]),
    ("NaN", _npy(np.full((4, 32, 32), np.nan, np.float32)), 422, ["NaN"]),
    ("truncated data", _npy(np.zeros((4, 32, 32), np.float32))[:-5], 400, ["header"]),
    ("bad header", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}      \n" + b"\x00" * 64, 400, [".npy header"]),
]


@pytest.mark.parametrize("what,body,status,words", BAD_TENSORS, ids=[t[0] for t in BAD_TENSORS])
def test_bad_tensor_uploads_are_4xx(srv, what, body, status, words):
    r = srv.client().post("/v1/models/icons/predict", data=body, headers={"Content-Type": "application/x-npy"})
    assert r.status_code == status, r.text
    for w in words:
        assert w in r.json()["detail"], (what, r.json()["detail"])


def test_a_model_that_is_not_an_image_model_takes_tensors_only(srv, byom, photo):
    c = srv.client()
    r = c.post("/v1/models/bands/predict", data=_png(photo))
    assert r.status_code == 422 and ".npy" in r.json()["detail"] and "(5, 16, 16)" in r.json()["detail"]
    x = np.random.default_rng(2).standard_normal((5, 16, 16)).astype(np.float32)
    want = byom["bands"](torch.from_numpy(x[None])).detach().numpy()[0]
    _close(_logits(c.post("/v1/models/bands/predict?top_k=6", data=_npy(x)).json()), want)
    doc = c.post("/v1/models/bands/explain?methods=gradcam,saliency", data=_npy(x)).json()
    assert png_image(doc["explanations"]["gradcam"]["overlay_png"]).size == (16, 16)
    assert doc["explanations"]["saliency"]["stats"]["max"] > 0


# ---- layer names -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,node", [
    ("layer4", "/layer4/layer4.1/relu_1/Relu"),
    ("layer3.0", "/layer3/layer3.0/relu_1/Relu"),
    ("layer4.1.conv1", "/layer4/layer4.1/conv1/Conv"),
    ("/layer2", "/layer2/layer2.1/relu_1/Relu"),
    ("/layer4/layer4.0/relu/Relu", "/layer4/layer4.0/relu/Relu"),
])
def test_layer_by_module_path(srv, photo, name, node):
    r = srv.client().post("/v1/models/tv/explain", params={"methods": "gradcam", "layer": name, "output": "raw"}, data=_png(photo))
    assert r.status_code == 200, r.text
    assert r.json()["explanations"]["gradcam"]["layer"] == node


def test_unknown_layer_is_422_with_the_closest_names(srv, photo):
    r = srv.client().post("/v1/models/tv/explain", params={"methods": "gradcam", "layer": "layer5"}, data=_png(photo))
    assert r.status_code == 422
    d = r.json()["detail"]
    closest = re.findall(r"'([^']*)'", d.split("closest:")[1])
    assert len(closest) == 5 and set(closest[:4]) == {"layer1", "layer2", "layer3", "layer4"}, d
    r = srv.client().post("/v1/models/tv/layers/layer5/activations", data=_png(photo))
    assert r.status_code == 404 and "'layer4'" in r.json()["detail"]  # the path form: 404, same suggestions
    r = srv.client().post("/v1/models/tv/layers/layer5/filters/0/visualize?steps=1")
    assert r.status_code == 404 and "'layer4'" in r.json()["detail"]


def test_layer_paths_take_module_paths(srv, photo):
    r = srv.client().post("/v1/models/tv/layers/layer4/activations", data=_png(photo))
    assert r.status_code == 200 and r.json()["explanations"]["activations"]["layer"] == "/layer4/layer4.1/relu_1/Relu", r.text
    r = srv.client().post("/v1/models/tv/layers/layer3.1/filters/5/visualize?steps=2")
    assert r.status_code == 200 and r.json()["layer"] == "/layer3/layer3.1/relu_1/Relu", r.text


# ---- sanity_layers=auto and 504s ------------------------------------------------------------------
def test_sanity_layers_auto_takes_every_layer_when_it_is_cheap(srv, photo):
    doc = srv.client().post("/v1/models/icons/explain?methods=gradcam&sanity=model", data=_png(photo)).json()
    mr = doc["sanity"]["model_randomization"]
    assert mr["layers"] == "auto" and mr["layers_auto"]["chose"] == "all"
    assert mr["layers_auto"]["steps"] == mr["layers_auto"]["all_steps"] == 3 == len(mr["steps"])  # 2 convs + the linear


def test_sanity_layers_auto_cuts_ig_on_resnet18_to_the_budget(srv, photo):
    doc = srv.client().post("/v1/models/tv/explain?methods=integrated_gradients&sanity=model&ig_steps=50",
                            data=_png(photo)).json()
    la = doc["sanity"]["model_randomization"]["layers_auto"]
    assert la["all_steps"] == 21 and la["block_steps"] == 6  # conv1, layer1..4, fc
    assert la["chose"] in ("blocks", "blocks_cut") and la["steps"] == len(doc["sanity"]["model_randomization"]["steps"])
    assert la["estimated_gflop"] <= la["budget_gflop"] or la["steps"] == 1
    assert la["budget_gflop"] == 300


def test_sanity_auto_budget_is_a_config_key(start_server, byom, photo):
    s = start_server(models_dir=byom["dir"], sanity_auto_gflop=0.05)
    doc = s.client().post("/v1/models/tv/explain?methods=gradcam&sanity=model", data=_png(photo)).json()
    la = doc["sanity"]["model_randomization"]["layers_auto"]
    assert la["chose"] == "blocks_cut" and la["steps"] == 1 and la["budget_gflop"] == pytest.approx(0.05)
    assert doc["sanity"]["model_randomization"]["steps"] == [{"randomized": ["fc"]}]  # top-down: the logits first
    assert s.stop() == 0


def test_every_504_names_the_parameters_that_shorten_the_work(start_server, models, boot_png):
    s = start_server(models_dir=models.dir, workers=1, request_timeout_ms=300)
    c = s.client()
    r = c.post("/v1/models/mobilenet/explain?methods=integrated_gradients,smoothgrad,scorecam&ig_steps=1024"
               "&smoothgrad_samples=200&sanity=model&output=raw", data=boot_png)
    assert r.status_code == 504, r.text
    d = r.json()["detail"]
    for w in ("ig_steps (now 1024)", "smoothgrad_samples (now 200)", "scorecam_channels (now 0", "sanity_layers (now auto",
              "request_timeout_ms (now 300"):
        assert w in d, d
    r = c.post("/v1/models/mobilenet/layers/logits/filters/0/visualize?steps=1024")
    assert r.status_code == 504 and "steps (now 1024)" in r.json()["detail"], r.text
    assert s.stop() == 0
