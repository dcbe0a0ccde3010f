#!/usr/bin/python3
"""Regenerate tests/data/fashion/: Fashion-MNIST TEST images as 28x28 8-bit grayscale PNGs,
exactly the dataset bytes (no scaling, no inversion), plus index.json.

    /usr/bin/python3 tests/data/make_fashion_pngs.py [--per-class N] [--data-dir DIR] [--out DIR]

Takes the first N test images (in dataset order) of each of the 10 classes (default 1) and names
each file test_<index:05d>_<label slug>.png, e.g. test_00000_ankle_boot.png.
index.json lists {"file", "test_index", "label", "label_name"} for every file, by test index.
Needs numpy and PIL (Debian: python3-numpy, python3-pil) and dataset-fashion-mnist.
"""
import argparse
import gzip
import json
import os
import re

import numpy as np
from PIL import Image

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    assert magic >> 8 == 0x08, f"{path}: not an unsigned-byte IDX file"
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--out", default=os.path.join(here, "fashion"))
    ap.add_argument("--per-class", type=int, default=1)
    args = ap.parse_args()

    x = read_idx(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(args.data_dir, "t10k-labels-idx1-ubyte.gz"))
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)

    chosen = sorted(i for c in range(10) for i in np.nonzero(y == c)[0][:args.per_class])
    os.makedirs(args.out, exist_ok=True)
    index = []
    for i in chosen:
        label = int(y[i])
        fname = f"test_{i:05d}_{slug(LABELS[label])}.png"
        path = os.path.join(args.out, fname)
        Image.fromarray(x[i], mode="L").save(path, optimize=True)
        back = np.asarray(Image.open(path))
        assert back.dtype == np.uint8 and back.shape == (28, 28) and np.array_equal(back, x[i]), path
        index.append({"file": fname, "test_index": int(i), "label": label, "label_name": LABELS[label]})
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print(f"wrote {len(index)} PNGs and index.json to {args.out}")


if __name__ == "__main__":
    main()
