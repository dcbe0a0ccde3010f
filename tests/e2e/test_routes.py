"""GET routes: health, readiness, metrics, the OpenAPI document, the dashboard, the models, the
Open Inference Protocol health aliases, HEAD."""
import pytest
import yaml

from helpers import ALL_METHODS
from server import parse_metrics


def test_healthz_is_ok(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_lists_the_loaded_models(client, models):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "models": models.names}
    assert {"fashion-cnn", "fc-head", "mobilenet"} <= set(models.names)


def test_v2_health_aliases(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True, "status": "ready"}
    r = client.get("/v2/models/fashion-cnn/ready")
    assert r.status_code == 200 and r.json() == {"name": "fashion-cnn", "ready": True}
    r = client.get("/v2/models/no-such-model/ready")
    assert r.status_code == 404 and "no-such-model" in r.json()["detail"]


def test_metrics_is_prometheus_text_with_the_models(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_metrics(r.text)
    names = {k[0] for k in m}
    for n in ("explaind_queue_depth", "explaind_inflight", "explaind_workers_busy", "explaind_workers",
              "process_resident_memory_bytes", "process_open_fds"):
        assert n in names, n
    assert m[("explaind_workers", frozenset())] == 2
    info = {dict(k[1])["model"]: dict(k[1]) for k in m if k[0] == "explaind_model_info"}
    assert info["fashion-cnn"]["classes"] == "10" and info["fashion-cnn"]["input"] == "1x28x28"
    assert info["mobilenet"]["input"] == "3x64x64"


def test_openapi_route_serves_the_repository_document(client, repo):
    r = client.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/yaml"
    with open(repo / "openapi.yaml", "rb") as f:
        assert r.content == f.read(), "the binary embeds an old openapi.yaml: rebuild"
    assert yaml.safe_load(r.content)["openapi"].startswith("3.1")


def test_dashboard_root(client, repo):
    r = client.get("/")
    if (repo / "web" / "index.html").exists():
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    else:  # built without web/: the contract says 404
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"


def test_head_answers_get_routes_without_a_body(client):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.yaml", "/v1/models"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path
        assert "X-Request-Id" in r.headers


def test_models_list(client, models):
    r = client.get("/v1/models")
    assert r.status_code == 200
    ms = {m["name"]: m for m in r.json()["models"]}
    assert list(ms) == models.names
    fc = ms["fashion-cnn"]
    assert fc["classes"] == 10 and fc["input"] == {
        "color": "gray", "channels": 1, "channel_order": "rgb", "height": 28, "width": 28, "resize": "stretch",
        "resize_size": None, "crop": None, "scale": 255, "mean": [pytest.approx(0.286)], "std": [pytest.approx(0.353)],
        "invert": False, "sidecar": True, "defaults": ["channel_order"]}
    assert fc["cam_layer"] == "/conv4/Relu"
    mb = ms["mobilenet"]  # no sidecar: rgb, input size from the graph, cam layer auto-detected
    assert mb["input"]["color"] == "rgb" and mb["input"]["height"] == 64 and mb["cam_layer"]
    assert mb["label_randomized_twin"] is None


def test_model_info(client, models):
    r = client.get("/v1/models/fashion-cnn")
    assert r.status_code == 200
    info = r.json()
    assert info["labels"] == models.labels
    assert info["attention_layers"] == ["/cbam/spatial/Sigmoid"]
    names = [l["name"] for l in info["layers"]]
    assert "/conv4/Relu" in names and "/cbam/spatial/Sigmoid" in names
    assert sorted(m["name"] for m in info["methods"]) == sorted(ALL_METHODS)
    fam = {m["name"]: m["family"] for m in info["methods"]}
    assert fam["saliency"] == "gradient" and fam["gradcam"] == "cam" and fam["guided_gradcam"] == "combined"
    assert fam["occlusion"] == "perturbation" and fam["activations"] == "internals" and fam["edge"] == "baseline"
    assert info["parameters"] == sum(l["parameters"] for l in info["layers"])
    mb = client.get("/v1/models/mobilenet").json()
    assert mb["labels"] == [f"class_{i}" for i in range(10)]


@pytest.mark.parametrize("path", ["/v1/models/no-such-model", "/v1/models/.hidden", "/v1/models/a%20b"])
def test_unknown_model_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404


def test_unknown_routes_are_404(client):
    for method, path in [("GET", "/nope"), ("GET", "/v1/model"), ("POST", "/v1/models/fashion-cnn/nope"),
                         ("POST", "/v1/models/fashion-cnn/layers/x/filters/y/visualize"), ("GET", "/v2/models/x")]:
        r = client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json()["type"] == "urn:explaind:problem:not-found"


def test_get_routes_keep_the_connection_alive(server, contract):
    # health probes, scrapes and the dashboard's polling reuse one connection (HTTP/1.1 keep-alive)
    import socket
    from server import raw_request
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/fashion-cnn", "/healthz"):
            status, headers, _ = raw_request(s, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), contract, "GET", path)
            assert status == 200
            assert headers.get("Connection", "").lower() != "close", path
