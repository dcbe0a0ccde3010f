"""The activations route and filter visualization (activation maximization)."""
import base64
import json

import numpy as np

from helpers import png_image, raw_array
from server import curl

ACT = "/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/activations"
VIS = "/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/filters/{}/visualize"


def layer_shape(client, model, layer):
    info = client.get(f"/v1/models/{model}").json()
    return next(l["shape"] for l in info["layers"] if l["name"] == layer)


def test_activations_route(client, boot_png):
    C, H, W = layer_shape(client, "fashion-cnn", "/conv4/Relu")
    r = client.post(ACT + "?output=raw,heatmap_png", data=boot_png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    a = r.json()["explanations"]["activations"]
    assert a["layer"] == "/conv4/Relu"
    x = raw_array(a["raw"])
    assert x.shape == (C, H, W)
    assert [c["index"] for c in a["channels"]] == list(range(C))
    assert np.allclose([c["mean"] for c in a["channels"]], x.mean(axis=(1, 2)), rtol=1e-4, atol=1e-7)
    assert np.allclose([c["max"] for c in a["channels"]], x.max(axis=(1, 2)), rtol=1e-5, atol=1e-7)
    means = [a["channels"][k]["mean"] for k in a["top_channels"]]
    assert means == sorted(means, reverse=True) and len(a["top_channels"]) == min(16, C)
    png_image(a["heatmap_png"])  # a grid of the top channels


def test_activations_default_output_is_the_grid_only(client, boot_png):
    a = client.post(ACT, data=boot_png).json()["explanations"]["activations"]
    assert "heatmap_png" in a and "raw" not in a and "overlay_png" not in a


def test_activations_with_multipart_and_json(server, client, boot_png_path, boot_png):
    r = curl(server, "POST", ACT, "-F", f"image=@{boot_png_path}", "-F", "colormap=gray")
    assert r.status_code == 200
    r = client.post(ACT, json={"image": base64.b64encode(boot_png).decode(), "top_k": 1})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_activations_of_an_unknown_layer_is_404(client, boot_png):
    r = client.post("/v1/models/fashion-cnn/layers/%2Fno%2Fsuch/activations", data=boot_png)
    assert r.status_code == 404 and "/no/such" in r.json()["detail"]


def test_activations_take_only_their_parameters(client, boot_png):
    r = client.post(ACT + "?methods=gradcam", data=boot_png)
    assert r.status_code == 422 and "methods" in r.json()["detail"]


def test_filter_visualization_without_a_body(client):
    r = client.post(VIS.format(3) + "?steps=6")
    assert r.status_code == 200
    d = r.json()
    assert d["layer"] == "/conv4/Relu" and d["index"] == 3 and d["steps"] == 6 and len(d["activation"]) == 6
    assert png_image(d["image_png"]).size == (224, 224)  # 28x28 enlarged for viewing
    assert d["seed"] == 0


def test_filter_visualization_is_seeded(client):
    a = client.post(VIS.format(1), json={"steps": 4, "seed": 11}).json()
    b = client.post(VIS.format(1) + "?steps=4&seed=11").json()
    c = client.post(VIS.format(1) + "?steps=4&seed=12").json()
    assert a["image_png"] == b["image_png"] and a["activation"] == b["activation"]
    assert a["image_png"] != c["image_png"]


def test_filter_visualization_raw_and_model_size(server, client):
    d = client.post(VIS.format(0) + "?steps=3&output=raw&size=model").json()
    assert png_image(d["image_png"]).size == (28, 28)
    assert raw_array(d["raw"]).shape == (1, 28, 28)
    r = curl(server, "POST", VIS.format(0), "-F", "steps=2", "-F", "jitter=0")
    assert r.status_code == 200 and r.json()["steps"] == 2


def test_filter_visualization_of_a_class_logit(client):
    d = client.post("/v1/models/fashion-cnn/layers/logits/filters/9/visualize?steps=3").json()
    assert d["index"] == 9 and d["layer"]  # the node producing the logits


def test_filter_errors(client):
    C = layer_shape(client, "fashion-cnn", "/conv4/Relu")[0]
    r = client.post(VIS.format(C))
    assert r.status_code == 404 and str(C) in r.json()["detail"]
    r = client.post("/v1/models/fashion-cnn/layers/%2Fnope/filters/0/visualize")
    assert r.status_code == 404
    r = client.post("/v1/models/fashion-cnn/layers/logits/filters/10/visualize")
    assert r.status_code == 404
    r = client.post(VIS.format(0) + "?steps=0")
    assert r.status_code == 422 and "steps" in r.json()["detail"]
    r = client.post(VIS.format(0) + "?ig_steps=2")
    assert r.status_code == 422 and "ig_steps" in r.json()["detail"]
    r = client.post(VIS.format(0), data="{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.get(VIS.format(0))
    assert r.status_code == 405
