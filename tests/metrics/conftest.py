"""Shared fixtures for the metrics tests: the metrics_check runner and a record of the largest
error seen per quantity, printed at the end of the run (the numbers the report quotes)."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(os.environ.get("METRICS_CHECK", ROOT / "build" / "tools" / "metrics_check"))

MAX_ERR = {}


def record(name, err):
    """Keep the largest |C - reference| seen for `name`."""
    err = float(err)
    if err > MAX_ERR.get(name, -1.0):
        MAX_ERR[name] = err


@pytest.fixture(scope="session")
def check():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: run `make {TOOL.relative_to(ROOT) if TOOL.is_absolute() else TOOL}`")

    def run(*args):
        p = subprocess.run([str(TOOL), *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 0, f"metrics_check {' '.join(map(str, args))}: {p.stderr}"
        return json.loads(p.stdout)

    return run


@pytest.fixture
def put(tmp_path):
    """Write an array as raw little-endian float32 (or float64 when the name ends in .f64)."""
    def write(name, arr):
        path = tmp_path / name
        np.asarray(arr).astype("<f8" if name.endswith(".f64") else "<f4").tofile(path)
        return path

    return write


def pytest_terminal_summary(terminalreporter):
    if MAX_ERR:
        terminalreporter.write_sep("-", "largest |metrics.c - reference| per quantity")
        for k in sorted(MAX_ERR):
            terminalreporter.write_line(f"{k:28s} {MAX_ERR[k]:.3e}")
