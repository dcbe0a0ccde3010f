"""Models and inputs of the methods conformance suite.

Models:
  resnet18                 the engine conformance suite's export (tests/conformance/export_models.py:
                           torchvision resnet18 at 64x64, seeded random weights, BatchNorm statistics
                           calibrated then randomized, opset 14), taken from its cache ($CONFORMANCE_DIR,
                           default $(BUILD)/conformance; exported there first if absent) and hard-linked
                           here next to a sidecar: rgb, ImageNet mean/std. One export serves both suites.
  mobilenet_v2             torchvision mobilenet_v2 at 64x64, exported here (opset 13, seeded random weights).
                           Not the engine suite's: that one's BatchNorm recipe leaves float32 pre-activation
                           errors up to 1.9e-5 of a node's scale in its deepest layers, where 9-11 units flip
                           at 17-step IG path points and the flip accounting of test_integrated_gradients left
                           3e-4 of the Gauss-Legendre / trapezoid attribution unexplained (measured; the
                           trapezoid's convergence delta then missed its bound by 2x). Here 1-4 units flip
                           and every residual is below 1e-6.
  fashion-cnn              models/fashion-cnn.onnx itself, the shipped model, with its own sidecar.
  resnet18-224             resnet18 at 224x224 (center_crop), random weights: the gallery's natural photo.
  mlp-head                 a tiny 28x28 net whose GAP is followed by Linear-ReLU-Linear (CAM must refuse it).
The models exported here are cached in $(BUILD)/methods-conformance.

BatchNorm statistics of the models exported here: running mean/var are first calibrated on random
images (so activations keep a sane scale through the depth, as after training), then randomized:
mean += N(0, 0.2·σ), var *= U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2). The exporter folds them
into the Convs.

Inputs: draw_image(seed) gives a smooth random uint8 image exactly the model's input size (no
resizing happens in the engine), to_tensor() the tensor the engine computes from it:
(pixel/scale − mean)/std in float32, in that order.

Kinks: a ReLU (or Clip) whose input is within float32 rounding of its threshold, or a max-pool
window whose two largest values are within rounding of each other, makes two correct float32
implementations disagree on a gradient. kink_margin() measures, in a float64 forward, the smallest
distance of any such unit to its kink relative to max |input| of that node; clean_seed() rejects
inputs below a margin and redraws with the next seed (deterministic: the seed is recorded).
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[3]
BUILD = Path(os.environ.get("BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CACHE = BUILD / "methods-conformance"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GEN_VERSION = "1"  # bump when the model recipe changes: the cache key includes it
FASHION_ONNX = Path(os.environ.get("METHODS_FASHION_MODEL", REPO / "models" / "fashion-cnn.onnx"))


# ---- small nets built here ----------------------------------------------------------------------------
class _ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class MlpHeadNet(nn.Module):
    """A head that is not CAM's: conv -> GAP -> Linear -> ReLU -> Linear (for the 422 test)."""

    def __init__(self):
        super().__init__()
        self.conv = _ConvBlock(1, 8)
        self.fc1 = nn.Linear(8, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(self.conv(x), 1), 1)
        return self.fc2(self.relu(self.fc1(x)))


# ---- specs ----------------------------------------------------------------------------------------
SPECS = {
    "mobilenet_v2": dict(seed=2, size=64, color="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "mlp-head": dict(seed=4, size=28, color="gray", mean=[0.286], std=[0.353]),
    # the gallery's natural photo (make_gallery.py): resnet18 at 224x224, random weights
    "resnet18-224": dict(seed=1, size=224, color="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="center_crop"),
}


def _build(name):
    import torchvision

    spec = SPECS[name]
    torch.manual_seed(spec["seed"])
    if name == "resnet18-224":
        net = torchvision.models.resnet18(weights=None, num_classes=1000)
    elif name == "mobilenet_v2":
        net = torchvision.models.mobilenet_v2(weights=None, num_classes=1000)
    else:
        net = MlpHeadNet()
    c = 3 if spec["color"] == "rgb" else 1
    s = spec["size"]
    # calibrate BN on random images in train mode (cumulative average), then randomize it
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    g = torch.Generator().manual_seed(spec["seed"] + 100)
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(8, c, s, s, generator=g))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                sd = m.running_var.sqrt()
                m.running_mean += 0.2 * sd * torch.randn(m.num_features, generator=g)
                m.running_var *= 0.5 + 1.5 * torch.rand(m.num_features, generator=g)
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    net.eval()
    return net


def _key(name):
    import torchvision

    src = Path(__file__).read_bytes()
    h = hashlib.sha256(src + GEN_VERSION.encode() + torch.__version__.encode() + torchvision.__version__.encode())
    return f"{name}-{h.hexdigest()[:12]}"


class Model:
    """name, onnx (Path), sidecar (dict), size, channels, cam_layer (value name or None), attention (list)."""

    def __init__(self, name, onnx_path, sidecar):
        self.name = name
        self.onnx = Path(onnx_path)
        self.sidecar = sidecar
        inp = sidecar.get("input", {})
        self.color = inp.get("color", "rgb")
        self.channels = 3 if self.color == "rgb" else 1
        self.height = inp["height"]
        self.width = inp["width"]
        self.scale = inp.get("scale", 255)
        self.mean = inp.get("mean", [0.0] * self.channels)
        self.std = inp.get("std", [1.0] * self.channels)
        self.invert = inp.get("invert", False)
        self.cam_layer = sidecar.get("cam_layer")
        self.attention = sidecar.get("attention_layers", [])
        self._om = {}

    def torch_model(self, dtype=torch.float64):
        from mc_onnx import OnnxModule

        if dtype not in self._om:
            self._om[dtype] = OnnxModule(self.onnx, dtype)
        return self._om[dtype]

    def __repr__(self):
        return f"Model({self.name})"


# models taken from the engine conformance suite's export (name here -> name there)
SHARED = {"resnet18": "resnet18"}


def _shared(name):
    """The conformance suite's export of a model (exporting it there first when its cache lacks it),
    hard-linked into CACHE next to a sidecar; returns a Model."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "conformance"))
    import export_models as X

    X.export_all(names=[SHARED[name]], verbose=False, jobs=1)
    meta = X.load_meta(SHARED[name])
    CACHE.mkdir(parents=True, exist_ok=True)
    key = f"{name}-conformance-{meta['script_hash']}"
    onnx_path = CACHE / f"{key}.onnx"
    side_path = CACHE / f"{key}.json"
    if not onnx_path.exists():
        src = X.out_dir() / meta["onnx"]
        tmp = onnx_path.with_suffix(".tmp")
        try:
            os.link(src, tmp)
        except OSError:
            import shutil
            shutil.copyfile(src, tmp)
        os.replace(tmp, onnx_path)
    size = meta["input_shape"][-1]
    sidecar = {"input": {"color": "rgb", "height": size, "width": size, "scale": 255, "mean": IMAGENET_MEAN,
                         "std": IMAGENET_STD, "resize": "stretch", "invert": False}}
    side_path.write_text(json.dumps(sidecar, indent=1))
    return Model(name, onnx_path, sidecar)


def export(name):
    """A model by name: shared with the conformance suite, or exported (once) into the cache here."""
    if name in SHARED:
        return _shared(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    key = _key(name)
    onnx_path = CACHE / f"{key}.onnx"
    side_path = CACHE / f"{key}.json"
    spec = SPECS[name]
    if not (onnx_path.exists() and side_path.exists()):
        net = _build(name)
        c = 3 if spec["color"] == "rgb" else 1
        dummy = torch.zeros(1, c, spec["size"], spec["size"])
        tmp = onnx_path.with_suffix(".tmp")
        torch.onnx.export(net, dummy, str(tmp), opset_version=13, input_names=["input"], output_names=["logits"],
                          do_constant_folding=True)
        sidecar = {"input": {"color": spec["color"], "height": spec["size"], "width": spec["size"], "scale": 255,
                             "mean": spec["mean"], "std": spec["std"], "resize": spec.get("resize", "stretch"),
                             "invert": False}}
        side_path.write_text(json.dumps(sidecar, indent=1))
        os.replace(tmp, onnx_path)
    return Model(name, onnx_path, json.loads(side_path.read_text()))


def fashion_model():
    """models/fashion-cnn.onnx with its sidecar, or None when the file is absent (it is shipped: the suite
    fails then)."""
    if not FASHION_ONNX.exists():
        return None
    side = FASHION_ONNX.with_suffix(".json")
    sidecar = json.loads(side.read_text()) if side.exists() else {}
    sidecar.setdefault("input", {"color": "gray", "height": 28, "width": 28})
    return Model("fashion-cnn", FASHION_ONNX, sidecar)


# ---- inputs -----------------------------------------------------------------------------------------
def draw_image(seed, model):
    """A smooth random image, uint8, (H, W) for gray or (H, W, 3) for rgb, at the model's input size."""
    rng = np.random.default_rng(1000 + seed)
    H, W, C = model.height, model.width, model.channels
    img = np.zeros((C, H, W))
    for cells, weight in ((2, 1.0), (4, 0.8), (8, 0.5), (H, 0.15)):
        coarse = rng.standard_normal((C, cells + 1, cells + 1))
        ys = np.linspace(0, cells, H)
        xs = np.linspace(0, cells, W)
        y0 = np.minimum(ys.astype(int), cells - 1)
        x0 = np.minimum(xs.astype(int), cells - 1)
        fy = (ys - y0)[:, None]
        fx = (xs - x0)[None, :]
        up = (coarse[:, y0][:, :, x0] * (1 - fy) * (1 - fx) + coarse[:, y0 + 1][:, :, x0] * fy * (1 - fx)
              + coarse[:, y0][:, :, x0 + 1] * (1 - fy) * fx + coarse[:, y0 + 1][:, :, x0 + 1] * fy * fx)
        img += weight * up
    img = (img - img.min()) / (img.max() - img.min())
    px = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return px[0] if C == 1 else np.transpose(px, (1, 2, 0))


def to_tensor(px, model):
    """The engine's preprocessing for an image already at the model size: float32 (p/scale - mean)/std."""
    a = px.astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    else:
        a = np.transpose(a, (2, 0, 1))
    if model.invert:
        a = np.float32(255) - a
    out = np.empty_like(a)
    for c in range(a.shape[0]):
        out[c] = (a[c] / np.float32(model.scale) - np.float32(model.mean[c])) / np.float32(model.std[c])
    return out[None]


def save_png(px, path):
    from PIL import Image

    Image.fromarray(px).save(path)


def kink_margin(model, x):
    """Smallest distance to a kink over the network, relative to max |input| of the node concerned,
    in a float64 forward: ReLU inputs vs 0, Clip inputs vs its bounds, max-pool windows (top-1 minus
    top-2 of each window; exact ties excluded: both implementations take the first maximum).
    Returns (margin, node name)."""
    om = model.torch_model(torch.float64)
    names = [(n.name, n.op_type, n.input[0], n) for n in om.nodes
             if n.op_type in ("Relu", "Clip", "MaxPool", "GlobalMaxPool", "ReduceMax")]
    vals = om.run(torch.as_tensor(x, dtype=torch.float64), keep=[v for _, _, v, _ in names])
    worst, where = np.inf, None
    for nm, op, v, node in names:
        t = vals[v].detach()
        scale = t.abs().max().item()
        if scale == 0:
            continue
        if op == "Relu":
            d = t.abs().min().item()
        elif op == "Clip":
            d = min((t - b).abs().min().item() for b in om.kink_bounds(node))
        else:
            d = _pool_tie_margin(t, node, om)
        if d / scale < worst:
            worst, where = d / scale, nm
    return worst, where


def _pool_tie_margin(t, node, om):
    from mc_onnx import _attrs

    if node.op_type == "GlobalMaxPool":
        win = t.flatten(2)
    elif node.op_type == "ReduceMax":
        axes = list(_attrs(node).get("axes"))
        assert axes == [1], axes
        win = t.transpose(1, -1).reshape(-1, t.shape[1])
    else:
        a = _attrs(node)
        k, st = a["kernel_shape"], a.get("strides", [1, 1])
        pads = list(a.get("pads", [0] * 4))
        tp = F.pad(t, (pads[1], pads[3], pads[0], pads[2]), value=-np.inf)
        win = F.unfold(tp.reshape(-1, 1, *tp.shape[2:]), k, stride=st).transpose(1, 2)
    top = torch.topk(win, 2, dim=-1).values
    gap = top[..., 0] - top[..., 1]
    gap = gap[gap > 0]
    return gap.min().item() if gap.numel() else np.inf


def clean_seed(model, margin=1e-5, start=0, tries=200):
    """First seed >= start whose input has kink_margin > margin. Returns (seed, margin, node)."""
    best = (None, -1.0, None)
    for s in range(start, start + tries):
        m, where = kink_margin(model, to_tensor(draw_image(s, model), model))
        if m > margin:
            return s, m, where
        if m > best[1]:
            best = (s, m, where)
    raise RuntimeError(f"{model.name}: no input among seeds {start}..{start + tries - 1} keeps every ReLU/Clip "
                       f"input and max-pool gap above {margin} x its node's max |input|; best seed {best[0]} "
                       f"has {best[1]:.3g} at {best[2]}")
