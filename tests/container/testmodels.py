"""The model directory the deployment tests serve (tests/container, tests/lb): the repository's
models/, with the shipped fashion-cnn (models/fashion-cnn.onnx + .json), as `make run` and the
image serve it."""
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FASHION_PNG = os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png")
FASHION_LABEL = "Ankle boot"
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def models_dir():
    """(directory to serve, "shipped")."""
    d = os.path.join(REPO, "models")
    if not all(os.path.exists(os.path.join(d, f"fashion-cnn.{e}")) for e in ("onnx", "json")):
        raise SystemExit("models/fashion-cnn.onnx or .json is missing (they are committed: is this a partial checkout?)")
    return d, "shipped"
