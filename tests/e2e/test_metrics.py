"""/metrics counts requests by route template and status, problems by type, methods' engine time."""
import time

from server import counter

EXPLAIN = "/v1/models/fashion-cnn/explain"
R_EXPLAIN = "/v1/models/{model}/explain"


def settled(server, want):
    """Scrape until `want(metrics)` holds (counters are bumped when an exchange completes, just after
    the client has its answer)."""
    for _ in range(100):
        m = server.metrics()
        if want(m):
            return m
        time.sleep(0.02)
    return m


def test_requests_are_counted_by_route_and_status(server, client, boot_png):
    before = server.metrics()
    sent = {(R_EXPLAIN, "200"): 3, (R_EXPLAIN, "422"): 2, (R_EXPLAIN, "400"): 1, (R_EXPLAIN, "415"): 1,
            (R_EXPLAIN, "405"): 1, ("(unmatched)", "404"): 2, ("/v1/models/{model}", "404"): 1,
            ("/v1/models/{model}/predict", "200"): 1, ("OPTIONS", "204"): 1, ("/v1/models", "200"): 1}
    for _ in range(3):
        assert client.post(EXPLAIN, data=boot_png).status_code == 200
    client.post(EXPLAIN + "?ig_steps=0", data=boot_png)
    client.post(EXPLAIN + "?nope=1", data=boot_png)
    client.post(EXPLAIN, data=b"garbage")
    client.post(EXPLAIN, data=b"x", headers={"Content-Type": "text/plain"})
    client.get(EXPLAIN)
    client.get("/nope")
    client.post("/v1/nope")
    client.get("/v1/models/nope")
    client.post("/v1/models/fashion-cnn/predict", data=boot_png)
    client.options(EXPLAIN)
    client.get("/v1/models")

    def delta(m, route, status):
        return counter(m, "explaind_requests_total", route=route, status=status) - \
            counter(before, "explaind_requests_total", route=route, status=status)
    after = settled(server, lambda m: all(delta(m, r, s) >= n for (r, s), n in sent.items()))
    for (route, status), n in sent.items():
        assert delta(after, route, status) == n, (route, status)
    # the scrapes themselves are counted too
    assert delta(after, "/metrics", "200") >= 1
    hist = lambda m: counter(m, "explaind_request_duration_seconds_count", route=R_EXPLAIN)
    assert hist(after) - hist(before) == 8


def test_problems_are_counted_by_type(server, client, boot_png):
    t = "explaind_problems_total"
    before = server.metrics()
    client.post(EXPLAIN + "?top_k=0", data=boot_png)
    client.get("/nope")
    after = settled(server, lambda m: counter(m, t, type="not-found") > counter(before, t, type="not-found"))
    assert counter(after, t, type="unprocessable-parameters") == counter(before, t, type="unprocessable-parameters") + 1
    assert counter(after, t, type="not-found") == counter(before, t, type="not-found") + 1


def test_method_durations_are_observed(server, client, boot_png):
    name = "explaind_method_duration_seconds_count"
    before = server.metrics()
    client.post(EXPLAIN + "?methods=saliency,edge", data=boot_png)
    after = settled(server, lambda m: counter(m, name, method="edge") > counter(before, name, method="edge"))
    for method in ("saliency", "edge"):
        assert counter(after, name, method=method) == counter(before, name, method=method) + 1
    assert counter(after, name, method="scorecam") == counter(before, name, method="scorecam")


def test_gauges_are_idle_between_requests(server):
    m = settled(server, lambda m: counter(m, "explaind_inflight") == 1)
    assert counter(m, "explaind_inflight") == 1  # the scrape itself
    assert counter(m, "explaind_queue_depth") == 0 and counter(m, "explaind_workers_busy") == 0


def test_every_status_the_server_answers_has_its_own_label(server, client):
    # no status lumped into "other": 414 (request target too long) is one the server answers
    before = server.metrics()
    client.get("/healthz?pad=" + "a" * 17000)  # over max_header_bytes (16384), mostly target
    after = settled(server, lambda m: counter(m, "explaind_requests_total", route="(unmatched)", status="414") >
                    counter(before, "explaind_requests_total", route="(unmatched)", status="414"))
    assert counter(after, "explaind_requests_total", route="(unmatched)", status="414") == \
        counter(before, "explaind_requests_total", route="(unmatched)", status="414") + 1
    assert not any(k[0] == "explaind_requests_total" and ("status", "other") in k[1] for k in after)


def test_borrowed_core_time_moves_when_a_request_runs_alone(server, client, boot_png):
    # the shared server has 2 workers: a request alone borrows the idle one's core for its team
    before = counter(server.metrics(), "explaind_borrowed_core_seconds_total")
    for _ in range(3):
        assert client.post(EXPLAIN + "?methods=saliency,integrated_gradients&ig_steps=16", data=boot_png).status_code == 200
    m = settled(server, lambda m: counter(m, "explaind_borrowed_core_seconds_total") > before)
    assert counter(m, "explaind_borrowed_core_seconds_total") > before
