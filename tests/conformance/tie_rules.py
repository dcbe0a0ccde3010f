#!/usr/bin/python3
"""Which max-pooling tie rule matches float64 best? (the measurement behind engine/ops/pool.c's rule)

For each MaxPool of an architecture (photos.py's zoo) on each photo, takes the values at the pool's
input from the float64 module, the float32 module and the engine (conformance_run --dump), and counts
the windows whose chosen position differs from float64's (first maximum in scan order) under:
  exact         v > best, first wins (PyTorch's rule)
  win:k         the first position within k ulps (2^-23 relative) of the window's maximum
  node:k        the first position within k ulps of the layer's max |z|
Usage: tie_rules.py --arch resnet18 [--variant init,bn] [--photo astronaut ...] [--pool 0]
Prints one JSON line per (variant, photo, pool) and the sums.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kinks  # noqa: E402
import photos  # noqa: E402

EPS = 2.0 ** -23
KS = (2, 8, 128)


def first_within(w, k, scale):
    """(U,) index of the first value of each window (U, taps) within k ulps of scale below the maximum."""
    return (w >= w.max(-1, keepdims=True) - k * EPS * scale).argmax(-1)


def rules(w, a64, node_scale):
    out = {"exact": int((w.argmax(-1) != a64).sum())}
    win = np.abs(w.max(-1))[:, None]
    for k in KS:
        out[f"win:{k}"] = int((first_within(w, k, win) != a64).sum())
    out["node:2"] = int((first_within(w, 2, node_scale) != a64).sum())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    ap.add_argument("--variant", default="init,bn")
    ap.add_argument("--photo", action="append")
    ap.add_argument("--pool", type=int, action="append", help="MaxPool index (default: the first)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sums = {}
    for v in a.variant.split(","):
        arch = photos.Arch(a.arch, v)
        for name in a.photo or photos.PHOTOS:
            x = photos.photo(name)
            _, c64 = kinks.record(arch.model64, x.double())
            _, c32 = kinks.record(arch.model, x)
            names = kinks.onnx_inputs(arch.proto, c64)
            pools = [i for i, c in enumerate(c64) if c.kind == "maxpool"]
            pools = [pools[p] for p in (a.pool or [0])]
            d = photos.out_dir() / "runs"
            d.mkdir(parents=True, exist_ok=True)
            lst, xin, prefix = d / "tie_rules.txt", d / "tie_rules.input.f32", d / "tie_rules"
            lst.write_text("".join(names[i] + "\n" for i in pools))
            x.numpy().astype("<f4").tofile(xin)
            subprocess.run(photos.engine_cmd() + ["--model", str(arch.onnx), "--input", str(xin), "--n", "1",
                                                  "--out", str(prefix), "--dump", str(lst)], check=True,
                           capture_output=True)
            raw, off = np.fromfile(f"{prefix}.batch.dump.f32", dtype="<f4"), 0
            for p, i in zip(a.pool or [0], pools):
                c = c64[i]
                ze = torch.from_numpy(raw[off:off + c.z.numel()].reshape(c.z.shape).copy())
                off += c.z.numel()
                w64 = c.windows().double()[0].numpy()
                a64 = w64.argmax(-1)
                scale = float(c.scale()[0])
                row = {"variant": v, "photo": name, "pool": p, "windows": len(a64),
                       "engine": rules(c.windows(ze).double()[0].numpy(), a64, scale),
                       "torch_f32": rules(c.windows(c32[i].z).double()[0].numpy(), a64, scale)}
                print(json.dumps(row), flush=True)
                for side in ("engine", "torch_f32"):
                    for k, n in row[side].items():
                        sums.setdefault(side, {}).setdefault(k, 0)
                        sums[side][k] += n
    print(json.dumps({"sum": sums}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
