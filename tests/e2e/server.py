"""Start and stop the real `explaind serve`, and talk to it with requests or curl; every response
goes through the contract check (contract.py) before a test sees it."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import requests
from requests.structures import CaseInsensitiveDict


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `explaind serve` process on 127.0.0.1 and a free port. Config keys are passed as flags;
    EXPLAIND_* variables of the caller's environment are dropped and an empty config file is
    given, so only the defaults and the flags apply. Also used outside the e2e suite (the
    sanitizer sessions, the soak): `wrapper` runs the server under another program (valgrind),
    `env` adds variables, and without a `contract` the clients check nothing."""

    def __init__(self, binary, models_dir, workdir, contract=None, port=None, wrapper=(), env=None, **config):
        self.binary = os.path.abspath(binary) if os.sep in binary else binary  # it runs in workdir
        self.contract = contract
        self.models_dir, self.workdir = os.path.abspath(models_dir), os.path.abspath(workdir)
        self.wrapper, self.extra_env = list(wrapper), dict(env or {})
        self.config = {"workers": 2, "log_format": "json", **config}
        self.port = port
        self.proc = None
        self.returncode = None
        self.clients = []

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base + path

    def start(self, timeout=60):
        os.makedirs(self.workdir, exist_ok=True)
        cfg = os.path.join(self.workdir, "empty-config.json")
        with open(cfg, "w") as f:
            f.write("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
        env.update(self.extra_env)
        for attempt in range(5):
            if self.port is None or attempt:
                self.port = free_port()
            args = [*self.wrapper, self.binary, "serve", "--config", cfg, "--models_dir", self.models_dir, "--listen", "127.0.0.1",
                    "--port", str(self.port)]
            for k, v in self.config.items():
                args += [f"--{k}", str(v)]
            self.log_path = os.path.join(self.workdir, f"server-{self.port}.log")
            self.log_file = open(self.log_path, "wb")
            self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
            t0 = time.time()
            while time.time() - t0 < timeout:
                if self.proc.poll() is not None:
                    break
                try:
                    r = requests.get(self.url("/readyz"), timeout=5)
                    if r.status_code == 200:
                        return self
                except requests.RequestException:  # not listening yet, or slow (valgrind)
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")
            if "cannot listen" not in self.log():
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        raise RuntimeError("no free port")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Send sig, wait for the exit; returns the exit code."""
        if self.proc is None:
            return self.returncode
        for c in self.clients:  # idle keep-alive connections of the suite's own clients
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = "timeout"
        self.log_file.close()
        self.proc = None
        return self.returncode

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_records(self):
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def client(self, **kw):
        c = Client(self, **kw)
        self.clients.append(c)
        return c

    def metrics(self):
        """{(name, frozenset(labels)): value} from /metrics."""
        c = self.client()
        try:
            r = c.get("/metrics")
        finally:
            c.close()
        assert r.status_code == 200
        return parse_metrics(r.text)


def parse_metrics(text):
    import re
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def counter(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


class Client:
    """requests with the contract check on every response."""

    def __init__(self, server, headers=None, check=True):
        self.server = server
        self.session = requests.Session()
        self.headers = headers or {}
        self.check = check

    def request(self, method, path, **kw):
        headers = {**self.headers, **kw.pop("headers", {})}
        kw.setdefault("timeout", 120)
        r = self.session.request(method, self.server.url(path), headers=headers, **kw)
        if self.check and self.server.contract is not None:
            self.server.contract.check(method, r.request.path_url, r.status_code, r.headers, r.content)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def options(self, path, **kw):
        return self.request("OPTIONS", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def close(self):
        self.session.close()


class CurlResponse:
    def __init__(self, status, headers, content):
        self.status_code, self.headers, self.content = status, headers, content

    @property
    def text(self):
        return self.content.decode()

    def json(self):
        return json.loads(self.content)


def curl(server, method, path, *args):
    """Run the real curl with args (e.g. "-F", "image=@x.png"); returns a CurlResponse after the
    contract check. `method` is what the arguments make curl send (for the check)."""
    with tempfile.TemporaryDirectory() as d:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = ["curl", "-sS", "-D", hdr, "-o", body, *args, server.url(path)]
        p = subprocess.run(cmd, capture_output=True, timeout=120)
        assert p.returncode == 0, f"{cmd}: exit {p.returncode}: {p.stderr.decode()}"
        with open(hdr, "rb") as f:
            blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
        lines = blocks[-1].split("\r\n")  # the final response (after any 100 Continue)
        status = int(lines[0].split()[1])
        headers = CaseInsensitiveDict()
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        with open(body, "rb") as f:
            content = f.read()
    server.contract.check(method, path, status, headers, content)
    return CurlResponse(status, headers, content)


def parse_head(head):
    """The status and headers of a response head (bytes before the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = CaseInsensitiveDict()
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip()] = v.strip()
    return int(lines[0].split()[1]), headers


def raw_request(sock, request_bytes, contract, method, path):
    """Send one request on an open socket, read one response (Connection: close or Content-Length)."""
    sock.sendall(request_bytes)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    n = int(headers.get("Content-Length", 0))
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    contract.check(method, path, status, headers, body)
    return status, headers, body
