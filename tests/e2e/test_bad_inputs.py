"""The bad-input table (issue 6): one row per hostile or broken request, each with its expected
status and problem type. After every row the server must still answer /healthz, and /metrics must
have counted the row: explaind_requests_total{status} and explaind_problems_total{type} each up by
exactly one (the slow-loris header row is never answered; it must show in
explaind_slow_clients_total instead).

The server runs with the shipped defaults (max_upload_bytes 16 MiB, max_pixels 4096², 64 scans a
JPEG, ...) except read_timeout_s, lowered to 3 s so the slow-loris rows take seconds, not minutes.
The image fixtures are those of the decoder's unit tests (tests/data/decode, made by
make_fixtures.py): the 20000x20000 bomb is a real PNG of 400 million zero pixels (49 KB deflated).

Other files test each error in more depth (test_errors.py, test_params.py); this one is the table
that says which answer each kind of bad input gets, and that none of them hurts the server.
"""
import base64
import json
import os
import socket
import threading
import time

import pytest

from server import counter, parse_head

HERE = os.path.dirname(os.path.abspath(__file__))
DECODE = os.path.join(HERE, "..", "data", "decode")
EXPLAIN = "/v1/models/fashion-cnn/explain"
READ_TIMEOUT_S = 3


def fixture(name):
    with open(os.path.join(DECODE, name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def bad_server(start_server):
    s = start_server(read_timeout_s=READ_TIMEOUT_S, workers=2)
    yield s
    assert s.stop() == 0, s.log()[-3000:]


# ---- senders: each returns (status, problem document) or (None, None) when nothing was answered --
def send(method="POST", path=EXPLAIN, **kw):
    def run(server):
        r = server.client().request(method, path, **kw)
        assert r.headers["Content-Type"] == "application/problem+json", r.text[:300]
        return r.status_code, r.json()
    return run


def raw(request_bytes, path=EXPLAIN, method="POST"):
    """Bytes on a fresh socket; the answer goes through the contract check."""
    def run(server):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(request_bytes)
            data = read_to_close(s)
        return parse_answer(server, data, method, path)
    return run


def parse_answer(server, data, method, path):
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    body = body[: int(headers.get("Content-Length", len(body)))]
    server.contract.check(method, path, status, headers, body)
    assert headers["Content-Type"] == "application/problem+json"
    return status, json.loads(body)


def read_to_close(s, data=b""):
    """Everything the server still sends on s until it closes (or resets) the connection."""
    while True:
        try:
            more = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data
        if not more:
            return data
        data += more


def chunked_gigabyte(server):
    """Stream up to 1 GiB chunked; the server must answer 413 once max_upload_bytes (16 MiB) is
    passed, long before the gigabyte. Returns the answer and checks how much was sent."""
    limit, chunk = 16 * 1024 * 1024, 1024 * 1024
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"POST {EXPLAIN} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        piece = b"%x\r\n" % chunk + b"\0" * chunk + b"\r\n"
        data = b""
        s.setblocking(False)
        while sent < 1024 ** 3:
            try:
                data += s.recv(65536)
                break  # the answer has started
            except BlockingIOError:
                pass
            try:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(piece)
                sent += chunk
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                s.setblocking(False)
        s.setblocking(True)
        s.settimeout(10)
        data = read_to_close(s, data)
    assert limit <= sent <= 3 * limit, f"sent {sent} bytes before the answer (limit {limit})"
    status, doc = parse_answer(server, data, "POST", EXPLAIN)
    assert "max_upload_bytes" in doc["detail"]
    return status, doc


def slow_body(server):
    """Headers at once, then the body 10 bytes at a time: past read_timeout_s the next bytes get 408."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"POST {EXPLAIN} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  "Content-Length: 100000\r\n\r\n".encode())
        data = b""
        while time.time() - t0 < 4 * READ_TIMEOUT_S:
            try:
                s.sendall(b"\0" * 10)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
            s.setblocking(False)
            try:
                data += s.recv(65536)
                if data:
                    break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        data = read_to_close(s, data)
    elapsed = time.time() - t0
    assert READ_TIMEOUT_S <= elapsed < READ_TIMEOUT_S + 2, elapsed
    status, doc = parse_answer(server, data, "POST", EXPLAIN)
    assert "read_timeout_s" in doc["detail"]
    return status, doc


def slow_headers(server):
    """Slow-loris: the headers a byte every 0.25 s, never finished. The connection must be closed
    unanswered at read_timeout_s, and meanwhile every other client is served as usual."""
    answered_meanwhile = []

    def others():
        c = server.client()
        while not done.is_set():
            answered_meanwhile.append(c.get("/healthz").status_code)
            time.sleep(0.2)
    done = threading.Event()
    th = threading.Thread(target=others)
    th.start()
    t0 = time.time()
    closed_at = None
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            for b in (f"POST {EXPLAIN} HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a" * 1000).encode():
                try:
                    s.sendall(bytes([b]))
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.time() - t0
                    break
                time.sleep(0.25)
                s.setblocking(False)
                try:
                    got = s.recv(65536)
                    assert got == b"", f"a half-sent request was answered: {got[:200]!r}"
                    closed_at = time.time() - t0
                    break
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed_at = time.time() - t0
                    break
                finally:
                    s.setblocking(True)
    finally:
        done.set()
        th.join()
    assert closed_at is not None and READ_TIMEOUT_S <= closed_at < READ_TIMEOUT_S + 2, closed_at
    assert answered_meanwhile and set(answered_meanwhile) == {200}, answered_meanwhile
    return None, None


def b64(data):
    return base64.b64encode(data).decode()


ROWS = [
    # (case, sender, expected status, expected problem type, text the detail must contain)
    ("empty body", send(data=b"", headers={"Content-Type": "image/png"}), 400, "bad-request", "empty"),
    ("truncated PNG", send(data=fixture("truncated.png"), headers={"Content-Type": "image/png"}), 400, "bad-request", "PNG"),
    ("truncated JPEG", send(data=fixture("truncated.jpg"), headers={"Content-Type": "image/jpeg"}), 400, "bad-request", "JPEG"),
    ("truncated progressive JPEG", send(data=fixture("truncated_progressive.jpg")), 400, "bad-request", "JPEG"),
    ("PNG header claiming 100000x100000", send(data=fixture("huge_header.png")), 413, "payload-too-large", "100000"),
    ("JPEG SOF claiming 65500x65500", send(data=fixture("huge_sof.jpg")), 413, "payload-too-large", "max_"),
    ("20000x20000 zero PNG bomb (49 KB)", send(data=fixture("bomb.png")), 413, "payload-too-large", "20000"),
    ("JPEG with an oversized DHT segment", send(data=fixture("dht_overlong.jpg")), 400, "bad-request", "JPEG"),
    ("JPEG DHT with bogus counts", send(data=fixture("dht_bad_counts.jpg")), 400, "bad-request", "JPEG"),
    ("JPEG DHT oversubscribed", send(data=fixture("dht_oversubscribed.jpg")), 400, "bad-request", "JPEG"),
    ("progressive JPEG with 2500+ scans", send(data=fixture("many_scans.jpg")), 400, "bad-request", "max_progressive_scans"),
    ("GIF", send(data=fixture("tiny.gif"), headers={"Content-Type": "image/gif"}), 415, "unsupported-media-type", "GIF"),
    ("GIF sent as octet-stream", send(data=fixture("tiny.gif"), headers={"Content-Type": "application/octet-stream"}),
     415, "unsupported-media-type", "GIF"),
    ("TIFF", send(data=fixture("tiny.tif"), headers={"Content-Type": "image/tiff"}), 415, "unsupported-media-type", "TIFF"),
    ("BMP", send(data=fixture("tiny.bmp")), 415, "unsupported-media-type", "BMP"),
    ("WebP", send(data=fixture("tiny.webp")), 415, "unsupported-media-type", "WebP"),
    ("wrong Content-Type", send(data=fixture("gray8.png"), headers={"Content-Type": "text/plain"}),
     415, "unsupported-media-type", "text/plain"),
    ("multipart without a boundary", send(data=b"x", headers={"Content-Type": "multipart/form-data"}), 400, "bad-request", "boundary"),
    ("multipart with an unterminated part",
     send(data=b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc',
          headers={"Content-Type": "multipart/form-data; boundary=xyz"}), 400, "bad-request", "multipart"),
    ("invalid JSON", send(data=b'{"image": "', headers={"Content-Type": "application/json"}), 400, "bad-request", "JSON"),
    ("invalid base64", send(json={"image": "!!!not base64!!!"}), 400, "bad-request", "base64"),
    ("base64 of a non-image", send(json={"image": b64(b"hello world")}), 400, "bad-request", ""),
    ("1 GiB chunked upload", chunked_gigabyte, 413, "payload-too-large", "max_upload_bytes"),
    ("Content-Length of 1 GiB", raw(b"POST " + EXPLAIN.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                   b"Content-Length: 1073741824\r\nConnection: close\r\n\r\n"), 413, "payload-too-large", "max_upload_bytes"),
    ("unknown parameter", send(path=EXPLAIN + "?colour=red", data=fixture("gray8.png")), 422, "unprocessable-parameters", "colour"),
    ("repeated parameter", send(path=EXPLAIN + "?top_k=1&top_k=2", data=fixture("gray8.png")), 422, "unprocessable-parameters", "top_k"),
    ("out-of-range parameter", send(path=EXPLAIN + "?methods=integrated_gradients&ig_steps=100000", data=fixture("gray8.png")),
     422, "unprocessable-parameters", "ig_steps"),
    ("NaN in a number", send(path=EXPLAIN + "?alpha=NaN", data=fixture("gray8.png")), 422, "unprocessable-parameters", "alpha"),
    ("Infinity in a number", send(path=EXPLAIN + "?smoothgrad_noise=Infinity&methods=smoothgrad", data=fixture("gray8.png")),
     422, "unprocessable-parameters", "smoothgrad_noise"),
    ("1e999 in a number", send(path=EXPLAIN + "?clip_percentile=1e999", data=fixture("gray8.png")),
     422, "unprocessable-parameters", "clip_percentile"),
    ("NaN literal in JSON", send(data=b'{"image": "", "alpha": NaN}', headers={"Content-Type": "application/json"}),
     400, "bad-request", "JSON"),
    ("path-traversal model name (encoded)", send(path="/v1/models/..%2F..%2Fetc%2Fpasswd/explain", data=fixture("gray8.png")),
     404, "not-found", ""),
    ("path-traversal model name (raw)", raw(b"POST /v1/models/../../etc/passwd/explain HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: 0\r\nConnection: close\r\n\r\n",
                                           path="/v1/models/../../etc/passwd/explain"), 404, "not-found", ""),
    ("unknown layer", send(path=EXPLAIN + "?layer=/no/such/Relu", data=fixture("gray8.png")), 422, "unprocessable-parameters",
     "/no/such/Relu"),
    ("method that does not apply: cam on an fc head", send(path="/v1/models/fc-head/explain?methods=cam", data=fixture("gray8.png")),
     422, "unprocessable-parameters", "cam"),
    ("method that does not apply: attention without attention layers",
     send(path="/v1/models/fc-head/explain?methods=attention", data=fixture("gray8.png")), 422, "unprocessable-parameters", "attention"),
    ("very long headers (20 KB)", send(method="GET", path="/healthz", headers={"X-Filler": "a" * 20000}), 431, "headers-too-large", ""),
    ("very long URL (20 KB)", send(method="GET", path="/healthz?pad=" + "a" * 20000), 414, "uri-too-long", ""),
    ("slow body (408)", slow_body, 408, "request-timeout", "read_timeout_s"),
    ("slow-loris headers (closed)", slow_headers, None, None, None),
]


def totals(server):
    m = server.metrics()
    by_status, by_type = {}, {}
    for (name, labels), v in m.items():
        d = dict(labels)
        if name == "explaind_requests_total":
            by_status[d["status"]] = by_status.get(d["status"], 0) + v
        elif name == "explaind_problems_total":
            by_type[d["type"]] = v
    return by_status, by_type, counter(m, "explaind_slow_clients_total")


@pytest.mark.parametrize("case,sender,status,ptype,detail", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(bad_server, case, sender, status, ptype, detail):
    s = bad_server
    st0, ty0, slow0 = totals(s)
    got_status, doc = sender(s)
    assert got_status == status, f"{case}: {got_status} {doc}"
    if status is not None:
        assert doc["type"] == f"urn:explaind:problem:{ptype}" and doc["status"] == status
        assert detail in doc["detail"], doc["detail"]
    # the server is fine afterwards ...
    c = s.client()
    assert c.get("/healthz").status_code == 200
    assert s.proc.poll() is None, s.log()[-3000:]
    # ... and counted the case (the /healthz above and the /metrics reads count as 200s). A request
    # is counted when its connection is done with it: after a mid-stream answer that is when the
    # rest of the body has been dropped, a moment after the client has its answer
    t0 = time.time()
    while True:
        st1, ty1, slow1 = totals(s)
        if status is None:
            moved = slow1 == slow0 + 1
        else:
            moved = st1.get(str(status), 0) > st0.get(str(status), 0) and ty1.get(ptype, 0) > ty0.get(ptype, 0)
        if moved or time.time() - t0 > 10:
            break
        time.sleep(0.1)
    if status is None:
        assert slow1 == slow0 + 1
        assert {k: v for k, v in st1.items() if k != "200"} == {k: v for k, v in st0.items() if k != "200"}
    else:
        assert slow1 == slow0
        assert st1.get(str(status), 0) == st0.get(str(status), 0) + 1, (st0, st1)
        assert ty1.get(ptype, 0) == ty0.get(ptype, 0) + 1, (ty0, ty1)
        others = {k for k in set(st0) | set(st1) if k not in (str(status), "200") and st0.get(k) != st1.get(k)}
        assert not others, f"other statuses moved too: {others}"


def test_every_case_of_the_issue_has_a_row():
    cases = " | ".join(r[0] for r in ROWS)
    for kind in ["empty body", "truncated PNG", "truncated JPEG", "100000x100000", "20000x20000", "oversized DHT",
                 "scans", "GIF", "TIFF", "wrong Content-Type", "without a boundary", "unterminated part", "invalid JSON",
                 "invalid base64", "1 GiB chunked", "unknown parameter", "repeated parameter", "out-of-range",
                 "NaN", "Infinity", "path-traversal", "unknown layer", "does not apply", "long headers", "long URL",
                 "slow-loris"]:
        assert kind in cases, kind
