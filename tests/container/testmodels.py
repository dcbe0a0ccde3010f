"""The model directory the deployment tests serve (tests/container, tests/lb).

models/ of the repository when it holds the shipped fashion-cnn (models/fashion-cnn.onnx + .json);
otherwise the e2e suite's stand-in (tests/e2e/models.py: same interface, 1x28x28 gray input, the ten
Fashion-MNIST labels, seeded random weights), exported once with torch and cached in cache_dir.
The tests check prediction labels only against the shipped model."""
import json
import os
import shutil
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FASHION_PNG = os.path.join(REPO, "tests", "data", "fashion", "test_00000_ankle_boot.png")
FASHION_LABEL = "Ankle boot"
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def shipped(models_dir=os.path.join(REPO, "models")):
    return all(os.path.exists(os.path.join(models_dir, f"fashion-cnn.{e}")) for e in ("onnx", "json"))


def models_dir(cache_dir):
    """(directory to serve, "shipped" | "stand-in")."""
    repo_models = os.path.join(REPO, "models")
    if shipped(repo_models):
        return repo_models, "shipped"
    out = os.path.join(cache_dir, "standin-models")
    if shipped(out):
        return out, "stand-in"
    sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
    import models as e2e_models  # tests/e2e/models.py
    import torch
    torch.set_num_threads(1)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    e2e_models._export(e2e_models._standin_fashion_cnn(), (1, 1, 28, 28), os.path.join(tmp, "fashion-cnn.onnx"))
    with open(os.path.join(tmp, "fashion-cnn.json"), "w") as f:
        json.dump(e2e_models._gray_sidecar("/conv4/Relu", ["/cbam/spatial/Sigmoid"]), f)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out, "stand-in"
