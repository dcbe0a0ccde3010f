"""The route table (server/routes.c, printed by `explaind routes --json`) is the one description of
the routes: openapi.yaml's paths, their methods and which need an API key, docs/API.md's route
table and the /metrics route labels are checked against it, and the server answers every
template it lists (no 404)."""
import base64
import json
import re
import subprocess

import yaml

from server import parse_metrics


def routes(binary):
    return json.loads(subprocess.run([binary, "routes", "--json"], capture_output=True, text=True, check=True).stdout)


def test_openapi_paths_are_the_route_table(binary, repo):
    doc = yaml.safe_load((repo / "openapi.yaml").read_text())
    table = {r["path"]: r for r in routes(binary)}
    assert set(doc["paths"]) == set(table), set(doc["paths"]) ^ set(table)
    for path, ops in doc["paths"].items():
        r = table[path]
        verbs = {k for k in ops if k in ("get", "post", "put", "delete", "patch")}
        assert verbs == {r["method"].lower()}, (path, verbs, r["method"])
        op = ops[r["method"].lower()]
        open_to_all = op.get("security") == []  # else the document's global security: the API key
        assert open_to_all == (not r["auth"]), (path, op.get("security"), r["auth"])


def test_api_md_lists_every_route_with_its_method(binary, repo):
    text = (repo / "docs" / "API.md").read_text()
    listed = set()
    for verb, paths in re.findall(r"^\| (GET|POST) \| (.+?) \|", text, re.M):
        for p in re.findall(r"`([^`]+)`", paths):
            listed.add((verb, p))
    want = {(r["method"], r["path"]) for r in routes(binary)}
    assert listed == want, listed ^ want


def test_every_template_is_served_and_labelled_by_its_template(binary, client, boot_png):
    """One request per route, placeholders filled with real values: none is a 404, and /metrics
    counts each under its template."""
    fill = {"{model}": "fashion-cnn", "{layer}": "%2Fconv4%2FRelu", "{index}": "0"}
    for r in routes(binary):
        url = r["path"]
        for k, v in fill.items():
            url = url.replace(k, v)
        if r["method"] == "GET":
            resp = client.get(url)
        elif r["kserve"]:
            resp = client.post(url, json={"instances": [{"b64": base64.b64encode(boot_png).decode()}]})
        elif r["images"] == "none":
            resp = client.post(url + "?steps=2")
        else:
            resp = client.post(url, data=boot_png, headers={"Content-Type": "image/png"})
        assert resp.status_code == 200, (r["path"], resp.status_code, resp.text[:300])
    labels = {dict(lab).get("route") for (name, lab) in parse_metrics(client.get("/metrics").text)
              if name == "explaind_requests_total"}
    assert {r["path"] for r in routes(binary)} <= labels, {r["path"] for r in routes(binary)} - labels
