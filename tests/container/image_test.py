#!/usr/bin/python3
"""make container-test, the image part: build the real Dockerfile with buildah and run what it made.

  1. base    localhost/debian:bookworm-slim: a debootstrap --variant=minbase of bookworm from the
             Debian mirror this machine's apt uses, slimmed the way the official -slim image is
             (no docs, man pages, locales, apt lists), imported with `buildah from scratch` and
             committed. Made once; buildah's storage (CONTAINER_STORAGE) is the cache.
  2. build   `buildah bud --isolation chroot --layers --format docker` of the repository's
             Dockerfile with --build-arg BASE=localhost/debian:bookworm-slim, from a staged copy of
             the tree (git's tracked and untracked-not-ignored files; .dockerignore applies). The
             builder stage runs `make` and `make unit`. --format docker: the OCI format has no
             HEALTHCHECK. The builder stage is tagged too, so pruning keeps its cached layers.
  3. image   the config: non-root numeric USER, EXPOSE 8080, STOPSIGNAL SIGTERM, HEALTHCHECK running
             `explaind healthcheck`, ENTRYPOINT/CMD; the size (rootfs bytes, gzip'ed tar bytes).
  4. run     the image's ENTRYPOINT + CMD with `buildah run` (a working container, host network in
             chroot isolation) on a free loopback port; POST a Fashion-MNIST PNG to explain and
             check the JSON; the process's uid/gid are 10001; `explaind healthcheck` inside the
             container exits 0 (and 1 against a closed port); SIGTERM: exit 0 after draining;
             the container's root filesystem holds no file written while it ran.
  5. ro      the same image root bind-mounted read-only (private mount and PID namespaces,
             proc/dev/sys mounted, no writable /tmp), the entrypoint run as uid 10001 in a chroot
             with the image's Env and WorkingDir, as PID 1: it serves an explanation and exits 0
             on SIGTERM. This is what `docker run --read-only` / readOnlyRootFilesystem: true give it.

Exit status: 0 every check passed, 1 a check failed or the test cannot run here (not root,
buildah or debootstrap missing, no bookworm source in this machine's apt sources, the mirror
unreachable): the reason is printed, and the suite fails rather than passing untested.
The Debian mirror is the one this machine's apt uses: the URI of the first apt source (one-line
/etc/apt/sources.list or *.list, deb822 /etc/apt/sources.list.d/*.sources) that serves bookworm
main; there is no built-in fallback host. Environment: CONTAINER_STORAGE (default
/var/tmp/explaind-container), CONTAINER_STORAGE_DRIVER (overlay | vfs; default: overlay when it
mounts here, else vfs).
"""
import base64
import glob
import zlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import testmodels  # noqa: E402

REPO = testmodels.REPO
BUILD = os.path.join(REPO, "build", "container")
STORAGE = os.environ.get("CONTAINER_STORAGE", "/var/tmp/explaind-container")
BASE_IMAGE = "localhost/debian:bookworm-slim"
IMAGE = "localhost/explaind:test"
BUILDER_IMAGE = "localhost/explaind-builder:test"
CTR_PREFIX = "explaind-ctest-"
UID = 10001
SUITE = "bookworm"


class CannotRun(Exception):
    """This machine cannot build or run the image: the suite fails with this reason."""


class Failed(Exception):
    pass


results = []   # (name, ok, detail)
timings = []   # (step, seconds)


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)
    return ok


def step(name):
    class T:
        def __enter__(self):
            self.t0 = time.monotonic()
            print(f"== {name}", flush=True)

        def __exit__(self, *exc):
            timings.append((name, time.monotonic() - self.t0))
    return T()


def sh(args, check_rc=True, capture=True, timeout=None, log=None, **kw):
    if log:
        with open(log, "ab") as f:
            f.write(("\n$ " + " ".join(args) + "\n").encode())
            f.flush()
            p = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    else:
        p = subprocess.run(args, capture_output=capture, text=True, timeout=timeout, **kw)
    if check_rc and p.returncode:
        out = "" if log else (p.stdout or "") + (p.stderr or "")
        raise Failed(f"{' '.join(args[:6])}... exited {p.returncode}\n{out[-4000:]}")
    return p


# ---- buildah ---------------------------------------------------------------------------------------
DRIVER = None


def bah(*args):
    return ["buildah", "--root", os.path.join(STORAGE, DRIVER, "root"), "--runroot",
            os.path.join(STORAGE, DRIVER, "run"), "--storage-driver", DRIVER, *args]


def probe_driver(driver):
    """Can this driver make, mount and commit a layer here? Returns None or the error text."""
    global DRIVER
    DRIVER = driver
    ctr = None
    try:
        p = sh(bah("from", "--name", CTR_PREFIX + "probe", "scratch"), check_rc=False)
        if p.returncode:
            return p.stderr.strip()
        ctr = CTR_PREFIX + "probe"
        p = sh(bah("mount", ctr), check_rc=False)
        if p.returncode:
            return p.stderr.strip()
        open(os.path.join(p.stdout.strip(), "probe"), "w").close()
        sh(bah("umount", ctr), check_rc=False)
        return None
    except OSError as e:
        return str(e)
    finally:
        if ctr:
            sh(bah("rm", ctr), check_rc=False)


def ensure_tools():
    missing = [t for t, pkg in (("buildah", "buildah"), ("debootstrap", "debootstrap")) if not shutil.which(t)]
    if missing and os.geteuid() == 0:
        print(f"installing {' '.join(missing)} (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
        missing = [t for t in missing if not shutil.which(t)]
    if missing:
        raise CannotRun(f"{' and '.join(missing)} not installed and cannot be installed here "
                      f"({'apt-get failed' if os.geteuid() == 0 else 'not root'})")
    if os.geteuid() != 0:
        raise CannotRun("needs root: buildah storage, debootstrap and the read-only mount namespace "
                      "(rootless buildah needs subuid/subgid ranges this test does not set up)")


def choose_driver():
    global DRIVER
    want = os.environ.get("CONTAINER_STORAGE_DRIVER")
    errors = {}
    for d in ([want] if want else ["overlay", "vfs"]):
        err = probe_driver(d)
        if err is None:
            DRIVER = d
            return
        errors[d] = err
    raise CannotRun("buildah cannot create a container here: " +
                  "; ".join(f"{d}: {e.splitlines()[-1] if e else '?'}" for d, e in errors.items()))


def image_exists(ref):
    return sh(bah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref), check_rc=False).returncode == 0


def cleanup_containers():
    p = sh(bah("containers", "--format", "{{.ContainerName}}"), check_rc=False)
    for name in p.stdout.split():
        if name.startswith(CTR_PREFIX):
            sh(bah("rm", name), check_rc=False)


# ---- 1. base image -----------------------------------------------------------------------------------
def apt_sources(paths=None):
    """Every apt source of this machine as dicts {types, uris, suites, components}: the one-line
    format of sources.list(5) (/etc/apt/sources.list, sources.list.d/*.list) and its deb822 format
    (sources.list.d/*.sources; a stanza with Enabled: no is left out). apt reads no other file."""
    if paths is None:
        paths = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
                 *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    out = []
    for path in paths:
        try:
            text = open(path).read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields, key = {}, None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0] in " \t" and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                    continue
                out.append({"types": fields.get("types", "").split(), "uris": fields["uris"].split(),
                            "suites": fields.get("suites", "").split(),
                            "components": fields.get("components", "").split(), "file": path})
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.match(r"^(deb|deb-src)\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
                if m:
                    out.append({"types": [m.group(1)], "uris": [m.group(2)], "suites": [m.group(3)],
                                "components": m.group(4).split(), "file": path})
    return out


def debian_mirror(sources=None):
    """(mirror, security mirror or None) for SUITE from this machine's apt sources; CannotRun when
    none serves SUITE main (there is no fallback host: the image is built from what apt uses here)."""
    sources = apt_sources() if sources is None else sources

    def find(suite):
        for s in sources:
            if "deb" in s["types"] and suite in s["suites"] and "main" in s["components"]:
                return s["uris"][0].rstrip("/")
        return None
    mirror = find(SUITE)
    if not mirror:
        listed = "; ".join(f"{s['file']}: {' '.join(s['uris'])} {' '.join(s['suites'])}" for s in sources) or "none"
        raise CannotRun(f"no apt source of this machine serves `{SUITE} main` (debootstrap needs one; apt sources: "
                        f"{listed}). Add one to /etc/apt/sources.list.d/ and run again.")
    return mirror, find(SUITE + "-security")


SLIM_DPKG = """# as in the official debian:*-slim images: no documentation, man pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
SLIM_APT = """DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
Apt::AutoRemove::SuggestsImportant "false";
"""


def make_base():
    mirror, security = debian_mirror()
    work = os.path.join(STORAGE, "debootstrap")
    rootfs = os.path.join(work, "rootfs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = os.path.join(BUILD, "debootstrap.log")
    print(f"debootstrap --variant=minbase bookworm from {mirror} (log: {log})", flush=True)
    p = sh(["nice", "-n", "10", "debootstrap", "--variant=minbase", SUITE, rootfs, mirror],
           check_rc=False, log=log)
    if p.returncode:
        tail = open(log, errors="replace").read()[-1500:]
        if re.search(r"Failed getting release file|Couldn't download|Temporary failure resolving|"
                     r"Could not resolve|unable to fetch", tail, re.I):
            raise CannotRun(f"the Debian mirror {mirror} (from this machine's apt sources) cannot be reached: "
                            f"debootstrap says\n{tail}")
        raise Failed(f"debootstrap exited {p.returncode}:\n{tail}")
    # slim it like debian:bookworm-slim
    for pat in ["usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                "usr/share/groff/*", "usr/share/lintian/*", "var/cache/apt/*.bin",
                "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*.log",
                "var/log/apt/*", "etc/apt/sources.list"]:
        for path in glob.glob(os.path.join(rootfs, pat)):
            if os.path.isdir(path) and not os.path.islink(path):
                keep = glob.glob(os.path.join(path, "copyright")) if "/usr/share/doc/" in path else []
                for entry in os.listdir(path):
                    full = os.path.join(path, entry)
                    if full in keep:
                        continue
                    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
                if not keep:
                    os.rmdir(path)
            else:
                os.remove(path)
    with open(os.path.join(rootfs, "etc/dpkg/dpkg.cfg.d/docker"), "w") as f:
        f.write(SLIM_DPKG)
    with open(os.path.join(rootfs, "etc/apt/apt.conf.d/docker-slim"), "w") as f:
        f.write(SLIM_APT)
    with open(os.path.join(rootfs, "etc/apt/sources.list.d/debian.sources"), "w") as f:
        f.write(f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
                f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
        if security:
            f.write(f"\nTypes: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
                    f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    for f in ("etc/resolv.conf", "etc/hostname"):
        if os.path.lexists(os.path.join(rootfs, f)):
            os.remove(os.path.join(rootfs, f))
    open(os.path.join(rootfs, "etc/machine-id"), "w").close()
    ctr = CTR_PREFIX + "base"
    sh(bah("rm", ctr), check_rc=False)
    sh(bah("from", "--name", ctr, "scratch"))
    mnt = sh(bah("mount", ctr)).stdout.strip()
    sh(["cp", "-a", rootfs + "/.", mnt + "/"])
    sh(bah("umount", ctr))
    sh(bah("config", "--cmd", "/bin/bash", "--env",
           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--os", "linux",
           "--arch", "amd64", "--label", f"org.opencontainers.image.description=debootstrap minbase bookworm from {mirror}", ctr))
    sh(bah("commit", "--quiet", "--rm", ctr, BASE_IMAGE))
    shutil.rmtree(work, ignore_errors=True)


# ---- 2. build ----------------------------------------------------------------------------------------
def stage_context(models_src):
    """build/container/context: git's tracked + untracked-not-ignored files, models/ from models_src.
    Files are rewritten only when their bytes differ and stale ones removed, so the context is stable."""
    ctx = os.path.join(BUILD, "context")
    os.makedirs(ctx, exist_ok=True)
    files = sh(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout.split("\0")
    want = {}
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if rel.startswith("models/") or not os.path.isfile(src) or os.path.islink(src):
            continue
        want[rel] = src
    # what the service loads: NAME.onnx, NAME.json sidecars and probes/NAME/ (as .dockerignore keeps
    # models/train.py, README.md and metrics/ out of the image)
    for root, dirs, names in os.walk(models_src):
        rel_root = os.path.relpath(root, models_src)
        dirs[:] = [d for d in dirs if not (rel_root == "." and d == "metrics")]
        for name in names:
            if rel_root == "." and not name.endswith((".onnx", ".json")):
                continue
            rel = os.path.normpath(os.path.join("models", rel_root, name))
            want[rel] = os.path.join(root, name)
    for rel, src in want.items():
        dst = os.path.join(ctx, rel)
        data = open(src, "rb").read()
        if os.path.exists(dst) and open(dst, "rb").read() == data and \
                (os.stat(dst).st_mode & 0o777) == (os.stat(src).st_mode & 0o777):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        os.chmod(dst, os.stat(src).st_mode & 0o777)
    for root, dirs, names in os.walk(ctx, topdown=False):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), ctx)
            if rel not in want:
                os.remove(os.path.join(root, n))
        if root != ctx and not os.listdir(root):
            os.rmdir(root)
    size = sum(os.path.getsize(p) for p in want.values())
    return ctx, len(want), size


def build(ctx):
    log = os.path.join(BUILD, "build.log")
    open(log, "w").close()
    common = ["bud", "--isolation", "chroot", "--layers", "--format", "docker", "--build-arg",
              f"BASE={BASE_IMAGE}", "-f", os.path.join(ctx, "Dockerfile")]
    for target, tag in (("builder", BUILDER_IMAGE), (None, IMAGE)):
        args = bah(*common, *(["--target", target] if target else []), "-t", tag, ctx)
        p = sh(["nice", "-n", "10", *args], check_rc=False, log=log)
        if p.returncode:
            raise Failed(f"buildah bud{' --target ' + target if target else ''} failed (log: {log}):\n"
                         + open(log, errors="replace").read()[-6000:])
    text = open(log, errors="replace").read()
    unit = re.findall(r"\[  (PASSED|FAILED)  \] (\d+) test", text)
    full = text.split(f" -t {IMAGE} ", 1)[1]  # the second bud: the whole Dockerfile
    steps, cached = len(re.findall(r"STEP \d+/\d+:", full)), full.count("Using cache")
    # the layer of `RUN make && make unit` taken from the cache: it exists only because make unit
    # passed when it was made from the same sources
    unit_cached = re.search(r"STEP \d+/\d+: RUN make [^\n]*make unit[^\n]*\n--> Using cache", text) is not None
    # images that lost their tag to this build (and their own layers) go; cached parents stay
    sh(bah("rmi", "--prune"), check_rc=False)
    return cached, steps, unit, unit_cached


# ---- 3. image config and size --------------------------------------------------------------------------
def inspect_image():
    info = json.loads(sh(bah("inspect", "--type", "image", IMAGE)).stdout)
    cfg = info["Docker"]["config"]
    hc = cfg.get("Healthcheck") or {}
    check("image runs as a numeric non-root user", cfg.get("User") == f"{UID}:{UID}", f"User={cfg.get('User')!r}")
    check("EXPOSE 8080", "8080/tcp" in (cfg.get("ExposedPorts") or {}), str(cfg.get("ExposedPorts")))
    check("STOPSIGNAL SIGTERM", cfg.get("StopSignal") == "SIGTERM", str(cfg.get("StopSignal")))
    test = hc.get("Test") or []
    check("HEALTHCHECK runs `explaind healthcheck` (no curl)", test[:3] == ["CMD", "explaind", "healthcheck"], str(test))
    check("ENTRYPOINT explaind, CMD serve", cfg.get("Entrypoint") == ["explaind"] and cfg.get("Cmd") == ["serve"],
          f"{cfg.get('Entrypoint')} {cfg.get('Cmd')}")
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
    check("configured by EXPLAIND_* environment", env.get("EXPLAIND_PORT") == "8080" and "EXPLAIND_MODELS_DIR" in env,
          " ".join(k for k in env if k.startswith("EXPLAIND_")))
    return cfg


def measure_size(ctr_mnt, base_mnt):
    def du(path):
        total = 0
        for root, dirs, names in os.walk(path):
            for n in names:
                try:
                    st = os.lstat(os.path.join(root, n))
                except OSError:
                    continue
                total += st.st_size
        return total
    rootfs = du(ctr_mnt)
    base = du(base_mnt)
    # what a registry would transfer: the root filesystem as a gzip'ed tar (one layer's worth)
    tar = subprocess.Popen(["tar", "-C", ctr_mnt, "-cf", "-", "."], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    gz = 0
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    while True:
        chunk = tar.stdout.read(1 << 20)
        if not chunk:
            break
        gz += len(z.compress(chunk))
    gz += len(z.flush())
    tar.wait()
    size_line = sh(bah("images", "--format", "{{.Size}}", IMAGE)).stdout.strip()
    return rootfs, base, gz, size_line


# ---- 4. run with buildah run ------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener_pid(port):
    out = sh(["ss", "-ltnpH", f"sport = :{port}"], check_rc=False).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def proc_ids(pid):
    st = open(f"/proc/{pid}/status").read()
    uid = [int(x) for x in re.search(r"^Uid:\s+(.*)$", st, re.M).group(1).split()]
    gid = [int(x) for x in re.search(r"^Gid:\s+(.*)$", st, re.M).group(1).split()]
    groups = [int(x) for x in re.search(r"^Groups:\s*(.*)$", st, re.M).group(1).split()]
    return uid, gid, groups


def wait_ready(port, proc, timeout=90):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def explain_checks(port, label, kind):
    png = open(testmodels.FASHION_PNG, "rb").read()
    rid = "ctest-" + re.sub(r"[^a-z]+", "-", label) + f"-{os.getpid()}"
    r = requests.post(f"http://127.0.0.1:{port}/v1/models/fashion-cnn/explain?methods=gradcam",
                      data=png, headers={"Content-Type": "image/png", "X-Request-Id": rid}, timeout=60)
    ok = check(f"{label}: POST explain answers 200 JSON", r.status_code == 200 and
               r.headers.get("Content-Type", "").startswith("application/json"), f"{r.status_code} {r.text[:200]}")
    if not ok:
        return
    doc = r.json()
    check(f"{label}: request id passed through", doc.get("request_id") == rid and r.headers.get("X-Request-Id") == rid,
          f"{doc.get('request_id')} / {r.headers.get('X-Request-Id')}")
    preds = doc.get("predictions") or []
    check(f"{label}: predictions over the Fashion-MNIST labels",
          doc.get("model") == "fashion-cnn" and len(preds) == 5
          and all(p.get("label") in testmodels.FASHION_LABELS and 0 <= p.get("score", -1) <= 1 for p in preds)
          and sum(p["score"] for p in preds) <= 1 + 1e-5
          and [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True), json.dumps(preds)[:200])
    if kind == "shipped":
        check(f"{label}: the shipped model calls the ankle boot an ankle boot", preds and preds[0]["label"] == testmodels.FASHION_LABEL,
              preds[0]["label"] if preds else "")
    g = (doc.get("explanations") or {}).get("gradcam") or {}
    pngs = [base64.b64decode(g.get(k, "")) for k in ("heatmap_png", "overlay_png")]
    check(f"{label}: gradcam heatmap and overlay are PNGs", all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs),
          f"layer {g.get('layer')}")


def run_with_buildah(cfg, kind):
    ctr = CTR_PREFIX + str(os.getpid())
    sh(bah("from", "--name", ctr, IMAGE))
    try:
        mnt = sh(bah("mount", ctr)).stdout.strip()
        # whatever `buildah run` itself creates in the rootfs (mount points), before the marker
        sh(bah("run", "--isolation", "chroot", ctr, "--", "true"))
        marker = os.path.join(BUILD, "run-marker")
        open(marker, "w").close()
        time.sleep(1.1)  # mtime granularity
        os.utime(marker)
        port = free_port()
        cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        log = os.path.join(BUILD, "server-buildah-run.log")
        lf = open(log, "wb")
        proc = subprocess.Popen(bah("run", "--isolation", "chroot", "--env", f"EXPLAIND_PORT={port}",
                                    "--env", "EXPLAIND_WORKERS=2", ctr, "--", *cmd),
                                stdout=lf, stderr=subprocess.STDOUT)
        pid = None
        try:
            ready = wait_ready(port, proc)
            if not check("buildah run: the entrypoint serves /readyz 200", ready, open(log, errors="replace").read()[-1500:] if not ready else f"{' '.join(cmd)} on :{port}"):
                return
            pid = listener_pid(port)
            uid, gid, groups = proc_ids(pid)
            check("buildah run: the server process runs as uid/gid 10001 (not root)",
                  set(uid) == {UID} and set(gid) == {UID} and 0 not in groups, f"pid {pid} Uid {uid} Gid {gid} Groups {groups}")
            check("buildah run: the process's root is the image, not the host", os.readlink(f"/proc/{pid}/root") != "/",
                  os.readlink(f"/proc/{pid}/root"))
            r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            check("buildah run: GET /healthz 200 {\"status\":\"ok\"}", r.status_code == 200 and r.json() == {"status": "ok"}, r.text[:100])
            explain_checks(port, "buildah run", kind)
            hc = [x for x in (cfg.get("Healthcheck") or {}).get("Test", [])[1:]]
            p = sh(bah("run", "--isolation", "chroot", "--env", f"EXPLAIND_PORT={port}", ctr, "--", *hc), check_rc=False)
            check("the image's HEALTHCHECK command exits 0 in the container", p.returncode == 0, f"{' '.join(hc)} -> {p.returncode} {p.stderr.strip()}")
            p = sh(bah("run", "--isolation", "chroot", ctr, "--", "explaind", "healthcheck", "--port", str(port)), check_rc=False)
            check("`explaind healthcheck --port P` exits 0 in the container", p.returncode == 0, (p.stdout + p.stderr).strip())
            p = sh(bah("run", "--isolation", "chroot", ctr, "--", "explaind", "healthcheck", "--port", str(free_port()),
                       "--timeout-ms", "1000"), check_rc=False)
            check("`explaind healthcheck` against a closed port exits 1", p.returncode == 1, (p.stdout + p.stderr).strip())
            p = sh(bah("run", "--isolation", "chroot", ctr, "--", "id", "-u"), check_rc=False)
            check("buildah run without --user runs as 10001 (the image's USER)", p.stdout.strip() == str(UID), p.stdout.strip())
            os.kill(pid, signal.SIGTERM)
            rc = proc.wait(timeout=60)
            text = open(log, errors="replace").read()
            check("buildah run: SIGTERM drains and exits 0", rc == 0 and "draining" in text and "stopped after draining" in text,
                  f"exit {rc}")
            pid = None
        finally:
            if pid and proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            lf.close()
        written = sh(["find", mnt, "-xdev", "-newer", marker, "-not", "-type", "d"], check_rc=False).stdout.split()
        check("nothing was written to the container's root filesystem while it served", not written,
              " ".join(os.path.relpath(w, mnt) for w in written[:20]))
        sh(bah("umount", ctr), check_rc=False)
    finally:
        sh(bah("rm", ctr), check_rc=False)


# ---- 5. read-only root ------------------------------------------------------------------------------------
RO_SCRIPT = r"""
set -e
M="$1"; R="$2"; shift 2
mount --bind "$M" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -o remount,bind,ro "$R"
# prove it: a write as root fails
if touch "$R/opt/explaind/.rw-probe" 2>/dev/null; then echo "root filesystem is writable" >&2; exit 3; fi
exec "$@"
"""


def run_read_only(cfg, kind):
    ctr = CTR_PREFIX + "ro-" + str(os.getpid())
    sh(bah("from", "--name", ctr, IMAGE))
    try:
        mnt = sh(bah("mount", ctr)).stdout.strip()
        root = tempfile.mkdtemp(prefix="explaind-ro-")
        port = free_port()
        env = [e for e in cfg.get("Env") or [] if not e.startswith("EXPLAIND_PORT=")] + [f"EXPLAIND_PORT={port}", "EXPLAIND_WORKERS=2"]
        user = cfg.get("User")
        cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        log = os.path.join(BUILD, "server-read-only.log")
        lf = open(log, "wb")
        # a PID namespace too: the server is PID 1, as under `docker run` (signals to PID 1 are
        # dropped unless handled: SIGTERM must still drain)
        argv = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--", "sh", "-c", RO_SCRIPT, "ro", mnt, root,
                "chroot", f"--userspec={user}", f"--groups={user.split(':')[1]}", root,
                "/usr/bin/env", "-i", *env, "/usr/bin/env", "-C", cfg.get("WorkingDir") or "/", *cmd]
        proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT)
        pid = None
        try:
            ready = wait_ready(port, proc)
            if not check("read-only root: the entrypoint serves /readyz 200", ready, open(log, errors="replace").read()[-1500:] if not ready else ""):
                return
            pid = listener_pid(port)
            uid, gid, groups = proc_ids(pid)
            mounts = open(f"/proc/{pid}/mounts").read().splitlines()
            rootline = [m for m in mounts if m.split()[1] == "/"]
            check("read-only root: / is mounted ro for the server, which runs as 10001",
                  rootline and "ro" in rootline[-1].split()[3].split(",") and set(uid) == {UID},
                  f"{' '.join(rootline[-1].split()[:4])[:80]}... Uid {uid}" if rootline else "no / mount")
            nspid = re.search(r"^NSpid:\s+(.*)$", open(f"/proc/{pid}/status").read(), re.M).group(1).split()
            check("read-only root: the server is PID 1 of its PID namespace", nspid[-1] == "1", f"NSpid {nspid}")
            explain_checks(port, "read-only root", kind)
            os.kill(pid, signal.SIGTERM)
            rc = proc.wait(timeout=60)
            text = open(log, errors="replace").read()
            check("read-only root: SIGTERM to PID 1 drains and exits 0", rc == 0 and "stopped after draining" in text, f"exit {rc}")
            pid = None
        finally:
            if pid and proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            lf.close()
            os.rmdir(root)
        sh(bah("umount", ctr), check_rc=False)
    finally:
        sh(bah("rm", ctr), check_rc=False)


def main():
    t_start = time.monotonic()
    os.makedirs(BUILD, exist_ok=True)
    print(f"container-test: storage {STORAGE}")
    try:
        with step("preflight"):
            ensure_tools()
            choose_driver()
            cleanup_containers()
            print(f"buildah {sh(['buildah', '--version']).stdout.split()[2]}, storage driver {DRIVER}, isolation chroot")
        with step("base image"):
            if image_exists(BASE_IMAGE):
                print(f"{BASE_IMAGE}: cached in {STORAGE}/{DRIVER}")
            else:
                make_base()
                print(f"{BASE_IMAGE}: made")
        with step("models and build context"):
            models_src, kind = testmodels.models_dir()
            ctx, nfiles, nbytes = stage_context(models_src)
            print(f"models: {kind} ({models_src}); context {ctx}: {nfiles} files, {nbytes / 1e6:.1f} MB before .dockerignore")
        with step("build"):
            cached, steps, unit, unit_cached = build(ctx)
            print(f"{steps} steps in the final build, {cached} from cache")
            if unit:
                check("the builder stage ran the unit tests and they passed", all(s == "PASSED" for s, n in unit),
                      ", ".join(f"{s} {n}" for s, n in unit))
            else:
                check("the builder's `make && make unit` layer is cached (made when the unit tests passed on these sources)",
                      unit_cached)
        if "--build-only" in sys.argv[1:]:
            print(f"built {IMAGE}")
            return 0 if all(ok for _, ok, _ in results) else 1
        with step("image config and size"):
            cfg = inspect_image()
            c1, c2 = CTR_PREFIX + "size", CTR_PREFIX + "size-base"
            sh(bah("from", "--name", c1, IMAGE))
            sh(bah("from", "--name", c2, BASE_IMAGE))
            try:
                rootfs, base, gz, line = measure_size(sh(bah("mount", c1)).stdout.strip(), sh(bah("mount", c2)).stdout.strip())
            finally:
                sh(bah("rm", c1, c2), check_rc=False)
            print(f"IMAGE SIZE: {rootfs / 1e6:.1f} MB uncompressed rootfs ({line} by buildah images), "
                  f"{gz / 1e6:.1f} MB as a gzip'ed tar; base {base / 1e6:.1f} MB, explaind adds {(rootfs - base) / 1e6:.1f} MB")
            with open(os.path.join(BUILD, "image-size.json"), "w") as f:
                json.dump({"rootfs_bytes": rootfs, "gzip_bytes": gz, "base_rootfs_bytes": base, "buildah_images": line,
                           "date": time.strftime("%Y-%m-%d")}, f)
        with step("run with buildah run"):
            run_with_buildah(cfg, kind)
        with step("read-only root filesystem"):
            run_read_only(cfg, kind)
    except CannotRun as e:
        check("container-test can run on this machine", False, str(e))
    except Failed as e:
        check("container-test step", False, str(e))
    finally:
        if DRIVER:
            cleanup_containers()
    print("\ntimings: " + ", ".join(f"{n} {s:.1f}s" for n, s in timings) + f"; total {time.monotonic() - t_start:.1f}s")
    failed = [r for r in results if not r[1]]
    for name, ok, detail in failed:
        print(f"FAILED: {name}: {detail[:3000]}")
    print(f"container-image: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
