"""Models the e2e suite serves, written into a fresh models_dir at session start.

  fashion-cnn    the shipped model (models/fashion-cnn.onnx + .json) and its label-randomized twin
                 fashion-cnn-randlabels, as `make run` serves them, with the shipped probe set (models/probes/fashion-cnn/, Fashion-MNIST
                 test images) that /sanity uses when no image is sent.
  fc-head        28x28 gray CNN whose head is flatten + two linear layers: 'cam' does not apply.
  mobilenet      torchvision mobilenet_v2 at 3x64x64 with seeded random weights, 10 classes and
                 no sidecar (labels class_0..., auto-detected cam layer): the slow model the
                 queue-full (503) and deadline (504) tests load the workers with.

Everything is exported with torch.onnx.export at opset 13, as the shipped models are.
"""
import json
import os
import shutil

FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530


def _export(model, shape, path):
    import torch
    model.eval()
    torch.onnx.export(model, torch.zeros(*shape), path, opset_version=13, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)


def _gray_sidecar(cam_layer, attention_layers):
    return {
        "labels": FASHION_LABELS,
        "input": {"color": "gray", "height": 28, "width": 28, "scale": 255, "mean": [MEAN],
                  "std": [STD], "resize": "stretch", "invert": False},
        "cam_layer": cam_layer,
        "attention_layers": attention_layers,
    }


def _fc_head():
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
            self.relu1 = nn.ReLU()
            self.pool1 = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
            self.relu2 = nn.ReLU()
            self.pool2 = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(16 * 7 * 7, 64)
            self.relu3 = nn.ReLU()
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = self.pool1(self.relu1(self.conv1(x)))
            x = self.pool2(self.relu2(self.conv2(x)))
            return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))

    torch.manual_seed(3)
    return Net()


def _mobilenet():
    import torch
    import torchvision
    torch.manual_seed(5)
    return torchvision.models.mobilenet_v2(num_classes=10)


def write_models(out_dir, repo_models_dir):
    """Fill out_dir; returns {"fashion-cnn": "shipped", "fc-head": "stand-in", ...}."""
    import torch
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    kinds = {}
    for name in ("fashion-cnn", "fashion-cnn-randlabels"):  # the shipped model and its twin (sanity=label)
        for ext in ("onnx", "json"):
            shutil.copy(os.path.join(repo_models_dir, f"{name}.{ext}"), out_dir)
        kinds[name] = "shipped"
    probes = os.path.join(repo_models_dir, "probes", "fashion-cnn")
    if os.path.isdir(probes):
        shutil.copytree(probes, os.path.join(out_dir, "probes", "fashion-cnn"))
    _export(_fc_head(), (1, 1, 28, 28), os.path.join(out_dir, "fc-head.onnx"))
    with open(os.path.join(out_dir, "fc-head.json"), "w") as f:
        json.dump(_gray_sidecar("/relu2/Relu", []), f)
    kinds["fc-head"] = "stand-in"
    _export(_mobilenet(), (1, 3, 64, 64), os.path.join(out_dir, "mobilenet.onnx"))
    kinds["mobilenet"] = "stand-in"
    return kinds


if __name__ == "__main__":
    import sys
    print(write_models(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "models"))
