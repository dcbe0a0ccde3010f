"""Smoke test of the sanity report generator (tests/sanity_report/make_report.py, `make sanity-report`):
the whole pipeline on 3 Fashion-MNIST test images into a temporary folder — images exported,
`explaind sanity` run for the seven methods in both cascading orders, plots and document written —
and checks of what the document must hold, so that a broken generator is found before someone
spends ten minutes of CPU on the full report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("EXPLAIND_BIN", str(REPO / "build" / "explaind"))
SCRIPT = Path(__file__).resolve().parent / "make_report.py"
sys.path.insert(0, str(SCRIPT.parent))
import make_report  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not os.access(BIN, os.X_OK):
        pytest.exit(f"{BIN} is missing: run `make` first", returncode=2)
    if not (REPO / "models" / "fashion-cnn.onnx").exists():
        pytest.skip("models/fashion-cnn.onnx is not in the repository")
    out = tmp_path_factory.mktemp("sanity-report")
    p = subprocess.run([sys.executable, str(SCRIPT), "--bin", BIN, "--limit", "3", "--no-bench",
                        "--work", str(out / "work"), "--doc", str(out / "SANITY.md"), "--fig-dir", str(out / "fig"),
                        "--command", "smoke"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def test_images_are_the_documented_selection(report):
    files = sorted(os.listdir(report / "work" / "images"))
    # the first 3 of "the first 10 test images of each class, in dataset order": test indices 0, 1, 2
    assert files == ["test_00000_ankle_boot.png", "test_00001_pullover.png", "test_00002_trouser.png"]


def test_raw_report_has_both_orders_all_methods_and_the_label_section(report):
    raw = json.load(open(report / "fig" / "report.json"))
    runs = raw["runs"]["fashion-cnn"]
    assert {"cascading_top_down", "cascading_bottom_up"} <= set(runs)
    for order in ("cascading_top_down", "cascading_bottom_up"):
        rep = runs[order]["report"]
        assert rep["images"] == 3
        mr = rep["sanity"]["model_randomization"]
        assert mr["order"] == order and mr["layers"] == "groups"
        assert set(mr["methods"]) == set(make_report.METHODS)
        n_groups = len(json.load(open(REPO / "models" / "fashion-cnn.json"))["randomization_groups"])
        for m, md in mr["methods"].items():
            assert len(md["steps"]) == n_groups, m
            for s in md["steps"]:
                for metric in make_report.METRICS:
                    v = s[metric]["mean"]
                    assert v is None or -1.0 <= v <= 1.0, (m, metric, v)
            assert "original_edge" in md and "floor" in md
    lr = runs["cascading_top_down"]["report"]["sanity"]["label_randomization"]
    assert lr["status"] in ("ok", "unavailable")
    if lr["status"] == "unavailable":
        assert lr["reason"]


def test_both_orders_end_at_the_same_fully_randomized_model(report):
    raw = json.load(open(report / "fig" / "report.json"))["runs"]["fashion-cnn"]
    td = raw["cascading_top_down"]["report"]["sanity"]["model_randomization"]["methods"]
    bu = raw["cascading_bottom_up"]["report"]["sanity"]["model_randomization"]["methods"]
    for m in td:
        for metric in make_report.METRICS:
            a, b = td[m]["steps"][-1][metric]["mean"], bu[m]["steps"][-1][metric]["mean"]
            assert (a is None and b is None) or abs(a - b) < 1e-9, (m, metric, a, b)


def test_document_has_every_section_and_its_plots(report):
    doc = (report / "SANITY.md").read_text()
    for heading in ("## How this page was made", "### Cascading top-down", "### Cascading bottom-up",
                    "label (data) randomization", "floor and edge similarity", "comparison with the paper",
                    "## Discussion", "## Runs"):
        assert heading in doc, heading
    assert "smoke" in doc  # the recorded command
    if not (REPO / "models" / "fashion-paper-cnn.onnx").exists():
        assert "The paper's own CNN is absent" in doc
    for png in ("fashion-cnn-top-down.png", "fashion-cnn-bottom-up.png"):
        p = report / "fig" / png
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"sanity/{png}" in doc
    assert "nan" not in doc.replace("Nan", "")  # numbers are formatted or 'n/a', never a bare NaN
