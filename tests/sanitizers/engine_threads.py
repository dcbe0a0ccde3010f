#!/usr/bin/python3
"""Threads sharing one loaded graph: `conformance_run --single --threads T` on a seeded random batch
of 4 images. Thread t runs image t mod 4 on its own batch-1 workspace while the others run; its
logits and input gradient must be byte-identical to the same image run alone on the main thread
before them (`--single`). make test-tsan runs it on the -fsanitize=thread build: a data race shows
as a TSan report or as differing bytes. With T = 8, two threads run each image at once.

  engine_threads.py CONFORMANCE_RUN MODEL.onnx THREADS
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

runner, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 4
with tempfile.TemporaryDirectory() as d:
    x = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    x.tofile(os.path.join(d, "x.f32"))
    p = subprocess.run([runner, "--model", model, "--input", os.path.join(d, "x.f32"), "--n", str(n), "--single",
                        "--threads", str(threads), "--out", os.path.join(d, "out")], capture_output=True, text=True)
    assert p.returncode == 0, f"conformance_run exit {p.returncode}: {p.stderr[-3000:]}"
    failed = checks = 0
    for kind in ("logits", "input_grad"):
        alone = np.fromfile(os.path.join(d, f"out.single.{kind}.f32"), dtype=np.float32).reshape(n, -1)
        assert alone.size > 0 and np.isfinite(alone).all()
        for t in range(threads):
            got = np.fromfile(os.path.join(d, f"out.t{t}.{kind}.f32"), dtype=np.float32)
            checks += 1
            if got.tobytes() != alone[t % n].tobytes():
                print(f"thread {t}: {kind} of image {t % n} differs from the image run alone")
                failed += 1
    assert alone.shape == (n, 28 * 28)
    print(f"engine_threads: {checks - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
