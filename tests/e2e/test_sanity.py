"""Sanity checks (Adebayo et al. 2018): the /sanity route over several images and the `sanity`
parameter of explain. The module is being built: while the server says the route is not in its
build, or explain leaves the section out, these tests skip and say so; the documents they get
are checked against the (draft, permissive) schemas like every other."""
import base64

import pytest

from server import curl

SANITY = "/v1/models/fashion-cnn/sanity"
EXPLAIN = "/v1/models/fashion-cnn/explain"


def skip_if_not_built(r):
    if r.status_code == 404 and "not available in this build" in r.json()["detail"]:
        pytest.skip("the server says: " + r.json()["detail"])


def test_sanity_route_over_two_images_with_curl(server, client, fashion_index, repo):
    files = [str(repo / "tests" / "data" / "fashion" / e["file"]) for e in fashion_index[:2]]
    skip_if_not_built(client.post(SANITY, data=open(files[0], "rb").read()))
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
    skip_if_not_built(r)
    assert r.status_code == 200, r.text
    assert len(r.json()["per_image"]) == 3


def test_explain_with_sanity_checks(client, boot_png):
    r = client.post(EXPLAIN + "?methods=gradcam&sanity=model,random_logit&sanity_layers=blocks", data=boot_png)
    assert r.status_code == 200
    doc = r.json()
    if "sanity" not in doc:
        pytest.skip("explain leaves the sanity section out in this build")
    assert {"model_randomization", "random_logit"} <= set(doc["sanity"])
    steps = doc["sanity"]["model_randomization"]["methods"]["gradcam"]["steps"]
    assert steps and all("randomized" in s for s in steps)


def test_sanity_parameters_are_checked_even_before_the_module_exists(client, boot_png):
    for q in ("sanity=everything", "sanity_order=random", "sanity_init_std=11", "sanity_noise_samples=65"):
        r = client.post(EXPLAIN + "?" + q, data=boot_png)
        assert r.status_code == 422 and q.split("=")[0] in r.json()["detail"], q
    r = client.post(SANITY + "?per_image=maybe", data=boot_png)
    assert r.status_code == 422
