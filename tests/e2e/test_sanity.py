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


def test_sanity_label_check_without_a_twin_says_unavailable(client, boot_png):
    # fc-head's sidecar names no label_randomized_twin
    r = client.post("/v1/models/fc-head/explain?methods=saliency&sanity=label", data=boot_png)
    assert r.status_code == 200, r.text
    lr = r.json()["sanity"]["label_randomization"]
    assert lr["status"] == "unavailable" and lr["methods"] == {} and lr.get("reason")


def test_sanity_label_check_with_the_shipped_twin(client, boot_png):
    doc = client.post(EXPLAIN + "?methods=saliency&sanity=label", data=boot_png).json()
    lr = doc["sanity"]["label_randomization"]
    assert lr["status"] != "unavailable" and "saliency" in lr["methods"], lr


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


# ---- built-in probe set: /sanity without an image uses models_dir/probes/{model}/ -------------------------
PROBES = "probes/fashion-cnn"


def probe_files(models):
    import os
    d = os.path.join(models.dir, PROBES)
    return sorted(f for f in os.listdir(d) if f.endswith(".png")) if os.path.isdir(d) else []


def test_model_info_tells_the_probe_set_size(client, models):
    if not probe_files(models):
        pytest.fail("no probe set for fashion-cnn: models/probes/fashion-cnn/ ships with the repository")
    assert client.get("/v1/models/fashion-cnn").json()["probe_images"] == len(probe_files(models)) == 20
    assert client.get("/v1/models/fc-head").json()["probe_images"] == 0


def test_sanity_without_an_image_runs_the_probe_set(client, models):
    files = probe_files(models)
    if not files:
        pytest.fail("no probe set for fashion-cnn: models/probes/fashion-cnn/ ships with the repository")
    for kw in ({"data": b""}, {"json": {}}, {"json": {"images": []}}):
        r = client.post(SANITY + "?methods=gradcam&sanity=random_logit", **kw)
        assert r.status_code == 200, (kw, r.text)
        rep = r.json()
        assert rep["images"] == len(files) and rep["images_from"] == "probe_set", kw
        assert rep["probe_set"] == {"dir": PROBES, "files": files}


def test_sanity_multipart_with_only_parameters_runs_the_probe_set(server, models):
    if not probe_files(models):
        pytest.fail("no probe set for fashion-cnn: models/probes/fashion-cnn/ ships with the repository")
    r = curl(server, "POST", SANITY, "-F", "methods=saliency", "-F", "sanity=random_logit")
    assert r.status_code == 200, r.text
    assert r.json()["images_from"] == "probe_set"


def test_probe_set_report_equals_sending_the_same_images(client, models):
    import os
    files = probe_files(models)
    if not files:
        pytest.fail("no probe set for fashion-cnn: models/probes/fashion-cnn/ ships with the repository")
    q = "?methods=gradcam,saliency&sanity=random_logit&seed=3"
    probe = client.post(SANITY + q, data=b"").json()
    imgs = [base64.b64encode(open(os.path.join(models.dir, PROBES, f), "rb").read()).decode() for f in files]
    sent = client.post(SANITY + q, json={"images": imgs}).json()
    assert sent["images_from"] == "request" and "probe_set" not in sent
    assert probe["sanity"] == sent["sanity"]


def test_sanity_without_an_image_on_a_model_without_probes_is_400(client):
    r = client.post("/v1/models/fc-head/sanity?methods=gradcam&sanity=random_logit", data=b"")
    assert r.status_code == 400
    assert "probe set" in r.json()["detail"] and "probes/fc-head" in r.json()["detail"]


def test_explain_without_an_image_is_still_400(client, models):
    r = client.post(EXPLAIN + "?methods=gradcam", data=b"")
    assert r.status_code == 400
