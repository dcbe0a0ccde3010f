"""The contract check: every response the suite receives is validated against openapi.yaml.

For a response to METHOD /path with status S the check finds the path template and operation,
requires S to be documented for it (a status the document does not list is a failure: drift),
requires the Content-Type to be one of the documented media types, the documented required
headers (X-Request-Id, Retry-After on 503, Allow on 405, WWW-Authenticate on 401) to be present,
and validates the JSON body with a Draft 2020-12 validator over the document's own schemas
($refs resolved within the document). Two content keywords that JSON Schema only annotates are
checked here: `contentEncoding: base64` strings must decode, and base64 `contentMediaType:
image/png` strings must decode to a PNG.

Responses with no operation of their own are checked against the shared components: unmatched
paths (404 NotFound), methods a path does not answer (the path's 405), OPTIONS preflights.
"""
import base64
import binascii
import json
import re
import threading
from urllib.parse import urlsplit

import jsonschema
import yaml
from jsonschema import Draft202012Validator, RefResolver
from jsonschema.exceptions import ValidationError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _b64decode(s):
    return base64.b64decode(s, validate=True)


def _content_encoding(validator, value, instance, schema):
    if value != "base64" or not isinstance(instance, str):
        return
    try:
        _b64decode(instance)
    except (binascii.Error, ValueError) as e:
        yield ValidationError(f"not base64 ({e}): {instance[:40]!r}...")


def _content_media_type(validator, value, instance, schema):
    if not isinstance(instance, str) or schema.get("contentEncoding") != "base64":
        return
    try:
        data = _b64decode(instance)
    except (binascii.Error, ValueError):
        return  # reported by contentEncoding
    if value == "image/png" and not data.startswith(PNG_MAGIC):
        yield ValidationError(f"base64 does not hold a PNG (starts {data[:8]!r})")


Validator = jsonschema.validators.extend(
    Draft202012Validator, {"contentEncoding": _content_encoding, "contentMediaType": _content_media_type})


class ContractError(AssertionError):
    pass


def _norm_ct(ct):
    return ";".join(p.strip().lower() for p in (ct or "").split(";") if p.strip())


class Contract:
    def __init__(self, path):
        with open(path) as f:
            self.spec = yaml.safe_load(f)
        self.templates = []
        for tpl in self.spec["paths"]:
            rx = "^"
            for part in re.split(r"(\{[^}]+\})", tpl):
                if part == "{layer}":
                    rx += r"(?P<layer>.+?)"
                elif part == "{index}":
                    rx += r"(?P<index>[0-9]+)"
                elif part.startswith("{"):
                    rx += r"(?P<%s>[^/:]+)" % part[1:-1]
                else:
                    rx += re.escape(part)
            self.templates.append((re.compile(rx + "$"), tpl))
        self.lock = threading.Lock()
        self.validate_lock = threading.Lock()
        self.resolver = RefResolver(base_uri="", referrer=self.spec)
        self.hits = set()          # (template, method, status)
        self.statuses = []         # every status seen, in order
        self.count = 0

    # ---- lookup --------------------------------------------------------------------------------
    def deref(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            node = self.spec
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj

    def match(self, url_path):
        for rx, tpl in self.templates:
            if rx.match(url_path):
                return tpl
        return None

    def schema(self, name):
        return self.spec["components"]["schemas"][name]

    def response_for(self, method, url_path, status):
        """(template or None, response object) or raise ContractError."""
        method = method.lower()
        tpl = self.match(url_path)
        comps = self.spec["components"]["responses"]
        if tpl is None:
            if method == "options":
                return None, self.deref(comps["Preflight"])
            if status == 404:
                return None, self.deref(comps["NotFound"])
            before_routing = {414: "UriTooLong", 431: "HeadersTooLarge", 400: "BadRequest", 501: "NotImplemented"}
            if status in before_routing:  # checked before routing (size, framing)
                return None, self.deref(comps[before_routing[status]])
            raise ContractError(f"{method.upper()} {url_path[:200]}: no path template matches and status is {status}, not 404")
        item = self.spec["paths"][tpl]
        op = item.get(method)
        if op is None and method == "head":
            op = item.get("get")
        if op is None:
            if status != 405:
                raise ContractError(f"{method.upper()} {tpl}: not an operation of the document, yet status {status} (expected 405)")
            some = next(o for m, o in item.items() if m in ("get", "post"))
            op = some
        responses = op["responses"]
        key = str(status)
        if key not in responses:
            raise ContractError(f"{method.upper()} {tpl}: status {status} is not documented (documented: {sorted(responses)})")
        return tpl, self.deref(responses[key])

    # ---- validation ----------------------------------------------------------------------------
    def validate_instance(self, schema, instance, where=""):
        # one resolver (it caches the document's subschemas: making one per call is slow), used
        # under a lock (it keeps a scope stack, so threads must not share it at once)
        with self.validate_lock:
            v = Validator(schema, resolver=self.resolver)
            errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            lines = []
            for e in errors[:8]:
                path = "/".join(str(p) for p in e.absolute_path)
                lines.append(f"  at /{path}: {e.message[:300]}")
            raise ContractError(f"{where}: body does not match the schema:\n" + "\n".join(lines))

    def check(self, method, url, status, headers, body):
        """headers: a case-insensitive mapping; body: bytes."""
        url_path = urlsplit(url).path
        tpl, resp = self.response_for(method, url_path, status)
        where = f"{method.upper()} {url_path[:200]} -> {status}"
        for name, h in (resp.get("headers") or {}).items():
            h = self.deref(h)
            if h.get("required") and name not in headers:
                raise ContractError(f"{where}: required header {name} is missing")
            if name in headers and "schema" in h:
                sch = self.deref(h["schema"])
                val = headers[name]
                if sch.get("type") == "integer":
                    if not re.fullmatch(r"[0-9]+", val):
                        raise ContractError(f"{where}: header {name}: {val!r} is not an integer")
                    val = int(val)
                self.validate_instance(h["schema"], val, f"{where} header {name}")
        content = resp.get("content")
        is_head = method.upper() == "HEAD"
        if content and not is_head:
            ct = headers.get("Content-Type")
            keys = {_norm_ct(k): k for k in content}
            if _norm_ct(ct) not in keys:
                raise ContractError(f"{where}: Content-Type {ct!r} is not documented ({list(content)})")
            media = content[keys[_norm_ct(ct)]]
            if "json" in _norm_ct(ct):
                try:
                    doc = json.loads(body)
                except ValueError as e:
                    raise ContractError(f"{where}: body is not JSON: {e}: {body[:200]!r}")
                if "schema" in media:
                    self.validate_instance(media["schema"], doc, where)
                if isinstance(doc, dict) and "request_id" in doc and "X-Request-Id" in headers:
                    if doc["request_id"] != headers["X-Request-Id"]:
                        raise ContractError(f"{where}: request_id {doc['request_id']} != X-Request-Id {headers['X-Request-Id']}")
        elif not content and body and not is_head:
            raise ContractError(f"{where}: a body was sent where the document declares none")
        with self.lock:
            self.count += 1
            self.statuses.append(status)
            self.hits.add((tpl, method.lower() if method.upper() != "HEAD" else "get", status))

    def operations(self):
        for tpl, item in self.spec["paths"].items():
            for m, op in item.items():
                if m in ("get", "post", "options"):
                    yield tpl, m, op
