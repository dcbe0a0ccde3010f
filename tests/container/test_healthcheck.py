"""`explaind healthcheck` (server/cli_healthcheck.c), the image's HEALTHCHECK: exit 0 on a 200,
1 on anything else, 2 on a usage error; its deadline holds against a server that never answers.
Small socket servers play the odd cases; a real `explaind serve` the ordinary one."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import testmodels  # noqa: E402

REPO = testmodels.REPO
BIN = os.environ.get("EXPLAIND_BIN", os.path.join(REPO, "build", "explaind"))


def healthcheck(*args, env=None, timeout=30):
    e = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([BIN, "healthcheck", *args], capture_output=True, text=True, env=e, timeout=timeout,
                       cwd=os.path.join(REPO, "tests"))  # no config/ here: defaults + environment only
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


class FakeServer:
    """Accepts connections on 127.0.0.1 and answers each with `reply` (bytes, or None: say nothing)."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.conns = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            c.settimeout(5)
            try:
                self.requests.append(c.recv(4096).decode(errors="replace"))
                if self.reply is not None:
                    c.sendall(self.reply)
                    c.close()
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def fake():
    servers = []

    def make(reply):
        s = FakeServer(reply)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthcheck_200_is_0_and_sends_a_plain_get(fake):
    s = fake(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}")
    rc, out, _ = healthcheck("--port", str(s.port))
    assert rc == 0, out
    req = s.requests[0]
    assert req.startswith("GET /healthz HTTP/1.1\r\n") and f"Host: 127.0.0.1:{s.port}\r\n" in req
    assert "Connection: close" in req


def test_healthcheck_path_option(fake):
    s = fake(b"HTTP/1.0 200 OK\r\n\r\n")
    rc, out, _ = healthcheck("--port", str(s.port), "--path", "/readyz")
    assert rc == 0 and s.requests[0].startswith("GET /readyz "), out


@pytest.mark.parametrize("reply", [b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n",
                                   b"HTTP/1.1 404 Not Found\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n",
                                   b"SSH-2.0-OpenSSH_9.2\r\n", b""])
def test_healthcheck_anything_but_200_is_1(fake, reply):
    s = fake(reply)
    rc, out, _ = healthcheck("--port", str(s.port))
    assert rc == 1, out


def test_healthcheck_refused_is_1():
    rc, out, _ = healthcheck("--port", str(closed_port()))
    assert rc == 1 and "refused" in out


def test_healthcheck_deadline_holds_when_the_server_never_answers(fake):
    s = fake(None)
    rc, out, took = healthcheck("--port", str(s.port), "--timeout-ms", "300")
    assert rc == 1 and "no answer in time" in out
    assert took < 5


def test_healthcheck_port_from_the_environment(fake):
    s = fake(b"HTTP/1.1 200 OK\r\n\r\n")
    rc, out, _ = healthcheck(env={"EXPLAIND_PORT": str(s.port)})
    assert rc == 0, out
    rc, out, _ = healthcheck(env={"EXPLAIND_PORT": str(closed_port())})
    assert rc == 1


def test_healthcheck_wildcard_listen_means_loopback(fake):
    s = fake(b"HTTP/1.1 200 OK\r\n\r\n")
    rc, out, _ = healthcheck(env={"EXPLAIND_PORT": str(s.port), "EXPLAIND_LISTEN": "0.0.0.0"})
    assert rc == 0 and "127.0.0.1" in out, out


@pytest.mark.parametrize("args", [["--bogus"], ["--port"], ["--timeout-ms", "0"], ["--timeout-ms", "x"],
                                  ["--path", "healthz"], ["--port", "notaport"]])
def test_healthcheck_usage_errors_are_2(args):
    rc, out, _ = healthcheck(*args)
    assert rc == 2, out


def test_healthcheck_help_is_0():
    rc, out, _ = healthcheck("--help")
    assert rc == 0 and "--timeout-ms" in out and "--path" in out


def test_healthcheck_against_explaind_serve_and_its_drain(tmp_path):
    models, _ = testmodels.models_dir()
    port = closed_port()
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
    p = subprocess.Popen([BIN, "serve", "--config", str(cfg), "--models_dir", models, "--listen", "127.0.0.1",
                          "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=env)
    try:
        for _ in range(1200):   # wait for "ready": a 503 "loading" answer waits as a refused connect does
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        assert healthcheck("--port", str(port))[0] == 0
        assert healthcheck("--port", str(port), "--path", "/readyz")[0] == 0
        assert healthcheck("--port", str(port), "--path", "/nope")[0] == 1
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        assert healthcheck("--port", str(port))[0] == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
