"""The method table (engine/explain/explain.c, printed by `explaind methods --json`) is the one
source of the method names, families and display names: the copies that cannot be generated from
it (openapi.yaml's lists, the dashboard's, the model document's) are compared with it here, as
test_params.py compares the documented ranges with `--print-config`."""
import json
import re
import subprocess

import pytest

# the result schema of each family in openapi.yaml's Explanations (internals and the baseline have one per method)
FAMILY_RESULT = {"gradient": "GradientResult", "cam": "CamResult", "combined": "GuidedGradcamResult",
                 "perturbation": "PerturbationResult"}


@pytest.fixture(scope="module")
def table(binary):
    p = subprocess.run([binary, "methods", "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) >= 18 and len({r["name"] for r in rows}) == len(rows)
    return rows


def test_openapi_method_enum_is_the_table(table, contract):
    schemas = contract.spec["components"]["schemas"]
    assert schemas["MethodName"]["enum"] == [r["name"] for r in table]
    # every method is named in the description, in its family's sentence
    desc = " ".join(schemas["MethodName"]["description"].split())
    for r in table:
        assert re.search(rf"\b{r['name']}\b", desc), r["name"]


def test_openapi_explanations_have_one_result_per_method_of_its_family(table, contract):
    props = contract.spec["components"]["schemas"]["Explanations"]["properties"]
    assert list(props) == [r["name"] for r in table]
    for r in table:
        want = FAMILY_RESULT.get(r["family"])
        if want:
            assert props[r["name"]]["$ref"] == f"#/components/schemas/{want}", r["name"]


def test_openapi_smoothgrad_base_is_the_smoothable_methods(table, contract):
    enum = contract.deref(contract.spec["components"]["schemas"]["param_smoothgrad_base"])["enum"]
    assert enum == [r["name"] for r in table if "smoothable" in r["needs"]]


def test_dashboard_lists_are_the_table(table, repo):
    js = (repo / "web" / "app.js").read_text()
    block = re.search(r"const DISPLAY = \{(.*?)\};", js, re.S).group(1)
    display = dict(re.findall(r"(\w+): '([^']*)'", block))
    assert display == {r["name"]: r["display"] for r in table}
    families = re.findall(r"\['(\w+)', '[^']*'\]", re.search(r"const FAMILIES = \[(.*?)\];", js, re.S).group(1))
    assert families == list(dict.fromkeys(r["family"] for r in table))


def test_method_parameters_are_request_parameters(table, binary):
    help_text = subprocess.run([binary, "explain", "--help"], capture_output=True, text=True, timeout=60).stdout
    params = set(re.findall(r"^  --(\w+)", help_text, re.M))
    assert "ig_steps" in params
    for r in table:
        assert set(r["parameters"]) <= params, r["name"]


def test_model_document_methods_are_the_table(table, client):
    doc = client.get("/v1/models/fashion-cnn").json()
    assert [(m["name"], m["family"], m["summary"]) for m in doc["methods"]] == \
        [(r["name"], r["family"], r["summary"]) for r in table]
