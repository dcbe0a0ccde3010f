"""Deletion and insertion AUCs (`faithfulness=true`) against an independent NumPy implementation of
the causal metrics of Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of
Black-box Models" (BMVC), §4, with the parameters the API documents (engine/explain/faithfulness.c):

  pixels ranked by the method's 2-D map, highest first (ties: lower pixel index first), a map coarser
  than the input upsampled bilinearly first (half-pixel centres: torch F.interpolate,
  align_corners=False);
  S = faithfulness_steps; after step s the top round(s·HW/S) pixels (all channels) are changed:
    deletion:  from the input towards the substrate "black image" (the black pixel preprocessed),
    insertion: from the substrate "blurred input" (scipy gaussian_filter, σ = side/16, reflect,
               radius ⌈3σ⌉) towards the input;
  p_s = softmax(f(image_s))_c in float64 PyTorch on the ONNX weights, c the explained class;
  AUC = RISE's `auc(arr) = (arr.sum() − arr[0]/2 − arr[−1]/2) / (len(arr) − 1)` over p_0..p_S.

The map ranked is the engine's own returned map (what the AUCs are about); everything after the
ranking is computed here. Tolerance 1e-5 (float32 logits in the engine; measured: below 2e-7), 1e-4
for an upsampled Grad-CAM map (float32 vs float64 bilinear weights could order nearly equal pixels
differently; measured: below 1e-7)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

import mc_engine as E
import mc_reference as R
from conftest import get_case, record_property


def substrate_black(c):
    return R.baseline("black", c.model, c.x).astype(np.float64)


def substrate_blur(x):
    x = np.asarray(x, np.float64)[0]
    sigma = max(x.shape[1:]) / 16.0
    return np.stack([gaussian_filter(ch, sigma, mode="reflect", truncate=math.ceil(3 * sigma) / sigma) for ch in x])[None]


def rise_auc(arr):
    arr = np.asarray(arr, np.float64)
    return (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)


def probabilities(om, images, target, batch=32):
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            logits = om.run(torch.as_tensor(np.concatenate(images[s:s + batch]), dtype=om.dtype))["output"]
            out.append(torch.softmax(logits.to(torch.float64), 1)[:, target].numpy())
    return np.concatenate(out)


def causal_aucs(c, key, steps):
    x = np.asarray(c.x, np.float64)
    C, H, W = x.shape[1:]
    if key.shape != (H, W):
        key = F.interpolate(torch.as_tensor(key, dtype=torch.float64)[None, None], size=(H, W), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
    order = np.argsort(-key.ravel(), kind="stable")
    black, blur = substrate_black(c), substrate_blur(x)
    dele, ins = [], []
    for s in range(steps + 1):
        k = int(math.floor(s * H * W / steps + 0.5))
        top = np.zeros(H * W, bool)
        top[order[:k]] = True
        top = top.reshape(1, 1, H, W)
        dele.append(np.where(top, black, x))
        ins.append(np.where(top, x, blur))
    pd = probabilities(c.om, dele, c.target)
    pi = probabilities(c.om, ins, c.target)
    return rise_auc(pd), rise_auc(pi), pd, pi


@pytest.mark.parametrize("steps", [20, 7])
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
@pytest.mark.parametrize("name", ["fashion-cnn", "resnet18"])
def test_deletion_insertion_auc_against_numpy(png_dir, engine, name, method, steps):
    c = get_case(name, png_dir)
    d = engine.get(c.model, c.png, method, "raw", target=c.target, faithfulness="true", faithfulness_steps=steps)
    e = d["explanations"][method]
    f = e["faithfulness"]
    assert f["steps"] == steps
    key = np.asarray(E.raw(d, method), np.float64)
    dele, ins, pd, pi = causal_aucs(c, key, steps)
    tol = 1e-5 if key.shape == np.asarray(c.x).shape[2:] else 1e-4
    record_property(f"faithfulness {method} S={steps}: |deletion − numpy|, |insertion − numpy|", c.name,
                    [abs(f["deletion_auc"] - dele), abs(f["insertion_auc"] - ins)],
                    abs(f["deletion_auc"] - dele) <= tol and abs(f["insertion_auc"] - ins) <= tol)
    assert abs(f["deletion_auc"] - dele) <= tol, (f, dele, pd)
    assert abs(f["insertion_auc"] - ins) <= tol, (f, ins, pi)
    # the curves have their ends where the definition puts them: the whole input at one end
    p_x = float(torch.softmax(torch.as_tensor(c.logits), 0)[c.target])
    assert pd[0] == pytest.approx(p_x, rel=1e-9) and pi[-1] == pytest.approx(p_x, rel=1e-9)


def test_the_reference_sees_the_ranking(png_dir, engine):
    """The AUCs depend on the order: ranking by the reversed map gives other numbers than the
    engine's, so the comparison above is not satisfied by any ranking."""
    c = get_case("fashion-cnn", png_dir)
    d = engine.get(c.model, c.png, "saliency", "raw", target=c.target, faithfulness="true", faithfulness_steps=20)
    f = d["explanations"]["saliency"]["faithfulness"]
    dele, ins, _, _ = causal_aucs(c, -np.asarray(E.raw(d, "saliency"), np.float64), 20)
    assert abs(f["deletion_auc"] - dele) > 0.01 or abs(f["insertion_auc"] - ins) > 0.01, (f, dele, ins)
