"""KServe V1 data-plane aliases: {"instances": [...], "parameters": {...}} in, one document per
instance out."""
import base64
import json

from helpers import explanations_without_time, without_volatile
from server import curl


def b64(b):
    return base64.b64encode(b).decode()


def test_kserve_predict_gives_one_predict_document_per_instance(client, boot_png, boot_jpeg):
    body = {"instances": [{"b64": b64(boot_png)}, {"image_bytes": {"b64": b64(boot_jpeg)}}], "parameters": {"top_k": 2}}
    r = client.post("/v1/models/fashion-cnn:predict", json=body)
    assert r.status_code == 200
    docs = r.json()["predictions"]
    assert [d["input"]["format"] for d in docs] == ["png", "jpeg"]
    single = client.post("/v1/models/fashion-cnn/predict?top_k=2", data=boot_png).json()
    assert without_volatile(docs[0]) == without_volatile(single)
    assert all(d["request_id"] == r.headers["X-Request-Id"] for d in docs)


def test_kserve_explain_matches_the_explain_route(client, boot_png):
    params = {"methods": ["gradcam", "saliency"], "output": ["raw"]}
    r = client.post("/v1/models/fashion-cnn:explain", json={"instances": [{"b64": b64(boot_png)}] * 3, "parameters": params})
    assert r.status_code == 200
    docs = r.json()["explanations"]
    assert len(docs) == 3
    single = client.post("/v1/models/fashion-cnn/explain", json={"image": b64(boot_png), **params}).json()
    for d in docs:
        assert explanations_without_time(d) == explanations_without_time(single)


def test_kserve_explain_with_curl_and_query_parameters(server, boot_png, tmp_path):
    f = tmp_path / "k.json"
    f.write_text(json.dumps({"instances": [{"b64": b64(boot_png)}]}))
    r = curl(server, "POST", "/v1/models/fashion-cnn:explain?methods=edge", "-H", "Content-Type: application/json",
             "--data-binary", f"@{f}")
    assert r.status_code == 200 and list(r.json()["explanations"][0]["explanations"]) == ["edge"]


def test_kserve_errors(client, boot_png):
    url = "/v1/models/fashion-cnn:explain"
    r = client.post(url, json={"instances": [{"b64": b64(boot_png)}], "image": b64(boot_png)})
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = client.post(url, json={"instances": []})
    assert r.status_code == 400
    r = client.post(url, json={"instances": [{"b64": 5}]})
    assert r.status_code == 400
    r = client.post(url, json={"instances": [{"b64": b64(boot_png)}, {"b64": b64(b"not an image")}]})
    assert r.status_code == 400 and "instance 1" in r.json()["detail"]
    r = client.post(url, json={"instances": [{"b64": b64(boot_png)}], "parameters": {"ig_steps": 0}})
    assert r.status_code == 422 and "ig_steps" in r.json()["detail"]
    r = client.post("/v1/models/fashion-cnn:predict", json={"instances": [{"b64": b64(boot_png)}], "parameters": {"methods": "gradcam"}})
    assert r.status_code == 422 and "methods" in r.json()["detail"]
    r = client.post("/v1/models/nope:predict", json={"instances": [{"b64": b64(boot_png)}]})
    assert r.status_code == 404
