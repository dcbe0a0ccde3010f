#!/usr/bin/python3
"""make soak / soak-smoke: sustained load at saturation on the real `explaind serve`.

Models: the shipped fashion-cnn (28x28 gray) and a 224x224 resnet18 (export_resnet.py, cached in
the output folder). Clients (--clients, more than the workers, so the queue never drains) send a
seeded random mix of requests: predict and explain with gradient, CAM, perturbation and sanity
methods, as raw PNG/JPEG bodies, multipart, JSON and KServe; 2% are bad inputs with a known 4xx
(issue 16's attacks among them: multipart errors while streaming, non-UTF-8 values, framing).
Abandoning clients (--abandoning-clients) send a request of minutes and close the connection 0.2
to 2 s later, again and again.

Checked (each is one line of the closing "soak: N passed, N failed"):
  statuses      good requests answer 200 (or 503 when the queue is full), bad ones their 4xx (or
                503); any other status, any 5xx but 503, any connection error is a failure
  bodies        every 200 body equals the in-process result: the same request run once through
                `explaind explain|predict` (service_run, the workers' own path) before the load;
                predictions (index, label, score, logit) and each method's raw map within 1e-4 of
                the largest value, PNG outputs present and PNG
  rss           RSS (VmRSS from /proc, sampled every second) at most --rss-bound (5%) above the
                post-warm-up level: max over the last 20% of the run vs max over the 20% after the
                warm-up (every kind sent 2 x workers times at once before the load, then the first
                20% of the load, at least 10 s)
  fds           open descriptors once idle after the load == before it
  alive         /healthz answers after the load, and SIGTERM makes the server exit 0
  abandoned     the server logged as many 499s as abandoning clients closed before an answer (each
                stopped its work and freed its worker: the load's throughput depends on it)

Writes OUT/report.json and the RSS plot (--plot, default OUT/rss.png).
  soak.py --bin build/explaind --seconds 300 --out build/soak [--models DIR] [--plot docs/soak-rss.png]
"""
import argparse
import base64
import collections
import datetime
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from server import Server  # noqa: E402  (the e2e suite's server process wrapper)


def prepare_models(d):
    os.makedirs(d, exist_ok=True)
    for ext in ("onnx", "json"):
        shutil.copy(os.path.join(REPO, "models", f"fashion-cnn.{ext}"), d)
    if not os.path.exists(os.path.join(d, "resnet18.onnx")):
        t0 = time.time()
        subprocess.run(["nice", "-n", "10", PY, os.path.join(REPO, "tests", "soak", "export_resnet.py"), d], check=True)
        print(f"soak: exported resnet18 in {time.time() - t0:.0f} s")
    return d


def prepare_images(out):
    from PIL import Image
    d = os.path.join(out, "images")
    os.makedirs(d, exist_ok=True)
    boot = os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png")
    shutil.copy(boot, os.path.join(d, "boot.png"))
    Image.open(boot).save(os.path.join(d, "boot.jpg"), "JPEG", quality=92)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320]
    photo = np.stack([(xx * 255 // 320), (yy * 255 // 240), ((xx + yy) % 64) * 4], -1).astype(np.int32)
    photo = np.clip(photo + rng.integers(-30, 30, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo, "RGB").save(os.path.join(d, "photo.jpg"), "JPEG", quality=90)
    return {n: open(os.path.join(d, n), "rb").read() for n in ("boot.png", "boot.jpg", "photo.jpg")}, d


# request kinds: (name, weight, model, route, body form, image, params)
KINDS = [
    ("fashion predict raw", 12, "fashion-cnn", "predict", "raw", "boot.png", {"top_k": 3}),
    ("fashion explain gradcam+saliency multipart", 12, "fashion-cnn", "explain", "multipart", "boot.png",
     {"methods": "gradcam,saliency", "output": "raw,heatmap_png,overlay_png"}),
    ("fashion explain ig json", 8, "fashion-cnn", "explain", "json", "boot.jpg",
     {"methods": "integrated_gradients", "ig_steps": 16, "output": "raw"}),
    ("fashion explain smoothgrad+guided raw", 6, "fashion-cnn", "explain", "raw", "boot.png",
     {"methods": "smoothgrad,guided_backprop,gradcam_pp,eigencam", "smoothgrad_samples": 8, "output": "raw", "seed": 7}),
    ("fashion explain scorecam+occlusion json", 4, "fashion-cnn", "explain", "json", "boot.png",
     {"methods": "scorecam,occlusion,attention", "occlusion_window": 7, "output": "raw"}),
    ("fashion explain sanity raw", 2, "fashion-cnn", "explain", "raw", "boot.png",
     {"methods": "gradcam", "sanity": "model,random_logit", "sanity_layers": "blocks", "output": "raw"}),
    ("fashion kserve predict", 6, "fashion-cnn", "kserve_predict", "kserve", "boot.png", {}),
    ("resnet18 predict raw", 6, "resnet18", "predict", "raw", "photo.jpg", {"top_k": 5}),
    ("resnet18 explain gradcam+layercam multipart", 6, "resnet18", "explain", "multipart", "photo.jpg",
     {"methods": "gradcam,layercam", "output": "raw,heatmap_png"}),
    ("resnet18 explain saliency json", 2, "resnet18", "explain", "json", "photo.jpg",
     {"methods": "saliency,grad_x_input", "output": "raw"}),
]

GIF = open(os.path.join(REPO, "tests", "data", "decode", "tiny.gif"), "rb").read()
HUGE = open(os.path.join(REPO, "tests", "data", "decode", "huge_header.png"), "rb").read()
# bad inputs: (name, route, form, body bytes or json, query, expected status)
BAD = [
    ("truncated PNG", "explain", "raw", "TRUNC", "", 400),
    ("GIF", "explain", "raw", GIF, "", 415),
    ("PNG header 100000x100000", "explain", "raw", HUGE, "", 413),
    ("empty body", "explain", "raw", b"", "", 400),
    ("invalid JSON", "explain", "json_text", b"{\"image\": ", "", 400),
    ("invalid base64", "explain", "json", {"image": "@@@@"}, "", 400),
    ("unknown parameter", "explain", "raw", "PNG", "?ig_stepz=4", 422),
    ("out-of-range parameter", "explain", "raw", "PNG", "?ig_steps=100000", 422),
    ("NaN parameter", "explain", "raw", "PNG", "?alpha=NaN", 422),
    ("unknown layer", "explain", "raw", "PNG", "?methods=gradcam&layer=%2Fnope", 422),
    ("malformed multipart", "explain", "multipart_text", b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", "", 400),
    ("KServe unknown field", "kserve_predict", "json", {"instances": [{"b64": "AAAA"}], "bogus": 1}, "", 422),
    # issue 16's attacks
    ("multipart field over 8192 bytes", "explain", "multipart_text",
     b"--x\r\nContent-Disposition: form-data; name=\"target\"\r\n\r\n" + b"a" * 9000 + b"\r\n--x--\r\n", "", 422),
    ("nested multipart", "explain", "multipart_text",
     b"--x\r\nContent-Disposition: form-data; name=\"f\"\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y--\r\n--x--\r\n",
     "", 415),
    ("non-UTF-8 target", "explain", "raw", "PNG", "?target=%ff%c3", 422),
    ("Transfer-Encoding: gzip, chunked", "explain", "socket",
     b"Transfer-Encoding: gzip, chunked\r\nContent-Type: image/png\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", "", 501),
    ("Content-Length with Transfer-Encoding", "explain", "socket",
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", "", 400),
]

# abandoned clients: a request of minutes (about a million passes), sent by a client that gives up
# after a fraction of a second to two seconds and closes its connection
HEAVY = ("/v1/models/fashion-cnn/explain?methods=smoothgrad&smoothgrad_base=integrated_gradients"
         "&smoothgrad_samples=1024&ig_steps=1024")


def route_path(model, route):
    return f"/v1/models/{model}:predict" if route == "kserve_predict" else f"/v1/models/{model}/{route}"


def qs(params):
    return "&".join(f"{k}={v}" for k, v in params.items())


def send_good(s, base, kind, images):
    name, _, model, route, form, img, params = kind
    data = images[img]
    path = route_path(model, route)
    ctype = "image/png" if img.endswith(".png") else "image/jpeg"
    if form == "raw":
        return s.post(f"{base}{path}?{qs(params)}" if params else base + path, data=data,
                      headers={"Content-Type": ctype}, timeout=300)
    if form == "multipart":
        return s.post(base + path, files={"image": (img, data, ctype)}, data={k: str(v) for k, v in params.items()}, timeout=300)
    if form == "json":
        body = {"image": base64.b64encode(data).decode()}
        for k, v in params.items():
            body[k] = v.split(",") if k in ("methods", "output", "sanity") else v
        return s.post(base + path, json=body, timeout=300)
    if form == "kserve":
        b = base64.b64encode(data).decode()
        return s.post(base + path, json={"instances": [{"b64": b}, {"image_bytes": {"b64": b}}]}, timeout=300)
    raise ValueError(form)


def send_bad(s, base, bad, images):
    name, route, form, body, query, _ = bad
    path = route_path("fashion-cnn", route) + query
    if body == "PNG":
        body = images["boot.png"]
    elif body == "TRUNC":
        body = images["boot.png"][:len(images["boot.png"]) // 2]
    if form == "raw":
        return s.post(base + path, data=body, headers={"Content-Type": "application/octet-stream"}, timeout=300)
    if form == "json":
        return s.post(base + path, json=body, timeout=300)
    if form == "json_text":
        return s.post(base + path, data=body, headers={"Content-Type": "application/json"}, timeout=300)
    if form == "multipart_text":
        return s.post(base + path, data=body, headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=300)
    if form == "socket":  # framing requests can send: the head is ours
        return raw_status(base, f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + body)
    raise ValueError(form)


class RawAnswer:
    def __init__(self, status, text):
        self.status_code, self.text = status, text


def raw_status(base, data, timeout=60):
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as k:
        k.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = k.recv(65536)
            if not chunk:
                break
            got += chunk
    if not got:
        raise requests.ConnectionError("no answer")
    return RawAnswer(int(got.split(b" ", 2)[1]), got.decode("latin-1"))


def abandon(base, png, rng):
    """Send a heavy request and give up on it: True when the client closed before any answer came
    (the server must log 499 and free the worker), False when it was answered first (503: queue full)."""
    host, port = base.split("//")[1].split(":")
    k = socket.create_connection((host, int(port)), timeout=30)
    try:
        k.sendall(f"POST {HEAVY} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
                  .encode() + png)
        k.settimeout(rng.uniform(0.2, 2.0))
        try:
            answered = bool(k.recv(1))
        except socket.timeout:
            answered = False
    finally:
        k.close()
    return not answered


def reference(binary, models_dir, images_dir, kind):
    """The in-process document of a kind: `explaind predict|explain` (service_run)."""
    name, _, model, route, form, img, params = kind
    cmd = [binary, "predict" if route in ("predict", "kserve_predict") else "explain",
           "--model", os.path.join(models_dir, model + ".onnx"), "--image", os.path.join(images_dir, img), "--compact"]
    for k, v in params.items():
        cmd += [f"--{k}", str(v)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        sys.exit(f"soak: reference for '{name}' failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)


def f32(raw):
    return np.frombuffer(base64.b64decode(raw["data"]), dtype="<f4")


def same_doc(ref, doc):
    """None when doc matches ref (the in-process result), else what differs."""
    rp, dp = ref.get("predictions"), doc.get("predictions")
    if not dp or [(p["index"], p["label"]) for p in rp] != [(p["index"], p["label"]) for p in dp]:
        return "predictions differ"
    for a, b in zip(rp, dp):
        if abs(a["score"] - b["score"]) > 1e-4 or abs(a["logit"] - b["logit"]) > 1e-4 * max(1.0, abs(a["logit"])):
            return f"scores differ: {a} vs {b}"
    for m, e in (ref.get("explanations") or {}).items():
        g = (doc.get("explanations") or {}).get(m)
        if g is None:
            return f"method {m} missing"
        for out in ("heatmap_png", "overlay_png"):
            if out in e and not base64.b64decode(g.get(out, ""))[:8] == b"\x89PNG\r\n\x1a\n":
                return f"{m}.{out} is not a PNG"
        if "raw" in e:
            x, y = f32(e["raw"]), f32(g["raw"])
            if x.shape != y.shape or e["raw"]["shape"] != g["raw"]["shape"]:
                return f"{m}.raw shape differs"
            tol = 1e-4 * max(float(np.abs(x).max()), 1e-6)
            if not np.isfinite(y).all() or float(np.abs(x - y).max()) > tol:
                return f"{m}.raw differs by {float(np.abs(x - y).max())}"
    if "sanity" in ref and "sanity" not in doc:
        return "sanity missing"
    return None


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "explaind"))
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue-depth", type=int, default=16)
    ap.add_argument("--bad-fraction", type=float, default=0.02)
    ap.add_argument("--abandoning-clients", type=int, default=1,
                    help="clients that send a heavy request and close the connection 0.2 to 2 s later, in a loop")
    ap.add_argument("--rss-bound", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(REPO, "build", "soak"))
    ap.add_argument("--plot", default=None)
    ap.add_argument("--models", default=None, help="models folder (cache of the resnet18 export); default OUT/models")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    binary = os.path.abspath(a.bin)
    models_dir = prepare_models(a.models or os.path.join(a.out, "models"))
    images, images_dir = prepare_images(a.out)
    refs = {k[0]: reference(binary, models_dir, images_dir, k) for k in KINDS}

    srv = Server(binary, models_dir, a.out, workers=a.workers, queue_depth=a.queue_depth, request_timeout_ms=120000)
    try:
        srv.start(timeout=120)
    except RuntimeError as e:
        sys.exit(f"soak: the server did not start: {e}")
    proc, base = srv.proc, srv.base
    time.sleep(0.5)
    fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))

    lock = threading.Lock()
    counts = collections.Counter()          # (kind, status) -> n
    latency = collections.defaultdict(list)
    problems = []                           # unexpected statuses, body mismatches, connection errors
    served = [0]
    stop = threading.Event()
    samples = []                            # (t, rss_kb, fds, served)
    weights = [k[1] for k in KINDS]

    def client(i):
        rng = random.Random(1000 + i)
        s = requests.Session()
        while not stop.is_set():
            bad = rng.random() < a.bad_fraction
            t = time.time()
            try:
                if bad:
                    item = rng.choice(BAD)
                    r = send_bad(s, base, item, images)
                    kname, want = "bad: " + item[0], (item[5], 503)
                else:
                    item = rng.choices(KINDS, weights)[0]
                    r = send_good(s, base, item, images)
                    kname, want = item[0], (200, 503)
            except requests.RequestException as e:
                with lock:
                    problems.append(f"connection error: {e}")
                    counts[("connection error", 0)] += 1
                if proc.poll() is not None:
                    return
                s = requests.Session()
                continue
            dt = time.time() - t
            why = None
            if r.status_code not in want:
                why = f"{kname}: status {r.status_code} (wanted {want[0]}): {r.text[:200]}"
            elif r.status_code == 200 and not bad:
                doc = r.json()
                ref = refs[kname]
                if item[3] == "kserve_predict":
                    docs = doc.get("predictions") or []
                    why = None if len(docs) == 2 else "KServe: not 2 predictions"
                    for d in docs:
                        why = why or same_doc(ref, d)
                else:
                    why = same_doc(ref, doc)
                if why:
                    why = f"{kname}: body differs from the in-process result: {why}"
            with lock:
                counts[(kname, r.status_code)] += 1
                served[0] += 1
                if r.status_code == 200:
                    latency[kname].append(dt)
                if why:
                    problems.append(why)
        s.close()

    abandoned = [0, 0]                      # closed before an answer, answered first (503)

    def abandoner(i):
        rng = random.Random(5000 + i)
        while not stop.is_set():
            try:
                closed = abandon(base, images["boot.png"], rng)
            except OSError as e:
                with lock:
                    problems.append(f"connection error (abandoning client): {e}")
                if proc.poll() is not None:
                    return
                continue
            with lock:
                abandoned[0 if closed else 1] += 1
            stop.wait(rng.uniform(0.5, 3.0))

    gauges = []                             # (workers_busy, queue_depth) from /metrics every 2 s: saturation
    ms = requests.Session()

    def sampler():
        i = 0
        while not stop.is_set():
            try:
                samples.append((time.time() - t_load, rss_kb(proc.pid), len(os.listdir(f"/proc/{proc.pid}/fd")), served[0]))
            except OSError:
                return
            if i % 2 == 1 and time.time() - t_load > 5:
                try:
                    g = dict(line.split() for line in ms.get(base + "/metrics", timeout=10).text.splitlines()
                             if line.startswith(("explaind_workers_busy ", "explaind_queue_depth ")))
                    gauges.append((float(g["explaind_workers_busy"]), float(g["explaind_queue_depth"])))
                except (requests.RequestException, KeyError, ValueError):
                    pass
            i += 1
            stop.wait(1.0)

    # explicit warm-up: every kind 2 x workers times at once, so each worker has run each kind (and
    # touched the pages of its workspaces) before the RSS baseline is taken
    warm_fail = []
    for kind in KINDS:
        def one(kind=kind):
            with requests.Session() as s:
                try:
                    r = send_good(s, base, kind, images)
                    if r.status_code != 200:
                        warm_fail.append(f"warm-up {kind[0]}: {r.status_code}")
                except requests.RequestException as e:
                    warm_fail.append(f"warm-up {kind[0]}: {e}")
        ws = [threading.Thread(target=one) for _ in range(2 * a.workers)]
        for t in ws:
            t.start()
        for t in ws:
            t.join(600)
    problems.extend(f"status: {w}" for w in warm_fail)
    print(f"soak: warm-up: each of {len(KINDS)} kinds {2 * a.workers} times at once"
          f"{'' if not warm_fail else ', failures: ' + '; '.join(warm_fail[:3])}")

    t_load = time.time()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.clients)]
    threads += [threading.Thread(target=abandoner, args=(i,), daemon=True) for i in range(a.abandoning_clients)]
    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    for t in threads:
        t.start()
    while time.time() - t_load < a.seconds and proc.poll() is None:
        time.sleep(0.5)
        done = time.time() - t_load
        if int(done) % 30 == 0 and samples:
            print(f"soak: {done:5.0f} s  {served[0]} requests  rss {samples[-1][1] / 1024:.1f} MiB  fds {samples[-1][2]}", flush=True)
            time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(300)
    duration = time.time() - t_load
    st.join(5)
    ms.close()
    busy = float(np.mean([g[0] for g in gauges])) if gauges else 0.0
    queued = float(np.mean([g[1] for g in gauges])) if gauges else 0.0

    alive = proc.poll() is None
    health = False
    logged_499 = -1
    if alive:
        try:
            health = requests.get(base + "/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            pass
        time.sleep(1.0)  # the last abandoned request: its cancel is noticed within 0.2 s
        try:
            mt = requests.get(base + "/metrics", timeout=10).text
            logged_499 = sum(float(line.rsplit(" ", 1)[1]) for line in mt.splitlines()
                             if line.startswith("explaind_requests_total{") and 'status="499"' in line)
        except requests.RequestException:
            pass
        time.sleep(2.0)  # the clients' keep-alive connections are closed; let the server see it
        fds_after = len(os.listdir(f"/proc/{proc.pid}/fd"))
        rss_end = rss_kb(proc.pid)
    else:
        fds_after, rss_end = -1, 0
    rc = srv.stop(signal.SIGTERM, timeout=120)  # the exit code; "timeout" if it had to be killed

    # RSS after warm-up
    warm = max(10.0, 0.2 * a.seconds)
    win = 0.2 * a.seconds
    early = [r for t, r, _, _ in samples if warm <= t < warm + win]
    late = [r for t, r, _, _ in samples if t >= a.seconds - win]
    base_rss = max(early) if early else 0
    end_rss = max(late) if late else 0
    growth = (end_rss / base_rss - 1) if base_rss else float("inf")

    by_status = collections.Counter()
    for (k, s_), n in counts.items():
        by_status[s_] += n
    bad_sent = sum(n for (k, s_), n in counts.items() if k.startswith("bad: "))
    expected_bad = {"bad: " + b[0]: b[5] for b in BAD}
    fivexx = sum(n for (k, s_), n in counts.items() if s_ >= 500 and s_ != 503 and expected_bad.get(k) != s_)
    checks = {
        "statuses": not [p for p in problems if "status" in p or "connection" in p] and fivexx == 0,
        "bodies": not [p for p in problems if "body differs" in p],
        "rss": growth <= a.rss_bound,
        "fds": fds_after == fds_before,
        "alive": alive and health and rc == 0,
        # every client that left before its answer is logged 499 (and only those)
        "abandoned": logged_499 == abandoned[0],
    }
    report = {
        "date": datetime.date.today().isoformat(), "seconds": round(duration, 1), "clients": a.clients,
        "workers": a.workers, "queue_depth": a.queue_depth, "requests": served[0],
        "requests_per_s": round(served[0] / duration, 2), "bad_inputs_sent": bad_sent,
        "abandoned": {"closed_before_answer": abandoned[0], "answered_first": abandoned[1], "logged_499": logged_499},
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "by_kind": {f"{k} -> {s_}": n for (k, s_), n in sorted(counts.items())},
        "latency_p50_ms": {k: round(1000 * float(np.percentile(v, 50)), 1) for k, v in sorted(latency.items())},
        "latency_p99_ms": {k: round(1000 * float(np.percentile(v, 99)), 1) for k, v in sorted(latency.items())},
        "rss_mib": {"start": round(samples[0][1] / 1024, 1) if samples else 0, "after_warmup_max": round(base_rss / 1024, 1),
                    "last_window_max": round(end_rss / 1024, 1), "end": round(rss_end / 1024, 1),
                    "growth_pct": round(100 * growth, 2), "bound_pct": 100 * a.rss_bound, "warmup_s": warm},
        "saturation": {"workers_busy_mean": round(busy, 2), "queue_depth_mean": round(queued, 2), "samples": len(gauges)},
        "fds": {"before": fds_before, "after": fds_after}, "exit_code": rc, "healthz_after": health,
        "problems": problems[:50], "n_problems": len(problems), "checks": checks,
        "samples": [[round(t, 1), r, f, n] for t, r, f, n in samples],
    }
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot = a.plot or os.path.join(a.out, "rss.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
        ts = [s_[0] for s_ in samples]
        ax.plot(ts, [s_[1] / 1024 for s_ in samples], color="#1f77b4", lw=1.5, label="RSS")
        ax.axvspan(0, warm, color="#999", alpha=0.2, label="warm-up")
        if base_rss:
            ax.axhline(base_rss / 1024 * (1 + a.rss_bound), color="#d62728", ls="--", lw=1,
                       label=f"bound: +{100 * a.rss_bound:.0f}% over post-warm-up max")
        ax.set_xlabel("seconds under load")
        ax.set_ylabel("RSS (MiB)")
        ax.set_ylim(0, max(s_[1] for s_ in samples) / 1024 * 1.25 if samples else 1)
        ax.set_title(f"explaind soak {report['date']}: {served[0]} requests in {duration:.0f} s, "
                     f"RSS growth {100 * growth:+.2f}%", fontsize=10)
        ax2 = ax.twinx()
        ax2.plot(ts, [s_[3] for s_ in samples], color="#2ca02c", lw=1, alpha=0.6, label="requests served")
        ax2.set_ylabel("requests served")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(plot)
        print(f"soak: RSS plot {plot}")
    except ImportError:
        print("soak: matplotlib missing (python3-matplotlib): no plot")

    print(f"soak: {served[0]} requests in {duration:.0f} s ({served[0] / duration:.1f}/s), {a.clients} clients, "
          f"{a.workers} workers; bad inputs sent {bad_sent}")
    print(f"soak: abandoned clients: {abandoned[0]} closed before an answer, {abandoned[1]} answered first (503); "
          f"server logged {logged_499:.0f} as 499")
    print(f"soak: saturation: {busy:.2f} of {a.workers} workers busy and {queued:.1f} requests queued on average "
          f"({len(gauges)} samples of /metrics)")
    print("soak: by status " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
    for k, v in sorted(counts.items()):
        print(f"   {v:7d}  {k[0]} -> {k[1]}")
    print(f"soak: RSS {report['rss_mib']}  fds {fds_before} -> {fds_after}  exit {rc}")
    for p in problems[:20]:
        print("PROBLEM", p)
    for k, ok in checks.items():
        print(f"soak check {k}: {'ok' if ok else 'FAILED'}")
    npass = sum(checks.values())
    print(f"soak: {npass} passed, {len(checks) - npass} failed")
    sys.exit(0 if npass == len(checks) else 1)


if __name__ == "__main__":
    main()
