#!/usr/bin/python3
"""Train explaind's default models on Fashion-MNIST, export them to ONNX and write their sidecars.

    /usr/bin/python3 models/train.py --model all --out models [--threads 1]

Models (see models/README.md for architectures, accuracies and the recipe):
  fashion-cnn                   small CNN with one CBAM block and a GAP+linear head (CAM applies)
  fashion-cnn-randlabels        same architecture, trained on randomly permuted labels
                                (twin for Adebayo et al. 2018's data randomization test)
  fashion-paper-cnn             the Fashion-MNIST CNN of Adebayo et al. 2018 (conv-pool x2, FC1024, FC10)
  fashion-paper-cnn-randlabels  same, on randomly permuted labels

Everything is seeded (torch, numpy RandomState, deterministic algorithms, fixed thread count);
with the same torch build and the same --threads a rerun reproduces the same weights.
Long runs save a checkpoint after every epoch (--ckpt-dir) and resume from it automatically.

Outputs per model, in --out:
  <name>.onnx             opset 13, input "input" [1,1,28,28], output "logits" [1,10] (no Softmax)
  <name>.json             the sidecar explaind loads (exact key set, see SIDECAR_KEYS)
  metrics/<name>.json     accuracies, epochs, seeds, wall time, parameter count, op list
Only the Python standard library, numpy, torch and onnx are needed; nothing is downloaded.
"""
import argparse
import copy
import ctypes
import gzip
import json
import math
import os
import platform
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530
SIDECAR_KEYS = {"labels", "input", "cam_layer", "attention_layers", "label_randomized_twin",
                "randomization_groups"}
ALLOWED_OPS = {
    "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Mul", "Add", "Sub", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "ReduceMean", "ReduceMax", "Concat", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Pad", "Gemm", "MatMul", "Softmax", "Dropout", "Identity", "Constant",
    "Shape", "Gather"}
# Shape/Gather are tolerated only in chains that feed a Reshape; our models produce none.
FORBIDDEN_OPS = {"Softmax"}  # allowed by the engine, but our graphs must output raw logits


# ------------------------------------------------------------------------------------------------
# Architectures. Module names are chosen so the ONNX node names read well:
#   /conv1/conv/Conv, /conv1/Relu, /cbam/channel/..., /cbam/spatial/Sigmoid, /gap/..., /fc/Gemm
# ------------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """3x3 Conv (no bias) + BatchNorm + ReLU. The exporter folds BN into the Conv in eval mode,
    so the ONNX nodes are /<name>/conv/Conv and /<name>/Relu."""

    def __init__(self, cin, cout, fold_bn=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=fold_bn)
        self.bn = nn.Identity() if fold_bn else nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))) * x, shared MLP of
    1x1 convs with reduction ratio r."""

    def __init__(self, c, r=8):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def mlp(self, v):
        return self.fc2(F.relu(self.fc1(v)))

    def forward(self, x):
        a = torch.sigmoid(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))
        return x * a


class SpatialAttention(nn.Module):
    """CBAM spatial attention: sigmoid(conv7x7([mean_c(x); max_c(x)])) * x."""

    def __init__(self, k=7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2)

    def forward(self, x):
        m = torch.cat([torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(m))


class CBAM(nn.Module):
    """Woo et al. 2018: channel attention, then spatial attention."""

    def __init__(self, c, r=8):
        super().__init__()
        self.channel = ChannelAttention(c, r)
        self.spatial = SpatialAttention(7)

    def forward(self, x):
        return self.spatial(self.channel(x))


class FashionCNN(nn.Module):
    """1x28x28 -> conv1(32) -> pool -> conv2(64) -> CBAM -> pool -> conv3(128) -> conv4(256)
    -> GAP -> fc(10). The CAM layer is conv4's ReLU (7x7x256), the last 4-D activation before
    global average pooling; the head is GAP + one linear layer, so CAM (Zhou et al. 2016) applies."""

    def __init__(self, widths=(32, 64, 128, 256), fold_bn=False):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.conv1 = ConvBlock(1, w1, fold_bn)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = ConvBlock(w1, w2, fold_bn)
        self.cbam = CBAM(w2, 8)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = ConvBlock(w2, w3, fold_bn)
        self.conv4 = ConvBlock(w3, w4, fold_bn)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, 10)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.cbam(self.conv2(x)))
        x = self.conv4(self.conv3(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class PaperCNN(nn.Module):
    """Adebayo et al. 2018's Fashion-MNIST CNN: conv5x5-32 -> ReLU -> maxpool2 -> conv5x5-64 ->
    ReLU -> maxpool2 -> flatten -> FC1024 -> ReLU -> FC10."""

    def __init__(self, fold_bn=False):  # fold_bn: no BN here; accepted for a uniform interface
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


# ------------------------------------------------------------------------------------------------
# Model configurations: everything that defines a model's training run.
# ------------------------------------------------------------------------------------------------
CONFIGS = {
    "fashion-cnn": dict(
        arch="fashion-cnn", seed=1, randomize_labels=False, augment=True,
        optimizer="adamw", lr=3e-3, weight_decay=5e-4, batch=128, epochs=20,
        schedule="onecycle", target_train_acc=None,
        cam_layer="/conv4/Relu", attention_layers=["/cbam/spatial/Sigmoid"],
        twin="fashion-cnn-randlabels"),
    "fashion-cnn-randlabels": dict(
        arch="fashion-cnn", seed=2, randomize_labels=True, label_seed=2018, augment=False,
        optimizer="adam", lr=1e-4, weight_decay=0.0, batch=32, epochs=150,
        schedule="plateau", target_train_acc=0.95,
        cam_layer="/conv4/Relu", attention_layers=["/cbam/spatial/Sigmoid"], twin=None),
    "fashion-paper-cnn": dict(
        arch="paper-cnn", seed=3, randomize_labels=False, augment=False,
        optimizer="adam", lr=1e-3, weight_decay=1e-3, batch=50, epochs=20,
        schedule="constant", target_train_acc=None,
        cam_layer="/relu2/Relu", attention_layers=[], twin="fashion-paper-cnn-randlabels"),
    "fashion-paper-cnn-randlabels": dict(
        arch="paper-cnn", seed=4, randomize_labels=True, label_seed=2018, augment=False,
        optimizer="adam", lr=1e-4, weight_decay=0.0, batch=50, epochs=100,
        schedule="constant", target_train_acc=0.95,
        cam_layer="/relu2/Relu", attention_layers=[], twin=None),
}
ORDER = ["fashion-cnn", "fashion-cnn-randlabels", "fashion-paper-cnn", "fashion-paper-cnn-randlabels"]


def build(arch, fold_bn=False):
    if arch == "fashion-cnn":
        return FashionCNN(fold_bn=fold_bn)
    if arch == "paper-cnn":
        return PaperCNN(fold_bn=fold_bn)
    raise ValueError(arch)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def read_idx(path):
    """Read an IDX file (gzip'd): returns a uint8 numpy array of the stored shape."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_fashion(data_dir=DATA_DIR):
    d = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        d[split] = (x, y.astype(np.int64))
    assert d["train"][0].shape == (60000, 28, 28) and d["test"][0].shape == (10000, 28, 28)
    return d


def normalize(x_u8):
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28, the sidecar's preprocessing."""
    x = torch.from_numpy(np.array(x_u8, dtype=np.uint8, copy=True)).float().div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def permuted_labels(y, label_seed):
    """The randomized labels: the training label vector permuted with RandomState(label_seed)."""
    return y[np.random.RandomState(label_seed).permutation(len(y))]


def augment(x_u8, rs, pad=2):
    """Random crop (zero padding `pad`, i.e. black border) + random horizontal flip, on uint8."""
    n = len(x_u8)
    p = np.zeros((n, 28 + 2 * pad, 28 + 2 * pad), np.uint8)
    p[:, pad:pad + 28, pad:pad + 28] = x_u8
    dx = rs.randint(0, 2 * pad + 1, n)
    dy = rs.randint(0, 2 * pad + 1, n)
    flip = rs.randint(0, 2, n).astype(bool)
    out = np.empty_like(x_u8)
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            idx = np.nonzero((dx == ox) & (dy == oy))[0]
            out[idx] = p[idx, oy:oy + 28, ox:ox + 28]
    out[flip] = out[flip, :, ::-1]
    return out


@torch.no_grad()
def evaluate(model, x, y, batch=200):
    """Accuracy of model on normalized x (N,1,28,28) vs labels y (numpy); model in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        pred = model(x[i:i + batch]).argmax(1).numpy()
        correct += int((pred == y[i:i + batch]).sum())
    return correct / len(x), correct


def precise_bn(model, x, batch=200):
    """"Precise BN" (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", section 3): a copy of
    model whose BatchNorm running statistics are the population statistics of the images x
    (cumulative average of per-batch mean and variance over all of x, no gradient, weights
    unchanged) instead of the training EMA, which follows only the last ~10 batches.
    Used for the memorization runs (cfg target_train_acc): with batches of 32 and labels that carry
    no signal, the EMA drifts from what the network memorized, and the eval-mode fit lags the
    train-mode one (fashion-cnn-randlabels at epoch 102: 60.3% with the EMA, 81.3% in train mode,
    85.4% after this). A model without BatchNorm comes back unchanged."""
    m = copy.deepcopy(model)
    bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for b in bns:
            b.reset_running_stats()
            b.momentum = None  # cumulative moving average
        m.train()
        with torch.no_grad():
            for i in range(0, len(x), batch):
                m(x[i:i + batch])
    m.eval()
    return m


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def setup_runtime(threads):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.use_deterministic_algorithms(True)
    # glibc returns large freed blocks to the OS (mmap/trim), so every batch page-faults its
    # activations in again; on small VMs that costs ~3x. Keep freed memory in the heap instead.
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: the glibc maximum (32 MiB)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def make_optimizer(cfg, model):
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ValueError(cfg["optimizer"])


def lr_at(cfg, epoch, step, steps_per_epoch, state):
    """Learning rate for this step. onecycle: linear warm-up over 2 epochs, cosine to ~0.
    plateau: lr, divided by 10 (twice at most) when training accuracy stalls (see state)."""
    base = cfg["lr"]
    if cfg["schedule"] == "constant":
        return base
    if cfg["schedule"] == "onecycle":
        total = cfg["epochs"] * steps_per_epoch
        t = epoch * steps_per_epoch + step
        warm = 2 * steps_per_epoch
        if t < warm:
            return base * (0.04 + 0.96 * t / warm)
        return base * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))
    if cfg["schedule"] == "plateau":
        return base * state.get("lr_scale", 1.0)
    raise ValueError(cfg["schedule"])


def plateau_update(cfg, state, train_acc):
    """For memorization runs: drop lr 10x when training accuracy improved < 0.5 points over the
    last 5 epochs (at most twice), but only once the fit is past 50%: before that, progress on
    random labels is slow but steady and a low lr would stall it."""
    if cfg["schedule"] != "plateau":
        return
    hist = state.setdefault("acc_hist", [])
    hist.append(train_acc)
    since = state.get("since_drop", 0) + 1
    state["since_drop"] = since
    if since >= 6 and train_acc > 0.5 and state.get("drops", 0) < 2:
        if hist[-1] - hist[-6] < 0.005:
            state["lr_scale"] = state.get("lr_scale", 1.0) * 0.1
            state["drops"] = state.get("drops", 0) + 1
            state["since_drop"] = 0
            print(f"  plateau: lr scale -> {state['lr_scale']:g}", flush=True)


def ckpt_path(ckpt_dir, name):
    return os.path.join(ckpt_dir, f"{name}.ckpt.pt")


def train(name, cfg, data, args):
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    rs = np.random.RandomState(cfg["seed"])  # shuffling and augmentation
    model = build(cfg["arch"])
    opt = make_optimizer(cfg, model)
    x_tr_u8, y_tr = data["train"]
    x_te, y_te = normalize(data["test"][0]), data["test"][1]
    if cfg["randomize_labels"]:
        y_fit = permuted_labels(y_tr, cfg["label_seed"])
        print(f"{name}: labels permuted with RandomState({cfg['label_seed']}); "
              f"{(y_fit == y_tr).mean() * 100:.2f}% keep their true label", flush=True)
    else:
        y_fit = y_tr
    x_tr_plain = normalize(x_tr_u8)
    y_fit_t = torch.from_numpy(y_fit)
    n = len(y_fit)
    steps = math.ceil(n / cfg["batch"])
    state, history, epoch0, elapsed0 = {}, [], 0, 0.0

    ck = ckpt_path(args.ckpt_dir, name)
    if args.ckpt_dir and os.path.exists(ck) and not args.fresh:
        c = torch.load(ck)
        if c["cfg"] != cfg or c["threads"] != args.threads:
            print(f"{name}: checkpoint {ck} is for another configuration/thread count; "
                  f"ignoring it (use --fresh to silence)", flush=True)
        else:
            model.load_state_dict(c["model"])
            opt.load_state_dict(c["opt"])
            torch.set_rng_state(c["torch_rng"])
            rs.set_state(c["np_rng"])
            state, history, epoch0, elapsed0 = c["state"], c["history"], c["epoch"], c["elapsed"]
            print(f"{name}: resumed from {ck} after epoch {epoch0}", flush=True)

    t_start = time.time() - elapsed0
    epoch = epoch0
    while epoch < cfg["epochs"] and not args.export_only:
        if history and cfg["target_train_acc"] and history[-1]["train_acc_eval"] is not None \
                and history[-1]["train_acc_eval"] >= cfg["target_train_acc"]:
            break  # the labels are fitted (eval mode): done
        model.train()
        t0 = time.time()
        x_ep = normalize(augment(x_tr_u8, rs)) if cfg["augment"] else x_tr_plain
        perm = torch.from_numpy(rs.permutation(n))
        loss_sum, correct = 0.0, 0
        for s in range(steps):
            idx = perm[s * cfg["batch"]:(s + 1) * cfg["batch"]]
            xb, yb = x_ep[idx], y_fit_t[idx]
            lr = lr_at(cfg, epoch, s, steps, state)
            for g in opt.param_groups:
                g["lr"] = lr
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        train_acc_running = correct / n
        test_acc, _ = evaluate(model, x_te, y_te)
        rec = dict(epoch=epoch + 1, loss=loss_sum / n, train_acc_running=train_acc_running,
                   test_acc=test_acc, lr=lr, seconds=time.time() - t0, train_acc_eval=None)
        # For memorization runs, the quantity that matters is the eval-mode fit of the labels, with
        # the statistics the export will have (precise_bn); it can run ahead of the running fit.
        if cfg["target_train_acc"] and (train_acc_running > cfg["target_train_acc"] - 0.25
                                        or epoch + 1 == cfg["epochs"]):
            rec["train_acc_eval"], _ = evaluate(precise_bn(model, x_tr_plain), x_tr_plain, y_fit)
        plateau_update(cfg, state, train_acc_running)
        history.append(rec)
        epoch += 1
        print(f"{name} epoch {epoch:3d}/{cfg['epochs']} loss {rec['loss']:.4f} "
              f"train(run) {train_acc_running * 100:6.2f}% "
              + (f"train(eval) {rec['train_acc_eval'] * 100:6.2f}% " if rec["train_acc_eval"] is not None else "")
              + f"test {test_acc * 100:6.2f}% lr {lr:.2e} {rec['seconds']:.0f}s", flush=True)
        if args.ckpt_dir:
            os.makedirs(args.ckpt_dir, exist_ok=True)
            torch.save(dict(cfg=cfg, threads=args.threads, model=model.state_dict(),
                            opt=opt.state_dict(), torch_rng=torch.get_rng_state(),
                            np_rng=rs.get_state(), state=state, history=history, epoch=epoch,
                            elapsed=time.time() - t_start), ck + ".tmp")
            os.replace(ck + ".tmp", ck)
    wall = time.time() - t_start
    if cfg["target_train_acc"]:
        model = precise_bn(model, x_tr_plain)
    model.eval()
    return model, history, wall, y_fit, x_tr_plain, x_te, y_te


# ------------------------------------------------------------------------------------------------
# Export and verification
# ------------------------------------------------------------------------------------------------
def export_onnx(model, path):
    import onnx
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, dummy, path, opset_version=13, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({nd.op_type for nd in m.graph.node})
    bad = [o for o in ops if o not in ALLOWED_OPS or o in FORBIDDEN_OPS]
    if bad:
        raise SystemExit(f"{path}: ops outside the engine's set: {bad}")
    for nd in m.graph.node:
        if nd.op_type in ("Shape", "Gather"):
            raise SystemExit(f"{path}: unexpected {nd.op_type} node {nd.name}")
    return m, ops


def onnx_to_module(m, arch):
    """Load an exported ONNX file's weights back into a PyTorch module (BN folded into the convs),
    by node name: /a/b/Conv -> module a.b; shared weights (CBAM's MLP, used twice) must agree."""
    from onnx import numpy_helper
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    mod = build(arch, fold_bn=True).eval()
    sd = mod.state_dict()
    loaded = {}
    for nd in m.graph.node:
        if nd.op_type not in ("Conv", "Gemm"):
            continue
        parts = nd.name.strip("/").split("/")[:-1]  # drop the op part
        path = ".".join(parts)
        if f"{path}.weight" not in sd:  # a module called twice: /cbam/channel/fc1_1/Conv
            path = re.sub(r"_\d+$", "", path)
        if nd.op_type == "Gemm" and not path:
            raise ValueError(f"unnamed Gemm {nd.name}")
        for suffix, inp in (("weight", 1), ("bias", 2)):
            key = f"{path}.{suffix}"
            if key not in sd:
                raise KeyError(f"node {nd.name}: no parameter {key} in the module")
            arr = init[nd.input[inp]]
            if nd.op_type == "Gemm" and suffix == "weight":
                attrs = {a.name: a.i for a in nd.attribute}
                if not attrs.get("transB", 0):
                    arr = arr.T
            if key in loaded and not np.array_equal(loaded[key], arr):
                raise ValueError(f"{key}: shared weight differs between nodes")
            loaded[key] = arr
    missing = set(sd) - set(loaded)
    if missing:
        raise KeyError(f"parameters not found in the ONNX graph: {sorted(missing)}")
    mod.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in loaded.items()})
    return mod


def param_node_groups(m):
    """Randomization groups for the cascading test, top-down (logits first): one group per
    top-level module (block): fc, conv4, conv3, cbam (its spatial conv and the shared channel
    MLP, whose two uses share one weight), conv2, conv1. Within a group, top-down as well."""
    groups, index = [], {}
    for nd in m.graph.node:
        if nd.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        block = nd.name.strip("/").split("/")[0]
        if block not in index:
            index[block] = len(groups)
            groups.append([])
        groups[index[block]].append(nd.name)
    return [g[::-1] for g in groups[::-1]]


def sidecar(cfg, m):
    names = {nd.name for nd in m.graph.node}
    for layer in [cfg["cam_layer"]] + cfg["attention_layers"]:
        if layer not in names:
            raise SystemExit(f"sidecar layer {layer} is not a node of the exported graph; "
                             f"nodes: {sorted(names)}")
    sc = {
        "labels": LABELS,
        "input": {"color": "gray", "height": 28, "width": 28, "scale": 255, "mean": [MEAN],
                  "std": [STD], "resize": "stretch", "invert": False},
        "cam_layer": cfg["cam_layer"],
        "attention_layers": cfg["attention_layers"],
    }
    if cfg["twin"]:
        sc["label_randomized_twin"] = cfg["twin"]
    sc["randomization_groups"] = param_node_groups(m)
    assert set(sc) <= SIDECAR_KEYS
    return sc


def run(name, data, args):
    cfg = CONFIGS[name]
    print(f"== {name}: {json.dumps(cfg)}", flush=True)
    model, history, wall, y_fit, x_tr, x_te, y_te = train(name, cfg, data, args)
    n_params = sum(p.numel() for p in model.parameters())
    test_acc, test_correct = evaluate(model, x_te, y_te)
    train_acc, train_correct = evaluate(model, x_tr, y_fit)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, f"{name}.onnx")
    m, ops = export_onnx(model, onnx_path)
    # verify the exported weights: reload them into a BN-folded module and compare outputs
    folded = onnx_to_module(m, cfg["arch"])
    with torch.no_grad():
        ref = torch.cat([model(x_te[i:i + 200]) for i in range(0, 10000, 200)])
        got = torch.cat([folded(x_te[i:i + 200]) for i in range(0, 10000, 200)])
    max_diff = float((ref - got).abs().max())
    onnx_acc, onnx_correct = evaluate(folded, x_te, y_te)
    if max_diff > 1e-3:
        raise SystemExit(f"{name}: ONNX weights disagree with the trained module ({max_diff})")
    sc = sidecar(cfg, m)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(sc, f, indent=2)
        f.write("\n")
    metrics = dict(
        model=name, arch=cfg["arch"], config=cfg, parameters=n_params,
        test_accuracy=test_acc, test_correct=test_correct,
        test_accuracy_onnx_weights=onnx_acc, test_correct_onnx_weights=onnx_correct,
        max_abs_logit_diff_onnx_vs_torch=max_diff,
        train_accuracy_on_fit_labels=train_acc, train_correct_on_fit_labels=train_correct,
        fit_labels="permuted" if cfg["randomize_labels"] else "true",
        epochs=len(history), wall_seconds=round(wall, 1), threads=args.threads,
        onnx_ops=ops, onnx_nodes=len(m.graph.node), onnx_bytes=os.path.getsize(onnx_path),
        torch=torch.__version__, onnx=__import__("onnx").__version__, numpy=np.__version__,
        python=platform.python_version(), cpu=platform.machine(), history=history)
    os.makedirs(os.path.join(args.out, "metrics"), exist_ok=True)
    with open(os.path.join(args.out, "metrics", f"{name}.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    print(f"== {name}: params {n_params}, test acc {test_acc * 100:.2f}% ({test_correct}/10000), "
          f"train acc on {metrics['fit_labels']} labels {train_acc * 100:.2f}% ({train_correct}/60000), "
          f"ONNX-weights test acc {onnx_acc * 100:.2f}%, max |dlogit| {max_diff:.2e}, "
          f"{len(history)} epochs, {wall / 60:.1f} min; ops {ops}", flush=True)
    return metrics


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all", choices=ORDER + ["all"])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1; results are reproducible for a given count)")
    ap.add_argument("--ckpt-dir", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "explaind", "model-ckpt"),
        help="per-epoch checkpoints for resuming ('' disables)")
    ap.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--epochs", type=int, help="override the configured number of epochs (experiments)")
    ap.add_argument("--export-only", action="store_true",
                    help="train no further: export the model as its last checkpoint left it "
                         "(a memorization run stopped before its target is reported as such)")
    args = ap.parse_args()
    setup_runtime(args.threads)
    data = load_fashion(args.data_dir)
    names = ORDER if args.model == "all" else [args.model]
    results = []
    for name in names:
        if args.epochs:
            CONFIGS[name]["epochs"] = args.epochs
        results.append(run(name, data, args))
    print("\nsummary")
    for r in results:
        extra = (f", train acc on permuted labels {r['train_accuracy_on_fit_labels'] * 100:.2f}%"
                 if r["fit_labels"] == "permuted" else "")
        print(f"  {r['model']:30s} test acc {r['test_accuracy'] * 100:.2f}%{extra}, "
              f"{r['epochs']} epochs, {r['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
