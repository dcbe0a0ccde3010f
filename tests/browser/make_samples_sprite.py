#!/usr/bin/python3
"""Regenerate web/fashion-samples.png: the dashboard's sample strip, the first Fashion-MNIST TEST
image of each class (tests/data/fashion/, exactly the dataset bytes) side by side in label order
0..9, 28x28 each, 8-bit gray. app.js cuts tile k back out (x = 28k) into a PNG before sending it.

    /usr/bin/python3 tests/browser/make_samples_sprite.py
"""
import json
import os

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.path.join(ROOT, "tests", "data", "fashion")

index = json.load(open(os.path.join(DATA, "index.json")))
first = {}
for e in sorted(index, key=lambda e: e["test_index"]):
    first.setdefault(e["label"], e)
sprite = Image.new("L", (28 * 10, 28))
for label in range(10):
    tile = Image.open(os.path.join(DATA, first[label]["file"])).convert("L")
    assert tile.size == (28, 28), first[label]["file"]
    sprite.paste(tile, (28 * label, 0))
out = os.path.join(ROOT, "web", "fashion-samples.png")
sprite.save(out, optimize=True)
print(out, os.path.getsize(out), "bytes")
