"""pytest plumbing for the conformance suite: where the engine is, running it (each distinct command once per
session), and the error report (build/conformance/report.json + a table printed at the end of the run).

ENGINE_RUN   command for the tool (split like a shell would; default <repo>/build/tools/engine_run).
             ENGINE_RUN="/usr/bin/python3 tests/conformance/ref_engine.py" runs the harness against the
             pure-torch stand-in (dry run: checks the harness itself, needs no C code).
CONFORMANCE_DIR   export/cache directory (default <repo>/build/conformance).
CONFORMANCE_TIMEOUT   seconds allowed per engine_run invocation (default 1800).
"""
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import export_models  # noqa: E402

REPORT = {"models": {}, "errors": {}}
_RUNS = {}


def engine_cmd():
    env = os.environ.get("ENGINE_RUN")
    if env:
        return shlex.split(env)
    return [str(REPO / "build" / "tools" / "engine_run")]


def record(model, key, value):
    REPORT["models"].setdefault(model, {})[key] = value


class Run:
    def __init__(self, cmd, rc, stdout, stderr, prefix, seconds):
        self.cmd, self.rc, self.stdout, self.stderr, self.prefix, self.seconds = cmd, rc, stdout, stderr, prefix, seconds

    @property
    def info(self):
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON line on stdout: {self.stdout!r}")

    def describe(self):
        how = f"killed by signal {-self.rc}" if self.rc < 0 else f"exit status {self.rc}"
        return f"{how}\n  cmd: {' '.join(self.cmd)}\n  stderr: {self.stderr.strip()[-2000:]}"


@pytest.fixture(scope="session")
def cdir():
    """Export (or reuse the cache of) every conformance model; returns the export directory."""
    export_models.export_all(verbose=True)
    return export_models.out_dir()


@pytest.fixture(scope="session")
def engine(cdir):
    cmd = engine_cmd()
    exe = Path(cmd[0])
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        pytest.fail(f"engine tool not found: {cmd[0]} (build it with make, or set ENGINE_RUN)")
    runs_dir = cdir / "runs"
    runs_dir.mkdir(exist_ok=True)
    timeout = float(os.environ.get("CONFORMANCE_TIMEOUT", "1800"))

    def run(model_path, input_path, n, tag, *extra):
        """Run the tool once per distinct (model, input, args); returns a Run."""
        key = (str(model_path), str(input_path), n, extra)
        if key in _RUNS:
            return _RUNS[key]
        prefix = runs_dir / tag
        for old in runs_dir.glob(f"{tag}.*"):
            old.unlink()
        args = cmd + ["--model", str(model_path), "--input", str(input_path), "--n", str(n),
                      *map(str, extra), "--out", str(prefix)]
        t0 = time.time()
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            r = Run(args, p.returncode, p.stdout, p.stderr, prefix, time.time() - t0)
        except subprocess.TimeoutExpired as e:
            r = Run(args, 999, e.stdout or "", f"timed out after {timeout}s", prefix, time.time() - t0)
        _RUNS[key] = r
        return r

    return run


def pytest_sessionfinish(session, exitstatus):
    if not REPORT["models"] and not REPORT["errors"]:
        return
    REPORT["engine"] = " ".join(engine_cmd())
    REPORT["tolerances"] = export_models.TOLERANCES
    d = export_models.out_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(REPORT, indent=1, sort_keys=True) + "\n")


COLUMNS = [("logits", "logits"), ("input_grad", "in_grad"), ("value", "value"), ("value_grad", "val_grad"),
           ("fixed_input_grad", "fix_in_g"), ("fixed_value_grad", "fix_val_g"), ("single_vs_batch", "single"),
           ("threads_identical", "threads"), ("seconds", "secs")]


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "same" if v else "DIFF"
    if isinstance(v, float):
        return f"{v:.2e}" if v < 100 else f"{v:.0f}"
    return str(v)


def pytest_terminal_summary(terminalreporter):
    if not REPORT["models"] and not REPORT["errors"]:
        return
    w = terminalreporter.write_line
    w("")
    w("conformance: logits = max|d|/max|ref| (tol 1e-4); grads/value = rel L2 (tol 1e-3); "
      "single = max rel L2 batch vs --single (tol 1e-5); threads = --threads 4 bytes vs 1 thread")
    w(f"{'model':20s}" + "".join(f"{h:>10s}" for _, h in COLUMNS))
    for m, r in REPORT["models"].items():
        w(f"{m:20s}" + "".join(f"{_fmt(r.get(k)):>10s}" for k, _ in COLUMNS))
    if REPORT["errors"]:
        w("error cases (exit status: first line of stderr):")
        for c, r in REPORT["errors"].items():
            w(f"  {c:22s} {r['rc']:>4}: {r['message'][:110]}")
    w(f"report: {export_models.out_dir() / 'report.json'}")
