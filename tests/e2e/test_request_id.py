"""X-Request-Id: echoed when the client sends a valid one, generated otherwise; the same id is in
the document, the problem and the access log."""
import re
import time

import pytest

EXPLAIN = "/v1/models/fashion-cnn/explain"


def test_request_id_is_echoed(client, boot_png):
    r = client.post(EXPLAIN, data=boot_png, headers={"X-Request-Id": "trace-42.a:b_c"})
    assert r.headers["X-Request-Id"] == "trace-42.a:b_c" and r.json()["request_id"] == "trace-42.a:b_c"
    r = client.post(EXPLAIN + "?top_k=0", data=boot_png, headers={"X-Request-Id": "err-7"})
    assert r.status_code == 422 and r.headers["X-Request-Id"] == "err-7" and r.json()["request_id"] == "err-7"
    r = client.get("/healthz", headers={"X-Request-Id": "h" * 64})
    assert r.headers["X-Request-Id"] == "h" * 64


def test_request_id_is_generated_when_missing(client, boot_png):
    ids = set()
    for path in ("/healthz", "/v1/models", "/nope"):
        r = client.get(path)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
        ids.add(r.headers["X-Request-Id"])
    r = client.post(EXPLAIN, data=boot_png)
    assert r.json()["request_id"] == r.headers["X-Request-Id"]
    ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 4


@pytest.mark.parametrize("bad", ["h" * 65, "has space", "semi;colon", "quote\"d", "ünï"])
def test_invalid_request_id_is_replaced(client, bad):
    r = client.get("/healthz", headers={"X-Request-Id": bad.encode("utf-8")})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])


def test_request_id_is_in_the_access_log(server, client, boot_png):
    client.post(EXPLAIN + "?methods=saliency", data=boot_png, headers={"X-Request-Id": "find-me-in-the-log"})
    client.post(EXPLAIN + "?bogus=1", data=boot_png, headers={"X-Request-Id": "find-me-too"})
    for _ in range(100):  # the access line is written when the exchange completes, just after the answer
        recs = {r.get("request_id"): r for r in server.log_records() if r.get("msg") == "access"}
        if "find-me-in-the-log" in recs and "find-me-too" in recs:
            break
        time.sleep(0.02)
    ok, bad = recs["find-me-in-the-log"], recs["find-me-too"]
    assert ok["status"] == 200 and ok["route"] == "/v1/models/{model}/explain" and ok["model"] == "fashion-cnn"
    assert ok["methods"] == "saliency" and ok["method"] == "POST"
    assert bad["status"] == 422 and "bogus" in bad["detail"]
