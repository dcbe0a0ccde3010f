#!/usr/bin/env python3
"""`make loadtest`: the HTTP service under wrk on loopback, set against the in-process engine on the
same request (issue "explaind serve", section Benchmark). A benchmark, never a test: nothing asserts
on the numbers.

- Starts `build/explaind serve` on a free 127.0.0.1 port with the shipped models/ (config defaults:
  workers = cores, each with one OpenBLAS thread, access log on, into build/bench/loadtest-serve.log),
  and a second one on build/bench/loadtest-models/ (resnet50 at 224, seeded random weights) for the
  big-model row. Both are stopped (SIGTERM, then waited for) before the script ends.
- wrk (Debian's) POSTs the same PNG as a raw body (Content-Type image/png, parameters in the query
  string) for --duration seconds per scenario, 1 wrk thread, --connections connections. Every run is
  bounded in time; only loopback is ever addressed.
- Scenarios: fashion-cnn gradcam on tests/data/fashion/test_00000_ankle_boot.png (28x28, default
  outputs heatmap_png + overlay_png); the same at ~80% of the measured rate (wrk has no rate limit:
  each connection waits a fixed delay between requests, derived from the measured rate and
  latency; the rate it reached is reported); fashion-cnn with a 4-method fused request (saliency,
  grad_x_input, gradcam, guided_backprop); resnet50 gradcam on a 224x224 photo.
- For each: requests/s, latency p50/p99 (wrk's), non-2xx responses and socket errors, CPU used by the
  server (from /proc, in cores) and by wrk.
- In-process rates on the same request, with as many concurrent processes as the server has
  workers, each on one thread: `explaind bench --methods M --image PNG` (explain_run: the engine)
  and the same with --request (the whole request as a worker runs it: decode, explain, PNG
  rendering, base64, JSON document), summed over the processes.
- HTTP overhead ratio = service requests/s / in-process engine explanations/s (the issue's
  definition; goal >= 0.9), and service / in-process request rate (the HTTP layer alone). Goal
  for fashion-cnn gradcam: >= 2,000 requests/s on this 2-core machine.

Usage: loadtest.py [--duration 10] [--connections 8] [--skip-resnet] [--write-doc docs/PERFORMANCE.md]
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = assert(io.open("%(png)s", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.path = "%(path)s"
local delay_ms = %(delay_ms)d
if delay_ms > 0 then
  function delay() return delay_ms end
end
function done(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\":%%d,\"duration_us\":%%d,\"bytes\":%%d,\"status\":%%d,\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"timeout\":%%d,\"p50_us\":%%d,\"p90_us\":%%d,\"p99_us\":%%d,\"max_us\":%%d,\"mean_us\":%%.1f}\n",
    summary.requests, summary.duration, summary.bytes, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, models_dir, log_path, workers, extra=()):
        self.port = free_port()
        self.log = open(log_path, "w")
        cmd = [bc.EXPLAIND, "serve", "--config", os.path.join(bc.ROOT, "config", "explaind.json"), "--listen",
               "127.0.0.1", "--port", str(self.port), "--models_dir", models_dir]
        if workers:
            cmd += ["--workers", str(workers)]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=bc.engine_env(1), cwd=bc.ROOT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"explaind serve exited with {self.proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        self.ready = json.loads(r.read())
                        return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("explaind serve did not become ready within 120 s")

    def cpu_s(self):
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_wrk(server, path, png, duration, connections, delay_ms=0):
    lua = os.path.join(bc.OUT, "loadtest.lua")
    with open(lua, "w") as f:
        f.write(LUA % dict(png=png, path=path, delay_ms=delay_ms))
    # check the request once: a loadtest of error responses would measure nothing
    body = open(png, "rb").read()
    req = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "image/png"}, method="POST")
    with urllib.request.urlopen(req, timeout=300) as r:
        doc = json.loads(r.read())
    assert "explanations" in doc, f"{path}: unexpected answer {str(doc)[:200]}"
    c0 = server.cpu_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s",
                          "-s", lua, server.url + path], capture_output=True, text=True, timeout=duration + 120)
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = server.cpu_s() - c0
    m = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk: no summary\n{out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["server_cores"] = cpu / wall
    r["wrk_cores"] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["doc_bytes"] = len(json.dumps(doc))
    r["timing_ms"] = doc.get("timing_ms")
    return r


def inprocess_rate(model, png, methods, extra, procs, seconds, est_ms):
    """`procs` concurrent `explaind bench` processes (one thread each), for explain_run (engine) and for
    the whole request (--request): throughput = reps / the reps' summed wall time, summed over the
    processes (so time a process waited for a core counts, as it does for the server), and the CPU
    ms per request."""
    reps = max(20, int(seconds * 1000 / max(est_ms, 0.05)))
    res = {}
    for mode in ("engine", "request"):
        args = [bc.EXPLAIND, "bench", "--model", model, "--image", png, "--methods", methods, "--reps", str(reps),
                "--warmup", "5", "--threads", "1"] + extra + (["--request"] if mode == "request" else [])
        ps = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bc.engine_env(1))
              for _ in range(procs)]
        outs = [json.loads(p.communicate(timeout=600)[0].splitlines()[-1]) for p in ps]
        res[mode] = dict(rate=sum(o["reps"] / (o["sum_ms"] / 1e3) for o in outs),
                         ms=sum(o["median_ms"] for o in outs) / procs,
                         cpu_ms=sum(o["sum_cpu_ms"] / o["reps"] for o in outs) / procs,
                         timing=outs[0].get("timing_ms"), reps=reps)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="0: the server's default (cores)")
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--write-doc")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("loadtest: wrk is not installed (Debian package wrk: scripts/install-deps.sh bench)")
    os.makedirs(bc.OUT, exist_ok=True)
    header = bc.run_header("`make loadtest` (tests/bench/loadtest.py)", 1,
                           "Server: config/explaind.json defaults (access log on); wrk 1 thread on the same cores.",
                           torch_side=False)
    workers = a.workers or os.cpu_count()
    fashion_png = bc.FASHION_PNG
    scen = []
    srv = Server(os.path.join(bc.ROOT, "models"), os.path.join(bc.OUT, "loadtest-serve.log"), a.workers)
    try:
        q = "/v1/models/fashion-cnn/explain?methods=gradcam"
        bc.log("loadtest: fashion-cnn gradcam")
        r = run_wrk(srv, q, fashion_png, a.duration, a.connections)
        scen.append(("fashion-cnn gradcam (28x28 PNG, default outputs)", r, bc.FASHION_ONNX, fashion_png, "gradcam", []))
        # ~80% of that rate: each connection waits `delay` ms between its requests; the delay is
        # corrected from short runs until the reached rate is within 10% of the target
        target = 0.8 * r["rps"]
        delay = max(1, int(round(a.connections / target * 1000 - r["p50_us"] / 1000)))
        for _ in range(3):
            c = run_wrk(srv, q, fashion_png, 3, a.connections, delay)
            if abs(c["rps"] - target) <= 0.1 * target:
                break
            period = a.connections / c["rps"] * 1000  # = latency + delay
            delay = max(1, int(round(delay + a.connections / target * 1000 - period)))
        bc.log(f"loadtest: fashion-cnn gradcam at ~80% ({delay} ms between requests per connection)")
        r80 = run_wrk(srv, q, fashion_png, a.duration, a.connections, delay)
        r80["offered"] = target
        scen.append(("fashion-cnn gradcam at ~80% of that rate", r80, None, None, None, []))
        four = "saliency,grad_x_input,gradcam,guided_backprop"
        bc.log("loadtest: fashion-cnn 4 methods")
        r4 = run_wrk(srv, f"/v1/models/fashion-cnn/explain?methods={four}", fashion_png, a.duration, a.connections)
        scen.append((f"fashion-cnn {four} (one fused request)", r4, bc.FASHION_ONNX, fashion_png, four, []))
    finally:
        srv.stop()
    if not a.skip_resnet:
        d = os.path.join(bc.OUT, "loadtest-models")
        os.makedirs(d, exist_ok=True)
        src = bc.export_resnet50(0)
        dst = os.path.join(d, "resnet50.onnx")
        if not os.path.exists(dst):
            os.symlink(src, dst)
        json.dump({"labels": [f"class_{i}" for i in range(1000)],
                   "input": {"color": "rgb", "height": 224, "width": 224, "scale": 255, "mean": bc.IMAGENET_MEAN,
                             "std": bc.IMAGENET_STD, "resize": "stretch", "invert": False}},
                  open(os.path.join(d, "resnet50.json"), "w"))
        img = bc.bench_image_224()
        srv = Server(d, os.path.join(bc.OUT, "loadtest-serve-resnet50.log"), a.workers)
        try:
            bc.log("loadtest: resnet50 gradcam")
            r = run_wrk(srv, "/v1/models/resnet50/explain?methods=gradcam", img, a.duration, max(2, workers * 2))
            scen.append(("resnet50 gradcam (224x224 PNG, default outputs)", r, dst, img, "gradcam", []))
        finally:
            srv.stop()
    rows, detail = [], []
    for name, r, model, png, methods, extra in scen:
        ip = None
        if model:
            bc.log(f"loadtest: in-process {name}")
            est = 1000 / max(r["rps"] / workers, 1e-3)
            ip = inprocess_rate(model, png, methods, extra, workers, min(a.duration, 5), est)
            r["inprocess"] = ip
        ratio = f"{r['rps'] / ip['engine']['rate']:.2f}" if ip else "–"
        ratio_req = f"{r['rps'] / ip['request']['rate']:.2f}" if ip else "–"
        srv_cpu_ms = r["server_cores"] / r["rps"] * 1e3 if r["rps"] else float("nan")
        ratio_cpu = f"{ip['engine']['cpu_ms'] / srv_cpu_ms:.2f}" if ip else "–"
        r["server_cpu_ms_per_request"] = srv_cpu_ms
        goal = ""
        if name.startswith("fashion-cnn gradcam (") and ip:
            goal = (f"≥ 2,000 req/s: {'met' if r['rps'] >= 2000 else 'MISSED'}; ratio ≥ 0.9: "
                    f"{'met' if r['rps'] / ip['engine']['rate'] >= 0.9 else 'MISSED'}")
        rps = f"{r['rps']:.0f}" + (f" (offered ~{r['offered']:.0f})" if "offered" in r else "")
        rows.append([name, rps, f"{r['p50_us'] / 1000:.2f}", f"{r['p99_us'] / 1000:.2f}", r["status"], r["errors"],
                     f"{r['server_cores']:.2f}", f"{r['wrk_cores']:.2f}",
                     f"{ip['engine']['rate']:.0f}" if ip else "–", f"{ip['request']['rate']:.0f}" if ip else "–",
                     ratio, ratio_req, f"{srv_cpu_ms:.3f}", ratio_cpu, goal])
        if ip and ip["request"]["timing"]:
            t = ip["request"]["timing"]
            detail.append(f"- {name}: one in-process request {ip['request']['ms']:.3f} ms = decode {t['decode']:.3f} + "
                          f"preprocess {t['preprocess']:.3f} + forward {t['forward']:.3f} + explain {t['explain']:.3f} + "
                          f"encode (PNG, base64, document) {t['encode']:.3f} ms (+ JSON serialization: the rest); "
                          f"explain_run alone {ip['engine']['ms']:.3f} ms; response {r['doc_bytes']} bytes.")
    text = "\n".join([
        header, "",
        f"wrk: {a.duration} s per row, {a.connections} connections (resnet50: {max(2, workers * 2)}), 1 thread; "
        f"server workers {workers}. In-process: {workers} concurrent `explaind bench` processes, one thread each, "
        "rates summed. Overhead ratio = HTTP req/s ÷ in-process engine (explain_run) explanations/s; "
        "the last ratio divides by the in-process whole-request rate instead (decode + explain + rendering + "
        "JSON), so it isolates the HTTP layer. In-process rates are throughputs (reps / their summed wall time), "
        "so time spent waiting for a core counts on both sides. CPU ratio = in-process engine CPU ms per "
        "explanation ÷ server CPU ms per request (from /proc): the overhead ratio with the machine's other load "
        "taken out.", "",
        bc.md_table(["request", "HTTP req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors", "server CPU (cores)",
                     "wrk CPU (cores)", "in-process engine /s", "in-process request /s", "overhead ratio",
                     "ratio vs in-process request", "server CPU ms / request", "CPU ratio", "goal"], rows,
                    ["---"] + ["---:"] * 13 + ["---"]), "",
        "Where one request's time goes (in-process, `explaind bench --request`, medians of timing_ms):", ""] + detail)
    print(text)
    with open(os.path.join(bc.OUT, "loadtest.json"), "w") as f:
        json.dump([dict(name=s[0], **s[1]) for s in scen], f, indent=1, default=str)
    if a.write_doc:
        bc.write_doc(a.write_doc, "loadtest", "HTTP service under load (make loadtest)", text)


if __name__ == "__main__":
    main()
