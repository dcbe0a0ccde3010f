"""Shared by the benchmark drivers in tests/bench/ (methods, sanity, loadtest).

- The models both sides run: the shipped fashion-cnn (models/), and torchvision resnet50 at 224 with
  seeded random weights exported once to build/bench/ (as bench_engine.py does); a bench model
  folder build/bench/models/ holds them with sidecars and label-randomized twins, so the engine's
  sanity=label has a twin to run (see bench_models_dir).
- The PyTorch modules equal to those ONNX files: fashion-cnn's own nn.Module (models/train.py, the
  BN-folded variant) with the ONNX initializers loaded and checked against the engine's logits'
  source; resnet50 is the torchvision module that was exported (BN unfolded: what a PyTorch user runs).
- `explaind bench` as a subprocess (the engine's own in-process timing), without OPENBLAS_CORETYPE
  (see bench_engine.py) and with the same thread count as torch.
- The run header (date, machine, threads, load average at the start: the machine is shared) and the
  writing of one table between its markers in docs/PERFORMANCE.md, leaving other sections alone.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "build", "bench")
EXPLAIND = os.path.join(ROOT, "build", "explaind")
FASHION_ONNX = os.path.join(ROOT, "models", "fashion-cnn.onnx")
FASHION_PNG = os.path.join(ROOT, "tests", "data", "fashion", "test_00000_ankle_boot.png")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TWIN_SEED = 2018


# ---- machine and run header ----------------------------------------------------------------------------
def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def loadavg():
    try:
        return " / ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def run_header(script, threads, extra="", torch_side=True):
    """One paragraph: when, where, how many threads, and how loaded the machine was at the start."""
    who = "1 OpenBLAS thread per engine worker"
    if torch_side:
        import torch
        who = (f"{threads} thread(s) for both engines (OpenBLAS for explaind, torch.set_num_threads for "
               f"PyTorch {torch.__version__})")
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M')} by {script} on this machine: {os.cpu_count()} cores "
            f"({cpu_model()}), {who}, load average at the start {loadavg()} "
            f"(1/5/15 min; the machine is shared, so single numbers move by tens of percent). {extra}").rstrip()


def write_doc(path, marker, title, text):
    """Replace the block between <!-- bench:marker --> and <!-- /bench:marker --> with text; when the
    markers are missing, append `## title` and the block. Other sections are left as they are."""
    doc = open(path).read() if os.path.exists(path) else "# Performance\n"
    begin, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.replace(tmp, path)


def md_table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


# ---- the engine ---------------------------------------------------------------------------------------
def engine_env(threads, keep_coretype=False):
    env = dict(os.environ)
    if not keep_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def explaind_bench(args, threads, timeout=3600):
    """Run `explaind bench ARGS --threads T`; the JSON lines it prints."""
    cmd = [EXPLAIND, "bench"] + [str(a) for a in args] + ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=engine_env(threads), timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()}")
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


# ---- models and their files -------------------------------------------------------------------------
def _train_module():
    spec = importlib.util.spec_from_file_location("explaind_train", os.path.join(ROOT, "models", "train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fashion_module(onnx_path=FASHION_ONNX):
    """models/train.py's FashionCNN (BN folded, as exported) carrying the ONNX file's weights."""
    import onnx
    import torch
    from onnx import numpy_helper
    tm = _train_module()
    net = tm.FashionCNN(fold_bn=True).eval()
    g = onnx.load(onnx_path).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    state = {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            mod = n.name.strip("/").rsplit("/", 1)[0].replace("/", ".")  # /conv1/conv/Conv -> conv1.conv
            mod = mod.replace("fc1_1", "fc1").replace("fc2_1", "fc2")   # the shared CBAM MLP, applied twice
            state[mod + ".weight"] = torch.from_numpy(init[n.input[1]].copy())
            if len(n.input) > 2:
                state[mod + ".bias"] = torch.from_numpy(init[n.input[2]].copy())
    missing = set(net.state_dict()) - set(state)
    assert not missing, f"fashion-cnn: no ONNX weights for {sorted(missing)}"
    net.load_state_dict(state)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def resnet50_module(seed=0):
    """The torchvision resnet50 that export_resnet50(seed) wrote (same seed, same weights)."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    m = torchvision.models.resnet50().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def export_resnet50(seed=0):
    """build/bench/resnet50_224.onnx (seed 0, the file bench_engine.py also uses) or ..._seed<N>.onnx."""
    import torch
    path = os.path.join(OUT, "resnet50_224.onnx" if seed == 0 else f"resnet50_224_seed{seed}.onnx")
    if os.path.exists(path):
        return path
    m = resnet50_module(seed)
    os.makedirs(OUT, exist_ok=True)
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), path + ".tmp", opset_version=13,
                      input_names=["input"], output_names=["logits"])
    os.replace(path + ".tmp", path)
    return path


def _stand_in_twin(src, dst, seed):
    """Same graph and weight shapes as src, each weight tensor's entries permuted with a seeded RNG:
    the compute of a label-randomized twin exactly, without its training (only the cost is measured)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(src)
    rng = np.random.RandomState(seed)
    for i, t in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size > 1:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(rng.permutation(a.ravel()).reshape(a.shape), t.name))
    onnx.save(m, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def bench_image_224():
    """build/bench/chelsea_224.png: skimage's cat photo (Debian python3-skimage) resized to 224x224."""
    path = os.path.join(OUT, "chelsea_224.png")
    if not os.path.exists(path):
        from PIL import Image
        import skimage.data
        os.makedirs(OUT, exist_ok=True)
        Image.fromarray(skimage.data.chelsea()).resize((224, 224), Image.BILINEAR).save(path)
    return path


def bench_models_dir():
    """build/bench/models/: fashion-cnn and resnet50 with sidecars and label-randomized twins.

    fashion-cnn's twin is models/fashion-cnn-randlabels.onnx when it ships, else a stand-in (same
    architecture, weights permuted: the same cost). resnet50's twin is resnet50 with seed 1 weights
    (random weights, like resnet50 itself here). Returns the folder."""
    d = os.path.join(OUT, "models")
    os.makedirs(d, exist_ok=True)

    def link(src, name):
        dst = os.path.join(d, name)
        if os.path.islink(dst) or os.path.exists(dst):
            if os.path.realpath(dst) == os.path.realpath(src):
                return
            os.remove(dst)
        os.symlink(os.path.abspath(src), dst)

    side = json.load(open(os.path.join(ROOT, "models", "fashion-cnn.json")))
    link(FASHION_ONNX, "fashion-cnn.onnx")
    json.dump(side, open(os.path.join(d, "fashion-cnn.json"), "w"), indent=1)
    twin = side["label_randomized_twin"]
    shipped = os.path.join(ROOT, "models", twin + ".onnx")
    if os.path.exists(shipped):
        link(shipped, twin + ".onnx")
        tside = os.path.join(ROOT, "models", twin + ".json")
        shutil.copyfile(tside, os.path.join(d, twin + ".json"))
    else:
        dst = os.path.join(d, twin + ".onnx")
        if os.path.islink(dst):
            os.remove(dst)
        if not os.path.exists(dst):
            _stand_in_twin(FASHION_ONNX, dst, TWIN_SEED)
        t = dict(side)
        t.pop("label_randomized_twin", None)
        json.dump(t, open(os.path.join(d, twin + ".json"), "w"), indent=1)
    r = {"labels": [f"class_{i}" for i in range(1000)],
         "input": {"color": "rgb", "height": 224, "width": 224, "scale": 255, "mean": IMAGENET_MEAN,
                   "std": IMAGENET_STD, "resize": "stretch", "invert": False}}
    link(export_resnet50(0), "resnet50.onnx")
    json.dump(dict(r, label_randomized_twin="resnet50-twin"), open(os.path.join(d, "resnet50.json"), "w"), indent=1)
    link(export_resnet50(1), "resnet50-twin.onnx")
    json.dump(r, open(os.path.join(d, "resnet50-twin.json"), "w"), indent=1)
    return d


def fashion_twin_is_stand_in():
    return not os.path.exists(os.path.join(ROOT, "models", "fashion-cnn-randlabels.onnx"))


# ---- the same preprocessed input on both sides --------------------------------------------------------------
def preprocess(png, mean, std, gray):
    """The sidecar's preprocessing for an image already at the model's size: px/255, then (v-mean)/std."""
    from PIL import Image
    im = Image.open(png).convert("L" if gray else "RGB")
    a = np.asarray(im, np.float32) / np.float32(255)
    a = a[None] if gray else a.transpose(2, 0, 1)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return ((a - m) / s)[None].astype(np.float32)


def log(msg):
    print(msg, file=sys.stderr, flush=True)
