#!/usr/bin/python3
"""make lb-test: deploy/nginx.conf in front of three explaind processes, under load, while one
replica is killed (SIGKILL) and another is stopped (SIGTERM).

Everything runs on 127.0.0.1 and high ports, as any user: Debian's nginx in the foreground
(`daemon off`, -p a temporary prefix for its pid, logs and temp files), the same deploy/nginx.conf
with only its addresses and file paths rewritten (the rewrite fails loudly if a line it expects is
gone), three `explaind serve` on free ports, and wrk POSTing a Fashion-MNIST PNG to explain
(Grad-CAM) for LB_SECONDS (20 s). Midway, replica 1 gets SIGKILL and replica 2 SIGTERM; replica 1
is started again on its port a few seconds later.

Required: no failed client request (wrk: 0 socket errors, 0 non-2xx answers), and the SIGTERMed
replica exits 0 after draining. Also checked: nginx passes X-Request-Id through and makes one
when absent, refuses a body over client_max_body_size (= max_upload_bytes) with its own 413, and
sends requests to the restarted replica again.

Exit status: 0 passed, 1 failed or cannot run here (nginx or wrk missing and not installable: the
reason is printed; the suite fails rather than passing untested).
Environment: LB_SECONDS (20), LB_CONNECTIONS (16), LB_WORKERS (engine workers per replica, 1).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "container"))
import testmodels  # noqa: E402

REPO = testmodels.REPO
BUILD = os.path.join(REPO, "build", "lb")
BIN = os.environ.get("EXPLAIND_BIN", os.path.join(REPO, "build", "explaind"))
NGINX_CONF = os.path.join(REPO, "deploy", "nginx.conf")
SECONDS = float(os.environ.get("LB_SECONDS", "20"))
CONNECTIONS = int(os.environ.get("LB_CONNECTIONS", "16"))
WORKERS = int(os.environ.get("LB_WORKERS", "1"))

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, n, models, workdir):
        self.n, self.models, self.workdir = n, models, workdir
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log_path = os.path.join(self.workdir, f"explaind-{self.n}.{self.starts}.log")
        # one file per replica: the replicas start back to back, and rewriting a shared file while
        # the previous replica reads it gave that replica an empty config (seen once in CI)
        cfg = os.path.join(self.workdir, f"explaind-{self.n}.config.json")
        with open(cfg, "w") as f:
            f.write("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
        env["OPENBLAS_NUM_THREADS"] = "1"
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", cfg, "--models_dir", self.models, "--listen", "127.0.0.1", "--port", str(self.port),
             "--workers", str(WORKERS), "--log_format", "json", "--log_level", "info"],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        return self

    def wait_ready(self, timeout=60):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"explaind-{self.n} exited {self.proc.returncode}:\n{self.log()[-2000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"explaind-{self.n} not ready after {timeout}s")

    def log(self):
        return open(self.log_path, errors="replace").read()


def render_nginx_conf(text, upstream_ports, listen_port, prefix):
    """deploy/nginx.conf with loopback addresses and files under prefix; every rewrite must apply."""
    subs = [
        (r"^(\s*)listen 8080;$", rf"\1listen 127.0.0.1:{listen_port};", 1),
        (r"^pid /tmp/nginx\.pid;$", f"pid {prefix}/nginx.pid;", 1),
        (r"^(\s*)access_log /dev/stdout explaind;$", rf"\1access_log {prefix}/access.log explaind;", 1),
        # the temp directories Debian compiles in (/var/lib/nginx) need root: keep them in the prefix
        (r"^http \{$", "http {\n" + "".join(f"    {k}_temp_path {prefix}/{k}_temp;\n" for k in
                                            ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")), 1),
    ]
    for i, port in enumerate(upstream_ports, 1):
        subs.append((rf"^(\s*)server explaind-{i}:8080 ", rf"\1server 127.0.0.1:{port} ", 1))
    for pat, rep, n in subs:
        text, count = re.subn(pat, rep, text, flags=re.M)
        if count != n:
            raise RuntimeError(f"deploy/nginx.conf: expected {n} line(s) matching {pat!r}, found {count}: "
                               f"update tests/lb/lb_test.py with the file")
    if re.search(r"explaind-\d+:8080", text):
        raise RuntimeError("deploy/nginx.conf has more upstream servers than this test starts")
    return text


def ensure_tools():
    missing = [t for t in ("nginx", "wrk") if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if missing and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
        missing = [t for t in missing if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    return missing


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def main():
    t_start = time.monotonic()
    missing = ensure_tools()
    if missing:
        print(f"lb-test: FAILED: cannot run: {' and '.join(missing)} not installed "
              f"({'apt-get install failed' if os.geteuid() == 0 else 'not root: apt-get install nginx wrk'})")
        return 1
    if not os.access(BIN, os.X_OK):
        print(f"lb-test: {BIN} is missing: run make first")
        return 1
    os.makedirs(BUILD, exist_ok=True)
    models, kind = testmodels.models_dir()
    work = tempfile.mkdtemp(prefix="explaind-lb-")
    os.chmod(work, 0o755)  # nginx workers may run as another user when started by root
    print(f"lb-test: models {kind} ({models}), work dir {work}, {SECONDS:.0f} s, {CONNECTIONS} connections, "
          f"{WORKERS} worker(s) per replica")
    reps = [Replica(n, models, work) for n in (1, 2, 3)]
    nginx = wrk = None
    try:
        for r in reps:
            r.start()
        for r in reps:
            r.wait_ready()
        lb_port = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(render_nginx_conf(open(NGINX_CONF).read(), [r.port for r in reps], lb_port, work))
        t = subprocess.run([nginx_bin(), "-t", "-q", "-p", work, "-c", conf, "-e", "stderr"], capture_output=True, text=True)
        if not check("nginx -t accepts deploy/nginx.conf (addresses rewritten)", t.returncode == 0, t.stderr.strip()):
            return 1
        nginx_log = open(os.path.join(work, "nginx.stderr"), "wb")
        nginx = subprocess.Popen([nginx_bin(), "-p", work, "-c", conf, "-e", "stderr", "-g", "daemon off;"],
                                 stdout=nginx_log, stderr=subprocess.STDOUT)
        lb = f"http://127.0.0.1:{lb_port}"
        for _ in range(200):
            try:
                if requests.get(lb + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        png = open(testmodels.FASHION_PNG, "rb").read()
        url = lb + "/v1/models/fashion-cnn/explain?methods=gradcam"
        hdr = {"Content-Type": "image/png"}

        # request ids through nginx
        r = requests.post(url, data=png, headers={**hdr, "X-Request-Id": "lb-test-id-1"}, timeout=30)
        check("X-Request-Id passes through nginx to explaind and back",
              r.status_code == 200 and r.headers.get("X-Request-Id") == "lb-test-id-1" and r.json()["request_id"] == "lb-test-id-1",
              f"{r.status_code} {r.headers.get('X-Request-Id')}")
        r = requests.post(url, data=png, headers=hdr, timeout=30)
        rid = r.headers.get("X-Request-Id", "")
        check("a request without X-Request-Id gets nginx's $request_id, the same in the document",
              r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", rid) is not None and r.json()["request_id"] == rid, rid)
        r = requests.post(url, data=png, headers={**hdr, "X-Request-Id": "bad id with spaces"}, timeout=30)
        check("an X-Request-Id explaind would refuse is replaced by nginx's own",
              r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers.get("X-Request-Id", "")) is not None,
              r.headers.get("X-Request-Id"))
        big = b"\x89PNG\r\n\x1a\n" + b"\0" * (16 * 1024 * 1024)
        r = requests.post(url, data=big, headers=hdr, timeout=30)
        check("a body over 16 MiB (client_max_body_size = max_upload_bytes) is 413 from nginx, with a request id",
              r.status_code == 413 and re.fullmatch(r"[0-9a-f]{32}", r.headers.get("X-Request-Id", "")) is not None,
              f"{r.status_code} {r.headers.get('X-Request-Id')}")

        # load, with one replica killed and one drained midway
        env = dict(os.environ, WRK_PNG=testmodels.FASHION_PNG)
        wrk_out = os.path.join(work, "wrk.out")
        wrk = subprocess.Popen(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS:.0f}s", "--timeout", "10s", "--latency",
                                "-s", os.path.join(HERE, "explain.lua"), lb], stdout=open(wrk_out, "wb"),
                               stderr=subprocess.STDOUT, env=env)
        t0 = time.monotonic()
        events = []

        def at(sec):
            time.sleep(max(0.0, t0 + sec - time.monotonic()))

        at(SECONDS * 0.35)
        reps[0].proc.send_signal(signal.SIGKILL)
        events.append(f"{time.monotonic() - t0:.1f}s SIGKILL explaind-1")
        at(SECONDS * 0.45)
        reps[1].proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        events.append(f"{t_term - t0:.1f}s SIGTERM explaind-2")
        exited = {}

        def watch(proc):
            try:
                exited["rc"] = proc.wait(timeout=SECONDS + 30)
                exited["s"] = time.monotonic() - t_term
            except subprocess.TimeoutExpired:
                pass
        watcher = threading.Thread(target=watch, args=(reps[1].proc,))
        watcher.start()
        reps[0].proc.wait()
        at(SECONDS * 0.6)
        reps[0].start()
        events.append(f"{time.monotonic() - t0:.1f}s explaind-1 started again on :{reps[0].port}")
        watcher.join()
        rc2, drain_s = exited.get("rc"), exited.get("s")
        events.append(f"explaind-2 exited {rc2} {drain_s:.2f}s after its SIGTERM" if drain_s is not None
                      else "explaind-2 did not exit")
        reps[0].wait_ready()
        t_back = time.monotonic() - t0
        wrk.wait(timeout=SECONDS + 60)
        out = open(wrk_out, errors="replace").read()
        print("\n".join("  " + e for e in events))
        print(out)
        m = re.search(r"^WRK_RESULT (\{.*\})$", out, re.M)
        if not check("wrk ran and reported", m is not None, out[-500:] if not m else ""):
            return 1
        res = json.loads(m.group(1))
        errs = sum(res["errors"][k] for k in ("connect", "read", "write", "timeout"))
        non2xx = sum(res["non2xx"].values())
        rps = res["requests"] / res["duration_s"]
        lat = res["latency_ms"]
        summary = (f"{res['requests']} requests in {res['duration_s']:.1f}s ({rps:.0f} req/s), latency ms "
                   f"mean {lat['mean']:.1f} p50 {lat['p50']:.1f} p90 {lat['p90']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.1f}; "
                   f"socket errors {res['errors']}; non-2xx {res['non2xx'] or 0}")
        print("LB RESULT: " + summary)
        check("no failed client request: 0 socket errors", errs == 0, json.dumps(res["errors"]))
        check("no failed client request: 0 non-2xx answers", non2xx == 0, json.dumps(res["non2xx"]))
        check("wrk made requests throughout", res["requests"] > 10 * SECONDS, f"{res['requests']}")
        log2 = reps[1].log()
        m2 = re.search(r"stopped after draining for (\d+) ms", log2)
        check("the SIGTERMed replica drained and exited 0", rc2 == 0 and "draining" in log2 and m2 is not None,
              f"exit {rc2}, drained in {m2.group(1) + ' ms' if m2 else '?'}")

        # what nginx did: retries and where requests went
        access = [json.loads(l) for l in open(os.path.join(work, "access.log")) if l.startswith("{")]
        by_up = {}
        retried = {}
        for a in access:
            ups = [u.strip() for u in a["upstream"].split(",") if u.strip()]
            sts = [s.strip() for s in a["upstream_status"].split(",") if s.strip()]
            if ups:
                by_up[ups[-1]] = by_up.get(ups[-1], 0) + 1
            if len(ups) > 1:
                key = " -> ".join(sts)
                retried[key] = retried.get(key, 0) + 1
        names = {f"127.0.0.1:{r.port}": f"explaind-{r.n}" for r in reps}
        print("  answered by: " + ", ".join(f"{names.get(u, u)} {n}" for u, n in sorted(by_up.items())))
        print("  retried on another replica (upstream statuses): " + (json.dumps(retried) if retried else "none"))
        # the restarted process's own access log (one JSON line per request it answered)
        after_restart = 0
        for line in reps[0].log().splitlines():
            try:
                a = json.loads(line)
            except ValueError:
                continue
            after_restart += a.get("status") == 200 and a.get("model") == "fashion-cnn"
        check("nginx sent requests to explaind-1 again after its restart", reps[0].starts == 2 and after_restart > 0,
              f"ready again at {t_back:.1f}s, then answered {after_restart} requests")
        with open(os.path.join(BUILD, "lb-result.json"), "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "seconds": SECONDS, "connections": CONNECTIONS,
                       "workers_per_replica": WORKERS, "model": kind, "wrk": res, "events": events,
                       "retried": retried, "drain_exit": rc2, "drain_s": drain_s}, f, indent=1)
    except RuntimeError as e:
        check("lb-test setup", False, str(e))
    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
            wrk.wait()
        for r in reps:
            if r.proc and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in reps:
            if r.proc:
                try:
                    r.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
                    r.proc.wait()
        if nginx and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
    failed = [r for r in results if not r[1]]
    if failed:
        print(f"logs kept in {work}")
        for name, ok, detail in failed:
            print(f"FAILED: {name}: {detail[:3000]}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"lb-test: {len(results) - len(failed)} passed, {len(failed)} failed ({time.monotonic() - t_start:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
