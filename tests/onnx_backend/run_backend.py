#!/usr/bin/python3
"""The ONNX project's own backend test cases through the engine (`make onnx-backend`).

Data: Debian's libonnx-testdata, /usr/include/onnx/backend/test/data/{node,pytorch-converted}/test_*/
(model.onnx + test_data_set_*/input_*.pb, output_*.pb). The expected outputs come from the ONNX
reference implementation (node/) or from PyTorch (pytorch-converted/), not from this engine.

Selection, from what the engine itself lists (`explaind ops --json`; no hand-kept op list, so ops that
land later are picked up without an edit here). A case is selected when
  - its first graph input (not an initializer) is a 4-D float32 tensor: the image batch;
  - its ai.onnx opset is one the loader accepts, and it has no node of another domain;
  - every node is an op-table op whose opset range holds the model's opset, or a load-time op the fold
    pass handles: always (Constant, Shape, Identity, Dropout) or, for "load_const" ops, when every input
    is constant (inputs other than the first are fed as initializers, so they are constants; a node whose
    inputs are all constant is folded at load whatever its op, as the loader does);
  - its expected output_0 is float32 (the engine's values are float32).
Every other case is counted as not selected, with the reason.

A case older than the loader's lowest opset (pytorch-converted/ is opset 6, a few node/ cases opset 1) is
first converted to that opset by onnx.version_converter (the ONNX project's own adapters; the expected
outputs do not change with the opset); the report marks it.

Running a selected case: the other inputs become initializers; only output_0 is kept (the others, e.g.
MaxPool's Indices, are dropped: the engine has one activation output per node); a non-2-D output gets a
Flatten(axis=1) appended (a classifier engine may flatten after the op under test; Flatten moves no
value). The batch is the input's first dimension. conformance_run --forward-only runs the batch
forward; the output must have the expected size per image and match output_0 within the tolerance the
ONNX backend test runner applies to these cases: np.testing.assert_allclose with rtol=1e-3, atol=1e-7
(onnx/backend/test/loader: the defaults; only cases with a data.json override them and node/ and
pytorch-converted/ have none). Gradients are not checked here: the backend data has no gradient
reference (tests/conformance/ops checks every op's input gradient against PyTorch float64).

Refusals (exit 2 with "error: <message>") are expected only for the cases listed in
tests/onnx_backend/expected_refusals.txt, one per line: `<case> <category> <regex>`, where category is
`batch` (the case mixes the images of a batch: the engine must refuse it) or `unsupported` (an attribute
value the engine does not implement), and the message must match the regex. A refusal not listed, or
whose message does not match, fails the suite; so does a listed case that now runs and passes (delete
its line: the list only shrinks as ops land); a listed case that is not selected (its op has not landed
yet) is reported as pending. Wrong numbers and crashes (a signal, exit 3, a timeout) always fail.

Output: one line per case that is not a plain pass, the not-selected reasons with counts, then the counts
(selected, pass, refused-as-batch-mixing, refused-unsupported, wrong numbers, crashes, unexpected).
A JSON report goes to WORK/report.json. Exit 0 when nothing failed.
"""
import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = "/usr/include/onnx/backend/test/data"
KINDS = ("node", "pytorch-converted")
RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test.loader.load_model_tests defaults
TIMEOUT_S = 120


def engine_ops(explaind):
    p = subprocess.run([explaind, "ops", "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"onnx-backend: '{explaind} ops --json' failed (exit {p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout)


def read_expectations(path):
    """case -> (category, regex, line number)"""
    exp = {}
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if not line:
                continue
            parts = line.split(None, 2)
            if len(parts) != 3 or parts[1] not in ("batch", "unsupported"):
                sys.exit(f"{path}:{ln}: expected '<case> batch|unsupported <regex>', got {line!r}")
            if parts[0] in exp:
                sys.exit(f"{path}:{ln}: {parts[0]} listed twice")
            exp[parts[0]] = (parts[1], re.compile(parts[2]), ln)
    return exp


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def opset_of(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1 if not model.opset_import else None


def load_model(case_dir, ops):
    """The case's model, converted by onnx.version_converter to the lowest opset the loader accepts when its
    opset is older (pytorch-converted/ is opset 6): (model, the original opset or None)."""
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    opset, lo = opset_of(model), ops["opsets"][0]
    if opset is None or opset >= lo:
        return model, None
    try:
        return version_converter.convert_version(model, lo), opset
    except Exception:  # the converter has no adapter: select() reports the opset
        return model, None


def select(model, ops):
    """None when the case is selected, else (category, detail) saying why not."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if not inputs:
        return ("first input is not a 4-D float tensor", "no input")
    tt = inputs[0].type.tensor_type
    if tt.elem_type != TensorProto.FLOAT or len(tt.shape.dim) != 4:
        return ("first input is not a 4-D float tensor", None)
    lo, hi = ops["opsets"]
    opset = opset_of(model)
    if opset is None or not lo <= opset <= hi:
        return (f"opset {opset} is outside the loader's {lo}..{hi}", None)
    table = {o["name"]: o for o in ops["ops"] if o["kind"] == "table"}
    load_always = {o["name"] for o in ops["ops"] if o["kind"] == "load"}
    load_const = {o["name"] for o in ops["ops"] if o["kind"] == "load_const"}
    const = set(inits) | {i.name for i in inputs[1:]}  # the other inputs are fed as initializers
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            return (f"domain {n.domain}", n.op_type)
        ins = [x for x in n.input if x]
        all_const = bool(ins) and all(x in const for x in ins)
        if n.op_type in table:
            a, b = table[n.op_type]["opsets"]
            if not a <= opset <= b and not all_const:
                return (f"{n.op_type} runs at opsets {a}..{b}, the case is opset {opset}", n.op_type)
        elif n.op_type in load_const:
            if not all_const:
                return (f"{n.op_type} on an activation (the engine evaluates it at load on constants only)", n.op_type)
        elif n.op_type not in load_always:
            return (f"op {n.op_type} is not in the engine's list", n.op_type)
        # the fold pass evaluates every node whose inputs are all constant, and Constant and Shape always
        if all_const or (n.op_type in load_always and n.op_type not in ("Identity", "Dropout")):
            const.update(n.output)
    return None


def prepare(model, data, expected0, path):
    """The case as the engine runs it: other inputs as initializers, output_0 only, flattened to 2-D."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    feed = [i for i in g.input if i.name not in inits]
    for vi, arr in zip(feed[1:], data[1:]):
        g.initializer.append(numpy_helper.from_array(arr, vi.name))
    keep = [i for i in g.input if i.name in inits or i.name == feed[0].name]
    del g.input[:]
    g.input.extend(keep)
    out = g.output[0].name
    del g.output[:]
    flattened = expected0.ndim != 2
    if flattened:
        g.node.append(helper.make_node("Flatten", [out], [out + "__flat"], name="onnx_backend_flatten", axis=1))
        out += "__flat"
    g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    onnx.save(model, path)
    return flattened


def compare(got, want):
    """assert_allclose(got, want, rtol, atol) as a verdict: (ok, max |d|, worst index, description)"""
    want = want.astype(np.float32)
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    tol = ATOL + RTOL * np.abs(want.astype(np.float64))
    nan_ok = np.isnan(got) & np.isnan(want)
    bad = ~((d <= tol) | nan_ok)
    if not bad.any():
        return True, float(np.nanmax(d)) if d.size and not np.isnan(d).all() else 0.0, ""
    k = int(np.argmax(bad.ravel()))
    return False, float(np.nanmax(d)), (f"{int(bad.sum())}/{bad.size} values off; first at flat index {k}: "
                                        f"got {got.ravel()[k]!r}, expected {want.ravel()[k]!r}")


def run_case(case_dir, kind, ops, args, work):
    name = os.path.basename(case_dir)
    model, converted = load_model(case_dir, ops)
    sets = sorted(glob.glob(os.path.join(case_dir, "test_data_set_*")))
    if not sets:
        return {"case": name, "kind": kind, "status": "not_selected", "why": ("no test data set", None)}
    results = []
    for ds in sets:
        n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
        why = select(model, ops)
        if not why and model.graph.output[0].type.WhichOneof("value") != "tensor_type":
            why = ("output is not a tensor", None)
        if not why and any(i.type.WhichOneof("value") != "tensor_type" for i in model.graph.input):
            why = ("an input is not a tensor", None)
        expected0 = None if why else load_pb(os.path.join(ds, "output_0.pb"))
        if not why and expected0.dtype != np.float32:
            why = (f"output is {expected0.dtype}, not float32", None)
        if why:
            return {"case": name, "kind": kind, "status": "not_selected", "why": why}
        data = [load_pb(os.path.join(ds, f"input_{k}.pb")) for k in range(n_in)]
        m, _ = load_model(case_dir, ops)
        tag = f"{kind}.{name}.{os.path.basename(ds)}"
        mpath = os.path.join(work, tag + ".onnx")
        flattened = prepare(m, data, expected0, mpath)
        x = np.ascontiguousarray(data[0], dtype=np.float32)
        xpath = os.path.join(work, tag + ".input.f32")
        x.tofile(xpath)
        nb = x.shape[0]
        prefix = os.path.join(work, tag)
        for stale in glob.glob(prefix + ".batch.*"):
            os.remove(stale)
        cmd = [args.conformance_run, "--model", mpath, "--input", xpath, "--n", str(nb), "--out", prefix,
               "--forward-only"]
        r = {"set": os.path.basename(ds), "batch": nb, "converted_from_opset": converted, "flattened": flattened, "outputs_dropped": n_out - 1,
             "input_shape": list(x.shape), "expected_shape": list(expected0.shape)}
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = None, "", f"timeout after {TIMEOUT_S} s"
        r["seconds"] = round(time.monotonic() - t0, 3)
        msgs = [ln[len("error: "):] for ln in err.splitlines() if ln.startswith("error: ")]
        r["message"] = msgs[0] if msgs else err.strip()[-400:]
        if rc == 0:
            try:
                info = json.loads(out.strip().splitlines()[-1])
                got = np.fromfile(prefix + ".batch.logits.f32", dtype=np.float32)
            except (ValueError, IndexError, OSError) as e:
                r.update(status="crash", message=f"exit 0 but no usable output: {e}")
                results.append(r)
                continue
            per_image = int(np.prod(expected0.shape[1:])) if expected0.ndim >= 1 else 1
            if expected0.ndim == 0 or expected0.shape[0] != nb or info["logits_shape"] != [nb, per_image]:
                r.update(status="wrong", message=f"output shape {info['logits_shape']} (after the appended Flatten) "
                                                 f"but the expected output is {list(expected0.shape)}")
            else:
                ok, maxd, what = compare(got.reshape(nb, per_image), expected0.reshape(nb, per_image))
                r.update(status="pass" if ok else "wrong", max_abs_diff=maxd)
                if not ok:
                    r["message"] = what
        elif rc == 2:
            r["status"] = "refused"
        else:
            r["status"] = "crash"
            r["message"] = (f"exit {rc}" if rc is not None else "") + (f" (signal {-rc})" if rc and rc < 0 else "") + \
                f": {r['message']}"
        results.append(r)
    # a case's verdict is its worst data set's
    order = ["crash", "wrong", "refused", "pass"]
    worst = min(results, key=lambda r: order.index(r["status"]))
    return {"case": name, "kind": kind, "status": worst["status"], "sets": results, "message": worst.get("message", "")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--explaind", default=os.path.join(ROOT, "build", "explaind"))
    ap.add_argument("--conformance-run", default=os.path.join(ROOT, "build", "tools", "conformance_run"))
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "onnx_backend"))
    ap.add_argument("--expected", default=os.path.join(HERE, "expected_refusals.txt"))
    ap.add_argument("--only", help="regex: run only the cases whose name matches")
    ap.add_argument("-v", "--verbose", action="store_true", help="also list the passing cases")
    args = ap.parse_args()

    for k in KINDS:
        if not os.path.isdir(os.path.join(args.data, k)):
            sys.exit(f"onnx-backend: {args.data}/{k} is missing: install libonnx-testdata (make deps-test)")
    for tool in (args.explaind, args.conformance_run):
        if not os.access(tool, os.X_OK):
            sys.exit(f"onnx-backend: {tool} is missing: build it first (make all {os.path.relpath(args.conformance_run, ROOT)})")
    os.makedirs(args.work, exist_ok=True)
    ops = engine_ops(args.explaind)
    expect = read_expectations(args.expected)
    only = re.compile(args.only) if args.only else None

    cases = []
    for kind in KINDS:
        for d in sorted(glob.glob(os.path.join(args.data, kind, "test_*"))):
            if os.path.isdir(d) and (not only or only.search(os.path.basename(d))):
                cases.append(run_case(d, kind, ops, args, args.work))

    names = collections.Counter(c["case"] for c in cases)
    dup = [n for n, k in names.items() if k > 1]
    if dup:  # the expectations file names cases without their folder
        sys.exit(f"onnx-backend: case names in more than one folder: {dup}")

    count = collections.Counter()
    not_selected = collections.Counter()
    failures, pending = [], []
    for c in cases:
        name, st = c["case"], c["status"]
        listed = expect.get(name)
        if st == "not_selected":
            cat, op = c["why"]
            not_selected[cat] += 1
            if listed:
                pending.append(name)
            continue
        count["selected"] += 1
        if st == "pass":
            count["pass"] += 1
            if listed:
                failures.append(name)
                print(f"STALE    {name}: listed in {os.path.basename(args.expected)}:{listed[2]} as refused "
                      f"({listed[0]}) but it now runs and passes: delete the line")
            elif args.verbose:
                print(f"pass     {name}")
        elif st == "refused":
            msg = c["message"]
            if listed and listed[1].search(msg):
                key = "refused_batch" if listed[0] == "batch" else "refused_unsupported"
                count[key] += 1
                print(f"refused  {name} ({listed[0]}): {msg}")
            else:
                count["unexpected_refusal"] += 1
                failures.append(name)
                why = (f"listed as '{listed[0]}' but the message does not match /{listed[1].pattern}/" if listed
                       else f"not listed in {os.path.basename(args.expected)}")
                print(f"UNEXPECTED REFUSAL {name} ({why}): {msg}")
        elif st == "wrong":
            count["wrong"] += 1
            failures.append(name)
            print(f"WRONG    {name}: {c['message']}")
        else:
            count["crash"] += 1
            failures.append(name)
            print(f"CRASH    {name}: {c['message']}")

    print("\nnot selected (why, cases):")
    for why, k in sorted(not_selected.items(), key=lambda x: (-x[1], x[0])):
        print(f"  {k:4d}  {why}")
    if pending:
        print(f"pending expectations (listed, not selected yet: their ops have not landed): {len(pending)}: "
              + ", ".join(sorted(pending)))
    total = len(cases)
    print(f"\nONNX backend cases ({', '.join(KINDS)}): {total} cases, {sum(not_selected.values())} not selected")
    print(f"selected {count['selected']}, pass {count['pass']}, refused as batch-mixing {count['refused_batch']}, "
          f"refused as unsupported {count['refused_unsupported']}, wrong numbers {count['wrong']}, "
          f"crashes {count['crash']}, unexpected refusals {count['unexpected_refusal']}, "
          f"stale expectations {sum(1 for c in cases if c['status'] == 'pass' and c['case'] in expect)}")
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump({"tolerance": {"rtol": RTOL, "atol": ATOL}, "counts": dict(count),
                   "not_selected": dict(not_selected), "pending": pending, "cases": cases}, f, indent=1, default=str)
    if not count["selected"]:
        failures.append("(no case selected: the data or `explaind ops --json` is broken)")
    if failures:
        print(f"onnx-backend: FAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
