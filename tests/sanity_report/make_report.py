#!/usr/bin/python3
"""Reproduce Adebayo et al. 2018 ("Sanity Checks for Saliency Maps", NeurIPS) on Fashion-MNIST with
explaind, and write docs/SANITY.md with its plots (docs/sanity/*.png) and raw numbers
(docs/sanity/report.json).

    /usr/bin/python3 tests/sanity_report/make_report.py [--twin-dir DIR] [--per-class 10] [--limit N]

What it does (`make sanity-report` runs it with the defaults):
  1. exports the first --per-class (10) Fashion-MNIST *test* images of each class, in dataset order,
     as 28x28 gray PNGs (tests/data/make_fashion_pngs.py) into BUILD/sanity-report/images;
  2. stages the models found in --models-dir (fashion-cnn, and the paper's CNN fashion-paper-cnn
     when it has been trained) with their label-randomized twins into BUILD/sanity-report/models
     (symlinks; --twin-dir takes the twins from elsewhere, e.g. an interim export, and the report
     then says so);
  3. runs `explaind sanity` over the images for the seven methods of the paper, cascading top-down
     (with the label randomization check) and cascading bottom-up, randomizing the sidecar's
     randomization_groups (one step per layer, as the paper);
  4. plots mean ± std curves per similarity and writes the tables and the comparison with the
     paper's findings into the document.
Needs Debian's python3 with numpy, PIL and matplotlib (python3-matplotlib).
"""
import argparse
import datetime
import io
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
METHODS = ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "gradcam", "guided_backprop",
           "guided_gradcam"]
PAPER_NAMES = {"saliency": "Gradient", "grad_x_input": "Gradient⊙Input", "integrated_gradients": "Integrated Gradients",
               "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM", "guided_backprop": "Guided BackProp",
               "guided_gradcam": "Guided Grad-CAM"}
COLORS = {"saliency": "#1f77b4", "grad_x_input": "#ff7f0e", "integrated_gradients": "#2ca02c", "smoothgrad": "#9467bd",
          "gradcam": "#d62728", "guided_backprop": "#8c564b", "guided_gradcam": "#e377c2"}
METRICS = ["spearman_abs", "spearman", "ssim", "hog"]
METRIC_TITLES = {"spearman_abs": "Spearman (absolute value maps)", "spearman": "Spearman (signed / diverging maps)",
                 "ssim": "SSIM", "hog": "HOG similarity"}
ORDERS = [("cascading_top_down", "top-down"), ("cascading_bottom_up", "bottom-up")]
MODELS = ["fashion-cnn", "fashion-paper-cnn"]
# Supplementary cascading top-down runs that test why the input-multiplied methods differ from the
# paper: the same attributions against a black-image reference instead of the zero tensor (with the
# sidecar's normalization the zero tensor is a gray image, so the black background is not zero).
# IG with one right-Riemann step from the black image is exactly gradient ⊙ (input − black image).
SUPPLEMENTARY = [
    ("ig_black", "Integrated Gradients, black-image baseline",
     ["--baseline", "black"]),
    ("gxi_black", "Gradient⊙(input − black image) (IG, 1 right-Riemann step from the black image)",
     ["--baseline", "black", "--ig_steps", "1", "--ig_method", "riemann_right"]),
]
THRESHOLD = 0.5  # the service's default sanity_spearman_threshold and sanity_ssim_threshold
SEED = 0


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f" ({line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    return ""


def log(*a):
    print("[sanity-report]", *a, file=sys.stderr, flush=True)


def rel(p):
    p = Path(p).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


# ---- inputs -----------------------------------------------------------------------------------------
def export_images(work, per_class, limit, data_dir):
    """The first per_class test images of each class (dataset order), or the first `limit` of those."""
    tmp = work / "images-all"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, str(REPO / "tests" / "data" / "make_fashion_pngs.py"), "--per-class",
                    str(per_class), "--out", str(tmp), "--data-dir", data_dir], check=True,
                   stdout=subprocess.DEVNULL)
    index = json.load(open(tmp / "index.json"))
    if limit:
        index = index[:limit]
    out = work / "images"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for e in index:
        shutil.copy(tmp / e["file"], out / e["file"])
    shutil.rmtree(tmp)
    return out, index


def load_json(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stage_models(work, models_dir, twin_dir):
    """Symlink each model present (and its twin) into work/models; returns {name: info}."""
    dst = work / "models"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    staged = {}
    for name in MODELS:
        onnx, side = models_dir / f"{name}.onnx", models_dir / f"{name}.json"
        if not (onnx.exists() and side.exists()):
            staged[name] = None
            continue
        for p in (onnx, side):
            (dst / p.name).symlink_to(p.resolve())
        info = {"path": dst / onnx.name, "metrics": load_json(models_dir / "metrics" / f"{name}.json"),
                "twin": json.load(open(side)).get("label_randomized_twin"), "twin_dir": None}
        if info["twin"]:
            for d in ([twin_dir] if twin_dir else []) + [models_dir]:
                t_onnx, t_side = d / f"{info['twin']}.onnx", d / f"{info['twin']}.json"
                if t_onnx.exists() and t_side.exists():
                    for p in (t_onnx, t_side):
                        (dst / p.name).symlink_to(p.resolve())
                    info["twin_dir"] = d
                    info["twin_metrics"] = load_json(d / "metrics" / f"{info['twin']}.json")
                    info["twin_interim"] = d.resolve() != models_dir.resolve()
                    break
        staged[name] = info
    return staged


# ---- runs ---------------------------------------------------------------------------------------------
def run_sanity(binary, model_path, images_dir, order, checks, methods=METHODS, extra=()):
    argv = [str(binary), "sanity", "--model", str(model_path), "--images", str(images_dir),
            "--methods", ",".join(methods), "--sanity", checks, "--sanity_order", order,
            "--sanity_layers", "groups", "--seed", str(SEED)] + list(extra) + ["--compact"]
    t0 = time.time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr}")
    doc = json.loads(p.stdout)
    doc.pop("request_id", None)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return doc, {"wall_s": wall, "cpu_s": cpu, "argv": [rel(a) if os.path.exists(a) else a for a in argv],
                 "stderr": p.stderr.strip()}


def bench_methods(binary, model_path):
    """Median CPU ms of one explain request per method (explaind bench), for the cost note."""
    p = subprocess.run([str(binary), "bench", "--model", str(model_path), "--methods", ";".join(METHODS),
                        "--reps", "5", "--batch", "16"], capture_output=True, text=True)
    out = {}
    for line in p.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("what") == "explain":
            out[r["methods"]] = r.get("median_cpu_ms", r.get("median_ms"))
    return out


# ---- numbers --------------------------------------------------------------------------------------------
def short(name):
    """'/conv4/conv/Conv' -> 'conv4', '/fc/Gemm' -> 'fc', '/cbam/spatial/conv/Conv' -> 'cbam'."""
    parts = [p for p in name.split("/") if p]
    return parts[0] if len(parts) > 1 else name


def step_labels(mr):
    labels, seen = [], set()
    for s in mr["steps"]:
        new = [n for n in s["randomized"] if n not in seen]
        seen.update(s["randomized"])
        labels.append("+".join(short(n) for n in new) or "?")
    return labels


def ms(a, digits=3):
    """'mean ± std' of an aggregate {mean, std, count}."""
    if not a or a.get("mean") is None:
        return "n/a"
    if a.get("std") is None:
        return f"{a['mean']:.{digits}f}"
    return f"{a['mean']:.{digits}f} ± {a['std']:.{digits}f}"


def mean(a):
    return None if not a or a.get("mean") is None else a["mean"]


def verdict_cell(v):
    if v.get("passed") is None:
        return "undetermined"
    return f"{'pass' if v['passed'] else 'FAIL'} ({v.get('images_passed', 0)}/{v.get('images', 0)} images)"


# ---- plots ------------------------------------------------------------------------------------------------
def plot_curves(mr, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = ["original"] + step_labels(mr)
    x = list(range(len(labels)))
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.2), dpi=72, sharex=True)
    for ax, metric in zip(axes.flat, METRICS):
        for m in METHODS:
            md = mr["methods"].get(m)
            if not md:
                continue
            mu = [1.0] + [s[metric]["mean"] if s[metric]["mean"] is not None else float("nan") for s in md["steps"]]
            sd = [0.0] + [s[metric]["std"] if s[metric]["std"] is not None else 0.0 for s in md["steps"]]
            lo = [max(-1.0, a - b) for a, b in zip(mu, sd)]
            hi = [min(1.0, a + b) for a, b in zip(mu, sd)]
            ax.plot(x, mu, marker="o", ms=3, lw=1.4, color=COLORS[m], label=PAPER_NAMES[m])
            ax.fill_between(x, lo, hi, color=COLORS[m], alpha=0.10, lw=0)
        floors = [mean(md["floor"][metric]) for md in mr["methods"].values() if mean(md["floor"][metric]) is not None]
        if floors:
            f = sum(floors) / len(floors)
            ax.axhline(f, color="k", ls=":", lw=1)
            ax.text(x[-1], f + 0.02, "floor (random map)", ha="right", va="bottom", fontsize=7)
        if metric in ("spearman_abs", "ssim"):
            ax.axhline(THRESHOLD, color="gray", ls="--", lw=0.8)
        ax.set_title(METRIC_TITLES[metric], fontsize=10)
        ax.set_ylim(-0.45, 1.05)
        ax.grid(alpha=0.3)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image  # a palette keeps each plot small
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=256).save(path, optimize=True)


# ---- comparison with the paper ----------------------------------------------------------------------------------
def first_below(md, metric, t=THRESHOLD):
    for k, s in enumerate(md["steps"]):
        if mean(s[metric]) is not None and s[metric]["mean"] < t:
            return k
    return None


def input_mult_row(finding, md, labels):
    """IG / Gradient⊙Input: similar in absolute value (spearman_abs and ssim >= threshold after the
    first step) while the signed Spearman drops at once (more than 0.2 below spearman_abs)."""
    s0, sl = md["steps"][0], md["steps"][-1]
    sa, ss, sg = mean(s0["spearman_abs"]), mean(s0["ssim"]), mean(s0["spearman"])
    high_abs, high_ssim = sa >= THRESHOLD, ss >= THRESHOLD
    drop = sg < sa - 0.2
    if high_abs and high_ssim and drop:
        v = "match"
    elif high_abs and drop:
        v = "partial: spearman_abs stays high and the signed Spearman drops at once, but ssim is below the threshold"
    elif drop:
        v = "partial: the signed Spearman drops at once, but spearman_abs and ssim are not high"
    elif high_abs:
        v = "partial: spearman_abs stays high, but the signed Spearman does not drop more"
    else:
        v = "no match"
    return (finding, f"after the first step ({labels[0]}): spearman_abs {sa:.3f}, ssim {ss:.3f}, signed spearman {sg:.3f}; "
            f"last step: spearman_abs {mean(sl['spearman_abs']):.3f}, ssim {mean(sl['ssim']):.3f}, "
            f"signed {mean(sl['spearman']):.3f}", v)


def compare_with_paper(mr, labels, supp=None):
    """Rows (finding, what we measured, verdict), decided by stated rules on the means."""
    rows = []
    n = len(labels)
    last = n - 1

    def final(m, metric):
        md = mr["methods"].get(m)
        return mean(md["steps"][-1][metric]) if md else None

    for m in ("saliency", "gradcam"):
        sa, ss = final(m, "spearman_abs"), final(m, "ssim")
        if sa is None or ss is None:
            continue
        ok = sa < THRESHOLD and ss < THRESHOLD
        rows.append((f"{PAPER_NAMES[m]} passes (its map changes once the model is randomized)",
                     f"last step: spearman_abs {sa:.3f}, ssim {ss:.3f}; first step below {THRESHOLD} "
                     f"(spearman_abs): {labels[first_below(mr['methods'][m], 'spearman_abs')] if first_below(mr['methods'][m], 'spearman_abs') is not None else 'never'}",
                     "match" if ok else "no match"))
    for m in ("guided_backprop", "guided_gradcam"):
        md = mr["methods"].get(m)
        if not md:
            continue
        k = first_below(md, "spearman_abs")
        s1 = mean(md["steps"][0]["spearman_abs"])
        where = labels[k] if k is not None else "never"
        # the paper: similar "until the lowest layers": the drop below the threshold comes only in the last two steps
        if k is None:
            v = "partial: stays similar to the end (the paper sees a late drop)"
        elif k >= last - 1:
            v = "match"
        elif k == 0:
            v = "no match: changes at once"
        else:
            v = f"partial: similar for the first {k} step(s) only"
        rows.append((f"{PAPER_NAMES[m]} stays similar until the lowest layers",
                     f"spearman_abs after the first step {s1:.3f}; first step below {THRESHOLD}: {where} "
                     f"(step {k + 1 if k is not None else '-'} of {n}); last step {final(m, 'spearman_abs'):.3f}", v))
    for m in ("integrated_gradients", "grad_x_input"):
        md = mr["methods"].get(m)
        if md:
            rows.append(input_mult_row(f"{PAPER_NAMES[m]}: spearman_abs and ssim stay high while the signed Spearman "
                                       "drops at once", md, labels))
    for key, title, _ in SUPPLEMENTARY:
        if key in (supp or {}):
            md = supp[key][0]["sanity"]["model_randomization"]["methods"].get("integrated_gradients")
            if md:
                rows.append(input_mult_row(f"(same finding, supplementary run) {title}", md, labels))
    return rows


# ---- the document ------------------------------------------------------------------------------------------------
def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def model_fit_rows(staged):
    rows = []
    for name, info in staged.items():
        if not info:
            continue
        mt = info.get("metrics") or {}
        rows.append((f"`{name}`", "models/", f"{mt.get('test_accuracy', float('nan')) * 100:.2f}%" if mt else "n/a",
                     f"{mt.get('train_accuracy_on_fit_labels', float('nan')) * 100:.2f}% (true labels)" if mt else "n/a",
                     mt.get("epochs", "n/a")))
        if info.get("twin_dir"):
            tm = info.get("twin_metrics") or {}
            src = f"`{rel(info['twin_dir'])}` (**interim**)" if info.get("twin_interim") else "models/"
            rows.append((f"`{info['twin']}` (twin)", src,
                         f"{tm['test_accuracy'] * 100:.2f}%" if tm else "n/a",
                         f"{tm['train_accuracy_on_fit_labels'] * 100:.2f}% (permuted labels)" if tm else "n/a",
                         f"{tm.get('epochs', 'n/a')} of {tm.get('config', {}).get('epochs', '?')} max" if tm else "n/a"))
        elif info.get("twin"):
            rows.append((f"`{info['twin']}` (twin)", "missing", "-", "-", "-"))
    return rows


def write_doc(args, staged, index, runs, costs, t_total, cpu_total, started, figs):
    L = []
    w = L.append
    cmd = args.command
    w("# Sanity checks for saliency maps, reproduced on Fashion-MNIST")
    w("")
    w("<!-- generated by tests/sanity_report/make_report.py (`make sanity-report`); do not edit by hand -->")
    w("")
    w("Adebayo et al. 2018, *Sanity Checks for Saliency Maps* (NeurIPS), propose two tests that an "
      "explanation method must pass to be trusted: its maps must change when the model's parameters are "
      "randomized (model-parameter randomization, §3.1) and when the model is retrained on permuted labels "
      "(data randomization, §3.2). This page runs both with explaind's own implementation "
      "(`engine/sanity/`, the `/v1/models/{model}/sanity` route and `explaind sanity`) on 100 "
      "Fashion-MNIST test images and compares the outcome with the paper's findings.")
    w("")
    interim = [i for i in staged.values() if i and i.get("twin_interim")]
    if interim:
        tm = interim[0].get("twin_metrics") or {}
        w(f"> **Interim label-randomized twin.** The label-randomization numbers below come from an interim "
          f"export of `{interim[0]['twin']}` taken from its training checkpoint "
          f"(epoch {tm.get('epochs', '?')}, fitting {tm.get('train_accuracy_on_fit_labels', float('nan')) * 100:.2f}% of its "
          f"permuted training labels; the recipe stops at 95%), not from the shipped model. They will be regenerated "
          f"with the final twin by re-running `make sanity-report` once `models/{interim[0]['twin']}.onnx` is in the "
          f"repository. Everything else on this page does not depend on the twin.")
        w("")
    w("## How this page was made")
    w("")
    w(f"- **Date:** {started:%Y-%m-%d} (run started {started:%H:%M} UTC).")
    w(f"- **Command:** `{cmd}` (runs `{rel(Path(__file__))}`); the explaind invocations it made are listed under "
      f"[Runs](#runs).")
    w(f"- **Runtime:** {t_total / 60:.1f} min wall clock for the whole report ({cpu_total / 60:.1f} min of CPU in "
      f"explaind), on a {os.cpu_count()}-core {platform.machine()} VM{cpu_model()} whose load "
      f"average was {args.load_at_start} at the start; explaind runs with one thread"
      + (f". {args.note}" if args.note else "") + ". Wall times on an idle machine are closer to the CPU times.")
    w(f"- **explaind:** commit `{args.commit}`.")
    sel = (f"the first {args.per_class} test images of each class, in dataset order" if not args.limit else
           f"the first {args.limit} of the first {args.per_class} test images of each class (smoke run)")
    idx = ", ".join(str(e["test_index"]) for e in index)
    w(f"- **Images:** {len(index)} Fashion-MNIST test images ({sel}; `/usr/share/datasets/fashion-mnist`, "
      f"exported as 28×28 gray PNGs by `tests/data/make_fashion_pngs.py`). Test indices: "
      f"<details><summary>{len(index)} indices</summary>{idx}</details>")
    w("- **Methods:** " + ", ".join(f"`{m}` ({PAPER_NAMES[m]})" for m in METHODS) +
      ", with the service's defaults (integrated gradients: 50 Gauss-Legendre steps from the zero tensor; "
      "SmoothGrad: 25 samples, noise 0.15 of the input range; Grad-CAM at the sidecar's `cam_layer`), "
      f"explaining the model's top-1 class, `seed={SEED}`.")
    w("- **Randomization:** `sanity_layers=groups` (the sidecar's `randomization_groups`: one step per layer, "
      "the CBAM block of fashion-cnn as one step), `sanity_init=default` (PyTorch's default initializer for "
      "the layer kind, as Quantus; the paper drew from a truncated normal), `sanity_target=fixed` (the original "
      "class is explained on the randomized model, as Quantus). Cascading: the randomized layers stay "
      "randomized; top-down starts at the logits (the paper's order), bottom-up at the input (Hedström et al. "
      "2023, Binder et al. 2023).")
    w("- **Similarities** (formulas in `engine/sanity/metrics.h`, checked against scipy/skimage in `make test`): "
      "`spearman_abs` (Spearman rank correlation of the absolute-value maps, normalized as the authors' code), "
      "`spearman` (of the signed, diverging-normalized maps), `ssim` (of min-max-normalized maps) and `hog` "
      "(Spearman of HOG vectors). Each value is the mean ± sample std over the images. `passed` applies the "
      f"service's criterion to the means: spearman_abs < {THRESHOLD} and ssim < {THRESHOLD} at the last step.")
    w("- **Verdict rule** (the service's; `sanity_order` in openapi.yaml): with the cascading orders a method "
      "passes when spearman_abs and ssim are below the thresholds at the last step, where every group is "
      "randomized. With `sanity_order=independent` each step randomizes one group alone, so the method passes "
      "only when both are below the thresholds at every step; it fails on the first step at or above one (its "
      "map did not change when that group alone was re-initialized; the verdict names the group), and is "
      "undecided when no step failed but a similarity was undefined. The `/sanity` report applies the rule to "
      "the mean similarities of each step. This page runs the cascading orders.")
    w("")
    w("### Models")
    w("")
    w(table(["model", "from", "test accuracy (true labels)", "training accuracy (fitted labels)", "epochs"],
            model_fit_rows(staged)))
    w("")
    if not staged.get("fashion-paper-cnn"):
        w("**The paper's own CNN is absent.** `fashion-paper-cnn` (conv5×5-32 → maxpool → conv5×5-64 → maxpool → "
          "FC1024 → FC10, Adam, weight decay 1e-3) and its random-label twin `fashion-paper-cnn-randlabels` "
          "(Adam lr 1e-4, batch 50, up to 100 epochs or 95% training fit) are configured in `models/train.py` but "
          "have not been trained: that costs CPU time this project has not spent yet. Measured on 2026-11-23 on this "
          "2-core VM, one Adam step of the 3.27 M-parameter network on a batch of 50 took about 0.28 s on one "
          "(shared) core, so one epoch is about 6 minutes and the pair (20 + up to 100 epochs) about 12 hours. "
          "This page therefore reports fashion-cnn only; `make sanity-report` adds the paper's CNN by itself "
          "once `models/fashion-paper-cnn.onnx` (and its twin) exist. Nothing here stands in for it.")
        w("")
    elif not staged["fashion-paper-cnn"].get("twin_dir"):
        w("**The paper's CNN is here; its random-label twin is not.** `fashion-paper-cnn-randlabels` (Adam lr 1e-4, "
          "batch 50, up to 100 epochs or 95% training fit) is configured in `models/train.py` but not trained yet, "
          "so the paper's CNN has the model-randomization results below and no label-randomization table (its "
          "sidecar names no twin, and the check says so rather than being faked).")
        w("")
    for name, info in staged.items():
        if not info:
            continue
        td = runs[name]["cascading_top_down"][0]["sanity"]
        mr_td = td["model_randomization"]
        labels_td = step_labels(mr_td)
        w(f"## {name}: model-parameter randomization")
        w("")
        for order, oname in ORDERS:
            doc = runs[name][order][0]
            mr = doc["sanity"]["model_randomization"]
            labels = step_labels(mr)
            w(f"### Cascading {oname}")
            w("")
            w("Steps: original → " + " → ".join(f"`{l}`" for l in labels) + " (each step randomizes one more layer; "
              "the last has every layer randomized).")
            w("")
            w(f"![{name} cascading {oname}](sanity/{figs[(name, order)]})")
            w("")
            w("*Mean ± std over the images of each similarity between the original map and the map after each step. "
              "Dashed: the pass threshold; dotted: the floor (original map vs a random Gaussian map).*")
            w("")
            rows = []
            for m in METHODS:
                md = mr["methods"].get(m)
                if not md:
                    continue
                s = md["steps"][-1]
                rows.append((PAPER_NAMES[m], ms(s["spearman_abs"]), ms(s["spearman"]), ms(s["ssim"]), ms(s["hog"]),
                             f"{md['entropy_rise']['mean']:+.3f}" if md["entropy_rise"].get("mean") is not None else "n/a",
                             verdict_cell(md)))
            w("At the last step (every layer randomized):")
            w("")
            w(table(["method", "spearman_abs", "spearman", "ssim", "hog", "entropy rise", "verdict"], rows))
            w("")
            w("<details><summary>Per-step means</summary>")
            w("")
            for metric in METRICS:
                rows = []
                for m in METHODS:
                    md = mr["methods"].get(m)
                    if md:
                        rows.append([PAPER_NAMES[m]] + [f"{mean(s[metric]):.3f}" if mean(s[metric]) is not None else "n/a"
                                                        for s in md["steps"]])
                w(f"`{metric}`:")
                w("")
                w(table(["method"] + labels, rows))
                w("")
            w("</details>")
            w("")
        w(f"## {name}: label (data) randomization")
        w("")
        lr = td["sanity"].get("label_randomization") if "sanity" in td else td.get("label_randomization")
        lr = runs[name]["cascading_top_down"][0]["sanity"].get("label_randomization")
        if not lr or lr.get("status") != "ok":
            w(f"Unavailable: {lr.get('reason') if lr else 'not run'}. The check is never faked.")
            w("")
        else:
            tm = info.get("twin_metrics") or {}
            fit = (f"fits {tm['train_accuracy_on_fit_labels'] * 100:.2f}% of its permuted training labels and "
                   f"scores {tm['test_accuracy'] * 100:.2f}% on the true test labels, after {tm.get('epochs')} epochs"
                   if tm else "fit unknown (no metrics file)")
            w(f"The same methods, images and target class on the twin `{lr['twin']}`, trained on permuted labels "
              f"({fit}{'; **interim**, see the note at the top' if info.get('twin_interim') else ''}). "
              f"A method that explains what the model learned must give different maps on the twin.")
            w("")
            rows = []
            for m in METHODS:
                v = lr["methods"].get(m)
                if v:
                    rows.append((PAPER_NAMES[m], ms(v["spearman_abs"]), ms(v["spearman"]), ms(v["ssim"]), ms(v["hog"]),
                                 verdict_cell(v)))
            w(table(["method", "spearman_abs", "spearman", "ssim", "hog", "verdict"], rows))
            w("")
            rows = []
            for m, paper_changes in (("saliency", True), ("gradcam", True), ("guided_backprop", False),
                                     ("guided_gradcam", False)):
                v = lr["methods"].get(m)
                if not v or v.get("passed") is None:
                    continue
                ours = "changes" if v["passed"] else "stays similar"
                verdict = "match" if v["passed"] == paper_changes else "no match"
                if info.get("twin_interim"):
                    verdict += " (provisional: interim twin)"
                rows.append((PAPER_NAMES[m], "changes" if paper_changes else "stays similar",
                             f"{ours} (spearman_abs {v['spearman_abs']['mean']:.3f}, ssim {v['ssim']['mean']:.3f})", verdict))
            if rows:
                w("The paper reports that Gradient and Grad-CAM maps change on the random-label model while Guided "
                  "BackProp and Guided Grad-CAM stay similar to the original ones:")
                w("")
                w(table(["method", "paper", "here (means)", "verdict"], rows))
                w("")
            if tm and tm.get("train_accuracy_on_fit_labels", 1) < 0.5:
                w(f"A twin that fits only {tm['train_accuracy_on_fit_labels'] * 100:.1f}% of its labels is little more "
                  "than a barely trained network: low similarities here say that the real model's maps depend on "
                  "its training, not yet that they are insensitive to a *memorizing* twin as in the paper.")
                w("")
        w(f"## {name}: floor and edge similarity")
        w("")
        w("**Floor.** The original map against a seeded random Gaussian map of the same shape: what \"no "
          "similarity left\" looks like (the paper's calibration, about 0.001 for its rank correlations). "
          "From the top-down run:")
        w("")
        rows = []
        for m in METHODS:
            md = mr_td["methods"].get(m)
            if md:
                f = md["floor"]
                rows.append((PAPER_NAMES[m], ms(f["spearman_abs"]), ms(f["spearman"]), ms(f["ssim"]), ms(f["hog"])))
        w(table(["method", "spearman_abs", "spearman", "ssim", "hog"], rows))
        w("")
        w("**Edge similarity.** Spearman (`edge_spearman`, on absolute values) and SSIM (`edge_ssim`) of a map against "
          "the Sobel edge map of the input, the model-free reference of the paper: a method whose maps stay as "
          "edge-like after randomization as before behaves like an edge detector.")
        w("")
        rows = []
        lr_methods = (lr or {}).get("methods", {}) if lr and lr.get("status") == "ok" else {}
        for m in METHODS:
            md = mr_td["methods"].get(m)
            if not md:
                continue
            oe = md.get("original_edge", {})
            rows.append((PAPER_NAMES[m], ms(oe.get("edge_spearman")), ms(oe.get("edge_ssim")),
                         ms(md["steps"][0]["edge_spearman"]), ms(md["steps"][-1]["edge_spearman"]),
                         ms(runs[name]["cascading_bottom_up"][0]["sanity"]["model_randomization"]["methods"][m]["steps"][0]["edge_spearman"]),
                         ms(lr_methods[m]["edge_spearman"]) if m in lr_methods else "n/a"))
        w(table(["method", "original: edge_spearman", "original: edge_ssim",
                 f"top-down after `{labels_td[0]}`", "all randomized", "bottom-up after the first layer", "twin"], rows))
        w("")
        if runs[name].get("supp"):
            w(f"## {name}: input-multiplied methods against a black reference (supplementary)")
            w("")
            w("Gradient⊙Input and Integrated Gradients multiply by the input, or by the input minus the baseline. With "
              "the sidecar's normalization `(x/255 − 0.286)/0.353` the zero tensor (IG's default baseline) is a gray "
              "image and the black background of a Fashion-MNIST image is −0.81, not 0, so unlike in the paper's "
              "[0, 1] inputs the multiplication does not blank the background. These cascading top-down runs take "
              "the black image as the reference instead (`baseline=black`), which blanks it:")
            w("")
            rows = []
            for key, title, extra in SUPPLEMENTARY:
                doc, meta = runs[name]["supp"][key]
                md = doc["sanity"]["model_randomization"]["methods"]["integrated_gradients"]
                for metric in ("spearman_abs", "ssim", "spearman"):
                    rows.append([title if metric == "spearman_abs" else "", f"`{metric}`"] +
                                [f"{mean(st[metric]):.3f}" if mean(st[metric]) is not None else "n/a" for st in md["steps"]])
            w(table(["run", "similarity"] + labels_td, rows))
            w("")
            w("Parameters: " + "; ".join(f"{title}: `{' '.join(extra)}`" for _, title, extra in SUPPLEMENTARY) + ".")
            w("")
        w(f"## {name}: comparison with the paper")
        w("")
        w("The paper's findings for the cascading top-down test, and ours under the rules in the last column "
          f"(threshold {THRESHOLD} on the means; \"similar\" = spearman_abs ≥ {THRESHOLD}):")
        w("")
        w(table(["paper", "measured here (means over the images)", "verdict"], compare_with_paper(mr_td, labels_td, runs[name].get("supp"))))
        w("")
    w("## Discussion")
    w("")
    w(discussion(runs, staged))
    w("")
    w("## Runs")
    w("")
    rows = []
    for name in runs:
        for order in [o for o, _ in ORDERS] + list(runs[name]["supp"]):
            doc, meta = runs[name][order] if order in runs[name] else runs[name]["supp"][order]
            n_img = doc.get("images", 0)
            rows.append((f"`{' '.join(shlex.quote(a) for a in meta['argv'])}`", f"{meta['wall_s']:.0f} s",
                         f"{meta['cpu_s']:.0f} s", f"{meta['cpu_s'] * 1000 / max(1, n_img):.0f} ms"))
    w(table(["command", "wall", "CPU", "CPU per image"], rows))
    w("")
    if costs:
        w("**Cost.** One ordinary explain request per method on fashion-cnn (`explaind bench --methods`, median "
          "CPU ms per image, batch workspace 16). A sanity request repeats every method once per randomization "
          "step (6 here) plus once on the twin, so its cost is about 7× the sum; integrated gradients (50 "
          "steps, i.e. 50 forward and backward passes) and SmoothGrad (25 samples) dominate because each of "
          "their passes is repeated at every step. The cheap methods reuse the unchanged forward prefix of "
          "cascading top-down (`explain_run_from`); the batched ones (IG, SmoothGrad) run full passes.")
        w("")
        w(table(["method"] + [PAPER_NAMES[m] for m in METHODS],
                [["explain, CPU ms/image"] + [f"{costs.get(m, float('nan')):.1f}" for m in METHODS]]))
        w("")
    w("Raw aggregate documents (the `/sanity` route's report per model and order): "
      "[`docs/sanity/report.json`](sanity/report.json).")
    w("")
    w("## Reproduce it, or run it on your own model")
    w("")
    w("- `make sanity-report` regenerates this page (`SANITY_TWIN_DIR=DIR` takes the twins from DIR; "
      "`make sanity-report-smoke`, part of `make test`, runs the generator on 3 images).")
    w("- The same numbers from the service: `POST /v1/models/fashion-cnn/sanity` with the images and the "
      "parameters of the commands above (`methods`, `sanity=model,label`, `sanity_order`, `sanity_layers=groups`, "
      "`seed`), e.g. `curl -F image=@a.png -F image=@b.png -F methods=gradcam,saliency -F sanity=model,label "
      "-F sanity_layers=groups http://localhost:8080/v1/models/fashion-cnn/sanity`.")
    w("- **Built-in probe set.** Sent without any image, the request runs over the model's probe set, "
      "`models/probes/fashion-cnn/`: the first 2 Fashion-MNIST test images of each class (20 images, a subset of "
      "the 100 above), so `curl -X POST 'http://localhost:8080/v1/models/fashion-cnn/sanity?methods=gradcam'` "
      "works as it is. Any model gets one from a `probes/<name>/` folder next to its ONNX file "
      "(models/README.md).")
    w("")
    return "\n".join(L)


def discussion(runs, staged):
    """The discussion, with the numbers it rests on taken from the runs (fashion-cnn)."""
    name = "fashion-cnn"
    mr = runs[name]["cascading_top_down"][0]["sanity"]["model_randomization"]
    bu = runs[name]["cascading_bottom_up"][0]["sanity"]["model_randomization"]
    labels = step_labels(mr)
    M = mr["methods"]

    def st(m, k, metric, src=M):
        v = mean(src[m]["steps"][k][metric]) if m in src else None
        return "n/a" if v is None else f"{v:.2f}"

    def num(m, k, metric, src=M):
        return mean(src[m]["steps"][k][metric]) if m in src else None

    out = []
    gg0, gc0, gb0 = num("guided_gradcam", 0, "spearman_abs"), num("gradcam", 0, "spearman_abs"), num("guided_backprop", 0, "spearman_abs")
    text = (f"- *Grad-CAM and the global-average-pooling head.* fashion-cnn ends in GAP + one linear layer, so "
            f"Grad-CAM's channel weights are the linear layer's weights for the class (Grad-CAM equals CAM here): "
            f"randomizing the logits layer, the paper's first step, replaces them at once. Grad-CAM's spearman_abs "
            f"after `{labels[0]}` is {st('gradcam', 0, 'spearman_abs')}.")
    if None not in (gg0, gc0, gb0) and gg0 < THRESHOLD <= gb0:
        text += (f" Guided Grad-CAM multiplies guided backprop by the upsampled Grad-CAM map, and on a 28×28 input "
                 f"that 7×7 mask shapes much of the product: it drops with the mask ({st('guided_gradcam', 0, 'spearman_abs')}) "
                 f"although guided backprop alone stays at {st('guided_backprop', 0, 'spearman_abs')}. This is where "
                 f"we do not reproduce the paper's Guided Grad-CAM finding.")
    out.append(text)
    if "guided_backprop" in M:
        k = first_below(M["guided_backprop"], "spearman_abs")
        tops = sum(1 for i in range(len(labels) - 1) if num("guided_backprop", i, "spearman_abs") is not None and
                   num("guided_backprop", i, "spearman_abs") >= max(num(m, i, "spearman_abs") or -1 for m in M))
        top = tops == len(labels) - 1
        out.append(
            "- *Guided BackProp.* Its spearman_abs goes " + " → ".join(st("guided_backprop", i, "spearman_abs")
                                                                      for i in range(len(labels))) +
            " over " + " → ".join(f"`{l}`" for l in labels) +
            (f": it falls below {THRESHOLD} only at `{labels[k]}`." if k is not None else f": it never falls below {THRESHOLD}.") +
            (" Before the last step it is the method that keeps the most of its original map at every step, which is "
             "the paper's point: guided backprop largely reconstructs the input (Nie et al. 2018 explain why)." if top else
             f" It is the most similar method at {tops} of the {len(labels) - 1} steps before the last."))
    if "ig_black" in runs[name].get("supp", {}):
        ib = {"integrated_gradients": runs[name]["supp"]["ig_black"][0]["sanity"]["model_randomization"]["methods"]["integrated_gradients"]}
        gb = {"integrated_gradients": runs[name]["supp"]["gxi_black"][0]["sanity"]["model_randomization"]["methods"]["integrated_gradients"]}
        a, g = num("integrated_gradients", 0, "spearman_abs", ib), num("integrated_gradients", 0, "spearman", ib)
        pattern = a is not None and g is not None and a >= THRESHOLD and g < a - 0.2
        out.append(
            f"- *Integrated Gradients and Gradient⊙Input depend on the reference.* With the default zero-tensor baseline "
            f"(a gray image after normalization) IG's spearman_abs after `{labels[0]}` is {st('integrated_gradients', 0, 'spearman_abs')} "
            f"and Gradient⊙Input's {st('grad_x_input', 0, 'spearman_abs')}. Against the black image, which blanks the "
            f"background as the paper's [0, 1] inputs do, IG's spearman_abs goes "
            + " → ".join(st("integrated_gradients", i, "spearman_abs", ib) for i in range(len(labels))) +
            f" while its signed Spearman is {st('integrated_gradients', 0, 'spearman', ib)} after the first step, and "
            f"gradient ⊙ (input − black) has {st('integrated_gradients', 0, 'spearman_abs', gb)} "
            f"(signed {st('integrated_gradients', 0, 'spearman', gb)})"
            + (": the paper's pattern, so our default-baseline difference comes from the reference the input is "
               "measured against, not from the test. The absolute-value similarity of these methods is carried by "
               "the input they are multiplied by, not by the model."
               if pattern else ": the black reference does not bring back the paper's pattern either.")
            + f" SSIM stays lower than spearman_abs ({st('integrated_gradients', 0, 'ssim', ib)} for IG against black).")
    last_td = [num(m, -1, "spearman_abs") for m in METHODS if m in M]
    last_bu = [num(m, -1, "spearman_abs", bu["methods"]) for m in METHODS if m in M]
    diff = max((abs(x - y) for x, y in zip(last_td, last_bu) if x is not None and y is not None), default=0.0)
    first_bu = {m: num(m, 0, "spearman_abs", bu["methods"]) for m in METHODS if m in bu["methods"]}
    stay = [PAPER_NAMES[m] for m, v in first_bu.items() if v is not None and v >= THRESHOLD]
    out.append(
        "- *Top-down and bottom-up.* Both orders end at the same fully randomized network (same seed, same "
        f"re-initialized weights); their last-step spearman_abs means differ by at most {diff:.3g}"
        + (" (identical, as they must be)" if diff < 1e-9 else " (they should agree exactly: a bug to look into)") +
        ". Bottom-up randomizes the input-side layer first; after it, spearman_abs is "
        + ", ".join(f"{PAPER_NAMES[m]} {st(m, 0, 'spearman_abs', bu['methods'])}" for m in first_bu) +
        (f": every method is below {THRESHOLD} at once: randomizing the features every later layer reads "
         "changes every map (the order Hedström et al. 2023 and Binder et al. 2023 recommend)." if not stay else f"; still at or above {THRESHOLD}: {', '.join(stay)}."))
    rises = []
    for m in METHODS:
        if m not in M:
            continue
        o, l = mean(M[m].get("original_edge", {}).get("edge_spearman")), mean(M[m]["steps"][-1]["edge_spearman"])
        if o is not None and l is not None and l > o + 0.05:
            rises.append(f"{PAPER_NAMES[m]} {o:.2f} → {l:.2f}")
    # the service's per-image edge-detector rule (engine/sanity/sanity.c verdict), applied to the means
    edge_like = [PAPER_NAMES[m] for m in METHODS if m in M
                 and mean(M[m]["steps"][-1]["edge_spearman"]) is not None
                 and mean(M[m].get("original_edge", {}).get("edge_spearman")) is not None
                 and mean(M[m]["steps"][-1]["edge_spearman"]) >= 0.5
                 and abs(mean(M[m]["steps"][-1]["edge_spearman"]) - mean(M[m]["original_edge"]["edge_spearman"])) < 0.1]
    orig_edge = {m: mean(M[m].get("original_edge", {}).get("edge_spearman")) for m in METHODS if m in M}
    strong = [PAPER_NAMES[m] for m, v in orig_edge.items() if v is not None and v >= THRESHOLD]
    out.append(
        "- *Edges.* " + ("No method's trained-model map is strongly edge-like (`edge_spearman` of the original maps "
                         f"is below {THRESHOLD} for all)" if not strong else
                         f"The trained-model maps of {', '.join(strong)} are edge-like (`edge_spearman` ≥ {THRESHOLD})") +
        (", and no method keeps a high, unchanged edge similarity through the randomization, which "
                         "is the service's edge-detector rule (last-step edge_spearman ≥ 0.5 and within 0.1 of the original's), "
                         "applied here to the means" if not edge_like else
                         f"; by the service's edge-detector rule applied to the means, {', '.join(edge_like)} "
                         "behave like an edge detector") +
        (". The maps of the fully randomized network are *more* edge-like than the trained model's for "
         + ", ".join(rises) + ": a random network's gradients follow the input's contrast, which is the paper's "
         "edge-detector analogy seen from the other side." if rises else "."))
    paper = runs.get("fashion-paper-cnn")
    text = ("- *Model, initializer, target.* fashion-cnn is not the paper's network (BatchNorm folded into its "
            "convolutions, a CBAM attention block, a GAP head), the randomization uses PyTorch's default initializer "
            "rather than the paper's truncated normal, and the randomized model explains the original class "
            "(`sanity_target=fixed`). Each of these can move the curves; ")
    if not paper:
        text += "the paper's own CNN, once trained, will show by how much."
    else:
        P = paper["cascading_top_down"][0]["sanity"]["model_randomization"]
        pl, PM = step_labels(P), P["methods"]

        def fb(methods, lab, m):
            k = first_below(methods[m], "spearman_abs") if m in methods else None
            return f"`{lab[k]}` (step {k + 1} of {len(lab)})" if k is not None else "never"
        text += ("on the paper's own CNN (`fashion-paper-cnn`, same initializer and target) Guided BackProp's "
                 f"spearman_abs is {st('guided_backprop', 0, 'spearman_abs', PM)} after `{pl[0]}` and first falls below "
                 f"{THRESHOLD} at {fb(PM, pl, 'guided_backprop')} (fashion-cnn: {fb(M, labels, 'guided_backprop')}), "
                 f"Guided Grad-CAM's is {st('guided_gradcam', 0, 'spearman_abs', PM)} after `{pl[0]}` (fashion-cnn "
                 f"{st('guided_gradcam', 0, 'spearman_abs')}), and Integrated Gradients' "
                 f"{st('integrated_gradients', 0, 'spearman_abs', PM)} (fashion-cnn "
                 f"{st('integrated_gradients', 0, 'spearman_abs')}). Its comparison table above says which of the "
                 "paper's findings hold there.")
    out.append(text)
    fh = [mean(M[m]["floor"]["hog"]) for m in M if mean(M[m]["floor"]["hog"]) is not None]
    out.append(
        f"- *Thresholds.* The pass/fail column is the service's default criterion ({THRESHOLD} on the means), a choice "
        "of this project; the paper reads its curves by eye. The floor table shows what an unrelated map scores"
        + (f"; note the HOG similarity's floor of about {sum(fh) / len(fh):.2f}: HOG vectors share structure whatever "
           "the map, so HOG values near it mean no similarity." if fh and sum(fh) / len(fh) > 0.05 else "."))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("EXPLAIND_BIN", str(REPO / "build" / "explaind")))
    ap.add_argument("--models-dir", default=str(REPO / "models"))
    ap.add_argument("--twin-dir", default="", help="take the label-randomized twins from here (marked interim)")
    ap.add_argument("--work", default=str(REPO / os.environ.get("BUILD", "build") / "sanity-report"))
    ap.add_argument("--doc", default=str(REPO / "docs" / "SANITY.md"))
    ap.add_argument("--fig-dir", default=str(REPO / "docs" / "sanity"))
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0, help="only the first N selected images (smoke runs)")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--command", default="make sanity-report", help="the command recorded in the document")
    ap.add_argument("--no-bench", action="store_true", help="skip the per-method cost table")
    ap.add_argument("--note", default=os.environ.get("SANITY_REPORT_NOTE", ""),
                    help="a sentence on the machine's state recorded next to the runtime")
    args = ap.parse_args()
    started = datetime.datetime.utcnow()
    t0 = time.time()
    args.load_at_start = "%.1f" % os.getloadavg()[0]
    try:
        args.commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                                     text=True).stdout.strip() or "unknown"
    except OSError:
        args.commit = "unknown"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    images, index = export_images(work, args.per_class, args.limit, args.data_dir)
    log(f"{len(index)} images in {rel(images)}")
    staged = stage_models(work, Path(args.models_dir), Path(args.twin_dir) if args.twin_dir else None)
    if not staged.get("fashion-cnn"):
        raise SystemExit(f"{args.models_dir}/fashion-cnn.onnx is missing")
    runs, cpu_total = {}, 0.0
    for name, info in staged.items():
        if not info:
            log(f"{name}: not in {args.models_dir}, skipped (the document says so)")
            continue
        runs[name] = {}
        for order, oname in ORDERS:
            checks = "model,label" if order == "cascading_top_down" else "model"
            log(f"{name}: cascading {oname} ({checks}) ...")
            doc, meta = run_sanity(args.bin, info["path"], images, order, checks)
            cpu_total += meta["cpu_s"]
            log(f"{name}: cascading {oname}: {meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} s CPU")
            runs[name][order] = (doc, meta)
        runs[name]["supp"] = {}
        for key, title, extra in SUPPLEMENTARY:
            log(f"{name}: supplementary cascading top-down run: {title} ...")
            doc, meta = run_sanity(args.bin, info["path"], images, "cascading_top_down", "model",
                                   ["integrated_gradients"], extra)
            cpu_total += meta["cpu_s"]
            runs[name]["supp"][key] = (doc, meta)
    costs = {} if args.no_bench else bench_methods(args.bin, staged["fashion-cnn"]["path"])
    fig_dir = Path(args.fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = {}
    for name in runs:
        for order, oname in ORDERS:
            fn = f"{name}-{oname}.png"
            plot_curves(runs[name][order][0]["sanity"]["model_randomization"],
                        f"{name}: cascading {oname} randomization, {runs[name][order][0]['images']} images", fig_dir / fn)
            figs[(name, order)] = fn
    raw = {"date": f"{started:%Y-%m-%d}", "command": args.command, "commit": args.commit,
           "images": [e["test_index"] for e in index], "methods": METHODS,
           "runs": {name: {order: {"argv": meta["argv"], "wall_s": round(meta["wall_s"], 1),
                                   "cpu_s": round(meta["cpu_s"], 1), "report": doc}
                           for order, (doc, meta) in list(runs[name].items()) + list(runs[name]["supp"].items())
                           if order != "supp"} for name in runs}}
    with open(fig_dir / "report.json", "w") as f:
        json.dump(raw, f, separators=(",", ":"))
        f.write("\n")
    t_total = time.time() - t0
    text = write_doc(args, staged, index, runs, costs, t_total, cpu_total, started, figs)
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    with open(args.doc, "w") as f:
        f.write(text)
    size = sum(p.stat().st_size for p in fig_dir.iterdir())
    log(f"wrote {rel(args.doc)} and {rel(fig_dir)}/ ({size / 1024:.0f} KiB) in {t_total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
