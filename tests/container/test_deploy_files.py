"""Static checks of the deployment files, and the numbers they must agree on.

Nothing here can run compose or a cluster (no Docker engine, no Kubernetes, no kubeconform on this
machine): docker-compose.yml is validated against the Compose schema by Debian's docker-compose
1.29 (`config -q`, which needs no engine) and checked for what it must say; deploy/k8s/*.yaml are
parsed as YAML only (no Kubernetes schema here) and checked for what they must say;
deploy/nginx.conf and config/explaind.json must agree (upload limit, timeouts).
The image itself is built and run by image_test.py; nginx.conf is run for real by tests/lb."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(*p):
    with open(os.path.join(REPO, *p)) as f:
        return f.read()


@pytest.fixture(scope="module")
def config():
    return {k: v for k, v in json.loads(read("config", "explaind.json")).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(read("docker-compose.yml"))


@pytest.fixture(scope="module")
def k8s():
    docs = {}
    d = os.path.join(REPO, "deploy", "k8s")
    for name in sorted(os.listdir(d)):
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all(read("deploy", "k8s", name)):
                if doc:
                    docs[doc["kind"]] = doc
    return docs


def nginx_directive(text, name):
    m = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.M)
    assert m, f"deploy/nginx.conf has no {name}"
    return m


def size_bytes(s):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", s.strip())
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def seconds(s):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", s.strip())
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[m.group(2)]


# ---- Dockerfile ------------------------------------------------------------------------------------
def test_dockerfile_two_stages_on_the_base_arg():
    text = read("Dockerfile")
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]
    assert re.search(r"make -j\"\$\(nproc\)\" && make unit", text), "the builder runs the unit tests"


def test_dockerfile_runtime_has_no_dev_packages_and_no_curl():
    runtime = read("Dockerfile").split("AS runtime", 1)[1]
    assert "-dev" not in runtime and "curl" not in re.sub(r"#.*", "", runtime)
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r'^HEALTHCHECK .*\n\s+CMD \["explaind", "healthcheck"', runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.M) and re.search(r"^EXPOSE 8080$", runtime, re.M)


def test_dockerignore_keeps_build_outputs_and_git_out():
    ignored = [l.strip() for l in read(".dockerignore").splitlines() if l.strip() and not l.startswith("#")]
    for p in (".git", "**/build", "**/node_modules", "**/__pycache__"):
        assert p in ignored
    for p in ("models", "config", "openapi.yaml", "tests", "tests/unit", "tests/data", "server", "engine",
              "scripts", "Makefile", "mk", "web"):
        assert p not in ignored, "make and make unit need it"


def dockerignored(path, patterns):
    """Docker's rule: the last pattern matching the path or one of its parent directories decides;
    a pattern starting with ! keeps the path."""
    import fnmatch
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for pat in patterns:
        keep = pat.startswith("!")
        pat = pat[1:] if keep else pat
        if any(fnmatch.fnmatchcase(p, pat) or (pat.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1], pat[3:]))
               for p in prefixes):
            out = not keep
    return out


def test_dockerignore_keeps_every_file_make_unit_reads():
    """The builder stage runs `make unit` in the image: a file a unit test opens (../../PATH from
    tests/unit) must be in the build context (docs/OPS.md was not, and the image build failed)."""
    patterns = [l.strip() for l in read(".dockerignore").splitlines() if l.strip() and not l.startswith("#")]
    read_by_unit = set()
    for name in os.listdir(os.path.join(REPO, "tests", "unit")):
        if name.endswith(".c"):
            read_by_unit |= set(re.findall(r'"\.\./\.\./([^"]+)"', read("tests", "unit", name)))
    assert "docs/OPS.md" in read_by_unit
    for path in sorted(read_by_unit):
        assert os.path.exists(os.path.join(REPO, path)), path
        assert not dockerignored(path, patterns), f".dockerignore leaves out {path}, which make unit reads"
    assert dockerignored("docs/METHODS.md", patterns) and dockerignored("a/build/x.o", patterns)


# ---- compose ---------------------------------------------------------------------------------------
def test_compose_three_replicas_behind_nginx_on_8080(compose):
    svcs = compose["services"]
    reps = sorted(k for k in svcs if k.startswith("explaind-"))
    assert reps == ["explaind-1", "explaind-2", "explaind-3"]
    ng = svcs["nginx"]
    assert "8080:8080" in ng["ports"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in ng["volumes"]
    for r in reps:
        assert ng["depends_on"][r]["condition"] == "service_healthy"
    upstreams = re.findall(r"^\s*server (explaind-\d+):8080 ", read("deploy", "nginx.conf"), re.M)
    assert upstreams == reps, "each compose replica is one nginx upstream server"


def test_compose_replicas_health_checked_read_only_and_drain_in_time(compose, config):
    for name in ("explaind-1", "explaind-2", "explaind-3"):
        s = compose["services"][name]
        assert s["healthcheck"]["test"][:3] == ["CMD", "explaind", "healthcheck"]
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
        assert s["stop_signal"] == "SIGTERM"
        drain = int(s["environment"].get("EXPLAIND_DRAIN_TIMEOUT_MS", config["drain_timeout_ms"]))
        timeout = int(s["environment"].get("EXPLAIND_REQUEST_TIMEOUT_MS", config["request_timeout_ms"]))
        assert seconds(s["stop_grace_period"]) * 1000 > max(drain, timeout), "SIGKILL only after the drain"


def test_compose_upload_limit_matches_nginx(compose, config):
    nginx = read("deploy", "nginx.conf")
    body = size_bytes(nginx_directive(nginx, "client_max_body_size")[0])
    env = compose["services"]["explaind-1"]["environment"]
    assert body == int(env.get("EXPLAIND_MAX_UPLOAD_BYTES", config["max_upload_bytes"])) == config["max_upload_bytes"]


def test_compose_file_validates_against_the_compose_schema():
    """docker-compose 1.29 (Debian's) checks the file against the Compose schema without an engine."""
    assert shutil.which("docker-compose"), \
        "docker-compose (Debian package) is not installed (make test installs it): the schema check cannot run"
    p = subprocess.run(["docker-compose", "-f", os.path.join(REPO, "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr


# ---- nginx.conf ------------------------------------------------------------------------------------
def test_nginx_retries_only_what_is_safe_and_timeouts_follow_the_server(config):
    nginx = read("deploy", "nginx.conf")
    nu = nginx_directive(nginx, "proxy_next_upstream")[0].split()
    assert nu == ["error", "timeout", "http_503", "non_idempotent"]
    assert seconds(nginx_directive(nginx, "proxy_read_timeout")[0]) * 1000 > config["request_timeout_ms"]
    # nginx closes idle upstream connections before explaind's idle timeout does
    upstream = nginx.split("upstream explaind", 1)[1].split("}", 1)[0]
    ka = re.search(r"keepalive_timeout\s+(\w+);", upstream).group(1)
    assert seconds(ka) < config["connection_timeout_s"]
    assert "$request_id" in nginx and "proxy_set_header X-Request-Id" in nginx
    for line in re.findall(r"^\s*server explaind-\d+:8080 ([^;]*);", nginx, re.M):
        assert "max_fails=" in line and "fail_timeout=" in line


# ---- Kubernetes ------------------------------------------------------------------------------------
def test_k8s_documents_parse_with_the_expected_kinds(k8s):
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(k8s)


def test_k8s_probes_prestop_and_grace_period(k8s, config):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep" and sleep >= 10, \
        "longer than a typical load balancer deregistration delay"
    env = {e["name"]: e["value"] for e in c["env"]}
    drain = int(env.get("EXPLAIND_DRAIN_TIMEOUT_MS", config["drain_timeout_ms"]))
    timeout = int(env.get("EXPLAIND_REQUEST_TIMEOUT_MS", config["request_timeout_ms"]))
    assert pod["terminationGracePeriodSeconds"] * 1000 > drain
    assert pod["terminationGracePeriodSeconds"] * 1000 > sleep * 1000 + max(drain, timeout)
    assert int(env["EXPLAIND_WORKERS"]) >= 1, "workers=0 would count the node's CPUs, not the limit"


def test_k8s_security_and_resources(k8s):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    res = c["resources"]
    assert res["requests"]["cpu"] and res["limits"]["memory"] and res["requests"]["memory"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert int(env["EXPLAIND_WORKERS"]) == int(res["limits"]["cpu"]), "one worker per CPU of the limit"


def test_k8s_readme_says_how_to_scale_out_and_that_only_yaml_is_checked():
    with open(os.path.join(REPO, "deploy", "k8s", "README.md")) as f:
        text = f.read()
    assert "## Scaling out" in text and "kubectl apply -k deploy/k8s" in text
    assert "checked only as YAML" in text


def test_k8s_service_and_hpa_point_at_the_deployment(k8s):
    dep = k8s["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = k8s["Service"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] == "http"
    hpa = k8s["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    pdb = k8s["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
