"""The sanity options against a PyTorch loop that does the same randomization on the same weights
(issue 16): sanity_order (independent, cascading_bottom_up), sanity_init=normal, sanity_target=argmax,
sanity_noise_samples and random_logit, on fashion-cnn with saliency and gradient x input.

The loop does not read the engine's randomized weights: it re-draws them from the documented
initializers (engine/sanity/randomize.c's header, openapi.yaml):
  default  PyTorch's reset_parameters: W, b ~ U(−1/√fan_in, 1/√fan_in) (kaiming_uniform_(a=√5) and
           the bias rule); fan_in = C/groups·kh·kw (Conv), in_features (Gemm);
  normal   N(0, σ²) truncated at ±2σ (redrawn beyond), σ = sanity_init_std, weights then biases;
with the engine's random numbers (mc_rng.py, the published xoshiro256** definition): the stream of a
layer is (seed, 0x5a417100 + its node index in `explaind inspect`), the first layer reading a weight
initializer lending its stream to the others (CBAM's shared MLP), weights drawn in their ONNX storage
order, then the bias. Then, in float64 PyTorch on the ONNX graph with those weights:
  - the map at each step: the method's attribution for the explained class (the original top-1;
    with sanity_target=argmax the randomized model's own top-1, which must be the step's `target`);
  - with sanity_noise_samples = N: every compared map (the original too) is the mean over N copies of
    the input, x + N(0, (0.1·(max − min))²) for the first N − 1 (stream 0x53d0, the same copies for
    every step) and the input itself last;
  - random_logit: the class drawn as u64 mod (K − 1) from stream 0x10917, skipping the target;
  - similarities from metrics.h's definitions: spearman_abs = Spearman (scipy rankdata, numpy
    corrcoef) of PAIR's VisualizeImageGrayscale (Σ_c |a|, clipped at its 99th percentile),
    ssim = skimage structural_similarity (Gaussian σ 1.5, sample covariance, data_range 1) of that
    map min-max normalized;
and every step's spearman_abs and ssim must equal the engine's within 2e-4 (measured: below 1e-5).
As a check that the loop can tell: the other initializer's weights give other numbers.
"""
import re
import subprocess

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

import mc_engine as E
import mc_reference as R
import mc_rng
from conftest import get_case, record_property

TOL = 2e-4
METHODS = ("saliency", "grad_x_input")


# ---- the metrics (metrics.h definitions, library calls doing the work) ----------------------------------
def norm_abs(a):
    m = np.abs(np.asarray(a, np.float64)).sum(0)
    vmin, vmax = m.min(), np.percentile(m, 99)
    return np.clip((m - vmin) / (vmax - vmin), 0, 1)


def spearman(a, b):
    return float(np.corrcoef(rankdata(a.ravel()), rankdata(b.ravel()))[0, 1])


def gray(A):
    g = (A - A.min()) / (A.max() - A.min())
    return np.round(g * 2.0 ** 40) / 2.0 ** 40


def similarity(a, b):
    A, B = norm_abs(a), norm_abs(b)
    return {"spearman_abs": spearman(A, B),
            "ssim": float(structural_similarity(gray(A), gray(B), gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=True, data_range=1))}


# ---- the model, its layers and their re-initialization -------------------------------------------------
class Randomizer:
    def __init__(self, case):
        self.c = case
        self.om = case.om
        self.orig = dict(self.om.consts)
        out = subprocess.run([str(E.EXPLAIND), "inspect", str(case.model.onnx)], capture_output=True, text=True,
                             check=True).stdout
        self.index = {m.group(2): int(m.group(1)) for m in re.finditer(r"^(\d+)\s+(\S+)\s", out, re.M)}
        self.nodes = {n.name: n for n in self.om.nodes}
        self.cache = {}

    def params(self, name):
        n = self.nodes[name]
        return n.input[1], (n.input[2] if len(n.input) > 2 and n.input[2] else None)

    def stream_node(self, name):
        w = self.params(name)[0]
        return min(self.index[k] for k, n in self.nodes.items()
                   if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] == w and k in self.index)

    def fan_in(self, name):
        n = self.nodes[name]
        w = self.orig[self.params(name)[0]]
        if n.op_type == "Conv":
            return int(np.prod(w.shape[1:]))
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        return int(w.shape[1] if trans_b else w.shape[0])

    def draw(self, name, init, std, seed):
        key = (name, init, std, seed)
        if key not in self.cache:
            wname, bname = self.params(name)
            r = mc_rng.Rng(seed, mc_rng.STREAM_REINIT + self.stream_node(name))
            bound = 1.0 / np.sqrt(self.fan_in(name))

            def one():
                if init == "normal":
                    while True:
                        v = std * r.normal()
                        if abs(v) <= 2 * std:
                            return v
                return (2 * r.uniform() - 1) * bound
            out = {}
            for pname in (wname, bname):
                if pname:
                    shape = tuple(self.orig[pname].shape)
                    out[pname] = np.array([one() for _ in range(int(np.prod(shape)))], np.float32).reshape(shape)
            self.cache[key] = out
        return self.cache[key]

    def set(self, layers, init="default", std=0.01, seed=0):
        self.om.consts = dict(self.orig)
        for name in layers:
            for pname, v in self.draw(name, init, float(np.float32(std)), seed).items():
                self.om.consts[pname] = torch.as_tensor(v.astype(np.float64), dtype=self.om.dtype)

    def reset(self):
        self.om.consts = dict(self.orig)


@pytest.fixture(scope="module")
def case(png_dir):
    return get_case("fashion-cnn", png_dir)


@pytest.fixture(scope="module")
def rnd(case):
    r = Randomizer(case)
    yield r
    r.reset()


def attribution(om, x, method, target):
    return R.saliency(om, x, target) if method == "saliency" else R.grad_x_input(om, x, target)


def noisy_copies(x, seed, n):
    if n <= 0:
        return [x]
    x = np.asarray(x, np.float32)
    sigma = 0.1 * float(np.float32(x.max()) - np.float32(x.min()))
    r = mc_rng.Rng(seed, mc_rng.STREAM_SMOOTH_MPRT)
    out = [(x + (sigma * r.normals(x.size)).astype(np.float32).reshape(x.shape)).astype(np.float32) for _ in range(n - 1)]
    return out + [x]


def compared_map(om, xs, method, target):
    return np.mean([attribution(om, xi, method, target) for xi in xs], axis=0)


def top1(om, x):
    return int(np.argmax(R.logits(om, x)[0]))


def engine_sanity(case, **params):
    d = E.run(case.model, case.png, ",".join(METHODS), "raw", target=case.target, **params)
    return d["sanity"]


def check_steps(case, rnd, mr, steps, init="default", std=0.01, seed=0, noise=0, argmax=False, label=""):
    """steps: the layers randomized at each step. Compares every step and method; returns the worst error."""
    xs = noisy_copies(case.x, seed, noise)
    rnd.reset()
    orig = {m: compared_map(rnd.om, xs, m, case.target) for m in METHODS}
    worst = 0.0
    try:
        for k, layers in enumerate(steps):
            rnd.set(layers, init, std, seed)
            target = top1(rnd.om, case.x) if argmax else case.target
            for m in METHODS:
                got = mr["methods"][m]["steps"][k]
                assert got["target"] == target, f"{label} step {k + 1} ({layers[-1]}): target {got['target']} != {target}"
                want = similarity(orig[m], compared_map(rnd.om, xs, m, target))
                for key in ("spearman_abs", "ssim"):
                    err = abs(got[key] - want[key])
                    worst = max(worst, err)
                    assert err <= TOL, (f"{label} {m} step {k + 1} ({layers}): {key} engine {got[key]:.6f}, "
                                        f"PyTorch loop {want[key]:.6f}")
    finally:
        rnd.reset()  # the shared float64 model serves the other tests: its own weights again
    return worst


def layer_names(mr):
    return [s["randomized"] for s in mr["steps"]]


# ---- the tests -----------------------------------------------------------------------------------------
def test_independent_order_is_one_layer_at_a_time(case, rnd):
    mr = engine_sanity(case, sanity="model", sanity_order="independent", sanity_layers="all", seed=3)["model_randomization"]
    groups = layer_names(mr)
    assert len(groups) == 8 and all(len(g) == 1 for g in groups), groups
    # CBAM's shared MLP: '/cbam/channel/fc1/Conv' stands for both nodes reading its weight
    err = check_steps(case, rnd, mr, [g for g in groups], seed=3, label="independent")
    record_property("sanity independent (all layers) vs PyTorch loop: max |Δ|", case.name, err, err <= TOL)


def test_cascading_bottom_up_accumulates_from_the_input(case, rnd):
    mr = engine_sanity(case, sanity="model", sanity_order="cascading_bottom_up", sanity_layers="all",
                       seed=3)["model_randomization"]
    groups = [g[-1] for g in layer_names(mr)]
    assert groups[0] == "/conv1/conv/Conv" and groups[-1] == "/fc/Gemm", groups
    err = check_steps(case, rnd, mr, [groups[:k + 1] for k in range(len(groups))], seed=3, label="bottom-up")
    record_property("sanity cascading_bottom_up vs PyTorch loop: max |Δ|", case.name, err, err <= TOL)


def test_sanity_init_normal_draws_truncated_normal_weights(case, rnd):
    std, seed = 0.05, 1
    layers = "/conv2/conv/Conv,/conv4/conv/Conv,/fc/Gemm"
    mr = engine_sanity(case, sanity="model", sanity_order="independent", sanity_layers=layers, sanity_init="normal",
                       sanity_init_std=std, seed=seed)["model_randomization"]
    assert mr["init"] == "normal" and mr["init_std"] == pytest.approx(std)
    steps = layer_names(mr)
    err = check_steps(case, rnd, mr, steps, init="normal", std=std, seed=seed, label="normal")
    record_property("sanity sanity_init=normal vs PyTorch loop: max |Δ|", case.name, err, err <= TOL)
    # the weights the loop used are what the API documents: |w| <= 2σ, spread of a 2σ-truncated normal
    w = rnd.draw("/conv4/conv/Conv", "normal", float(np.float32(std)), seed)
    allw = np.concatenate([v.ravel() for v in w.values()]).astype(np.float64)
    assert np.abs(allw).max() <= 2 * std * (1 + 1e-6)
    assert abs(allw.std() / std - 0.8796) < 0.01  # std of N(0,1) truncated at ±2
    # and the loop tells the initializers apart: the default initializer's weights give other numbers
    base = R.saliency(case.om, case.x, case.target)
    try:
        rnd.set(steps[0], "default", std, seed)
        other = similarity(compared_map(rnd.om, [case.x], "saliency", case.target), base)
    finally:
        rnd.reset()
    got = mr["methods"]["saliency"]["steps"][0]
    assert abs(got["spearman_abs"] - other["spearman_abs"]) > 10 * TOL or abs(got["ssim"] - other["ssim"]) > 10 * TOL


def test_sanity_target_argmax_explains_the_randomized_models_own_class(case, rnd):
    seed = 2
    mr = engine_sanity(case, sanity="model", sanity_order="cascading_top_down", sanity_layers="groups",
                       sanity_target="argmax", seed=seed)["model_randomization"]
    assert mr["target"] == "argmax"
    # the sidecar's groups, listed top-down (the CBAM block is one group of five layers), cumulated
    cumulative, steps = [], []
    for g in case.model.sidecar["randomization_groups"]:
        cumulative = cumulative + list(g)
        steps.append(list(cumulative))
    assert [s[-1] for s in layer_names(mr)] == [g[0] for g in case.model.sidecar["randomization_groups"]]
    err = check_steps(case, rnd, mr, steps, seed=seed, argmax=True, label="argmax")
    targets = [s["target"] for s in mr["methods"]["saliency"]["steps"]]
    assert any(t != case.target for t in targets), f"every step kept the original class {case.target}: the test " \
                                                     f"cannot tell argmax from fixed (targets {targets})"
    record_property("sanity sanity_target=argmax vs PyTorch loop: max |Δ|", case.name, err, err <= TOL)


def test_sanity_noise_samples_average_over_noisy_copies(case, rnd):
    seed, n = 4, 3
    mr = engine_sanity(case, sanity="model", sanity_order="independent",
                       sanity_layers="/conv1/conv/Conv,/conv3/conv/Conv,/fc/Gemm", sanity_noise_samples=n,
                       seed=seed)["model_randomization"]
    err = check_steps(case, rnd, mr, layer_names(mr), seed=seed, noise=n, label="smooth MPRT")
    record_property("sanity sanity_noise_samples=3 vs PyTorch loop: max |Δ|", case.name, err, err <= TOL)
    # without the noise the numbers are others: the option does something
    plain = engine_sanity(case, sanity="model", sanity_order="independent",
                          sanity_layers="/conv1/conv/Conv,/conv3/conv/Conv,/fc/Gemm", seed=seed)["model_randomization"]
    a = [s["spearman_abs"] for s in mr["methods"]["saliency"]["steps"]]
    b = [s["spearman_abs"] for s in plain["methods"]["saliency"]["steps"]]
    assert max(abs(x - y) for x, y in zip(a, b)) > 10 * TOL, (a, b)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_logit_draws_another_class_and_compares_its_map(case, seed):
    s = engine_sanity(case, sanity="random_logit", seed=seed)["random_logit"]
    K = len(case.logits)
    other = mc_rng.Rng(seed, mc_rng.STREAM_RANDOM_LOGIT).u64() % (K - 1)
    other += other >= case.target
    assert s["other_class"] == other != case.target
    assert s["other_label"] == case.model.sidecar["labels"][other]
    for m in METHODS:
        got = s["methods"][m]
        assert got["target"] == other
        want = similarity(attribution(case.om, case.x, m, case.target), attribution(case.om, case.x, m, other))
        for key in ("spearman_abs", "ssim"):
            assert abs(got[key] - want[key]) <= TOL, (m, key, got[key], want[key])
