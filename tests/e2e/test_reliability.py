"""Issue 16's attacks on a running server, each a regression test named after what it now gets.

The issue found them as a hostile client would: bytes that are not UTF-8 in what an error quotes,
multipart errors while the body streams in, answers too large or too slow to render, a client that
leaves, framing tricks, an API keys file with long lines, and models that break loading (a huge
input, a symlink out of the model folder, int64 attributes, 100,000 nodes). Parsing details (seed,
subnormal numbers, the duplicated JSON key, the multipart parser itself) are in tests/unit.
"""
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import requests

from server import curl, free_port, parse_head

EXPLAIN = "/v1/models/fashion-cnn/explain"
PREDICT = "/v1/models/fashion-cnn/predict"


def problem(r, status):
    assert r.status_code == status, r.text[:500]
    assert r.headers["Content-Type"] == "application/problem+json"
    p = r.json()  # valid JSON, hence valid UTF-8
    assert p["status"] == status and p["request_id"] == r.headers["X-Request-Id"]
    return p


def raw_exchange(server, data, timeout=20):
    """Send bytes on a fresh connection; (status, headers, body) of the answer, read to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head, "no answer"
    status, headers = parse_head(head)
    return status, headers, body


def noise_jpeg(side, seed=0):
    from PIL import Image
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(b, "JPEG", quality=90)
    return b.getvalue()


def access_record(server, request_id, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        for rec in server.log_records():
            if rec.get("msg") == "access" and rec.get("request_id") == request_id:
                return rec
        time.sleep(0.1)
    raise AssertionError(f"no access record for {request_id}")


def gauge(server, name):
    return float(re.search(rf"^{name} (\S+)", server.client().get("/metrics").text, re.M).group(1))


# ---- 1. error details are valid UTF-8 -------------------------------------------------------------
def test_non_utf8_in_the_url_path_is_404_problem_not_500(client):
    for path in ("/%ff", "/v2/models/%ff/ready", "/v1/models/fashion-cnn/%c3"):
        p = problem(client.get(path), 404)
        assert "\\xFF" in p["detail"] or "\\xC3" in p["detail"], p["detail"]
    p = problem(client.post("/v1/models/fashion-cnn/layers/%ff%fe/activations", data=b"x"), 404)
    assert "\\xFF\\xFE" in p["detail"]


def test_a_cut_multibyte_character_in_a_quoted_value_is_not_500(client, boot_png):
    cut = "a" * 63 + "\u00e9"  # "%.64s" took half of the é
    p = problem(client.post(EXPLAIN, params={"methods": cut}, data=boot_png), 422)
    assert "a" * 63 + "'" in p["detail"]
    p = problem(client.post(EXPLAIN, params={"target": cut}, data=boot_png), 422)
    assert "a" * 63 + "'" in p["detail"]
    p = problem(client.post("/v1/models/fashion-cnn:predict", json={"instances": [{"b64": "AAAA"}], cut: 1}), 422)
    assert "unknown field '" + "a" * 63 + "'" in p["detail"]


def test_a_content_type_that_is_not_utf8_is_415_problem(server):
    status, headers, body = raw_exchange(server, b"POST " + EXPLAIN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: text/\xff\xfe\r\nContent-Length: 4\r\n\r\nabcd")
    assert status == 415
    assert "text/\\xFF\\xFE" in json.loads(body)["detail"]


# ---- 2. multipart errors found while the body streams in are answered --------------------------
def test_multipart_field_over_8192_bytes_is_422_while_streaming(server, boot_png_path, tmp_path):
    t = tmp_path / "t"
    t.write_bytes(b"a" * 9000)  # the curl: used to get "Empty reply from server"
    r = curl(server, "POST", EXPLAIN, "-F", f"image=@{boot_png_path}", "-F", f"target=@{t}")
    assert r.status_code == 422, r.content
    assert "longer than 8192 bytes" in json.loads(r.content)["detail"]


def test_multipart_with_over_1024_images_is_413_while_streaming(server):
    part = b'--b\r\nContent-Disposition: form-data; name="images"\r\n\r\nx\r\n'
    r = server.client().post("/v1/models/fashion-cnn/sanity", data=part * 1100 + b"--b--\r\n",
                             headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert "more than 1024 images" in problem(r, 413)["detail"]


def test_nested_multipart_is_415(server):
    body = (b'--b\r\nContent-Disposition: form-data; name="files"\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n'
            b'--c\r\nContent-Disposition: file; filename="a.png"\r\n\r\nxx\r\n--c--\r\n--b--\r\n')
    r = server.client().post(EXPLAIN, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert "nested multipart" in problem(r, 415)["detail"]


def test_one_character_multipart_boundary_is_accepted(client, boot_png):
    body = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="b.png"\r\nContent-Type: image/png\r\n\r\n' +
            boot_png + b'\r\n--x\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n2\r\n--x--\r\n')
    r = client.post(PREDICT, data=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2


# ---- 3. rendering and serialization inside the deadline; max_response_bytes ---------------------
@pytest.fixture(scope="module")
def big_jpeg():
    return noise_jpeg(4096)


def test_rendering_past_the_deadline_is_504(start_server, big_jpeg):
    # the issue: 4096x4096 noise, 14 methods, size=input, PNG outputs: 200 after 41.6 s with a 30 s
    # deadline (encoding alone 29 s; 123 s on this 2-core machine under load). Decoding and the
    # engine's part on fashion-cnn take a few seconds at most; the 28 PNGs of 4096 x 4096 take
    # far longer than the 15 s deadline.
    s = start_server(workers=1, request_timeout_ms=15000, max_response_bytes=1 << 31)
    methods = ("saliency,grad_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,gradcam,gradcam_pp,"
               "xgradcam,layercam,eigencam,guided_gradcam,occlusion,edge")
    r = s.client().post(EXPLAIN, params={"methods": methods, "size": "input", "output": "heatmap_png,overlay_png,raw",
                                         "ig_steps": 4, "smoothgrad_samples": 2}, data=big_jpeg, timeout=300)
    assert "while rendering" in problem(r, 504)["detail"]
    assert s.stop() == 0


@pytest.fixture(scope="module")
def capped(start_server):
    s = start_server(workers=1, max_response_bytes=4096)
    yield s
    assert s.stop() == 0


GRADIENT_LIKE = "saliency,grad_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,guided_gradcam,occlusion,edge"


def test_raw_maps_over_max_response_bytes_are_413_before_any_work(server, capped, boot_png):
    # the floor the server predicts is exactly the base64 of the raw and attribution maps of the
    # methods at input resolution: compare it with what an uncapped server sends
    q = {"methods": GRADIENT_LIKE, "output": "raw,attribution", "ig_steps": 4, "smoothgrad_samples": 2}
    doc = server.client().post(EXPLAIN, params=q, data=boot_png).json()
    sent = sum(len(e[k]["data"]) for e in doc["explanations"].values() for k in ("raw", "attribution") if k in e)
    p = problem(capped.client().post(EXPLAIN, params=q, data=boot_png), 413)
    assert f"at least {sent} bytes" in p["detail"] and "max_response_bytes" in p["detail"], p["detail"]
    # before any work: a request of about a million passes is refused as fast (the client's
    # timeout is the guard; computed, it would end at the 30 s deadline with 504)
    q.update(smoothgrad_samples=1024, ig_steps=1024, smoothgrad_base="integrated_gradients")
    p = problem(capped.client().post(EXPLAIN, params=q, data=boot_png, timeout=25), 413)
    assert "would hold at least" in p["detail"]


def test_pngs_over_max_response_bytes_stop_the_rendering_with_413(capped):
    r = capped.client().post(EXPLAIN, params={"methods": "gradcam,saliency", "size": "input", "output": "overlay_png"},
                             data=noise_jpeg(512))
    assert "while rendering" in problem(r, 413)["detail"]
    # a small answer under the cap is fine
    assert capped.client().post(PREDICT, data=noise_jpeg(28)).status_code == 200


def test_streamed_answer_equals_the_cli_document(server, binary, models, boot_png_path, boot_png):
    # the answer is written from the stream (PNGs and maps as bytes until sent): it must be the very
    # document `explaind explain` prints with the base64 inline
    q = {"methods": "gradcam,saliency,activations", "output": "heatmap_png,overlay_png,raw,attribution"}
    served = server.client().post(EXPLAIN, params=q, data=boot_png)
    assert served.status_code == 200 and int(served.headers["Content-Length"]) == len(served.content)
    cli = subprocess.run([binary, "explain", "--model", os.path.join(models.dir, "fashion-cnn.onnx"), "--image", boot_png_path,
                          "--methods", q["methods"], "--output", q["output"], "--compact"], capture_output=True, check=True)
    a, b = served.json(), json.loads(cli.stdout)
    for d in (a, b):
        d.pop("request_id")
        d.pop("timing_ms")
        for e in d["explanations"].values():
            e.pop("time_ms")
    assert a == b


# ---- 6. a client that leaves frees its worker ---------------------------------------------------
HEAVY = EXPLAIN + "?methods=smoothgrad&smoothgrad_base=integrated_gradients&smoothgrad_samples=1024&ig_steps=1024"


def test_client_that_leaves_frees_its_worker_and_is_logged_499(start_server, boot_png):
    # one worker; a request of about a million passes (minutes); its client gives up after a
    # second. The worker must stop at once (not at the 10-minute deadline), and the next request
    # must not wait behind it. Two requests: one running, one queued, both abandoned.
    s = start_server(workers=1, request_timeout_ms=600000)
    socks = []
    for rid in ("abandoned-running", "abandoned-queued"):
        k = socket.create_connection(("127.0.0.1", s.port))
        k.sendall(f"POST {HEAVY} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {rid}\r\nContent-Type: image/png\r\n"
                  f"Content-Length: {len(boot_png)}\r\n\r\n".encode() + boot_png)
        socks.append(k)
    time.sleep(1.5)
    assert gauge(s, "explaind_workers_busy") == 1
    for k in socks:
        k.close()
    t0 = time.time()
    while gauge(s, "explaind_workers_busy") != 0 and time.time() - t0 < 30:  # the guard; it takes ~0.2 s
        time.sleep(0.1)
    assert gauge(s, "explaind_workers_busy") == 0, "the abandoned request still holds the worker"
    assert s.client().post(PREDICT, data=boot_png).status_code == 200
    for rid in ("abandoned-running", "abandoned-queued"):
        rec = access_record(s, rid)
        assert rec["status"] == 499, rec
    assert "cancelled" in access_record(s, "abandoned-running")["detail"]
    m = s.metrics()
    assert m[("explaind_requests_total", frozenset({("route", "/v1/models/{model}/explain"), ("status", "499")}))] == 2
    assert s.stop() == 0


# ---- 7. framing ----------------------------------------------------------------------------------
def test_transfer_encoding_gzip_chunked_is_501_at_once(server, boot_png):
    t0 = time.time()
    status, headers, body = raw_exchange(server, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
                                                 f"Content-Type: image/png\r\n\r\n{len(boot_png):x}\r\n".encode() + boot_png +
                                         b"\r\n0\r\n\r\n", timeout=10)
    assert status == 501 and time.time() - t0 < 10  # it used to wait for the idle timeout
    assert json.loads(body)["type"] == "urn:explaind:problem:not-implemented"
    server.contract.check("POST", PREDICT, status, headers, body)


def test_content_length_with_transfer_encoding_is_400(server, boot_png):
    # the request-smuggling pattern: which of the two frames the body must not be a guess
    status, headers, body = raw_exchange(server, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(boot_png)}\r\n"
                                                 f"Transfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n".encode() +
                                         f"{len(boot_png):x}\r\n".encode() + boot_png + b"\r\n0\r\n\r\n")
    assert status == 400 and "Content-Length and Transfer-Encoding" in json.loads(body)["detail"]
    server.contract.check("POST", PREDICT, status, headers, body)
    status, _, _ = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")
    assert status == 400


# ---- 5. API keys file, and the method a refused POST is logged with -------------------------------
def test_api_keys_file_lines_of_any_length_and_any_number_of_keys(start_server, tmp_path, boot_png):
    long_key = "L" * 1023 + "TAIL-ACCEPTED"  # fgets(1024) split it: the tail became a key of its own
    keys = [f"key-{i:04d}" for i in range(300)]  # keys past the 256th were dropped silently
    f = tmp_path / "keys.txt"
    f.write_text("# keys\n" + long_key + "\n" + "\n".join(keys) + "\n")
    s = start_server(api_keys_file=str(f), workers=1)
    c = s.client()
    ok = lambda k: c.get("/v1/models", headers={"Authorization": f"Bearer {k}"}).status_code  # noqa: E731
    assert ok(long_key) == 200
    assert ok("TAIL-ACCEPTED") == 401
    assert ok("L" * 1023) == 401
    assert ok("key-0000") == 200 and ok("key-0299") == 200
    assert "301 key(s)" in s.log()
    # a POST refused with 401 is logged as POST (it was logged as GET)
    r = c.post(EXPLAIN, data=boot_png, headers={"X-Request-Id": "refused-post"})
    assert r.status_code == 401
    assert access_record(s, "refused-post")["method"] == "POST"
    assert s.stop() == 0


# ---- 4 and 7: models that break loading ------------------------------------------------------------
def _onnx_model(nodes, inits, in_shape, out_name, out_shape, opset=13):
    from onnx import TensorProto, helper
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _head(x, c):
    """GlobalAveragePool -> Flatten -> Gemm to 10 classes, from a value x of c channels."""
    from onnx import helper, numpy_helper
    w = numpy_helper.from_array(np.full((10, c), 0.1, np.float32), "fc_w")
    nodes = [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
             helper.make_node("Gemm", ["flat", "fc_w"], ["logits"], name="fc", transB=1)]
    return nodes, [w]


def _with_fashion(tmp_path, models, name, model):
    import onnx
    d = tmp_path / "models"
    d.mkdir(exist_ok=True)
    for ext in ("onnx", "json"):
        shutil.copy(os.path.join(models.dir, f"fashion-cnn.{ext}"), d)
    onnx.save(model, str(d / f"{name}.onnx"))
    return d


def _served_models(s):
    return [m["name"] for m in s.client().get("/v1/models").json()["models"]]


def test_model_whose_workspace_is_over_the_budget_is_refused_and_the_others_served(start_server, binary, models, tmp_path):
    from onnx import helper
    head, head_inits = _head("act", 1)
    nodes = [helper.make_node("Relu", ["input"], ["act"], name="relu")] + head  # one 16 GiB activation
    m = _onnx_model(nodes, head_inits, [1, 1, 65535, 65535], "logits", [1, 10])
    d = _with_fashion(tmp_path, models, "huge-input", m)
    s = start_server(models_dir=str(d), allow_partial="true", workers=1)  # start-up used to exit 2 here
    assert _served_models(s) == ["fashion-cnn"]
    assert re.search(r"model huge-input: not loaded: one image needs a workspace of \d+ MiB, over workspace_max_bytes", s.log())
    assert s.stop() == 0
    # without allow_partial the server refuses to start, saying why
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
    p = subprocess.run([binary, "serve", "--models_dir", str(d), "--listen", "127.0.0.1", "--port", str(free_port()),
                        "--workers", "1"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 2 and "workspace_max_bytes" in p.stderr


def test_conv_pads_beyond_int_are_refused_at_load(start_server, models, tmp_path):
    from onnx import helper, numpy_helper
    conv_w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "conv_w")
    head, head_inits = _head("conv", 2)
    nodes = [helper.make_node("Conv", ["input", "conv_w"], ["conv"], name="conv", pads=[2 ** 40, 1, 2 ** 40, 1])] + head
    d = _with_fashion(tmp_path, models, "big-pads", _onnx_model(nodes, [conv_w] + head_inits, [1, 1, 28, 28], "logits", [1, 10]))
    s = start_server(models_dir=str(d), allow_partial="true", workers=1)
    assert _served_models(s) == ["fashion-cnn"]  # it used to load, with pad 0
    assert "model big-pads: node 'conv' (Conv, opset 13): strides, dilations and pads must be at most 65535" in s.log()
    assert s.stop() == 0


def test_external_data_through_a_symlink_out_of_the_models_folder_is_refused(start_server, models, tmp_path):
    import onnx
    from onnx import helper, numpy_helper
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "weights.bin").write_bytes(np.full((2, 1, 3, 3), 0.1, np.float32).tobytes())
    conv_w = numpy_helper.from_array(np.zeros((2, 1, 3, 3), np.float32), "conv_w")
    conv_w.ClearField("raw_data")
    conv_w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "lnk/weights.bin"), ("offset", "0"), ("length", str(2 * 9 * 4))):
        e = conv_w.external_data.add()
        e.key, e.value = k, v
    head, head_inits = _head("conv", 2)
    nodes = [helper.make_node("Conv", ["input", "conv_w"], ["conv"], name="conv", pads=[1, 1, 1, 1])] + head
    d = _with_fashion(tmp_path, models, "linked", _onnx_model(nodes, [conv_w] + head_inits, [1, 1, 28, 28], "logits", [1, 10]))
    os.symlink(outside, d / "lnk")  # lnk -> a folder outside models_dir (the issue: lnk -> /etc)
    s = start_server(models_dir=str(d), allow_partial="true", workers=1)
    assert _served_models(s) == ["fashion-cnn"]
    assert "resolves (through a symbolic link) to a file outside the model's folder" in s.log()
    assert s.stop() == 0
    # the same file inside the folder loads: the check is about where the file is, not about links
    (d / "lnk").unlink()
    (d / "lnk").mkdir()
    shutil.copy(outside / "weights.bin", d / "lnk" / "weights.bin")
    s = start_server(models_dir=str(d), workers=1)
    assert _served_models(s) == ["fashion-cnn", "linked"]
    assert s.stop() == 0


def test_a_100000_node_graph_loads(start_server, tmp_path, boot_png):
    # a chain of Relu, Add and Identity: load was quadratic (topological sort, Identity removal) and
    # took over 30 s; the start-up timeout below is the guard, not a timing assertion
    import onnx
    from onnx import helper, numpy_helper
    n = 100000
    nodes, prev = [], "input"
    for i in range(n):
        op = ("Relu", "Add", "Identity")[i % 3]
        ins = [prev, "c"] if op == "Add" else [prev]
        nodes.append(helper.make_node(op, ins, [f"v{i}"], name=f"n{i}"))
        prev = f"v{i}"
    head, head_inits = _head(prev, 1)
    c = numpy_helper.from_array(np.full((1, 1, 2, 2), 0.001, np.float32), "c")  # 2x2: small workspaces
    d = tmp_path / "chain"
    d.mkdir()
    onnx.save(_onnx_model(nodes + head, [c] + head_inits, [1, 1, 2, 2], "logits", [1, 10]), str(d / "chain.onnx"))
    s = start_server(models_dir=str(d), workers=1)  # Server.start waits 60 s at most
    assert _served_models(s) == ["chain"]
    assert s.client().post("/v1/models/chain/predict", data=boot_png).status_code == 200
    assert s.stop() == 0
