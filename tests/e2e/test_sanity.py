"""Sanity checks (Adebayo et al. 2018): the /sanity route over several images and the `sanity`
parameter of explain. The documents are checked against the draft (permissive) schemas like
every other; these tests pin what is settled: which checks and methods are there, per-image
documents, the step structure."""
import base64

import pytest

from server import curl

SANITY = "/v1/models/fashion-cnn/sanity"
EXPLAIN = "/v1/models/fashion-cnn/explain"


def test_sanity_route_over_two_images_with_curl(server, client, fashion_index, repo):
    files = [str(repo / "tests" / "data" / "fashion" / e["file"]) for e in fashion_index[:2]]
    r = curl(server, "POST", SANITY, "-F", f"image=@{files[0]}", "-F", f"image=@{files[1]}", "-F", "methods=gradcam",
             "-F", "sanity=model,random_logit", "-F", "sanity_layers=blocks")
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["model"] == "fashion-cnn" and rep.get("images") == 2
    assert {"model_randomization", "random_logit"} <= set(rep["sanity"])
    assert "gradcam" in rep["sanity"]["model_randomization"]["methods"]


def test_sanity_route_json_images_and_per_image(client, fashion_index, repo):
    imgs = [base64.b64encode(open(repo / "tests" / "data" / "fashion" / e["file"], "rb").read()).decode()
            for e in fashion_index[:3]]
    r = client.post(SANITY, json={"images": imgs, "methods": ["saliency"], "sanity": "random_logit", "per_image": True})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["images"] == 3 and [p["index"] for p in rep["per_image"]] == [0, 1, 2]
    assert "random_logit" in rep["sanity"] and "model_randomization" not in rep["sanity"]


def test_sanity_route_takes_one_raw_image(client, boot_png):
    r = client.post(SANITY + "?methods=gradcam&sanity=random_logit", data=boot_png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["images"] == 1


def test_sanity_label_check_without_a_twin_says_unavailable(client, boot_png, models):
    if "fashion-cnn-randlabels" in models.names:
        pytest.skip("the shipped twin is served: the label check is available")
    doc = client.post(EXPLAIN + "?methods=gradcam&sanity=label", data=boot_png).json()
    lr = doc["sanity"]["label_randomization"]
    assert lr["status"] == "unavailable" and lr["methods"] == {}


def test_explain_with_sanity_checks(client, boot_png):
    r = client.post(EXPLAIN + "?methods=gradcam&sanity=model,random_logit&sanity_layers=blocks", data=boot_png)
    assert r.status_code == 200
    doc = r.json()
    assert {"model_randomization", "random_logit"} <= set(doc["sanity"])
    steps = doc["sanity"]["model_randomization"]["methods"]["gradcam"]["steps"]
    assert steps and all("randomized" in s for s in steps)


def test_sanity_parameters_are_checked(client, boot_png):
    for q in ("sanity=everything", "sanity_order=random", "sanity_init_std=11", "sanity_noise_samples=65"):
        r = client.post(EXPLAIN + "?" + q, data=boot_png)
        assert r.status_code == 422 and q.split("=")[0] in r.json()["detail"], q
    r = client.post(SANITY + "?per_image=maybe", data=boot_png)
    assert r.status_code == 422
