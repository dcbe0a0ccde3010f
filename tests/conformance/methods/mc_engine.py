"""Drive build/explaind (the CLI prints the explain JSON document of docs/API.md) and decode it."""
import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from mc_models import BUILD

EXPLAIND = Path(os.environ.get("EXPLAIND", BUILD / "explaind"))


class EngineError(Exception):
    def __init__(self, status, stderr):
        super().__init__(f"explaind exited {status}: {stderr.strip()}")
        self.status = status
        self.stderr = stderr


def run(model, image, methods, output="raw,attribution", **params):
    """Run `explaind explain` and return the parsed document. params: --name value (None: omitted)."""
    cmd = [str(EXPLAIND), "explain", "--model", str(model.onnx if hasattr(model, "onnx") else model),
           "--image", str(image), "--methods", ",".join(methods) if not isinstance(methods, str) else methods,
           "--output", output, "--compact"]
    for k, v in params.items():
        if v is not None:
            cmd += [f"--{k}", str(v)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise EngineError(p.returncode, p.stderr)
    return json.loads(p.stdout)


def array(field):
    """{shape, dtype float32, data base64 little-endian} -> numpy float32 array of that shape."""
    assert field["dtype"] == "float32", field["dtype"]
    a = np.frombuffer(base64.b64decode(field["data"]), dtype="<f4")
    return a.reshape(field["shape"])


def raw(doc, method):
    return array(doc["explanations"][method]["raw"])


def attribution(doc, method):
    return array(doc["explanations"][method]["attribution"])
