"""The three ways to send an image (raw body, multipart/form-data, JSON base64), sent by curl
itself and by python-requests, and what each route answers for them."""
import base64
import json

import numpy as np

from helpers import explanations_without_time, png_image, raw_array, without_volatile
from server import curl

EXPLAIN = "/v1/models/fashion-cnn/explain"


def check_explain(doc, methods, width=28, height=28, fmt="png"):
    assert doc["model"] == "fashion-cnn"
    assert doc["input"] == {"width": width, "height": height, "format": fmt, "tensor_shape": [1, 1, 28, 28]}
    assert sorted(doc["explanations"]) == sorted(methods)
    scores = [p["score"] for p in doc["predictions"]]
    assert scores == sorted(scores, reverse=True)
    assert doc["target"]["index"] == doc["predictions"][0]["index"]


def test_raw_png_body_with_curl(server, boot_png_path):
    r = curl(server, "POST", EXPLAIN + "?methods=gradcam,saliency", "--data-binary", f"@{boot_png_path}",
             "-H", "Content-Type: image/png")
    assert r.status_code == 200
    check_explain(r.json(), ["gradcam", "saliency"])


def test_raw_jpeg_body_with_curl(server, boot_jpeg_path):
    r = curl(server, "POST", EXPLAIN + "?methods=gradcam", "--data-binary", f"@{boot_jpeg_path}",
             "-H", "Content-Type: image/jpeg")
    assert r.status_code == 200
    check_explain(r.json(), ["gradcam"], fmt="jpeg")


def test_curl_data_binary_without_content_type_is_sniffed(server, boot_png_path):
    # curl sends application/x-www-form-urlencoded here; the bytes are a PNG all the same
    r = curl(server, "POST", EXPLAIN, "--data-binary", f"@{boot_png_path}")
    assert r.status_code == 200
    check_explain(r.json(), ["gradcam"])


def test_octet_stream_body_is_sniffed(client, boot_png, boot_jpeg):
    for body, fmt in ((boot_png, "png"), (boot_jpeg, "jpeg")):
        r = client.post(EXPLAIN, data=body, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200
        assert r.json()["input"]["format"] == fmt


def test_multipart_with_curl(server, boot_png_path):
    r = curl(server, "POST", EXPLAIN, "-F", f"image=@{boot_png_path}", "-F", "methods=gradcam")
    assert r.status_code == 200
    check_explain(r.json(), ["gradcam"])


def test_multipart_with_curl_jpeg_and_several_fields(server, boot_jpeg_path):
    r = curl(server, "POST", EXPLAIN, "-F", f"image=@{boot_jpeg_path};type=image/jpeg", "-F", "methods=gradcam,cam",
             "-F", "top_k=2", "-F", "output=raw", "-F", "target=Ankle boot")
    assert r.status_code == 200
    doc = r.json()
    assert doc["input"]["format"] == "jpeg" and sorted(doc["explanations"]) == ["cam", "gradcam"]
    assert len(doc["predictions"]) == 2 and doc["target"] == {"index": 9, "label": "Ankle boot"}
    assert set(doc["explanations"]["cam"]) == {"layer", "raw", "stats", "time_ms"}


def test_multipart_with_requests(client, boot_png):
    r = client.post(EXPLAIN, files={"image": ("boot.png", boot_png, "image/png")}, data={"methods": "saliency"})
    assert r.status_code == 200
    check_explain(r.json(), ["saliency"])


def test_json_base64_with_curl(server, boot_png, tmp_path):
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"image": base64.b64encode(boot_png).decode(), "methods": ["gradcam", "edge"]}))
    r = curl(server, "POST", EXPLAIN, "-H", "Content-Type: application/json", "--data-binary", f"@{body}")
    assert r.status_code == 200
    check_explain(r.json(), ["gradcam", "edge"])


def test_json_base64_with_requests(client, boot_png):
    b64 = base64.b64encode(boot_png).decode()
    a = client.post(EXPLAIN, json={"image": b64, "methods": ["gradcam", "saliency"], "output": ["raw"]})
    b = client.post(EXPLAIN, json={"image": b64, "methods": "gradcam, saliency", "output": "raw"})
    assert a.status_code == b.status_code == 200
    assert a.json()["explanations"].keys() == b.json()["explanations"].keys() == {"gradcam", "saliency"}


def test_the_three_encodings_give_identical_documents(client, boot_png):
    params = {"methods": "gradcam,saliency,smoothgrad", "smoothgrad_samples": "4", "output": "raw,heatmap_png", "seed": "3"}
    raw = client.post(EXPLAIN, params=params, data=boot_png, headers={"Content-Type": "image/png"})
    multi = client.post(EXPLAIN, files={"image": ("b.png", boot_png, "image/png")}, data=params)
    js = client.post(EXPLAIN, json={"image": base64.b64encode(boot_png).decode(), **params})
    docs = [without_volatile(r.json()) for r in (raw, multi, js)]
    for d in docs:
        d["explanations"] = {m: {k: v for k, v in e.items() if k != "time_ms"} for m, e in d["explanations"].items()}
    assert docs[0] == docs[1] == docs[2]


def test_png_size_follows_the_upload_or_the_model(client, big_png):
    r = client.post(EXPLAIN, data=big_png, headers={"Content-Type": "image/png"})
    doc = r.json()
    assert doc["input"]["width"] == 56 and doc["input"]["height"] == 42
    g = doc["explanations"]["gradcam"]
    assert png_image(g["heatmap_png"]).size == (56, 42) and png_image(g["overlay_png"]).size == (56, 42)
    r = client.post(EXPLAIN + "?size=model", data=big_png, headers={"Content-Type": "image/png"})
    g = r.json()["explanations"]["gradcam"]
    assert png_image(g["heatmap_png"]).size == (28, 28) and png_image(g["overlay_png"]).size == (28, 28)


def test_default_explain_is_gradcam_with_both_pngs(client, boot_png):
    doc = client.post(EXPLAIN, data=boot_png).json()
    assert list(doc["explanations"]) == ["gradcam"]
    g = doc["explanations"]["gradcam"]
    assert set(g) == {"layer", "heatmap_png", "overlay_png", "stats", "time_ms"}
    assert g["layer"] == "/conv4/Relu" and len(doc["predictions"]) == 5
    assert doc["passes"]["forward"] == 1


def test_raw_and_attribution_decode_to_their_shapes_and_stats(client, boot_png):
    doc = client.post(EXPLAIN, params={"methods": "gradcam,saliency,integrated_gradients", "output": "raw,attribution",
                                       "ig_steps": "8"}, data=boot_png).json()
    for m, e in doc["explanations"].items():
        a = raw_array(e["raw"])
        assert a.shape == ((7, 7) if m == "gradcam" else (28, 28)), m
        assert np.isclose(a.min(), e["stats"]["min"], rtol=1e-5, atol=1e-12)
        assert np.isclose(a.max(), e["stats"]["max"], rtol=1e-5, atol=1e-12)
        assert np.isclose(a.mean(), e["stats"]["mean"], rtol=1e-4, atol=1e-9)
        if m != "gradcam":
            assert raw_array(e["attribution"]).shape == (1, 28, 28)
        else:
            assert "attribution" not in e
    # saliency's raw is abs_sum over channels of its attribution (reduce default)
    s = doc["explanations"]["saliency"]
    assert np.allclose(raw_array(s["raw"]), np.abs(raw_array(s["attribution"])).sum(0), rtol=1e-5, atol=1e-12)


def test_target_by_index_and_by_label_agree(client, boot_png):
    a = client.post(EXPLAIN, params={"target": "9", "output": "raw"}, data=boot_png).json()
    b = client.post(EXPLAIN, json={"image": base64.b64encode(boot_png).decode(), "target": "Ankle boot", "output": ["raw"]}).json()
    c = client.post(EXPLAIN, json={"image": base64.b64encode(boot_png).decode(), "target": 9, "output": ["raw"]}).json()
    assert a["target"] == b["target"] == c["target"] == {"index": 9, "label": "Ankle boot"}
    assert explanations_without_time(a) == explanations_without_time(b) == explanations_without_time(c)


def test_predict_route(client, boot_png, models):
    r = client.post("/v1/models/fashion-cnn/predict?top_k=3", data=boot_png)
    doc = r.json()
    assert r.status_code == 200 and "explanations" not in doc
    assert len(doc["predictions"]) == 3
    assert all(p["label"] == models.labels[p["index"]] for p in doc["predictions"])
    full = client.post("/v1/models/fashion-cnn/predict?top_k=1000", data=boot_png).json()
    assert len(full["predictions"]) == 10  # top_k beyond the classes is clamped
    assert abs(sum(p["score"] for p in full["predictions"]) - 1) < 1e-5
    logits = np.array([p["logit"] for p in full["predictions"]])
    soft = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose(soft, [p["score"] for p in full["predictions"]], atol=1e-6)
    assert doc["passes"] == {"forward": 1, "backward": 0}


def test_predict_with_curl_multipart_and_json(server, boot_png_path, boot_png, tmp_path):
    a = curl(server, "POST", "/v1/models/fashion-cnn/predict", "-F", f"image=@{boot_png_path}", "-F", "top_k=2")
    body = tmp_path / "p.json"
    body.write_text(json.dumps({"image": base64.b64encode(boot_png).decode(), "top_k": 2}))
    b = curl(server, "POST", "/v1/models/fashion-cnn/predict", "-H", "Content-Type: application/json", "-d", f"@{body}")
    assert a.status_code == b.status_code == 200
    assert a.json()["predictions"] == b.json()["predictions"]




def test_shipped_fashion_cnn_classifies_the_test_images(client, models, fashion_index, repo):
    right = 0
    for e in fashion_index:
        img = (repo / "tests" / "data" / "fashion" / e["file"]).read_bytes()
        top = client.post("/v1/models/fashion-cnn/predict?top_k=1", data=img).json()["predictions"][0]
        assert top["label"] == client.get("/v1/models/fashion-cnn").json()["labels"][top["index"]]
        right += top["index"] == e["label"]
    assert right >= 9, f"{right}/10 test images classified right"
