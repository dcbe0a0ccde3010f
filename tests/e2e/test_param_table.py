"""The request parameter table (server/params.c, printed by `explaind params --json`) holds each
parameter's type, default and bounds once; openapi.yaml's `default:`/`x-config-key` and the
dashboard's DEFAULTS (web/app.js) are compared with it here."""
import json
import re
import subprocess

import pytest


@pytest.fixture(scope="module")
def table(binary):
    p = subprocess.run([binary, "params", "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return {r["name"]: r for r in json.loads(p.stdout)}


def same(row, value):
    """Is `value` (openapi's or the dashboard's form) the table's default?"""
    d = row["default"]
    if row["type"] == "list":
        return (value if isinstance(value, list) else value.split(",")) == d.split(",")
    if row["type"] in ("integer", "number"):
        return d != "" and float(value) == float(d)
    if row["type"] == "boolean":
        return str(value).lower() == d
    return str(value) == d


def test_openapi_defaults_and_config_keys_are_the_table(table, contract):
    schemas = contract.spec["components"]["schemas"]
    checked = 0
    for name, row in table.items():
        s = schemas[f"param_{name}"]
        if row["default"] == "":
            assert "default" not in s, f"{name}: openapi default {s['default']!r}, the table has none"
        else:
            assert "default" in s and same(row, s["default"]), f"{name}: openapi {s.get('default')!r} != table {row['default']!r}"
            checked += 1
        assert s.get("x-config-key") == row.get("max_key"), name
        if "max" in row and row["type"] in ("integer", "number"):
            assert s["minimum"] == row["min"] and s["maximum"] == row["max"], name
    assert checked >= 30


def test_dashboard_defaults_are_the_table(table, repo):
    js = (repo / "web" / "app.js").read_text()
    checked = 0
    for const in ("DEFAULTS", "SANITY_DEFAULTS"):
        block = re.search(rf"const {const} = \{{(.*?)\}};", js, re.S).group(1)
        for name, value in re.findall(r"(\w+): '([^']*)'", block):
            assert same(table[name], value) or value == table[name]["default"], f"{const}.{name}: {value!r} != {table[name]['default']!r}"
            checked += 1
    assert checked >= 18
