#!/usr/bin/env python3
"""Engine benchmark against PyTorch, in one run on the same machine and thread count.

For resnet18, resnet50, vgg16 and mobilenet_v2 at 224x224 (torchvision architectures, seeded random
weights, exported to ONNX once into build/bench/): forward at batch 1 and 16, and forward + input
gradient (one backward from the top logit, parameters frozen) at batch 1, median over --reps after
warm-up. PyTorch runs the same module that was exported, with torch.set_num_threads(T), inference
under torch.no_grad() and the gradient with torch.autograd.grad. The engine runs `explaind bench`
with T OpenBLAS threads. The table reports the median ms of both, the ratio engine/PyTorch, the
engine's GFLOP/s, and the sgemm peak the bench measured itself.

OpenBLAS picks its kernels from the CPU unless OPENBLAS_CORETYPE forces one; this machine's
environment sets OPENBLAS_CORETYPE=Haswell (AVX2 only) while PyTorch's oneDNN uses AVX-512 whatever
that variable says. By default the engine runs with the variable removed (both sides then use the
CPU's best kernels); --keep-coretype runs it as the environment says. Both cores are reported.

Usage: bench_engine.py [--threads 1] [--reps 10] [--models resnet18,resnet50,vgg16,mobilenet_v2]
                       [--write-doc docs/PERFORMANCE.md] [--keep-coretype] [--profile]
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "build", "bench")
EXPLAIND = os.path.join(ROOT, "build", "explaind")


def export(name):
    import torch, torchvision
    path = os.path.join(OUT, f"{name}_224.onnx")
    if os.path.exists(path):
        return path
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)().eval()
    os.makedirs(OUT, exist_ok=True)
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), path + ".tmp", opset_version=13,
                      input_names=["input"], output_names=["logits"])
    os.replace(path + ".tmp", path)
    return path


def torch_times(name, threads, reps, warmup=2):
    import torch, torchvision
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    res = {}
    g = torch.Generator().manual_seed(1)
    for batch in (1, 16):
        x = torch.randn(batch, 3, 224, 224, generator=g)
        ts = []
        with torch.no_grad():
            for r in range(warmup + reps):
                t = time.perf_counter()
                m(x)
                if r >= warmup:
                    ts.append((time.perf_counter() - t) * 1e3)
        res[("forward", batch)] = statistics.median(ts)
    x = torch.randn(1, 3, 224, 224, generator=g)
    ts = []
    for r in range(warmup + reps):
        xg = x.clone().requires_grad_(True)
        t = time.perf_counter()
        y = m(xg)
        gx, = torch.autograd.grad(y[0, int(y[0].argmax())], xg)
        if r >= warmup:
            ts.append((time.perf_counter() - t) * 1e3)
    res[("forward_grad", 1)] = statistics.median(ts)
    return res


def engine_runs(args_list, env):
    out = subprocess.run([EXPLAIND, "bench"] + args_list, capture_output=True, text=True, env=env, check=True)
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--models", default="resnet18,resnet50,vgg16,mobilenet_v2")
    ap.add_argument("--write-doc")
    ap.add_argument("--keep-coretype", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    if not a.keep_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
    env["OPENBLAS_NUM_THREADS"] = str(a.threads)
    peak = engine_runs(["--sgemm", "--threads", str(a.threads)], env)[0]
    rows = []
    profiles = {}
    for name in a.models.split(","):
        path = export(name)
        eng = engine_runs(["--model", path, "--batch", "1,16", "--grad-batch", "1", "--reps", str(a.reps),
                           "--threads", str(a.threads)] + (["--profile"] if a.profile else []), env)
        tor = torch_times(name, a.threads, a.reps)
        for e in eng:
            key = (e["what"], e["batch"])
            t = tor[key]
            rows.append(dict(model=name, what=e["what"], batch=e["batch"], engine_ms=e["median_ms"], torch_ms=t,
                             ratio=e["median_ms"] / t, gflops=e["gflops"]))
            if a.profile and "profile_ms" in e:
                profiles[(name,) + key] = e["profile_ms"]
        print(f"{name}: done", file=sys.stderr)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    lines = [f"Measured {stamp} by `make bench` (tests/bench/bench_engine.py) on this machine: "
             f"{os.cpu_count()} cores, {a.threads} thread(s) for both engines, reps {a.reps}, median ms. "
             f"OpenBLAS core: {peak['blas_core']}; sgemm peak {peak['gflops']:.1f} GFLOP/s (2048³, measured by the bench). "
             f"PyTorch {__import__('torch').__version__} (oneDNN).",
             "",
             "| model | measure | batch | explaind ms | PyTorch ms | ratio | explaind GFLOP/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        what = "forward" if r["what"] == "forward" else "forward + input gradient"
        lines.append(f"| {r['model']} | {what} | {r['batch']} | {r['engine_ms']:.1f} | {r['torch_ms']:.1f} | "
                     f"{r['ratio']:.2f}× | {r['gflops']:.0f} |")
    if profiles:
        lines += ["", "Per-op time (ms per run, forward + backward where measured):", ""]
        for k, prof in profiles.items():
            top = sorted(prof.items(), key=lambda kv: -kv[1])[:6]
            lines.append(f"- {k[0]} {k[1]} batch {k[2]}: " + ", ".join(f"{op} {ms:.1f}" for op, ms in top))
    table = "\n".join(lines)
    print(table)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"engine_t{a.threads}.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(OUT, f"engine_t{a.threads}.json"), "w") as f:
        json.dump(dict(peak=peak, rows=rows), f, indent=1)
    if a.write_doc:
        marker = f"engine-t{a.threads}"
        doc = open(a.write_doc).read() if os.path.exists(a.write_doc) else ""
        begin, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
        block = f"{begin}\n{table}\n{end}"
        if begin in doc:
            doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
        else:
            doc += "\n" + block + "\n"
        open(a.write_doc, "w").write(doc)


if __name__ == "__main__":
    main()
