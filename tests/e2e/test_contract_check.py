"""The contract check itself: it must reject drift, or the suite's validation proves nothing."""
import base64
import copy
import json

import pytest
from requests.structures import CaseInsensitiveDict

from contract import ContractError

EXPLAIN = "/v1/models/fashion-cnn/explain"


@pytest.fixture(scope="module")
def good(server, boot_png):
    r = server.client().post(EXPLAIN + "?methods=gradcam,saliency&output=heatmap_png,raw,attribution", data=boot_png)
    assert r.status_code == 200
    return CaseInsensitiveDict(r.headers), r.json()


def check(contract, doc, headers, status=200, path=EXPLAIN, method="POST"):
    contract.check(method, path, status, headers, json.dumps(doc).encode())


def test_a_real_document_passes(contract, good):
    check(contract, good[1], good[0])


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(extra_field=1),
    lambda d: d.pop("timing_ms"),
    lambda d: d["explanations"]["gradcam"].update(attribution=d["explanations"]["saliency"]["attribution"]),
    lambda d: d["explanations"].update(not_a_method={}),
    lambda d: d["explanations"]["gradcam"].update(heatmap_png=base64.b64encode(b"GIF89a....").decode()),
    lambda d: d["explanations"]["gradcam"].update(heatmap_png="not base64!"),
    lambda d: d["explanations"]["saliency"]["raw"].update(dtype="float64"),
    lambda d: d["predictions"][0].update(score=1.5),
    lambda d: d["input"].update(format="gif"),
    lambda d: d.update(request_id="someone-else"),
])
def test_drift_in_a_document_is_caught(contract, good, mutate):
    doc = copy.deepcopy(good[1])
    mutate(doc)
    with pytest.raises(ContractError):
        check(contract, doc, good[0])


def test_a_missing_required_header_is_caught(contract, good):
    h = CaseInsensitiveDict(good[0])
    del h["X-Request-Id"]
    with pytest.raises(ContractError, match="X-Request-Id"):
        check(contract, good[1], h)
    problem = {"type": "urn:explaind:problem:unavailable", "title": "Service Unavailable", "status": 503,
               "detail": "full", "request_id": good[1]["request_id"]}
    h = CaseInsensitiveDict({"X-Request-Id": good[1]["request_id"], "Content-Type": "application/problem+json"})
    with pytest.raises(ContractError, match="Retry-After"):
        check(contract, problem, h, status=503)
    h["Retry-After"] = "1"
    check(contract, problem, h, status=503)


def test_an_undocumented_status_or_media_type_is_caught(contract, good):
    with pytest.raises(ContractError, match="not documented"):
        check(contract, good[1], good[0], status=418)
    h = CaseInsensitiveDict(good[0])
    h["Content-Type"] = "text/json"
    with pytest.raises(ContractError, match="Content-Type"):
        check(contract, good[1], h)


def test_a_problem_with_the_wrong_status_or_type_is_caught(contract):
    h = CaseInsensitiveDict({"X-Request-Id": "abc", "Content-Type": "application/problem+json"})
    ok = {"type": "urn:explaind:problem:not-found", "title": "Not Found", "status": 404, "detail": "x", "request_id": "abc"}
    check(contract, ok, h, status=404)
    for bad in ({**ok, "status": 400}, {**ok, "type": "about:blank"}, {**ok, "title": "Nope"}, {**ok, "extra": 1}):
        with pytest.raises(ContractError):
            check(contract, bad, h, status=404)
    with pytest.raises(ContractError):  # the unmatched-route fallback accepts only 404 (and 414/431)
        check(contract, {**ok, "status": 500}, h, status=500, path="/no/such/route")
