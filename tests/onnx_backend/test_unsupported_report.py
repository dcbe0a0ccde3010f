"""Loading a model names every unsupported node at once (engine/onnx_load.c, the pre-scan), before any
other error: grouped by op type with counts and a few node names, in a message of bounded length. Ops the
fold pass evaluates at load (Shape, Gather, Range, Equal, ...) are supported when their inputs are
constant, and reported (as "on activations") when they are not.

The models are built here with onnx.helper; `explaind inspect` loads them (exit 2 and the message on
stderr when the load fails)."""
import json
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPLAIND = os.environ.get("EXPLAIND", os.path.join(ROOT, "build", "explaind"))
MSG_MAX = 511  # eng_err_t.msg is 512 bytes


def listing():
    p = subprocess.run([EXPLAIND, "ops", "--json"], capture_output=True, text=True, check=True)
    return {o["name"]: o for o in json.loads(p.stdout)["ops"]}


@pytest.fixture(scope="module")
def ops():
    return listing()


def unlisted(ops, *names):
    """The tests use ops the engine does not run; if one lands, say so rather than test nothing."""
    listed = [n for n in names if n in ops]
    assert not listed, f"{listed} now run: pick other unsupported ops for this test"


def load(tmp_path, model, name="m"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    p = subprocess.run([EXPLAIND, "inspect", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode >= 0, f"explaind crashed: {p.returncode} {p.stderr}"
    m = re.search(r"cannot load model '[^']*': (.*)$", p.stderr.strip(), re.S)
    return p.returncode, (m.group(1) if m else p.stderr.strip())


def model(nodes, inits=(), opset=13, shape=(1, 3, 8, 8), out="y"):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                     [h.make_tensor_value_info(out, T.FLOAT, None)], list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def i64(name, vals):
    return numpy_helper.from_array(np.array(vals, np.int64), name)


def test_every_unsupported_node_is_named_at_once(tmp_path, ops):
    unlisted(ops, "Hardmax", "LRN", "Einsum")
    nodes = [h.make_node("Relu", ["x"], ["r0"], name="relu0")]
    prev = "r0"
    for k in range(3):
        nodes.append(h.make_node("Hardmax", [prev], [f"e{k}"], name=f"/stage{k}/Hardmax"))
        prev = f"e{k}"
    nodes.append(h.make_node("Relu", [prev], ["r1"], name="relu1"))
    nodes.append(h.make_node("LRN", ["r1"], ["l0"], name="the_lrn", size=3))
    nodes.append(h.make_node("Einsum", ["l0"], ["s0"], name="e_a", equation="nchw->nchw"))
    nodes.append(h.make_node("Einsum", ["s0"], ["y"], name="e_b", equation="nchw->nchw"))
    rc, msg = load(tmp_path, model(nodes))
    assert rc == 2, msg
    assert msg.startswith("3 unsupported op types at opset 13 (6 nodes): "), msg
    # grouped, most frequent first, every node named (they fit)
    assert "Hardmax (3 nodes: /stage0/Hardmax, /stage1/Hardmax, /stage2/Hardmax)" in msg, msg
    assert "Einsum (2 nodes: e_a, e_b)" in msg, msg
    assert "LRN (1 node: the_lrn)" in msg, msg
    assert msg.index("Hardmax") < msg.index("Einsum") < msg.index("LRN"), msg
    assert "relu" not in msg, msg


def test_load_time_ops_on_constants_are_supported(tmp_path):
    # the flatten chain exporters emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), plus Range and
    # Equal/Where/Cast on constants: all folded at load, none reported
    nodes = [
        h.make_node("Relu", ["x"], ["r"]),
        h.make_node("Shape", ["r"], ["s"]),
        h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        h.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        h.make_node("Range", ["r0", "r3", "r1"], ["rng"]),
        h.make_node("Equal", ["rng", "rng"], ["eq"]),
        h.make_node("Where", ["eq", "minus1", "minus1"], ["w"]),
        h.make_node("Slice", ["w", "zero1", "one1"], ["w1"]),
        h.make_node("Concat", ["n1", "w1"], ["shape"], axis=0),
        h.make_node("Reshape", ["r", "shape"], ["y"]),
    ]
    inits = [i64("zero", 0), i64("axes0", [0]), i64("r0", 0), i64("r3", 3), i64("r1", 1), i64("minus1", [-1]),
             i64("zero1", [0]), i64("one1", [1])]
    rc, msg = load(tmp_path, model(nodes, inits))
    assert rc == 0, msg


def test_load_time_ops_on_activations_are_reported(tmp_path, ops):
    if ops.get("Equal", {}).get("kind") != "load_const":  # a table row may land for Equal
        pytest.fail("Equal is no longer load-time only: pick another load_const op for this test: "
                    f"{sorted(k for k, v in ops.items() if v['kind'] == 'load_const')}")
    nodes = [h.make_node("Relu", ["x"], ["r"]),
             h.make_node("Equal", ["r", "r"], ["eq"], name="eq_on_activation"),
             h.make_node("Relu", ["eq"], ["y"])]
    rc, msg = load(tmp_path, model(nodes))
    assert rc == 2, msg
    assert "Equal on activations" in msg and "eq_on_activation" in msg, msg


def test_unsupported_nodes_come_before_other_errors(tmp_path, ops):
    # a node reads an input nothing produces (a format error the loader finds later) and an LRN: the LRN is reported
    unlisted(ops, "LRN")
    nodes = [h.make_node("Add", ["x", "missing_initializer"], ["a"]),
             h.make_node("LRN", ["a"], ["y"], name="the_lrn", size=3)]
    rc, msg = load(tmp_path, model(nodes))
    assert rc == 2, msg
    assert msg.startswith("1 unsupported op type at opset 13 (1 node): LRN (1 node: the_lrn)"), msg
    # without the LRN, the other error shows
    rc, msg = load(tmp_path, model([h.make_node("Add", ["x", "missing_initializer"], ["y"])]), "m2")
    assert rc == 2 and "missing_initializer" in msg, msg


def test_an_op_outside_its_opset_range_is_reported(tmp_path, ops):
    # any op-table row with a bounded range, at an opset outside it (the pre-scan looks at op types only)
    bounded = [(o["name"], o["opsets"]) for o in ops.values()
               if o["kind"] == "table" and (o["opsets"][1] < 18 or o["opsets"][0] > 7)]
    assert bounded, "no op-table row has a bounded opset range any more: this test needs one"
    name, (lo, hi) = sorted(bounded)[0]
    opset = 18 if hi < 18 else 7
    rc, msg = load(tmp_path, model([h.make_node(name, ["x"], ["y"], name="bounded")], opset=opset))
    assert rc == 2, msg
    assert f"{name} (implemented for opsets {lo}..{hi}) (1 node: bounded)" in msg, msg
    assert f"at opset {opset}" in msg, msg


def test_custom_domain_nodes_are_reported(tmp_path, ops):
    m = model([h.make_node("Relu", ["x"], ["r"]),
               h.make_node("FusedConv", ["r"], ["y"], name="fc", domain="com.microsoft")])
    m.opset_import.append(h.make_opsetid("com.microsoft", 1))
    rc, msg = load(tmp_path, m)
    assert rc == 2, msg
    assert "FusedConv (custom domain 'com.microsoft') (1 node: fc)" in msg, msg


def test_the_message_is_bounded(tmp_path, ops):
    # 300 unsupported op types with 200-character node names: the message still fits, says how many
    nodes, prev = [], "x"
    for k in range(300):
        nodes.append(h.make_node(f"Unknown{k:03d}", [prev], [f"v{k}"], name=f"{k:03d}" + "n" * 197))
        prev = f"v{k}"
    nodes.append(h.make_node("Relu", [prev], ["y"]))
    assert not any(f"Unknown{k:03d}" in ops for k in range(300))
    rc, msg = load(tmp_path, model(nodes))
    assert rc == 2, msg
    assert len(msg) <= MSG_MAX, len(msg)
    assert msg.startswith("300 unsupported op types at opset 13 (300 nodes): Unknown000 (1 node"), msg
    m = re.search(r"; and (\d+) more; supported ops: `explaind ops`$", msg)
    assert m, msg
    shown = len(re.findall(r"Unknown\d{3} \(1 node", msg))
    assert shown + int(m.group(1)) == 300, msg


def test_a_cycle_does_not_hang_the_scan(tmp_path, ops):
    unlisted(ops, "LRN")
    # a -> b -> a (invalid) plus an LRN: the scan still ends and reports the LRN
    nodes = [h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
             h.make_node("LRN", ["b"], ["y"], name="lrn_after_cycle", size=3)]
    rc, msg = load(tmp_path, model(nodes))
    assert rc == 2, msg
    assert "LRN (1 node: lrn_after_cycle)" in msg, msg
