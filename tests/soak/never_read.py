#!/usr/bin/python3
"""Clients that never read their answer: how much memory does the server hold for them?

Starts `explaind serve` (fashion-cnn, 2 workers), sends N requests whose answers are large (a
2048x2048 noise JPEG explained at size=input with heatmap, overlay and raw outputs: ~33 MB each),
each on its own connection with a small receive buffer, and never reads. Once the server has
computed every answer (/metrics: no worker busy, nothing queued), it prints the server's RSS
before, with the answers pending, and after the clients close. Used for docs/RELIABILITY.md
(issue 16: six such clients raised RSS from 233 to 548 MB when answers were held as text).

  /usr/bin/python3 tests/soak/never_read.py [--binary build/explaind] [--clients 6]
"""
import argparse
import io
import os
import re
import shutil
import socket
import sys
import tempfile
import time

import numpy as np
import requests
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from server import Server  # noqa: E402


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def idle(srv):
    m = requests.get(srv.url("/metrics"), timeout=30).text
    busy = float(re.search(r"^explaind_workers_busy (\S+)", m, re.M).group(1))
    queued = float(re.search(r"^explaind_queue_depth (\S+)", m, re.M).group(1))
    return busy == 0 and queued == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "explaind"))
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--side", type=int, default=2048)
    ap.add_argument("--old", dest="capped", action="store_false", help="a binary without max_response_bytes")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="never-read-")
    models = os.path.join(work, "models")
    os.makedirs(models)
    for ext in ("onnx", "json"):
        shutil.copy(os.path.join(REPO, "models", f"fashion-cnn.{ext}"), models)
    rng = np.random.default_rng(0)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (a.side, a.side, 3), dtype=np.uint8)).save(b, "JPEG", quality=90)
    jpeg = b.getvalue()
    cap = {"max_response_bytes": 1 << 30} if a.capped else {}
    srv = Server(a.binary, models, work, request_timeout_ms=600000, **cap).start()
    try:
        path = "/v1/models/fashion-cnn/explain?methods=gradcam,saliency&size=input&output=heatmap_png,overlay_png,raw"
        # one answer read in full, for its size (and to warm the workers up)
        size = len(requests.post(srv.url(path), data=jpeg, timeout=600).content)
        time.sleep(1)
        before = rss_mib(srv.proc.pid)
        socks = []
        for _ in range(a.clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                      .encode() + jpeg)
            socks.append(s)
        t0 = time.time()
        time.sleep(2)
        while not idle(srv) and time.time() - t0 < 600:
            time.sleep(1)
        time.sleep(2)
        pending = rss_mib(srv.proc.pid)
        for s in socks:
            s.close()
        time.sleep(3)
        after = rss_mib(srv.proc.pid)
        print(f"answer {size / 2**20:.1f} MiB; RSS {before:.0f} MiB before, {pending:.0f} MiB with {a.clients} answers "
              f"unread (+{pending - before:.0f} MiB, {(pending - before) / a.clients:.1f} MiB a client), "
              f"{after:.0f} MiB after they closed")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
