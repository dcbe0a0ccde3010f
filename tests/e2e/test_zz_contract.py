"""Runs last (file order): over the whole session, every operation of openapi.yaml was exercised
and no response was a 500."""
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def whole_suite(request):
    mods = {os.path.basename(str(item.fspath)) for item in request.session.items}
    files = {f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")}
    return mods >= files and not request.config.option.keyword and not request.config.option.markexpr


def test_every_operation_of_the_document_was_exercised(contract, request, repo):
    if not whole_suite(request):
        pytest.skip("only meaningful over the whole suite")
    hit = {(tpl, m) for tpl, m, _ in contract.hits}
    ok = {(tpl, m) for tpl, m, s in contract.hits if 200 <= s < 300}
    not_built = set()
    if not (repo / "web" / "index.html").exists():
        not_built.add("getDashboard")  # a binary without web/ answers 404 there
    missing, unanswered = [], []
    for tpl, m, op in contract.operations():
        if (tpl, m) not in hit:
            missing.append(f"{m.upper()} {tpl}")
        elif (tpl, m) not in ok and op["operationId"] not in not_built:
            unanswered.append(f"{m.upper()} {tpl}")
    assert not missing, f"operations no test sent: {missing}"
    assert not unanswered, f"operations never answered 2xx: {unanswered}"
    assert contract.count > 500


def test_no_response_was_a_500(contract, request):
    if not whole_suite(request):
        pytest.skip("only meaningful over the whole suite")
    assert 500 not in contract.statuses
