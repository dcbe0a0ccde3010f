#!/usr/bin/python3
"""The soak's 224x224 model: torchvision resnet18 with seeded random weights (torch.manual_seed(0);
no download), 1000 classes, exported with torch.onnx.export at opset 13 as the shipped models are,
plus a sidecar (RGB, 224x224, center_crop, ImageNet mean/std; cam_layer auto-detected).

  export_resnet.py OUT_DIR     writes OUT_DIR/resnet18.onnx and OUT_DIR/resnet18.json
"""
import json
import os
import sys

import torch
import torchvision

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
path = os.path.join(out, "resnet18.onnx")
torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path + ".tmp", opset_version=13, input_names=["input"],
                  output_names=["logits"], do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
with open(os.path.join(out, "resnet18.json"), "w") as f:
    json.dump({"input": {"color": "rgb", "height": 224, "width": 224, "scale": 255, "mean": [0.485, 0.456, 0.406],
                         "std": [0.229, 0.224, 0.225], "resize": "center_crop", "invert": False}}, f, indent=1)
os.replace(path + ".tmp", path)
print(f"wrote {path} ({os.path.getsize(path)} bytes)")
