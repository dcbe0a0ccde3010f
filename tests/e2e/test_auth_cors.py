"""API keys (401 with WWW-Authenticate; health, readiness, metrics and the document stay open)
and CORS (allowed origins get the headers, preflight answered; others get none)."""
import pytest

EXPLAIN = "/v1/models/fashion-cnn/explain"
ALLOWED = "https://allowed.example"


@pytest.fixture(scope="module")
def guarded(start_server, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("# one key per line\n\nk-alpha-123\n   k-beta-456   \n")
    s = start_server(api_keys_file=str(keys), cors_origins=f"{ALLOWED}, https://other.example", workers=1)
    yield s
    assert s.stop() == 0


def test_protected_routes_need_a_key(guarded, boot_png):
    c = guarded.client()
    for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/fashion-cnn"), ("POST", EXPLAIN),
                         ("POST", "/v1/models/fashion-cnn/predict"), ("POST", "/v1/models/fashion-cnn:predict"),
                         ("POST", "/v1/models/fashion-cnn/layers/x/activations"),
                         ("POST", "/v1/models/fashion-cnn/layers/x/filters/0/visualize")]:
        r = c.request(method, path, data=boot_png if method == "POST" else None)
        assert r.status_code == 401, (method, path)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["type"] == "urn:explaind:problem:unauthorized"


@pytest.mark.parametrize("auth", ["Bearer wrong", "Bearer k-alpha-12", "Bearer k-alpha-1234", "k-alpha-123",
                                  "Basic k-alpha-123", "Bearer # one key per line", "Bearer "])
def test_wrong_keys_are_401(guarded, auth):
    r = guarded.client().get("/v1/models", headers={"Authorization": auth})
    assert r.status_code == 401


@pytest.mark.parametrize("key", ["k-alpha-123", "k-beta-456"])
def test_a_valid_key_opens_every_route(guarded, boot_png, key):
    c = guarded.client(headers={"Authorization": f"Bearer {key}"})
    assert c.get("/v1/models").status_code == 200
    assert c.post(EXPLAIN, data=boot_png).status_code == 200
    assert c.post("/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/filters/0/visualize?steps=1").status_code == 200


def test_health_readiness_metrics_and_the_document_stay_open(guarded):
    c = guarded.client()
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.yaml", "/v2/health/live", "/v2/health/ready",
                 "/v2/models/fashion-cnn/ready"):
        assert c.get(path).status_code == 200, path


def test_allowed_origin_gets_cors_headers(guarded, boot_png):
    c = guarded.client(headers={"Origin": ALLOWED, "Authorization": "Bearer k-alpha-123"})
    for r in (c.get("/healthz"), c.post(EXPLAIN, data=boot_png), c.post(EXPLAIN + "?top_k=0", data=boot_png)):
        assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert r.headers["Vary"] == "Origin"
        assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
    r = guarded.client(headers={"Origin": "https://other.example"}).get("/healthz")
    assert r.headers["Access-Control-Allow-Origin"] == "https://other.example"
    # a 401 must be readable by the page too
    r = guarded.client(headers={"Origin": ALLOWED}).get("/v1/models")
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_disallowed_origin_gets_no_cors_headers(guarded):
    for origin in ("https://evil.example", "https://allowed.example.evil", "null"):
        r = guarded.client(headers={"Origin": origin}).get("/healthz")
        assert r.status_code == 200
        assert not any(h.lower().startswith("access-control-") for h in r.headers), origin


def test_preflight_for_an_allowed_origin(guarded):
    r = guarded.client().options(EXPLAIN, headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= allowed
    assert int(r.headers["Access-Control-Max-Age"]) > 0


def test_preflight_for_a_disallowed_origin(guarded):
    r = guarded.client().options(EXPLAIN, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert not any(h.lower().startswith("access-control-") for h in r.headers)


def test_wildcard_origin(start_server):
    s = start_server(cors_origins="*", workers=1)
    try:
        r = s.client(headers={"Origin": "https://anything.example"}).get("/healthz")
        assert r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers
        r = s.client().get("/healthz")  # no Origin, no CORS
        assert "Access-Control-Allow-Origin" not in r.headers
    finally:
        assert s.stop() == 0


def test_no_cors_headers_without_cors_origins(client):
    r = client.get("/healthz", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in r.headers
