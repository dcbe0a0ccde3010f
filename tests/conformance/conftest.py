"""pytest plumbing for the engine conformance suite (test_engine.py): the export fixture and the error report
($CONFORMANCE_DIR/report.json + a table printed at the end of the run).  The engine and reference sides are in
harness.py (not here: pytest imports every conftest.py of the tree as module `conftest`, so the methods
suite's would shadow this one).

CONFORMANCE_DIR      export/cache directory (default <repo>/build/conformance)
CONFORMANCE_RUN      command for the engine tool (default <repo>/build/tools/conformance_run)
CONFORMANCE_TIMEOUT  seconds allowed per engine run (default 900)
CONFORMANCE_JOBS     export processes on a cold cache (default min(2, CPUs))
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_models  # noqa: E402
import harness  # noqa: E402


@pytest.fixture(scope="session")
def cdir():
    """Export (or reuse the cache of) every conformance model, start the engine on all of them in the
    background (harness.prefetch); returns the export directory."""
    import torch
    torch.set_num_threads(1)   # the other core runs the engine
    export_models.export_all(verbose=True)
    d = export_models.out_dir()
    harness.prefetch(d, [s.name for s in export_models.SPECS])
    return d


def pytest_sessionfinish(session, exitstatus):
    R = harness.REPORT
    if not R["models"] and not R["errors"]:
        return
    R["engine"] = " ".join(harness.engine_cmd())
    R["tolerances"] = export_models.TOLERANCES
    d = export_models.out_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(R, indent=1, sort_keys=True) + "\n")


COLUMNS = [("policy", "inputs"), ("logits", "logits"), ("input_grad", "in_grad"), ("value", "value"),
           ("value_grad", "val_grad"), ("fixed_input_grad", "fix_in_g"), ("fixed_value_grad", "fix_val_g"),
           ("single_vs_batch", "single"), ("threads_identical", "threads"), ("near_kink_units", "near"),
           ("flips_batch", "flips"), ("plain_float64_input_grad", "no_decis"), ("seconds", "secs")]


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "same" if v else "DIFF"
    if isinstance(v, float):
        return f"{v:.2e}" if v < 100 else f"{v:.0f}"
    return str(v)


def pytest_terminal_summary(terminalreporter):
    R = harness.REPORT
    if not R["models"] and not R["errors"]:
        return
    w = terminalreporter.write_line
    w("")
    w("conformance: logits = max|d|/max|ref| (tol 1e-4); grads/value = rel L2 (tol 1e-3); single = max rel L2 "
      "batch vs single (tol 1e-4); threads = 4 threads' bytes vs one thread; inputs = kink-free (torch float32 "
      "reference) or float64 (float64 reference, near-kink units on the engine's side: near = such units, "
      "flips = those the engine put on the other side, no_decis = input grad error without following them)")
    w(f"{'model':20s}" + "".join(f"{h:>10s}" for _, h in COLUMNS))
    for m, r in R["models"].items():
        w(f"{m:20s}" + "".join(f"{_fmt(r.get(k)):>10s}" for k, _ in COLUMNS))
    if R["errors"]:
        w("error cases (exit status: first line of stderr):")
        for c, r in R["errors"].items():
            w(f"  {c:22s} {r['rc']:>4}: {r['message'][:110]}")
    w(f"report: {export_models.out_dir() / 'report.json'}")
