"""Load and lifecycle: queue full (503 + Retry-After, /readyz overloaded), deadlines (504), drain
on SIGTERM, a client leaving while queued, 64 parallel clients, an idle keep-alive connection at
shutdown. The slow requests are integrated gradients with many steps on mobilenet_v2 64x64."""
import json
import signal
import socket
import struct
import threading
import time

import pytest
import requests

from helpers import explanations_without_time
from server import counter, raw_request

SLOW = "/v1/models/mobilenet/explain?methods=integrated_gradients&ig_steps=300&output=raw"


class Background:
    """A request in a thread; .result() -> requests.Response (checked against the contract)."""

    def __init__(self, server, path, data, **kw):
        self.out = None
        self.t = threading.Thread(target=self.run, args=(server, path, data, kw), daemon=True)
        self.t.start()

    def run(self, server, path, data, kw):
        c = server.client()
        try:
            self.out = c.post(path, data=data, **kw)
        except Exception as e:  # noqa: BLE001 (reported by result())
            self.out = e
        finally:
            c.close()

    def result(self, timeout=120):
        self.t.join(timeout)
        assert not self.t.is_alive(), "request did not finish"
        if isinstance(self.out, Exception):
            raise self.out
        return self.out


def wait_gauges(server, busy, queued, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        m = server.metrics()
        if counter(m, "explaind_workers_busy") == busy and counter(m, "explaind_queue_depth") == queued:
            return
        time.sleep(0.01)
    raise AssertionError(f"workers_busy={counter(m, 'explaind_workers_busy')} queue={counter(m, 'explaind_queue_depth')}, "
                         f"wanted {busy}/{queued}")


def test_queue_full_is_503_with_retry_after_and_readyz_overloaded(start_server, boot_png):
    s = start_server(workers=1, queue_depth=1, request_timeout_ms=600000)  # no 504 on a loaded machine
    a = Background(s, SLOW, boot_png)
    wait_gauges(s, busy=1, queued=0)
    b = Background(s, SLOW, boot_png)
    wait_gauges(s, busy=1, queued=1)
    c = s.client()
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "overloaded"} and r.headers["Retry-After"] == "1"
    r = c.get("/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False, "status": "overloaded"}
    assert c.get("/healthz").status_code == 200  # alive all the same
    r = c.post("/v1/models/fashion-cnn/predict", data=boot_png)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "queue_depth" in r.json()["detail"]
    assert a.result().status_code == 200 and b.result().status_code == 200
    assert c.get("/readyz").status_code == 200
    assert s.stop() == 0


def test_deadline_passed_is_504_and_the_server_goes_on(start_server, boot_png):
    s = start_server(workers=1, request_timeout_ms=400)
    a = Background(s, SLOW.replace("300", "1024"), boot_png)
    b = Background(s, SLOW.replace("300", "1024"), boot_png)  # waits behind a, then has no time left
    for r in (a.result(), b.result()):
        assert r.status_code == 504, r.text
        assert "deadline" in r.json()["detail"]
        # run or queued past its deadline, the answer names what shortens the work (docs/MODELS.md)
        assert "ig_steps (now 1024)" in r.json()["detail"] and "request_timeout_ms (now 400" in r.json()["detail"], r.text
    assert s.client().post("/v1/models/fashion-cnn/predict", data=boot_png).status_code == 200
    assert s.stop() == 0


def test_drain_on_sigterm(start_server, contract, boot_png):
    s = start_server(workers=1, drain_timeout_ms=600000, request_timeout_ms=600000)  # ditto
    a = Background(s, SLOW, boot_png)
    wait_gauges(s, busy=1, queued=0)
    b = Background(s, SLOW, boot_png)
    wait_gauges(s, busy=1, queued=1)
    # connections opened before the signal are served during the drain; after it the listening
    # socket is closed (MHD_quiesce_daemon), so readiness is observed on these
    c1 = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c2 = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    time.sleep(0.3)  # accepted by the server
    t_signal = time.time()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    status, headers, body = raw_request(c1, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", contract, "GET", "/readyz")
    assert status == 503 and json.loads(body) == {"status": "draining"} and headers["Retry-After"] == "1"
    req = (b"POST /v1/models/fashion-cnn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
           b"Content-Length: %d\r\n\r\n" % len(boot_png)) + boot_png
    status, headers, body = raw_request(c2, req, contract, "POST", "/v1/models/fashion-cnn/predict")
    assert status == 503 and "draining" in json.loads(body)["detail"] and headers["Retry-After"] == "1"
    c1.close()
    c2.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", s.port), timeout=5)
    # the running and the queued request both complete
    assert a.result().status_code == 200 and b.result().status_code == 200
    assert s.proc.wait(timeout=60) == 0
    assert time.time() - t_signal < 30
    assert s.stop() == 0


def test_clients_leaving_while_queued_are_logged_499_and_do_not_hurt(start_server, boot_png):
    s = start_server(workers=1)
    a = Background(s, SLOW, boot_png)
    wait_gauges(s, busy=1, queued=0)
    leavers = []
    for k in range(4):
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /v1/models/fashion-cnn/explain?methods=saliency HTTP/1.1\r\nHost: x\r\nX-Request-Id: leaver-%d\r\n"
                     b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % (k, len(boot_png)) + boot_png)
        leavers.append(sock)
    wait_gauges(s, busy=1, queued=4)
    for sock in leavers:  # gone (reset) while waiting for a worker
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert a.result().status_code == 200
    c = s.client()
    assert c.post("/v1/models/fashion-cnn/explain", data=boot_png).status_code == 200
    assert c.get("/healthz").status_code == 200
    for _ in range(200):
        recs = {r["request_id"]: r for r in s.log_records() if r.get("request_id", "").startswith("leaver-")}
        if len(recs) == 4:
            break
        time.sleep(0.02)
    # each logged as "client closed the request", whether or not its job had queued an answer
    assert sorted((k, r["status"]) for k, r in recs.items()) == [(f"leaver-{k}", 499) for k in range(4)]
    wait_gauges(s, busy=0, queued=0)
    m = s.metrics()
    assert counter(m, "explaind_inflight") == 1  # only the scrape
    assert counter(m, "explaind_requests_total", route="/v1/models/{model}/explain", status="499") == 4
    assert s.stop() == 0


def test_64_parallel_clients_get_identical_explanations(start_server, fashion_index, repo):
    s = start_server(workers=2)
    images = [open(repo / "tests" / "data" / "fashion" / e["file"], "rb").read() for e in fashion_index[:4]]
    path = ("/v1/models/fashion-cnn/explain?methods=gradcam,saliency,smoothgrad,integrated_gradients,scorecam"
            "&smoothgrad_samples=4&ig_steps=8&scorecam_channels=4&seed=5&output=raw,heatmap_png")
    c = s.client()
    reference = [explanations_without_time(c.post(path, data=img).json()) for img in images]
    c.close()  # 64 connections at once is exactly per_ip_connection_limit: no 65th may be open
    barrier = threading.Barrier(64)
    results = [None] * 64

    def one(i):
        img = images[i % 4]
        barrier.wait()
        r = requests.post(s.url(path), data=img, headers={"Content-Type": "image/png"}, timeout=120)
        s.contract.check("POST", path, r.status_code, r.headers, r.content)
        results[i] = r

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in results)
    assert [r.status_code for r in results] == [200] * 64
    ids = set()
    for i, r in enumerate(results):
        doc = r.json()
        assert explanations_without_time(doc) == reference[i % 4], f"client {i} got different explanations"
        ids.add(doc["request_id"])
    assert len(ids) == 64
    assert s.stop() == 0


def test_a_request_that_borrows_idle_cores_gives_the_same_bytes(start_server, fashion_index, repo, boot_png):
    # one request at a time on 2 workers borrows the idle worker's core (request_threads_max=0: all),
    # its convolutions split over two threads; request_threads_max=1 never borrows. Same bytes.
    shared = start_server(workers=2)
    alone = start_server(workers=2, request_threads_max=1)
    img = open(repo / "tests" / "data" / "fashion" / fashion_index[0]["file"], "rb").read()
    paths = [("/v1/models/fashion-cnn/explain?methods=gradcam,saliency,guided_backprop,smoothgrad,integrated_gradients,"
              "scorecam,occlusion&smoothgrad_samples=4&ig_steps=8&scorecam_channels=4&seed=5&output=raw", img),
             ("/v1/models/mobilenet/explain?methods=saliency,gradcam,integrated_gradients&ig_steps=4&output=raw", boot_png)]
    docs = {}
    for name, s in (("shared", shared), ("alone", alone)):
        c = s.client()
        docs[name] = [explanations_without_time(c.post(p, data=d).json()) for p, d in paths]
        c.close()
    assert docs["shared"] == docs["alone"]
    borrowed = {name: counter(s.metrics(), "explaind_borrowed_core_seconds_total") for name, s in (("shared", shared), ("alone", alone))}
    assert borrowed["shared"] > 0 and borrowed["alone"] == 0, borrowed
    assert shared.stop() == 0 and alone.stop() == 0


def test_idle_keepalive_connection_does_not_hold_shutdown(start_server, boot_png):
    # a pooled idle connection is no request in flight: SIGTERM must not wait drain_timeout_ms for it
    s = start_server(workers=1, drain_timeout_ms=60000)
    c = s.client()
    assert c.post("/v1/models/fashion-cnn/predict", data=boot_png).status_code == 200  # kept alive
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=15)
    finally:
        c.close()
    assert rc == 0 and time.time() - t0 < 15
    s.stop()
