"""Every error status of the contract's table that is not about parameters (test_params.py) or
load (test_load.py): 400, 404, 405, 413, 414/431, 415 — each a problem+json document."""
import base64
import io
import socket
import time

import pytest

from server import curl

EXPLAIN = "/v1/models/fashion-cnn/explain"


def problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    p = r.json()
    assert p["status"] == status and p["request_id"] == r.headers["X-Request-Id"]
    return p


# ---- 400 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,ctype", [(b"not an image at all", "image/png"), (b"", "image/png"),
                                        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "application/octet-stream")])
def test_undecodable_body_is_400(client, body, ctype):
    problem(client.post(EXPLAIN, data=body, headers={"Content-Type": ctype}), 400)


def test_truncated_png_and_jpeg_are_400(client, boot_png, boot_jpeg):
    problem(client.post(EXPLAIN, data=boot_png[: len(boot_png) // 2], headers={"Content-Type": "image/png"}), 400)
    problem(client.post(EXPLAIN, data=boot_jpeg[:200], headers={"Content-Type": "image/jpeg"}), 400)


def test_malformed_multipart_is_400(client):
    body = b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc'  # never closed
    p = problem(client.post(EXPLAIN, data=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"}), 400)
    assert "multipart" in p["detail"]
    problem(client.post(EXPLAIN, data=b"x", headers={"Content-Type": "multipart/form-data"}), 400)  # no boundary


def test_multipart_without_an_image_is_400(client):
    p = problem(client.post(EXPLAIN, files={"methods": (None, "gradcam")}), 400)
    assert "image" in p["detail"]


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"image"', b'{"image": "a"', b"\xff\xfe"])
def test_bad_json_is_400(client, body):
    p = problem(client.post(EXPLAIN, data=body, headers={"Content-Type": "application/json"}), 400)
    assert "JSON" in p["detail"]


@pytest.mark.parametrize("b64", ["!!!!", "aGVsbG8", "aGVs bG8=", "====", "aGVsbG8=x"])
def test_bad_base64_is_400(client, b64):
    p = problem(client.post(EXPLAIN, json={"image": b64}), 400)
    assert "base64" in p["detail"] or "image" in p["detail"]


def test_base64_of_garbage_is_400(client):
    problem(client.post(EXPLAIN, json={"image": base64.b64encode(b"hello world").decode()}), 400)


def test_empty_json_body_is_400_saying_so(client):
    for url in (EXPLAIN, "/v1/models/fashion-cnn:explain"):
        p = problem(client.post(url, headers={"Content-Type": "application/json"}), 400)
        assert "empty" in p["detail"] and "line -1" not in p["detail"], p["detail"]


def test_json_without_an_image_is_400(client):
    problem(client.post(EXPLAIN, json={"methods": ["gradcam"]}), 400)


def test_two_images_on_a_one_image_route_is_422(client, boot_png):
    b = base64.b64encode(boot_png).decode()
    problem(client.post(EXPLAIN, json={"images": [b, b]}), 422)
    problem(client.post(EXPLAIN, json={"image": b, "images": [b]}), 422)


# ---- 404 ---------------------------------------------------------------------------------------
def test_unknown_model_layer_and_filter_are_404(client, boot_png):
    assert "no-such" in problem(client.post("/v1/models/no-such/explain", data=boot_png), 404)["detail"]
    # the layer parameter is a value that does not fit the model: 422 (the path form below is a resource: 404)
    assert "nope" in problem(client.post(EXPLAIN + "?layer=nope", data=boot_png), 422)["detail"]
    problem(client.post("/v1/models/fashion-cnn/layers/nope/activations", data=boot_png), 404)
    problem(client.post("/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/filters/100000/visualize"), 404)
    problem(client.get("/no/such/route"), 404)


# ---- 405 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,allow", [
    ("GET", EXPLAIN, "POST, OPTIONS"), ("PUT", EXPLAIN, "POST, OPTIONS"), ("DELETE", "/v1/models/fashion-cnn:predict", "POST, OPTIONS"),
    ("POST", "/healthz", "GET, HEAD, OPTIONS"), ("POST", "/v1/models", "GET, HEAD, OPTIONS"),
    ("DELETE", "/v1/models/fashion-cnn", "GET, HEAD, OPTIONS"), ("PATCH", "/metrics", "GET, HEAD, OPTIONS"),
])
def test_wrong_method_is_405_with_allow(client, method, path, allow):
    r = client.request(method, path)
    problem(r, 405)
    assert r.headers["Allow"] == allow


# ---- 413 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_server(start_server):
    s = start_server(max_upload_bytes=4096, max_pixels=500, max_header_bytes=2048, workers=1)
    yield s
    assert s.stop() == 0


def raw_exchange(server, head, body=b"", read_timeout=10):
    """Send bytes on a fresh connection; return (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as s:
        s.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, rest


def test_content_length_over_max_upload_is_413_before_the_body(small_server, contract):
    # Content-Length says 1 GB and no byte of the body is sent: the answer must come anyway
    t0 = time.time()
    status, headers, body = raw_exchange(small_server, b"POST /v1/models/fashion-cnn/explain HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n")
    assert status == 413 and time.time() - t0 < 5
    contract.check("POST", "/v1/models/fashion-cnn/explain", status,
                   {"X-Request-Id": headers["x-request-id"], "Content-Type": headers["content-type"]}, body)
    assert b"max_upload_bytes" in body
    r = small_server.client().post(EXPLAIN, data=b"\0" * 5000, headers={"Content-Type": "image/png"})
    assert problem(r, 413)["detail"].startswith("the body is 5000 bytes")


def test_chunked_body_over_max_upload_is_413(small_server, boot_png, tmp_path):
    # curl reads the early answer while it sends: a 200 KB stream is cut off at 4 KB
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 200000)
    r = curl(small_server, "POST", EXPLAIN, "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: image/png",
             "--data-binary", f"@{big}")
    assert r.status_code == 413 and "max_upload_bytes" in r.json()["detail"]

    # requests only reads once it has sent everything: the server drops up to twice the limit
    def chunks():
        for _ in range(6):
            yield b"\0" * 1000
    c = small_server.client()
    r = c.post(EXPLAIN, data=chunks(), headers={"Content-Type": "image/png"})
    assert "max_upload_bytes" in problem(r, 413)["detail"]
    # the server is fine afterwards, and a small chunked body is accepted
    r = c.post("/v1/models/fashion-cnn/predict", data=iter([boot_png[:100], boot_png[100:]]), headers={"Content-Type": "image/png"})
    assert r.status_code == 413  # 28x28 = 784 pixels > max_pixels 500 (checked from the header)
    assert "max_pixels" in r.json()["detail"]


def test_image_over_max_pixels_is_413_from_its_header(small_server):
    from PIL import Image
    b = io.BytesIO()
    Image.new("L", (30, 20)).save(b, "PNG")  # 600 pixels > 500
    r = small_server.client().post("/v1/models/fashion-cnn/predict", data=b.getvalue())
    assert "600" in problem(r, 413)["detail"]
    b = io.BytesIO()
    Image.new("L", (20, 20)).save(b, "PNG")  # 400 pixels: fine
    assert small_server.client().post("/v1/models/fashion-cnn/predict", data=b.getvalue()).status_code == 200


def test_headers_over_max_header_bytes_are_431_and_a_long_url_414(small_server):
    c = small_server.client()
    problem(c.get("/healthz", headers={"X-Filler": "a" * 2100}), 431)
    problem(c.get("/healthz/" + "a" * 2100), 414)
    assert c.get("/healthz", headers={"X-Filler": "a" * 1000}).status_code == 200


# ---- 415 ---------------------------------------------------------------------------------------
def test_unsupported_media_type_is_415(client, boot_png):
    from PIL import Image
    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, "GIF")
    p = problem(client.post(EXPLAIN, data=b"hello", headers={"Content-Type": "text/plain"}), 415)
    assert "text/plain" in p["detail"]
    problem(client.post(EXPLAIN, data=gif.getvalue(), headers={"Content-Type": "image/gif"}), 415)
    problem(client.post(EXPLAIN, data=gif.getvalue(), headers={"Content-Type": "application/octet-stream"}), 415)
    problem(client.post(EXPLAIN, data=boot_png, headers={"Content-Type": "application/xml"}), 415)


def test_query_string_counts_toward_max_header_bytes(small_server, boot_png):
    # the query string is part of the request line: 2100 bytes of it pass max_header_bytes=2048
    c = small_server.client()
    problem(c.get("/healthz?pad=" + "a" * 2100), 414)
    problem(c.post(EXPLAIN + "?layer=" + "a" * 2100, data=boot_png), 414)
    problem(c.get("/healthz?pad=" + "a" * 600, headers={"X-Filler": "a" * 1500}), 431)
