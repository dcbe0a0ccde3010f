"""Small helpers shared by the tests: PNG and raw-array decoding, explain document comparison."""
import base64
import io

import numpy as np

ALL_METHODS = ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "guided_backprop", "deconvnet",
               "cam", "gradcam", "gradcam_pp", "xgradcam", "layercam", "scorecam", "eigencam", "guided_gradcam",
               "occlusion", "activations", "attention", "edge"]


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
