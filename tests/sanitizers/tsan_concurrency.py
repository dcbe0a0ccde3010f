#!/usr/bin/python3
"""make test-tsan: the server's concurrency under ThreadSanitizer, with a load sized for a build
that runs ~10x slower (the e2e load tests' deadlines assume an uninstrumented build).

Against `explaind serve` (the -fsanitize=thread build) with 3 workers and a queue of 4, over the
shipped fashion-cnn:
  1. 16 clients at once, each 4 requests: explain (gradcam, saliency, scorecam), explain with a
     model-randomization sanity check (the randomized-layer cache the workers share), predict,
     KServe predict; meanwhile a client polls /metrics and /readyz. Every answer is 200 or 503
     (queue full), each kind got at least one 200, and all 200 bodies of a kind are identical
     (predictions and raw maps): workers running at once do not disturb each other.
  2. clients that send a request and leave before the answer (connection reset while queued).
  3. SIGTERM with requests in flight: each gets 200 or 503 (draining), and the process exits 0.
TSan's reports go where TSAN_OPTIONS log_path says; make test-tsan fails on any.

  tsan_concurrency.py BUILD-TSAN/explaind MODELS_DIR
"""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from server import Server  # noqa: E402  (the e2e suite's server process wrapper)

binary, models_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
png = open(os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png"), "rb").read()
M = "/v1/models/fashion-cnn"
KINDS = {
    "explain": (M + "/explain?methods=gradcam,saliency,scorecam&output=raw", {"data": png, "headers": {"Content-Type": "image/png"}}),
    "sanity": (M + "/explain?methods=gradcam&sanity=model&sanity_layers=blocks&output=raw",
               {"data": png, "headers": {"Content-Type": "image/png"}}),
    "predict": (M + "/predict", {"data": png, "headers": {"Content-Type": "image/png"}}),
    "kserve": (M + ":predict", {"json": {"instances": [{"b64": base64.b64encode(png).decode()}]}}),
}
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def stable(kind, doc):
    """The parts of a document that must not depend on which worker computed it or when."""
    if kind == "kserve":
        doc = doc["predictions"][0]
    out = {"predictions": doc["predictions"]}
    for m, e in (doc.get("explanations") or {}).items():
        out[m] = e.get("raw", {}).get("data")
    if "sanity" in doc:  # its passes say whether the steps ran on two threads (a worker was idle)
        out["sanity"] = json.dumps({k: v for k, v in doc["sanity"].items() if k != "passes"}, sort_keys=True)
    return json.dumps(without_times(out), sort_keys=True)


def without_times(v):
    if isinstance(v, dict):
        return {k: without_times(x) for k, x in v.items() if k != "time_ms"}
    if isinstance(v, list):
        return [without_times(x) for x in v]
    if isinstance(v, str) and v.startswith("{"):
        return json.dumps(without_times(json.loads(v)), sort_keys=True)
    return v


def start(tmp):
    srv = Server(binary, models_dir, tmp, workers=3, queue_depth=4, request_timeout_ms=600000,
                 drain_timeout_ms=600000)
    srv.start(timeout=300)
    return srv.proc, srv.base, srv.port


def main():
    tmp = tempfile.mkdtemp(prefix="explaind-tsan-")
    proc, base, port = start(tmp)
    results = {k: [] for k in KINDS}
    errors = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(i):
        s = requests.Session()
        names = list(KINDS)
        for j in range(4):
            kind = names[(i + j) % len(names)]
            path, kw = KINDS[kind]
            try:
                r = s.post(base + path, timeout=600, **kw)
                with lock:
                    results[kind].append((r.status_code, stable(kind, r.json()) if r.status_code == 200 else None))
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"{kind}: {e!r}")
        s.close()

    def poller():
        s = requests.Session()
        while not stop.is_set():
            try:
                s.get(base + "/metrics", timeout=60)
                s.get(base + "/readyz", timeout=60)
            except requests.RequestException as e:
                errors.append(f"poll: {e!r}")
            time.sleep(0.05)
        s.close()

    t0 = time.time()
    pt = threading.Thread(target=poller)
    pt.start()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(900)
    stop.set()
    pt.join(60)
    print(f"phase 1: {sum(len(v) for v in results.values())} requests in {time.time() - t0:.0f} s")
    check(not errors, f"connection errors: {errors[:5]}")
    for kind, rs in results.items():
        statuses = sorted(set(st for st, _ in rs))
        bodies = set(b for st, b in rs if st == 200)
        print(f"  {kind}: statuses {[(st, sum(1 for x, _ in rs if x == st)) for st in statuses]}, distinct 200 bodies {len(bodies)}")
        check(set(statuses) <= {200, 503}, f"{kind}: statuses {statuses}")
        check(len(bodies) == 1, f"{kind}: {len(bodies)} different 200 bodies (want exactly 1)")

    # 2. clients that leave while their request waits
    socks = []
    for _ in range(8):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        path, _ = KINDS["sanity"]
        c.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(png)) + png)
        socks.append(c)
    time.sleep(0.5)
    for c in socks:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    r = requests.post(base + KINDS["predict"][0], timeout=600, **KINDS["predict"][1])
    check(r.status_code == 200, f"after clients left: {r.status_code}")
    print("phase 2: 8 clients left while queued; the server answers")

    # 3. SIGTERM with requests in flight
    inflight = []

    def late(kind):
        path, kw = KINDS[kind]
        try:
            inflight.append(requests.post(base + path, timeout=600, **kw).status_code)
        except requests.RequestException as e:
            inflight.append(repr(e))

    ts = [threading.Thread(target=late, args=(k,)) for k in ("sanity", "explain", "sanity", "explain")]
    for t in ts:
        t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    for t in ts:
        t.join(900)
    try:
        rc = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    print(f"phase 3: in-flight answers {inflight}, exit {rc}")
    check(all(x in (200, 503) for x in inflight), f"in-flight during drain: {inflight}")
    check(rc == 0, f"exit code after SIGTERM: {rc}")
    print(f"tsan-concurrency: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
