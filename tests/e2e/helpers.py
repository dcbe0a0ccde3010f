"""Small helpers shared by the tests: PNG and raw-array decoding, explain document comparison."""
import base64
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np


def _methods_of_the_binary():
    """The method names in table order, from `explaind methods --json` (the engine's method table)."""
    binary = os.environ.get("EXPLAIND_BIN", str(Path(__file__).resolve().parents[2] / "build" / "explaind"))
    return [m["name"] for m in json.loads(subprocess.run([binary, "methods", "--json"], capture_output=True, text=True,
                                                         timeout=60, check=True).stdout)]


ALL_METHODS = _methods_of_the_binary()


def png_image(b64):
    from PIL import Image
    data = base64.b64decode(b64, validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


def raw_array(raw):
    """{"shape", "dtype", "data"} -> numpy array, checking the byte count against the shape."""
    assert raw["dtype"] == "float32"
    data = base64.b64decode(raw["data"], validate=True)
    n = int(np.prod(raw["shape"]))
    assert len(data) == 4 * n, f"{len(data)} bytes for shape {raw['shape']}"
    return np.frombuffer(data, "<f4").reshape(raw["shape"])


def without_volatile(doc):
    """An explain/predict document without what differs between identical requests."""
    return {k: v for k, v in doc.items() if k not in ("request_id", "timing_ms")}


def explanations_without_time(doc):
    return {m: {k: v for k, v in e.items() if k != "time_ms"} for m, e in doc["explanations"].items()}
