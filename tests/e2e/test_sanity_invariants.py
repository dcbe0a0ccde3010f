"""The invariants of the sanity checks (issue: sanity checks, "Tests"):

- randomization never changes the shared model: a normal explain request gives the same bytes
  before, during (concurrently with) and after sanity requests that randomize every layer;
- the same seed gives the same sanity document;
- the cascading test reusing the unrandomized forward prefix gives the same numbers as the naive
  full recomputation (`explaind sanity --full-recompute`), while recomputing fewer nodes;
- on the default model, saliency's label-randomization similarity is below the threshold
  (Adebayo et al. 2018, section 5: a failure means a bug or a bad twin, never a reason to loosen it).
"""
import json
import subprocess
import threading


EXPLAIN = "/v1/models/fashion-cnn/explain"
SANITY = "/v1/models/fashion-cnn/sanity"
MAPS = "methods=saliency,gradcam,guided_backprop&output=raw&seed=3"


VOLATILE = ("request_id", "timing_ms", "time_ms")


def _strip_volatile(doc):
    """The document without what differs between two runs of the same request: ids and times."""
    if isinstance(doc, dict):
        return {k: _strip_volatile(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip_volatile(v) for v in doc]
    return doc


def _explanations(client, png):
    r = client.post(EXPLAIN + "?" + MAPS, data=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    return {m: e["raw"] for m, e in r.json()["explanations"].items()}


def test_randomization_never_changes_the_shared_model(client, boot_png):
    before = _explanations(client, boot_png)
    errors, during = [], []

    def sanity_requests():
        try:
            for _ in range(3):
                r = client.post(SANITY + "?methods=saliency,gradcam&sanity=model&sanity_layers=all", data=boot_png,
                                headers={"Content-Type": "image/png"})
                if r.status_code != 200:
                    errors.append(r.text)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    t = threading.Thread(target=sanity_requests)
    t.start()
    while t.is_alive() or not during:
        during.append(_explanations(client, boot_png))
    t.join()
    after = _explanations(client, boot_png)
    assert not errors, errors
    assert all(d == before for d in during), "an explanation changed while sanity checks ran"
    assert after == before, "an explanation changed after sanity checks ran"


def _cli_sanity(binary, repo, *extra):
    imgs = [str(repo / "tests" / "data" / "fashion" / f) for f in ("test_00000_ankle_boot.png", "test_00001_pullover.png")]
    p = subprocess.run([str(binary), "sanity", "--model", str(repo / "models" / "fashion-cnn.onnx"), "--images", *imgs,
                        "--methods", "saliency,gradcam,guided_backprop,integrated_gradients", "--ig-steps", "8",
                        "--sanity", "model,random_logit", "--sanity-layers", "all", "--seed", "11", "--per-image", "true",
                        "--compact", *extra], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _recomputed(doc):
    mr = [p["sanity"]["model_randomization"] for p in doc["per_image"]]
    return sum(m["nodes_recomputed"] for m in mr), sum(m["nodes_total"] for m in mr)


def _without_pass_counts(doc):
    """Drop what only says how the numbers were computed (passes and recomputed nodes)."""
    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items() if k not in ("nodes_recomputed", "nodes_total", "passes")}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(_strip_volatile(doc))


def test_same_seed_same_sanity_document(binary, repo):
    a, b = _cli_sanity(binary, repo), _cli_sanity(binary, repo)
    assert _strip_volatile(a) == _strip_volatile(b)


def test_parallel_steps_give_the_numbers_of_one_thread(binary, repo):
    # as a server does when a worker is idle: odd steps on a helper thread with its own workspace
    one, two = _cli_sanity(binary, repo), _cli_sanity(binary, repo, "--parallel-steps")
    assert _recomputed(one) == _recomputed(two)
    assert _without_pass_counts(one) == _without_pass_counts(two)
    f1 = one["per_image"][0]["sanity"]["passes"]["forward"]
    assert two["per_image"][0]["sanity"]["passes"]["forward"] == f1 + 1  # the helper's own original forward


def test_prefix_reuse_gives_the_numbers_of_the_full_recomputation(binary, repo):
    reuse, full = _cli_sanity(binary, repo), _cli_sanity(binary, repo, "--full-recompute")
    got, total = _recomputed(reuse)
    assert _recomputed(full) == (total, total), "--full-recompute must recompute every node"
    assert got < total, "the cascading test should reuse the unrandomized prefix"
    assert _without_pass_counts(reuse) == _without_pass_counts(full)


def test_saliency_label_randomization_is_below_the_threshold(client, models, fashion_index, repo):
    files = [("image", open(repo / "tests" / "data" / "fashion" / e["file"], "rb").read()) for e in fashion_index[:10]]
    r = client.post(SANITY, files=files, data={"methods": "saliency", "sanity": "label"})
    assert r.status_code == 200, r.text
    lr = r.json()["sanity"]["label_randomization"]
    assert lr["status"] != "unavailable", lr
    sal = lr["methods"]["saliency"]
    assert sal["images_decided"] == 10 and sal["passed"] is True, json.dumps(sal)[:2000]
    assert sal["spearman_abs"]["mean"] < 0.5 and sal["ssim"]["mean"] < 0.5  # the default thresholds
