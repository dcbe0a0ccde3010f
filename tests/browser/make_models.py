#!/usr/bin/python3
"""Fill a models_dir for the browser tests with what `make run` serves.

    /usr/bin/python3 tests/browser/make_models.py OUT_DIR

OUT_DIR gets the shipped models/fashion-cnn.onnx (+ .json), its label-randomized twin (the
sidecar's label_randomized_twin) and its probe set (models/probes/fashion-cnn/). OUT_DIR/.stamp
records the files' hashes, so a second run with the same files does nothing (mk/browser.mk keeps
OUT_DIR under build/).
"""
import hashlib
import json
import os
import shutil
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SRC = os.path.join(ROOT, "models")


def shipped_files():
    with open(os.path.join(SRC, "fashion-cnn.json")) as f:
        twin = json.load(f).get("label_randomized_twin")
    names = ["fashion-cnn"] + ([twin] if twin else [])
    files = [f"{n}.{ext}" for n in names for ext in ("onnx", "json") if os.path.exists(os.path.join(SRC, f"{n}.{ext}"))]
    probes = os.path.join("probes", "fashion-cnn")
    if os.path.isdir(os.path.join(SRC, probes)):
        files += [os.path.join(probes, p) for p in sorted(os.listdir(os.path.join(SRC, probes)))]
    return files


def main():
    out = sys.argv[1]
    if not os.path.exists(os.path.join(SRC, "fashion-cnn.onnx")):
        sys.exit("make_models: models/fashion-cnn.onnx is missing (it is committed: is this a partial checkout?)")
    files = shipped_files()
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode())
        with open(os.path.join(SRC, rel), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    stamp = "shipped " + h.hexdigest()
    stamp_path = os.path.join(out, ".stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        print(f"make_models: {out} is up to date")
        return
    shutil.rmtree(out, ignore_errors=True)
    for rel in files:
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        shutil.copy(os.path.join(SRC, rel), os.path.join(out, rel))
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"make_models: wrote {out}: {files[:4]}{' ...' if len(files) > 4 else ''}")


if __name__ == "__main__":
    main()
