#!/usr/bin/python3
"""Threads sharing one loaded graph: engine_run --threads T on a seeded random batch, and every
thread's logits and input gradient byte-identical to thread 0's (make test-tsan runs it on the
-fsanitize=thread build; a data race shows as a TSan report or as differing bytes).

  engine_threads.py ENGINE_RUN MODEL.onnx THREADS
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

engine_run, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 4
with tempfile.TemporaryDirectory() as d:
    x = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    x.tofile(os.path.join(d, "x.f32"))
    p = subprocess.run([engine_run, "--model", model, "--input", os.path.join(d, "x.f32"), "--n", str(n),
                        "--threads", str(threads), "--out", os.path.join(d, "out")], capture_output=True, text=True)
    assert p.returncode == 0, f"engine_run exit {p.returncode}: {p.stderr[-3000:]}"
    failed = 0
    for kind in ("logits", "input_grad"):
        ref = open(os.path.join(d, f"out.t0.{kind}.f32"), "rb").read()
        assert len(ref) > 0
        for t in range(1, threads):
            got = open(os.path.join(d, f"out.t{t}.{kind}.f32"), "rb").read()
            if got != ref:
                print(f"thread {t}: {kind} differs from thread 0")
                failed += 1
    logits = np.fromfile(os.path.join(d, "out.t0.logits.f32"), dtype=np.float32)
    assert np.isfinite(logits).all() and logits.size == n * 10, logits
    print(f"engine_threads: {2 * (threads - 1) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
