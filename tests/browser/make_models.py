#!/usr/bin/python3
"""Fill a models_dir for the browser tests.

    /usr/bin/python3 tests/browser/make_models.py OUT_DIR

When the repository ships models/fashion-cnn.onnx (+ .json), OUT_DIR gets it and its
label-randomized twin (the sidecar's label_randomized_twin), as served by `make run`.

Until then OUT_DIR gets a stand-in pair, exported with torch at opset 13:
  fashion-cnn-standin             1x28x28 gray Fashion-MNIST CNN (conv blocks, CBAM, GAP + linear
                                  head), trained for two epochs on 10k training images (most test
                                  images right: enough for a meaningful top class)
  fashion-cnn-standin-randlabels  the same architecture trained one epoch on shuffled labels, its twin
Training is seeded and single-threaded; OUT_DIR/.stamp records what made the files, so a second
run with the same inputs does nothing (mk/browser.mk keeps OUT_DIR under build/).
Needs python3-torch and dataset-fashion-mnist (scripts/install-deps.sh test installs both).
"""
import gzip
import hashlib
import json
import os
import shutil
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530
STANDIN = "fashion-cnn-standin"


def stamp_of(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode())
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def copy_shipped(out):
    src = os.path.join(ROOT, "models")
    with open(os.path.join(src, "fashion-cnn.json")) as f:
        twin = json.load(f).get("label_randomized_twin")
    names = ["fashion-cnn"] + ([twin] if twin else [])
    files = [os.path.join(src, f"{n}.{ext}") for n in names for ext in ("onnx", "json")
             if os.path.exists(os.path.join(src, f"{n}.{ext}"))]
    return files, lambda: [shutil.copy(p, out) for p in files]


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = int.from_bytes(data[0:4], "big") & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def build_net():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ConvBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, x):
            return F.relu(self.conv(x))

    class ChannelAttention(nn.Module):
        def __init__(self, c, r=4):
            super().__init__()
            self.fc1 = nn.Conv2d(c, c // r, 1)
            self.fc2 = nn.Conv2d(c // r, c, 1)

        def mlp(self, v):
            return self.fc2(F.relu(self.fc1(v)))

        def forward(self, x):
            avg = F.adaptive_avg_pool2d(x, 1)
            mx = F.adaptive_max_pool2d(x, 1)
            return x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))

    class SpatialAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 7, padding=3)

        def forward(self, x):
            m = torch.cat([torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], 1)
            return x * torch.sigmoid(self.conv(m))

    class CBAM(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.channel = ChannelAttention(c)
            self.spatial = SpatialAttention()

        def forward(self, x):
            return self.spatial(self.channel(x))

    class Net(nn.Module):
        def __init__(self, w=(16, 32, 32, 48)):
            super().__init__()
            self.conv1 = ConvBlock(1, w[0])
            self.pool1 = nn.MaxPool2d(2)
            self.conv2 = ConvBlock(w[0], w[1])
            self.cbam = CBAM(w[1])
            self.pool2 = nn.MaxPool2d(2)
            self.conv3 = ConvBlock(w[1], w[2])
            self.conv4 = ConvBlock(w[2], w[3])
            self.fc = nn.Linear(w[3], 10)

        def forward(self, x):
            x = self.pool1(self.conv1(x))
            x = self.pool2(self.cbam(self.conv2(x)))
            x = self.conv4(self.conv3(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return Net()


def train(x, y, seed, epochs):
    import torch
    torch.manual_seed(seed)
    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return net.eval()


def make_standin(out):
    import numpy as np
    import torch
    torch.set_num_threads(1)
    xs = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))[:10000]
    ys = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"))[:10000]
    x = (torch.from_numpy(xs.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
    y = torch.from_numpy(ys.astype(np.int64))
    g = torch.Generator().manual_seed(7)
    y_shuffled = y[torch.randperm(y.shape[0], generator=g)]
    for name, labels, seed, epochs, twin in ((STANDIN, y, 1, 2, f"{STANDIN}-randlabels"),
                                             (f"{STANDIN}-randlabels", y_shuffled, 2, 1, None)):
        net = train(x, labels, seed, epochs)
        torch.onnx.export(net, torch.zeros(1, 1, 28, 28), os.path.join(out, f"{name}.onnx"), opset_version=13,
                          input_names=["input"], output_names=["logits"], do_constant_folding=True,
                          training=torch.onnx.TrainingMode.EVAL)
        sidecar = {"labels": LABELS,
                   "input": {"color": "gray", "height": 28, "width": 28, "scale": 255, "mean": [MEAN],
                             "std": [STD], "resize": "stretch", "invert": False},
                   "cam_layer": "/conv4/Relu", "attention_layers": ["/cbam/spatial/Sigmoid"]}
        if twin:
            sidecar["label_randomized_twin"] = twin
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(sidecar, f, indent=1)


def main():
    out = sys.argv[1]
    if os.path.exists(os.path.join(ROOT, "models", "fashion-cnn.onnx")):
        files, fill = copy_shipped(out)
        stamp = "shipped " + stamp_of(files)
    else:
        fill = lambda: make_standin(out)  # noqa: E731
        stamp = "standin " + stamp_of([os.path.abspath(__file__)])
    stamp_path = os.path.join(out, ".stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        print(f"make_models: {out} is up to date ({stamp.split()[0]})")
        return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    fill()
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"make_models: wrote {out} ({stamp.split()[0]}): {sorted(os.listdir(out))}")


if __name__ == "__main__":
    main()
