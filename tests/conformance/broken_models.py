"""Malformed, unsupported and abusive ONNX files for the error tests of test_engine.py.

Every case here must make the engine tool (conformance_run) exit with status 2 and print "error: <message>" on stderr (a signal,
a hang or any other exit status fails).  Where a node or op is involved the message must name it:
  truncated_half / truncated_head  resnet18.onnx cut at half / after 64 bytes
  garbage / empty                  4 KiB of seeded random bytes / a zero-byte file
  missing_initializer              opsetnet_13 without the initializer 'dw.weight'   -> names node /dw/Conv
  shape_mismatch_conv              cbam with the stage-2 conv weight given 33 input channels instead of 32
                                                                                     -> names that Conv node
  shape_mismatch_gemm              cbam with the classifier weight given 65 in-features instead of 64
                                                                                     -> names node /fc/Gemm
  unsupported_lrn / _einsum        cbam (opset 14) with an LRN / Einsum node inserted after the first Relu
                                   -> names the node, the op type and the opset (14)
  ext_*                            cbam re-saved with external data (cbam_ext.data) and then abused:
      ext_abs_etc_passwd           location '/etc/passwd'
      ext_abs_real_file            location = absolute path of a real, valid copy of the data file
      ext_dotdot                   location '../cbam_ext.data' (the file really exists there)
      ext_dotdot_inner             location 'sub/../../cbam_ext.data' (idem)
      ext_length_past_end          last tensor's length + 4 > file size
      ext_offset_past_end          offset beyond the end of the file
      ext_offset_overflow          offset 2^64 - 8: offset + length wraps around in 64-bit arithmetic
      ext_negative_offset          offset '-8'
      ext_missing_file             location 'nope.data' (no such file)
  The unabused copy (ext_control) must load and reproduce cbam's reference logits, which shows that each
  abused file fails for its abuse alone.
"""
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Case:
    def __init__(self, cid, model, base, must_name=(), opset=None, what=""):
        self.id, self.model, self.base, self.must_name, self.opset, self.what = cid, model, base, must_name, opset, what


def _save(proto, path):
    Path(path).write_bytes(proto.SerializeToString())


def _init(proto, name):
    for t in proto.graph.initializer:
        if t.name == name:
            return t
    raise KeyError(name)


def _node_using(proto, value, op_type=None):
    for n in proto.graph.node:
        if value in n.input and (op_type is None or n.op_type == op_type):
            return n
    raise KeyError(value)


def _insert_after_first_relu(proto, op_type, name, **attrs):
    relu = next(n for n in proto.graph.node if n.op_type == "Relu")
    src, dst = relu.output[0], f"{name}_output"
    for n in proto.graph.node:
        for i, v in enumerate(n.input):
            if v == src:
                n.input[i] = dst
    new = helper.make_node(op_type, [src], [dst], name=name, **attrs)
    idx = list(proto.graph.node).index(relu)
    proto.graph.node.insert(idx + 1, new)
    return new


def _ext_set(t, **kv):
    d = {e.key: e.value for e in t.external_data}
    d.update({k: str(v) for k, v in kv.items()})
    del t.external_data[:]
    for k, v in d.items():
        e = t.external_data.add()
        e.key, e.value = k, v


def build(cdir, out):
    """Write every case under out/; returns the list of Case (cdir: the export directory)."""
    cdir, out = Path(cdir), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cases = []

    raw = (cdir / "resnet18.onnx").read_bytes()
    (out / "truncated_half.onnx").write_bytes(raw[: len(raw) // 2])
    cases.append(Case("truncated_half", out / "truncated_half.onnx", "resnet18", what="resnet18.onnx cut at half"))
    (out / "truncated_head.onnx").write_bytes(raw[:64])
    cases.append(Case("truncated_head", out / "truncated_head.onnx", "resnet18", what="first 64 bytes"))
    (out / "garbage.onnx").write_bytes(np.random.default_rng(1234).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cases.append(Case("garbage", out / "garbage.onnx", "cbam", what="4 KiB of random bytes"))
    (out / "empty.onnx").write_bytes(b"")
    cases.append(Case("empty", out / "empty.onnx", "cbam", what="zero bytes"))

    # missing initializer
    p = onnx.load(str(cdir / "opsetnet_13.onnx"))
    t = _init(p, "dw.weight")
    node = _node_using(p, t.name)
    p.graph.initializer.remove(t)
    assert t.name not in {i.name for i in p.graph.input}
    _save(p, out / "missing_initializer.onnx")
    cases.append(Case("missing_initializer", out / "missing_initializer.onnx", "opsetnet_13", [node.name],
                      what=f"initializer {t.name} removed (used by {node.name})"))

    # shape mismatches (cbam)
    p = onnx.load(str(cdir / "cbam.onnx"))
    conv = next(n for n in p.graph.node if n.op_type == "Conv" and n.name.startswith("/stage2/"))
    w = _init(p, conv.input[1])
    arr = numpy_helper.to_array(w)
    bad = np.random.default_rng(1).standard_normal((arr.shape[0], arr.shape[1] + 1) + arr.shape[2:]).astype(np.float32)
    w.CopyFrom(numpy_helper.from_array(bad, w.name))
    _save(p, out / "shape_mismatch_conv.onnx")
    cases.append(Case("shape_mismatch_conv", out / "shape_mismatch_conv.onnx", "cbam", [conv.name],
                      what=f"{conv.name} weight {list(arr.shape)} -> {list(bad.shape)}"))

    p = onnx.load(str(cdir / "cbam.onnx"))
    gemm = next(n for n in p.graph.node if n.op_type == "Gemm")
    w = _init(p, gemm.input[1])
    arr = numpy_helper.to_array(w)
    bad = np.zeros((arr.shape[0], arr.shape[1] + 1), np.float32)
    w.CopyFrom(numpy_helper.from_array(bad, w.name))
    _save(p, out / "shape_mismatch_gemm.onnx")
    cases.append(Case("shape_mismatch_gemm", out / "shape_mismatch_gemm.onnx", "cbam", [gemm.name],
                      what=f"{gemm.name} weight {list(arr.shape)} -> {list(bad.shape)}"))

    # unsupported ops
    p = onnx.load(str(cdir / "cbam.onnx"))
    opset = next(i.version for i in p.opset_import if i.domain in ("", "ai.onnx"))
    _insert_after_first_relu(p, "LRN", "inserted_lrn", size=3)
    onnx.checker.check_model(p)
    _save(p, out / "unsupported_lrn.onnx")
    cases.append(Case("unsupported_lrn", out / "unsupported_lrn.onnx", "cbam", ["inserted_lrn", "LRN"], opset,
                      what="LRN node inserted"))
    p = onnx.load(str(cdir / "cbam.onnx"))
    _insert_after_first_relu(p, "Einsum", "inserted_einsum", equation="nchw->nchw")
    onnx.checker.check_model(p)
    _save(p, out / "unsupported_einsum.onnx")
    cases.append(Case("unsupported_einsum", out / "unsupported_einsum.onnx", "cbam", ["inserted_einsum", "Einsum"],
                      opset, what="Einsum node inserted"))

    # external data abuse
    ext = out / "ext"
    ctl = ext / "ext_control"
    ctl.mkdir(parents=True)
    p = onnx.load(str(cdir / "cbam.onnx"))
    onnx.save(p, str(ctl / "cbam_ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="cbam_ext.data", size_threshold=0)
    data = ctl / "cbam_ext.data"
    size = data.stat().st_size
    cases.append(Case("ext_control", ctl / "cbam_ext.onnx", "cbam", what="valid external data (must load)"))
    shutil.copy(data, ext / "cbam_ext.data")  # reachable through '..' from every case directory

    def variant(cid, what, edit):
        d = ext / cid
        d.mkdir()
        shutil.copy(data, d / "cbam_ext.data")
        q = onnx.load(str(ctl / "cbam_ext.onnx"), load_external_data=False)
        exts = [t for t in q.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        first = exts[0]
        last = max(exts, key=lambda t: int({e.key: e.value for e in t.external_data}["offset"]))
        edit(d, first, last)
        _save(q, d / "cbam_ext.onnx")
        cases.append(Case(cid, d / "cbam_ext.onnx", "cbam", what=what))

    variant("ext_abs_etc_passwd", "location /etc/passwd", lambda d, f, l: _ext_set(f, location="/etc/passwd"))
    variant("ext_abs_real_file", "location = absolute path of a valid data file",
            lambda d, f, l: _ext_set(f, location=str((d / "cbam_ext.data").resolve())))
    variant("ext_dotdot", "location ../cbam_ext.data (exists)", lambda d, f, l: _ext_set(f, location="../cbam_ext.data"))

    def inner(d, f, l):
        (d / "sub").mkdir()
        _ext_set(f, location="sub/../../cbam_ext.data")
    variant("ext_dotdot_inner", "location sub/../../cbam_ext.data (exists)", inner)

    def length_past_end(d, f, l):
        info = {e.key: e.value for e in l.external_data}
        _ext_set(l, length=int(info["length"]) + 4)
    variant("ext_length_past_end", f"last tensor's length + 4 (file {size} bytes)", length_past_end)
    variant("ext_offset_past_end", "offset = file size + 16", lambda d, f, l: _ext_set(l, offset=size + 16))
    variant("ext_offset_overflow", "offset 2^64-8 (offset+length wraps)", lambda d, f, l: _ext_set(f, offset=2 ** 64 - 8))
    variant("ext_negative_offset", "offset -8", lambda d, f, l: _ext_set(f, offset=-8))
    variant("ext_missing_file", "location nope.data", lambda d, f, l: _ext_set(f, location="nope.data"))
    return cases
