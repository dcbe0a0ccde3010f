"""The engine side and the reference side of the conformance suite (test_engine.py), and its report.

Engine side: build/tools/conformance_run (tests/conformance/conformance_run.c), once per model and
option set, loading the ONNX file once for the batch, fixed-target, single-image and 4-thread passes
(CONFORMANCE_RUN overrides the command; CONFORMANCE_TIMEOUT the seconds allowed per run, default 900).

Reference side: the torch references export_models.py cached, for the models whose input is kink-free;
for the others (policy "float64") a float64 torch forward/backward of the same module on the same input,
computed here, in which the backward of each near-kink unit listed in NAME.kinks.json follows the side
of its kink that the engine's own forward put it on (decision_reference()).
"""
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import export_models  # noqa: E402
import kinks  # noqa: E402

REPORT = {"models": {}, "errors": {}}
REF_KEYS = export_models.REF_KEYS


def record(model, key, value):
    REPORT["models"].setdefault(model, {})[key] = value


def engine_cmd():
    env = os.environ.get("CONFORMANCE_RUN")
    if env:
        return shlex.split(env)
    return [str(REPO / "build" / "tools" / "conformance_run")]


def read_f32(path, shape):
    try:
        a = np.fromfile(path, dtype="<f4")
    except FileNotFoundError:
        raise AssertionError(f"engine did not write {path}")
    n = int(np.prod(shape))
    assert a.size == n, f"{path}: {a.size} floats, expected {n} for shape {shape}"
    return a.reshape(shape).astype(np.float64)


def rel_l2(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-30))


def max_rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-30))


def shapes(meta):
    s = {"logits": [meta["input_shape"][0], meta["num_classes"]], "input_grad": meta["input_shape"],
         "value": meta["value_shape"], "value_grad": meta["value_shape"]}
    s["fixed.input_grad"], s["fixed.value_grad"] = s["input_grad"], s["value_grad"]
    return s


# ----------------------------------------------------------------------------------------------------------
# engine side
# ----------------------------------------------------------------------------------------------------------
class Run:
    """One conformance_run invocation: rc, stdout, stderr, prefix, seconds; info = its JSON line."""

    def __init__(self, cmd, rc, stdout, stderr, prefix, seconds):
        self.cmd, self.rc, self.stdout, self.stderr, self.prefix, self.seconds = cmd, rc, stdout, stderr, prefix, seconds

    @property
    def info(self):
        for line in self.stdout.splitlines():
            if line.strip().startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON line on stdout: {self.stdout!r}")

    def describe(self):
        how = f"killed by signal {-self.rc}" if self.rc < 0 else f"exit status {self.rc}"
        return f"{how}\n  cmd: {' '.join(map(str, self.cmd))}\n  stderr: {self.stderr.strip()[-2000:]}"

    def out(self, mode, key, shape):
        """mode: batch, fixed, single, t0..t3; key: logits, input_grad, value, value_grad."""
        return read_f32(f"{self.prefix}.{mode}.{key}.f32", shape)

    def dump(self, mode, sizes, n):
        """The --dump values of a mode: a list of (n, size) arrays."""
        a = np.fromfile(f"{self.prefix}.{mode}.dump.f32", dtype="<f4")
        assert a.size == n * sum(sizes), f"dump of {a.size} floats, expected {n * sum(sizes)}"
        out, off = [], 0
        for s in sizes:
            out.append(a[off:off + n * s].reshape(n, s))
            off += n * s
        return out


_RUNS = {}
_RUNS_LOCK = __import__("threading").Lock()


def run_engine(cdir, model_path, input_path, n, tag, *extra):
    """Run conformance_run once per distinct (model, input, arguments) in the session."""
    key = (str(model_path), str(input_path), n, tuple(map(str, extra)))
    with _RUNS_LOCK:
        if key in _RUNS:
            return _RUNS[key]
    cmd = engine_cmd()
    exe = Path(cmd[0])
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise AssertionError(f"engine tool not found: {cmd[0]} (make build/tools/conformance_run, or set "
                             "CONFORMANCE_RUN)")
    runs = cdir / "runs"
    runs.mkdir(exist_ok=True)
    prefix = runs / tag
    for old in runs.glob(f"{tag}.*"):
        old.unlink()
    args = cmd + ["--model", str(model_path), "--input", str(input_path), "--n", str(n), *map(str, extra),
                  "--out", str(prefix)]
    timeout = float(os.environ.get("CONFORMANCE_TIMEOUT", "900"))
    t0 = time.time()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        r = Run(args, p.returncode, p.stdout, p.stderr, prefix, time.time() - t0)
    except subprocess.TimeoutExpired as e:
        r = Run(args, 999, e.stdout or "", f"timed out after {timeout}s", prefix, time.time() - t0)
    with _RUNS_LOCK:
        _RUNS[key] = r
    return r


def kinks_of(cdir, name):
    p = cdir / f"{name}.kinks.json"
    return json.loads(p.read_text()) if p.exists() else None


_PREFETCH = {}


def prefetch(cdir, names):
    """Start the main runs of these models, one at a time in a background thread, so that the engine works
    while the test process computes float64 references (the engine uses one core, torch the other)."""
    import concurrent.futures
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    for n in names:
        if n not in _PREFETCH:
            _PREFETCH[n] = pool.submit(_model_run, cdir, n)
    pool.shutdown(wait=False)


def model_run(cdir, name):
    """The main run of a model: batch, fixed target, single images, 4 threads, value by node name and, for
    float64-policy models, the dump of every kink op input with near-kink units. Returns (Run, meta)."""
    if name in _PREFETCH:
        r, meta = _PREFETCH[name].result()
    else:
        r, meta = _model_run(cdir, name)
    assert r.rc == 0, f"conformance_run failed on {name}: {r.describe()}"
    return r, meta


def _model_run(cdir, name):
    meta = export_models.load_meta(name, cdir)
    extra = ["--value", meta["value_name"], "--value-alt", meta["value_node"], "--target", meta["fixed_target"],
             "--single", "--threads", 4]
    k = kinks_of(cdir, name)
    if k is not None:
        lst = cdir / "runs" / "dump-lists" / f"{name}.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("".join(op["onnx_input"] + "\n" for op in k["ops"]))
        extra += ["--dump", lst]
    r = run_engine(cdir, cdir / meta["onnx"], cdir / f"{name}.input.f32", meta["input_shape"][0], name, *extra)
    return r, meta


# ----------------------------------------------------------------------------------------------------------
# reference side
# ----------------------------------------------------------------------------------------------------------
_REFS = {}


def cached_reference(cdir, name, meta):
    s = shapes(meta)
    return {k: read_f32(cdir / f"{name}.ref.{k}.f32", s[k]) for k in REF_KEYS}


def _reference_with(model, x, module_path, fixed, overrides):
    """export_models.torch_reference with the backward of chosen kink units overridden; also the calls."""
    st = kinks._State(overrides)
    captured = {}
    h = model.get_submodule(module_path).register_forward_hook(lambda m, i, o: captured.__setitem__("v", o))
    try:
        with kinks.patched(st):
            xi = x.clone().requires_grad_(True)
            logits = model(xi)
    finally:
        h.remove()
    v = captured["v"]
    tg = logits.argmax(1)
    gx, gv = torch.autograd.grad(logits.gather(1, tg[:, None]).sum(), [xi, v], retain_graph=True)
    fx, fv = torch.autograd.grad(logits[:, fixed].sum(), [xi, v])
    out = {"logits": logits.detach().numpy(), "input_grad": gx.numpy(), "value": v.detach().numpy(),
           "value_grad": gv.numpy(), "fixed.input_grad": fx.numpy(), "fixed.value_grad": fv.numpy()}
    return out, tg.tolist(), st.calls


def decision_reference(cdir, name, meta, run):
    """float64 references for a float64-policy model, for the engine's batch and single-image runs.

    Returns {"plain": refs, "batch": refs, "single": refs, "targets": argmax targets of the float64
    forward, "decisions": {mode: summary}} where refs = {key: array}; "plain" takes every unit on its
    float64 side, "batch" / "single" take the near-kink units (kinks.json) on the side the engine's values
    of that node put them on in that run; the summary counts near-kink units, how many the engine put on
    the other side ("flips"), units outside the near-kink band on another side than float64
    ("outside_band_disagreements", must be 0), the engine's pre-activation error at those nodes relative
    to the node's scale, and the largest ratio of it to torch float32's error there."""
    if name in _REFS:
        return _REFS[name]
    spec = export_models.SPEC_BY_NAME[name]
    kj = kinks_of(cdir, name)
    model = export_models.make_model(spec).double()   # in place: no float32 copy is needed here
    x = torch.from_numpy(np.fromfile(cdir / f"{name}.input.f32", dtype="<f4").reshape(meta["input_shape"]))
    x = x.double()
    fixed = meta["fixed_target"]
    plain, targets, calls = _reference_with(model, x, spec.value, fixed, None)
    n = x.shape[0]
    sizes = [int(np.prod(op["shape"][1:])) for op in kj["ops"]]
    out = {"plain": plain, "targets": targets, "decisions": {}}
    for mode in ("batch", "single"):
        dumps = run.dump(mode, sizes, n)
        overrides, summ = {}, {"near_kink_units": 0, "flips": 0, "outside_band_disagreements": 0,
                                "engine_error_rel": 0.0, "engine_over_torch32_error": 0.0, "flipped": []}
        for op, ze in zip(kj["ops"], dumps):
            c = calls[op["call"]]
            assert c.kind == op["kind"] and list(c.z.shape) == op["shape"], (op, c.kind, c.z.shape)
            ze = torch.from_numpy(ze.astype(np.float64)).reshape(c.z.shape)
            scale = c.scale().clamp_min(1e-300)
            err = ((ze - c.z).reshape(n, -1).abs().max(1).values / scale)
            summ["engine_error_rel"] = max(summ["engine_error_rel"], float(err.max()))
            t32 = torch.tensor(op["float32_error_rel"], dtype=torch.float64).clamp_min(kinks.ULP_FLOOR)
            summ["engine_over_torch32_error"] = max(summ["engine_over_torch32_error"], float((err / t32).max()))
            d64, de = c.decide(), c.decide(ze)
            band = kinks.units_to_mask(op["units"], d64.shape)
            summ["near_kink_units"] += int(band.sum())
            summ["outside_band_disagreements"] += int(((d64 != de) & ~band).sum())
            flip = (d64 != de) & band
            if flip.any():
                summ["flips"] += int(flip.sum())
                summ["flipped"] += [[op["call"], op["kind"], i, u] for i, u in torch.nonzero(flip).tolist()]
                overrides[op["call"]] = torch.where(flip, de, d64)
        refs = plain if not overrides else _reference_with(model, x, spec.value, fixed, overrides)[0]
        out[mode] = refs
        out["decisions"][mode] = summ
    _REFS[name] = out
    return out


def references(cdir, name, meta, run):
    """{"batch": refs for the batch and fixed-target outputs, "single": refs for the single-image outputs,
    "policy": ..., "float64": decision_reference() or None}."""
    if meta["policy"] == "kink-free":
        r = cached_reference(cdir, name, meta)
        return {"batch": r, "single": r, "policy": "kink-free", "float64": None}
    d = decision_reference(cdir, name, meta, run)
    return {"batch": d["batch"], "single": d["single"], "policy": "float64", "float64": d}
