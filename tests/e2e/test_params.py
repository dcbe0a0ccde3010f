"""Parameters: the document's table against the binary's own table and limits, and every way a
parameter is a 422 (unknown, repeated in any combination of query and body, out of range, not
for the route, not applicable to the model)."""
import base64
import json
import os
import re
import subprocess

import pytest

EXPLAIN = "/v1/models/fashion-cnn/explain"
ROUTES = {  # operationId -> a URL of it on fashion-cnn
    "predict": "/v1/models/fashion-cnn/predict",
    "explain": EXPLAIN,
    "sanity": "/v1/models/fashion-cnn/sanity",
    "activations": "/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/activations",
    "visualizeFilter": "/v1/models/fashion-cnn/layers/%2Fconv4%2FRelu/filters/0/visualize",
}
NOT_AN_IMAGE = b"these bytes are no image"


def op_params(contract, op_id):
    for _, _, op in contract.operations():
        if op.get("operationId") == op_id:
            out = {}
            for p in op.get("parameters", []):
                p = contract.deref(p)
                out[p["name"]] = contract.deref(p["schema"])
            return out
    raise KeyError(op_id)


def enum_of(contract, schema):
    s = contract.deref(schema)
    if s.get("type") == "array":
        s = contract.deref(s["items"])
    return s.get("enum")


def binary_table(binary, command):
    """{name: [choices] or None} from `explaind <command> --help` (the server's parameter table)."""
    out = subprocess.run([binary, command, "--help"], capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        m = re.match(r"  --(\w+)\s+(.*)$", line)
        if m:
            choices = re.search(r"\[([^\]]*)\]$", m.group(2))
            table[m.group(1)] = [c.strip() for c in choices.group(1).split(",")] if choices else None
    return table


@pytest.mark.parametrize("command,op_id", [("explain", "explain"), ("predict", "predict")])
def test_query_parameters_match_the_binary_table(binary, contract, command, op_id):
    table = binary_table(binary, command)
    spec = op_params(contract, op_id)
    spec.pop("X-Request-Id", None)
    assert sorted(spec) == sorted(table), "parameter names differ between openapi.yaml and the server's table"
    for name, choices in table.items():
        if choices:
            assert enum_of(contract, spec[name]) == choices, name


def numeric_params(contract):
    for op_id, url in ROUTES.items():
        for name, schema in op_params(contract, op_id).items():
            s = contract.deref(schema)
            if s.get("type") in ("integer", "number") and "maximum" in s:
                yield op_id, url, name, s


def test_ranges_in_the_document_are_the_default_config(binary, contract, tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    cfg = json.loads(subprocess.run([binary, "serve", "--print-config"], capture_output=True, text=True, cwd=tmp_path,
                                    env=env).stdout)
    keys = {}
    for name, s in contract.spec["components"]["schemas"].items():
        if "x-config-key" in s:
            assert s["maximum"] == cfg[s["x-config-key"]], f"{name}: maximum {s['maximum']} but config {s['x-config-key']}={cfg[s['x-config-key']]}"
            keys[name] = s["x-config-key"]
    assert len(keys) >= 9


def test_out_of_range_is_422_naming_the_range_of_the_document(client, contract):
    checked = 0
    for op_id, url, name, s in numeric_params(contract):
        lo, hi = s["minimum"], s["maximum"]
        for bad in ((hi + 1) if s["type"] == "integer" else hi * 2 + 1, lo - 1):
            r = client.post(url, params={name: str(bad)}, data=NOT_AN_IMAGE)
            assert r.status_code == 422, (op_id, name, bad, r.text)
            d = r.json()["detail"]
            m = re.search(r"(\w+) must be an? .* in (-?[0-9.e+]+)\.\.(-?[0-9.e+]+)$", d)
            assert m and m.group(1) == name, d
            assert (float(m.group(2)), float(m.group(3))) == (lo, hi), (op_id, name, d)
            checked += 1
    assert checked > 40


def test_every_enum_value_is_accepted(client, contract):
    checked = 0
    for op_id, url in ROUTES.items():
        for name, schema in op_params(contract, op_id).items():
            values = enum_of(contract, schema)
            if not values:
                continue
            for v in values + ([",".join(values)] if contract.deref(schema).get("type") == "array" else []):
                if op_id == "visualizeFilter":  # no image: a short run must succeed
                    r = client.post(url, params={name: v, "steps": "1"})
                    assert r.status_code == 200, (name, v, r.text)
                else:  # parsed, then the body is found not to be an image
                    r = client.post(url, params={name: v}, data=NOT_AN_IMAGE)
                    assert r.status_code != 422, (op_id, name, v, r.text)
                checked += 1
            r = client.post(url, params={name: "bogus"}, data=NOT_AN_IMAGE)
            assert r.status_code == 422 and name in r.json()["detail"], (op_id, name)
    assert checked > 80


def post_all_ways(client, url, image, params, query=None):
    """The same request as multipart and as JSON; yields the responses."""
    yield client.post(url, params=query, files={"image": ("x.png", image, "image/png")},
                      data=[(k, str(v)) for k, v in params])
    body = "{" + ", ".join([json.dumps("image") + ": " + json.dumps(base64.b64encode(image).decode())] +
                           [json.dumps(k) + ": " + json.dumps(v) for k, v in params]) + "}"
    yield client.post(url, params=query, data=body, headers={"Content-Type": "application/json"})


def test_unknown_parameter_is_422_in_query_multipart_and_json(client, boot_png):
    r = client.post(EXPLAIN + "?colour=red", data=boot_png)
    assert r.status_code == 422 and r.json()["detail"] == "unknown parameter 'colour'"
    for r in post_all_ways(client, EXPLAIN, boot_png, [("colour", "red")]):
        assert r.status_code == 422 and "colour" in r.json()["detail"]


def test_repeated_parameter_in_the_query_is_422(client, boot_png):
    r = client.post(EXPLAIN + "?top_k=1&top_k=2", data=boot_png)
    assert r.status_code == 422 and "top_k" in r.json()["detail"] and "more than once" in r.json()["detail"]


def test_parameter_in_query_and_body_is_422(client, boot_png):
    for r in post_all_ways(client, EXPLAIN, boot_png, [("top_k", 2)], query={"top_k": "3"}):
        assert r.status_code == 422 and "top_k" in r.json()["detail"] and "more than once" in r.json()["detail"]


def test_parameter_twice_in_multipart_is_422(client, boot_png):
    r = client.post(EXPLAIN, files={"image": ("x.png", boot_png, "image/png")},
                    data=[("methods", "gradcam"), ("methods", "saliency")])
    assert r.status_code == 422 and "methods" in r.json()["detail"]


def test_parameter_twice_in_a_json_body_is_422(client, boot_png):
    # a repeated key is a repeated parameter, as in the query string: 422 naming it, not 400
    b = base64.b64encode(boot_png).decode()
    r = client.post(EXPLAIN, data='{"image": "%s", "top_k": 1, "top_k": 2}' % b, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "top_k" in r.json()["detail"] and "more than once" in r.json()["detail"]




def test_parameter_twice_in_kserve_parameters_is_422(client, boot_png):
    b = base64.b64encode(boot_png).decode()
    body = '{"instances": [{"b64": "%s"}], "parameters": {"methods": "cam", "methods": "gradcam"}}' % b
    r = client.post("/v1/models/fashion-cnn:explain", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"] == "parameter 'methods' is given more than once"


@pytest.mark.parametrize("url,name,value", [
    ("/v1/models/fashion-cnn/predict", "methods", "gradcam"),
    ("/v1/models/fashion-cnn/predict", "target", "1"),
    (EXPLAIN, "steps", "3"),
    (EXPLAIN, "per_image", "true"),
    (ROUTES["activations"], "alpha", "0.3"),
    (ROUTES["activations"], "layer", "/conv4/Relu"),
])
def test_parameter_of_another_route_is_422(client, boot_png, url, name, value):
    r = client.post(url, params={name: value}, data=boot_png)
    assert r.status_code == 422 and f"'{name}' does not apply" in r.json()["detail"]


def test_cam_on_a_head_that_is_not_gap_linear_is_422(client, boot_png):
    r = client.post("/v1/models/fc-head/explain?methods=cam", data=boot_png)
    assert r.status_code == 422 and "gradcam" in r.json()["detail"]
    # gradcam applies to any head
    assert client.post("/v1/models/fc-head/explain?methods=gradcam", data=boot_png).status_code == 200


def test_cam_applies_to_mobilenet_v2_whose_head_is_gap_linear(client, boot_png):
    r = client.post("/v1/models/mobilenet/explain?methods=cam&output=raw", data=boot_png)
    assert r.status_code == 200 and r.json()["explanations"]["cam"]["raw"]["shape"] == [2, 2]


def test_attention_without_attention_layers_is_422(client, boot_png):
    r = client.post("/v1/models/fc-head/explain?methods=attention", data=boot_png)
    assert r.status_code == 422 and "attention" in r.json()["detail"]


@pytest.mark.parametrize("query,word", [
    ("target=10", "target"), ("target=-1", "target"), ("target=Boot", "Boot"),
    ("methods=occlusion&occlusion_window=29", "occlusion_window"),
    ("methods=occlusion&occlusion_window=4&occlusion_stride=5", "occlusion_stride"),
    ("methods=integrated_gradients&ig_method=riemann_trapezoid&ig_steps=1", "ig_steps"),
    ("methods=gradcam&layer=/conv4/Relu_nope", "layer"),
])
def test_values_that_do_not_fit_the_model(client, boot_png, query, word):
    r = client.post(EXPLAIN + "?" + query, data=boot_png)
    assert r.status_code == 422, r.text
    assert word in r.json()["detail"]


@pytest.mark.parametrize("field,value", [("top_k", True), ("top_k", 1.5), ("methods", 5), ("methods", [5]),
                                         ("alpha", "half"), ("faithfulness", "yes"), ("seed", -1), ("target", None)])
def test_wrong_json_types_are_422(client, boot_png, field, value):
    r = client.post(EXPLAIN, json={"image": base64.b64encode(boot_png).decode(), field: value})
    assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_json_values_of_every_kind_are_accepted(client, boot_png):
    body = {"image": base64.b64encode(boot_png).decode(), "methods": ["gradcam", "occlusion"], "top_k": 2.0,
            "alpha": 0.25, "faithfulness": True, "faithfulness_steps": "4", "seed": "18446744073709551615",
            "target": 9, "occlusion_window": 7, "output": "raw"}
    r = client.post(EXPLAIN, json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["predictions"]) == 2 and doc["target"]["index"] == 9
    assert doc["explanations"]["occlusion"]["extra"]["window"] == 7
    assert doc["explanations"]["gradcam"]["faithfulness"]["steps"] == 4


def test_cli_reads_the_config_file_and_environment_like_serve(binary, repo, boot_png_path, tmp_path):
    """`explaind explain` applies the same limits as `serve`: EXPLAIND_* variables and the config
    file (EXPLAIND_CONFIG), not only the built-in defaults (it used to ignore both)."""
    model = str(repo / "models" / "fashion-cnn.onnx")
    cmd = [binary, "explain", "--model", model, "--image", boot_png_path, "--methods", "integrated_gradients",
           "--ig_steps", "8", "--compact"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIND_")}
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    low = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**env, "EXPLAIND_IG_STEPS_MAX": "4"})
    assert low.returncode == 2 and "ig_steps" in low.stderr and "1..4" in low.stderr, (low.returncode, low.stderr)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"ig_steps_max": 4}))
    low = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**env, "EXPLAIND_CONFIG": str(cfg)})
    assert low.returncode == 2 and "1..4" in low.stderr, (low.returncode, low.stderr)
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**env, "EXPLAIND_LOG_LEVEL": "verbose"})
    assert bad.returncode == 2 and "log_level" in bad.stderr, (bad.returncode, bad.stderr)
