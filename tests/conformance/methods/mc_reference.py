"""Reference implementations of the explanation methods, written directly in PyTorch (autograd on
the ONNX graph's own weights, see mc_onnx.py), in float64. Each function states the formulation it
follows; the tests compare the engine's float32 output against these.

Captum and pytorch-grad-cam are not installed here; their formulas are re-derived below from their
documented definitions (quoted in each docstring), not imported.
"""
import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64


def t64(x):
    return torch.as_tensor(np.asarray(x), dtype=DT)


def tt(x, om):
    """x as a tensor of the reference model's dtype (float64, or float32 for forward-only methods)."""
    return torch.as_tensor(np.asarray(x), dtype=om.dtype)


def logits(om, x):
    with torch.no_grad():
        return om.run(tt(x, om))["output"].numpy()


def reduce_channels(attr, how="abs_sum"):
    """The engine's raw map of a C x H x W attribution (API.md `reduce`)."""
    a = np.asarray(attr, dtype=np.float64)
    if how == "abs_sum":
        return np.abs(a).sum(0)
    if how == "abs_max":
        return np.abs(a).max(0)
    if how == "sum":
        return a.sum(0)
    if how == "l2":
        return np.sqrt((a * a).sum(0))
    raise ValueError(how)


def input_grad(om, x, target, relu="plain"):
    """∂ logit_target / ∂x (relu: plain, guided, deconv ReLU backward rules)."""
    xt = tt(x, om).requires_grad_(True)
    out = om.run(xt, relu=relu)["output"]
    (g,) = torch.autograd.grad(out[0, target], xt)
    return g[0].numpy()


def layer_act_grad(om, x, target, layer):
    """(A, G): the layer's activation (K,h,w) and ∂ logit_target / ∂A, one backward pass."""
    xt = tt(x, om).requires_grad_(True)
    v = om.run(xt, keep=[layer])
    A = v[layer]
    (G,) = torch.autograd.grad(v["output"][0, target], A)
    return A[0].detach().numpy(), G[0].numpy()


def layer_value(om, x, layer):
    with torch.no_grad():
        return om.run(tt(x, om), keep=[layer])[layer][0].numpy()


# ---- gradient family ---------------------------------------------------------------------------------
def saliency(om, x, target):
    """Captum Saliency(abs=True): |∂y_c/∂x|."""
    return np.abs(input_grad(om, x, target))


def grad_x_input(om, x, target):
    """Captum InputXGradient: x ⊙ ∂y_c/∂x."""
    return np.asarray(x, np.float64)[0] * input_grad(om, x, target)


def guided_backprop(om, x, target):
    """Captum GuidedBackprop: ReLU backward = relu(grad_in) on every ReLU (Clip/ReLU6 keeps its rule)."""
    return input_grad(om, x, target, relu="guided")


def deconvnet(om, x, target):
    """Captum Deconvolution: ReLU backward = relu(grad_out) on every ReLU."""
    return input_grad(om, x, target, relu="deconv")


def ig_rule(method, n):
    """Captum captum.attr._utils.approximation_methods: (step_sizes, alphas).
    riemann_*: step sizes 1/n each (trapezoid: the first and last halved, so they sum to (n−1)/n),
    alphas left linspace(0, 1−1/n, n), right linspace(1/n, 1, n), middle linspace(1/(2n), 1−1/(2n), n),
    trapezoid linspace(0, 1, n); gausslegendre: 0.5·w and 0.5·(1+t) of numpy.polynomial.legendre.leggauss(n)."""
    if method == "gausslegendre":
        t, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * w, 0.5 * (1 + t)
    assert n > 1, "Captum: the number of steps has to be larger than one"
    steps = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        steps[0] /= 2
        steps[-1] /= 2
        return steps, np.linspace(0, 1, n)
    if method == "riemann_left":
        return steps, np.linspace(0, 1 - 1 / n, n)
    if method == "riemann_middle":
        return steps, np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    if method == "riemann_right":
        return steps, np.linspace(1 / n, 1, n)
    raise ValueError(method)


def integrated_gradients(om, x, x0, target, n, method, batch=64):
    """Captum IntegratedGradients: (x − x0) ⊙ Σ_i step_i ∂y_c/∂x (x0 + α_i (x − x0)).
    Returns (attribution, f(x), f(x0))."""
    steps, alphas = ig_rule(method, n)
    x = tt(x, om)
    x0 = tt(x0, om)
    tot = torch.zeros_like(x[0])
    for s in range(0, n, batch):
        a = tt(alphas[s:s + batch], om).view(-1, 1, 1, 1)
        pts = (x0 + a * (x - x0)).requires_grad_(True)
        out = om.run(pts)["output"]
        (g,) = torch.autograd.grad(out[:, target].sum(), pts)
        tot += (g * tt(steps[s:s + batch], om).view(-1, 1, 1, 1)).sum(0)
    attr = (tot * (x - x0)[0]).numpy()
    with torch.no_grad():
        f = om.run(torch.cat([x, x0]))["output"][:, target].numpy()
    return attr, f[0], f[1]


MAX_OPS = ("MaxPool", "GlobalMaxPool", "ReduceMax")


def ig_kink_candidates(om, x, x0, n, method, margin):
    """Kinks within `margin` x max|input of their node| at any IG path point, in float64, closest
    first: [(relative distance, point index, node name, unit)] where unit is a flat input index for
    Relu/Clip, and (output index, index of the largest, index of the second largest) for a max-pool
    window whose two largest values are that close (exact ties excluded: both sides take the first)."""
    steps, alphas = ig_rule(method, n)
    x = tt(x, om)
    x0 = tt(x0, om)
    nodes = [nd for nd in om.nodes if nd.op_type in ("Relu", "Clip") + MAX_OPS]
    out = []
    with torch.no_grad():
        for s in range(0, n, 32):
            a = tt(alphas[s:s + 32], om).view(-1, 1, 1, 1)
            vals = om.run(x0 + a * (x - x0), keep=[nd.input[0] for nd in nodes])
            for nd in nodes:
                z = vals[nd.input[0]]
                flat = z.reshape(z.shape[0], -1)
                scale = flat.abs().max(1, keepdim=True).values.clamp_min(1e-300)
                if nd.op_type in ("Relu", "Clip"):
                    d = torch.stack([(flat - b).abs() for b in om.kink_bounds(nd)]).min(0).values / scale
                    for i, j in zip(*torch.nonzero(d < margin, as_tuple=True)):
                        out.append((d[i, j].item(), s + int(i), nd.name, int(j)))
                    continue
                win = om.max_windows(nd, tuple(z.shape[1:]))
                padded = torch.cat([flat, torch.full_like(flat[:, :1], -float("inf"))], 1)
                v = padded[:, win.clamp_min(-1) % padded.shape[1]]  # -1 -> the -inf column
                top = torch.topk(v, 2, dim=-1)
                gap = (top.values[..., 0] - top.values[..., 1]) / scale
                for i, k in zip(*torch.nonzero((gap > 0) & (gap < margin), as_tuple=True)):
                    first = int(win[k, top.indices[i, k, 0]])
                    second = int(win[k, top.indices[i, k, 1]])
                    out.append((gap[i, k].item(), s + int(i), nd.name, (int(k), first, second)))
    return sorted(out, key=lambda t: t[0])


class IgFlips:
    """Flip terms of an IG attribution: the exact change when, at path point i, a unit takes the
    other side of its kink. The backward pass is linear given the masks and the max-pool routing, so
        Relu/Clip unit u:   g_flipped − g = ±G_u · ∂z_u/∂x   (G_u = ∂y_c/∂(node output)_u, z the node
                            input; + when the unit was off in the float64 forward, − when it was on)
        max window k:       g_flipped − g = G_k · (∂a_second/∂x − ∂a_first/∂x)   (the gradient goes to
                            the runner-up instead of the largest value)
    and the IG term is step_i · (g_flipped − g) ⊙ (x − x0). One forward and one backward per path
    point (cached), then one or two partial backward passes per unit. om must be the float64 model:
    its decisions are the reference's."""

    def __init__(self, om, x, x0, target, n, method):
        self.om, self.target = om, target
        self.steps, self.alphas = ig_rule(method, n)
        self.x = np.asarray(x, np.float64)
        self.x0 = np.asarray(x0, np.float64)
        self.nodes = {nd.name: nd for nd in om.nodes if nd.op_type in ("Relu", "Clip") + MAX_OPS}
        self.points = {}

    def _point(self, i):
        if i not in self.points:
            om = self.om
            p = tt(self.x0 + float(self.alphas[i]) * (self.x - self.x0), om).requires_grad_(True)
            keep = [nd.input[0] for nd in self.nodes.values()] + [nd.output[0] for nd in self.nodes.values()]
            v = om.run(p, keep=keep)
            outs = [v[nd.output[0]] for nd in self.nodes.values()]
            G = torch.autograd.grad(v["output"][0, self.target], outs, retain_graph=True, allow_unused=True)
            self.points[i] = (p, v, dict(zip(self.nodes, G)))
        return self.points[i]

    def term(self, i, node, unit):
        p, v, G = self._point(i)
        nd = self.nodes[node]
        g = G[node]
        z = v[nd.input[0]].reshape(-1)

        def dx(j):
            return torch.autograd.grad(z[j], p, retain_graph=True)[0][0].numpy()

        if nd.op_type in MAX_OPS:
            k, first, second = unit
            gk = 0.0 if g is None else float(g.reshape(-1)[k])
            if gk == 0.0:
                return None
            d = gk * (dx(second) - dx(first))
        else:
            gu = 0.0 if g is None else float(g.reshape(-1)[unit])
            if gu == 0.0:
                return None
            zu = float(z[unit])
            b = self.om.kink_bounds(nd)
            inside = zu > b[0] and (len(b) < 2 or zu < b[1])
            d = (-1.0 if inside else 1.0) * gu * dx(unit)
        return self.steps[i] * d * (self.x - self.x0)[0]


def baseline(kind, model, x):
    """API.md baselines: zero = the zero tensor; black = a black image preprocessed."""
    if kind == "zero":
        return np.zeros_like(x)
    if kind == "black":
        out = np.empty_like(x)
        px = np.float32(255 if model.invert else 0)
        for c in range(x.shape[1]):
            out[0, c] = (px / np.float32(model.scale) - np.float32(model.mean[c])) / np.float32(model.std[c])
        return out
    raise ValueError(kind)


# ---- CAM family ----------------------------------------------------------------------------------------
def cam(om, x, target, layer):
    """Zhou et al. 2016: ReLU(Σ_k W_ck A_k) for logits = W·GAP(A) + b (bias dropped)."""
    head = om.gemm_after(layer)
    assert head is not None, "the layer does not feed GAP + linear"
    W, _ = head  # (classes, K)
    A = layer_value(om, x, layer)
    m = np.tensordot(W[target].numpy(), A, axes=(0, 0))
    return np.maximum(m, 0)


def _weighted(A, w):
    return np.maximum(np.tensordot(w, A, axes=(0, 0)), 0)


def gradcam(A, G):
    """Captum LayerGradCam(relu_attributions=True) = pytorch-grad-cam GradCAM:
    ReLU(Σ_k mean_ij(G_k) A_k)."""
    return _weighted(A, G.mean(axis=(1, 2)))


def gradcam_pp(A, G):
    """pytorch-grad-cam GradCAMPlusPlus.get_cam_weights:
    aij = G² / (2G² + Σ_ab A_kab · G³ + 1e-6), aij = 0 where G = 0, w_k = Σ_ij relu(G)·aij;
    map = ReLU(Σ_k w_k A_k)."""
    g2 = G ** 2
    g3 = g2 * G
    sa = A.sum(axis=(1, 2))[:, None, None]
    aij = g2 / (2 * g2 + sa * g3 + 1e-6)
    aij = np.where(G != 0, aij, 0)
    w = (np.maximum(G, 0) * aij).sum(axis=(1, 2))
    return _weighted(A, w)


def xgradcam(A, G):
    """pytorch-grad-cam XGradCAM: w_k = Σ_ij G·A / (Σ_ij A + 1e-7); map = ReLU(Σ_k w_k A_k)."""
    sa = A.sum(axis=(1, 2))[:, None, None]
    w = (G * A / (sa + 1e-7)).sum(axis=(1, 2))
    return _weighted(A, w)


def layercam(A, G):
    """pytorch-grad-cam LayerCAM: ReLU(Σ_k relu(G_k) ⊙ A_k)."""
    return np.maximum((np.maximum(G, 0) * A).sum(0), 0)


def scorecam(om, x, target, layer, channels=0, batch=64):
    """pytorch-grad-cam ScoreCAM.get_cam_weights: M_k = UpsamplingBilinear2d (align_corners=True) of
    A_k to the input size, normalized (M − min)/(max − min + 1e-8); s_k = y_c(x ⊙ M_k);
    w = softmax(s); map = ReLU(Σ_k w_k A_k). channels = k > 0: only the k channels with the highest
    mean activation (ties by index), the softmax over those (the engine's Faster Score-CAM option)."""
    A = layer_value(om, x, layer)
    K = A.shape[0]
    sel = np.arange(K)
    if 0 < channels < K:
        mean = A.reshape(K, -1).mean(1)
        sel = np.array(sorted(range(K), key=lambda k: (-mean[k], k))[:channels])
    xt = tt(x, om)
    At = tt(A[sel], om)[None]
    up = F.interpolate(At, size=xt.shape[-2:], mode="bilinear", align_corners=True)[0]
    flat = up.reshape(len(sel), -1)
    mx = flat.max(1).values[:, None, None]
    mn = flat.min(1).values[:, None, None]
    up = (up - mn) / (mx - mn + 1e-8)
    scores = []
    with torch.no_grad():
        for s in range(0, len(sel), batch):
            masked = xt * up[s:s + batch, None]
            scores.append(om.run(masked)["output"][:, target])
    w = torch.softmax(torch.cat(scores), 0).numpy()
    return _weighted(A[sel], w)


def eigencam(A):
    """pytorch-grad-cam get_2d_projection: M = A as (h·w, K), columns centred; projection = M · VT[0]
    (numpy SVD, first right singular vector); map = ReLU(projection). The singular vector's sign is
    arbitrary (numpy leaves it to LAPACK); like the engine, it is chosen here so that the projection
    correlates positively with the channel-summed activation."""
    K = A.shape[0]
    M = A.reshape(K, -1).T.copy()
    M[np.isnan(M)] = 0
    M = M - M.mean(axis=0)
    _, _, VT = np.linalg.svd(M, full_matrices=True)
    proj = M @ VT[0]
    if proj @ A.reshape(K, -1).sum(0) < 0:
        proj = -proj
    return np.maximum(proj.reshape(A.shape[1:]), 0)


def guided_gradcam(om, x, target, layer):
    """Captum GuidedGradCam: GuidedBackprop(x) ⊙ LayerAttribution.interpolate(LayerGradCam(relu),
    input size, 'nearest') (F.interpolate(mode='nearest'))."""
    A, G = layer_act_grad(om, x, target, layer)
    gc = gradcam(A, G)
    up = F.interpolate(t64(gc)[None, None], size=np.asarray(x).shape[-2:], mode="nearest")[0, 0].numpy()
    return guided_backprop(om, x, target) * up[None]


# ---- perturbation, internals, baseline -----------------------------------------------------------------
def occlusion(om, x, target, window, stride, x0, batch=64):
    """Captum Occlusion with sliding_window_shapes=(C, w, w), strides=(C, s, s): windows start at
    k·s, k < ceil((side − w)/s) + 1, clipped at the border; attribution = Σ_windows (f(x) − f(x_occ))·mask
    / Σ_windows mask, x_occ = x·(1 − mask) + baseline·mask. Returns the H x W map (equal over channels)."""
    x = tt(x, om)
    x0 = tt(x0, om)
    H, W = x.shape[-2:]
    ny = int(np.ceil((H - window) / stride)) + 1
    nx = int(np.ceil((W - window) / stride)) + 1
    masks = torch.zeros(ny * nx, 1, H, W, dtype=om.dtype)
    for i in range(ny):
        for j in range(nx):
            masks[i * nx + j, 0, i * stride:i * stride + window, j * stride:j * stride + window] = 1
    with torch.no_grad():
        f = om.run(x)["output"][0, target]
        diffs = []
        for s in range(0, len(masks), batch):
            m = masks[s:s + batch]
            diffs.append(f - om.run(x * (1 - m) + x0 * m)["output"][:, target])
        d = torch.cat(diffs)
    tot = (d.view(-1, 1, 1, 1) * masks).sum(0)[0]
    cnt = masks.sum(0)[0]
    return (tot / cnt).numpy().astype(np.float64)


def edge(px, model):
    """skimage.filters.sobel (0.19) of the grayscale input in 0..1: the pixel / scale image, for rgb
    skimage.color.rgb2gray (0.2125 R + 0.7154 G + 0.0721 B)."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    img = np.asarray(px, np.float64) / model.scale
    if model.invert:
        img = 255.0 / model.scale - img
    gray = rgb2gray(img) if img.ndim == 3 else img
    return sobel(gray)


# ---- comparison ----------------------------------------------------------------------------------------
def rel_l2(a, ref):
    a = np.asarray(a, np.float64).ravel()
    ref = np.asarray(ref, np.float64).ravel()
    n = np.linalg.norm(ref)
    return float(np.linalg.norm(a - ref) / n) if n > 0 else float(np.linalg.norm(a))


def pearson(a, ref):
    a = np.asarray(a, np.float64).ravel()
    ref = np.asarray(ref, np.float64).ravel()
    if a.std() == 0 or ref.std() == 0:
        return 1.0 if np.array_equal(a, ref) or (a.std() == 0 and ref.std() == 0) else 0.0
    return float(np.corrcoef(a, ref)[0, 1])
