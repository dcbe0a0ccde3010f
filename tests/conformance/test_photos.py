"""Flat image regions: the engine's input gradients against PyTorch float64 (photos.py has the method).

Three parts:
  test_conv_identical_patches   one Conv per code path of engine/ops/conv.c (im2col, strided stem, 1x1 in
                                place, 1x1 strided, dilated, grouped, depthwise, several images in one GEMM)
                                on an input with flat regions: wherever two neighbouring outputs see bitwise
                                equal input patches, their outputs are bitwise equal (what PyTorch float32 and
                                float64 compute there, and what max-pooling ties rest on)
  test_small_net_ties           conv -> ReLU -> MaxPool 3x3/2 pad 1 -> conv -> ReLU -> MaxPool 2x2/2 -> linear
                                on a crop of the letterboxed photo: input gradient and the gradient at the
                                first MaxPool's input vs PyTorch float64 (photos.measure_case)
  test_photo                    full-size torchvision nets at 224 on skimage photos (photos.SMOKE; the full
                                table is `make photos-zoo`, i.e. photos.py --arch NAME): every photo passes the
                                decision-matched comparison and no decision differs from float64 outside float32
                                rounding; the plain float64 distance is within max(1e-3, 1.5 x PyTorch float32's
                                own) on at least two photos (the issue's goal)
Seen failing on the engine before the fix (docs/NUMERICS.md): test_conv_identical_patches, test_small_net_ties
and test_photo all fail there.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos  # noqa: E402

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------------------
# one Conv per code path
# ----------------------------------------------------------------------------------------------------------
# name: (Conv2d arguments, input channels, input size, batch)
CONVS = {
    "3x3_pad1": (dict(in_channels=8, out_channels=32, kernel_size=3, padding=1), 8, 64, 1),
    "7x7_stride2_pad3": (dict(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3), 3, 96, 1),
    "1x1_in_place": (dict(in_channels=32, out_channels=64, kernel_size=1), 32, 48, 1),
    "1x1_stride2": (dict(in_channels=32, out_channels=64, kernel_size=1, stride=2), 32, 64, 1),
    "3x3_dilated2": (dict(in_channels=8, out_channels=32, kernel_size=3, padding=2, dilation=2), 8, 64, 1),
    "3x3_groups4": (dict(in_channels=16, out_channels=32, kernel_size=3, padding=1, groups=4), 16, 64, 1),
    "3x3_depthwise": (dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, groups=16), 16, 64, 1),
    "3x3_batched_gemm": (dict(in_channels=64, out_channels=256, kernel_size=3, padding=1), 64, 28, 3),
}


class ConvNet(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.conv = nn.Conv2d(**kw)

    def forward(self, x):
        return torch.flatten(self.conv(x), 1)   # the engine serves classifiers: a 2-D output


def flat_input(c, hw, n, seed):
    """n images, uniform noise with flat regions: a band along the top (one value per channel, as
    letterbox padding), a rectangle inside, a band of zeros at the bottom (ReLU-dead areas)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, c, hw, hw)).astype(np.float32)
    for i in range(n):
        x[i, :, : hw // 5, :] = g.standard_normal((c, 1, 1))
        x[i, :, hw // 3: 2 * hw // 3, hw // 4: 3 * hw // 4] = g.standard_normal((c, 1, 1))
        x[i, :, -hw // 6:, :] = 0
    return x


def equal_neighbour_pairs(x, conv):
    """(left pairs, up pairs): boolean (Ho, Wo) maps of outputs whose receptive field equals (bitwise, zero
    padding included) that of the output to the left / above; computed from the input alone."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    c, h, w = x.shape
    xp = np.zeros((c, h + 2 * ph, w + 2 * pw), np.float32)
    xp[:, ph:ph + h, pw:pw + w] = x
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    v = xp.view(np.uint32)
    patches = np.stack([v[:, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
                        for i in range(kh) for j in range(kw)])          # (taps, c, ho, wo)
    left = np.zeros((ho, wo), bool)
    up = np.zeros((ho, wo), bool)
    left[:, 1:] = (patches[..., 1:] == patches[..., :-1]).all((0, 1))
    up[1:, :] = (patches[:, :, 1:, :] == patches[:, :, :-1, :]).all((0, 1))
    return left, up


@pytest.mark.parametrize("name", list(CONVS))
def test_conv_identical_patches(name):
    kw, c, hw, n = CONVS[name]
    torch.manual_seed(7)
    model = ConvNet(**kw).eval()
    case = photos.Case(f"conv_{name}", model, torch.zeros(1, c, hw, hw))
    x = flat_input(c, hw, n, seed=11)
    y = case.engine_logits(x)                                   # (n, M * Ho * Wo), float32 bits
    m = model.conv.out_channels
    y = y.reshape(n, m, -1).view(np.uint32)
    pairs = mismatched = 0
    for i in range(n):
        left, up = equal_neighbour_pairs(x[i], model.conv)
        yi = y[i].reshape(m, *left.shape)
        pairs += int(left.sum() + up.sum())
        dl, du = np.zeros_like(left), np.zeros_like(up)
        dl[:, 1:] = (yi[:, :, 1:] != yi[:, :, :-1]).any(0)
        du[1:, :] = (yi[:, 1:, :] != yi[:, :-1, :]).any(0)
        mismatched += int((left & dl).sum() + (up & du).sum())
    assert pairs > 100, f"{name}: only {pairs} neighbouring equal patches: the input does not test anything"
    assert mismatched == 0, (f"{name}: {mismatched} of {pairs} neighbouring outputs with bitwise equal input "
                             "patches differ (PyTorch computes them to the same bits)")


# ----------------------------------------------------------------------------------------------------------
# a small net with both MaxPool forms of the zoo, on a crop of the letterboxed photo
# ----------------------------------------------------------------------------------------------------------
class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 7, stride=2, padding=3), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2, 2))
        self.fc = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def test_small_net_ties():
    model = photos.export_models.make_model(photos.export_models.Spec("photos_smallnet", SmallNet, 64, None))
    x = photos.photo("chelsea_white")[:, :, :64, 80:144].contiguous()   # the white band over the cat's head
    case = photos.Case("smallnet", model, x)
    e = photos.measure_case(case, "chelsea_white_crop", x, pool=0)
    print(photos.fmt(e))
    assert e["outside_band"] == 0, f"decisions unlike float64 beyond float32 rounding: {e['outside']}"
    assert e["ok"], photos.fmt(e)
    assert e["plain_ok"], photos.fmt(e)


# ----------------------------------------------------------------------------------------------------------
# full-size nets on photos
# ----------------------------------------------------------------------------------------------------------
_ARCHS = {}


def arch(name, variant):
    if (name, variant) not in _ARCHS:
        _ARCHS[(name, variant)] = photos.Arch(name, variant)
    return _ARCHS[(name, variant)]


_ENTRIES = {}


@pytest.mark.parametrize("name,variant,photo", [(a, v, p) for a, v in photos.SMOKE for p in photos.PHOTOS])
def test_photo(name, variant, photo):
    e = photos.measure(arch(name, variant), photo, pool=0)
    _ENTRIES.setdefault((name, variant), []).append(e)
    print(photos.fmt(e))
    assert e["outside_band"] == 0, f"decisions unlike float64 beyond float32 rounding: {e['outside']}"
    assert e["ok"], photos.fmt(e)


@pytest.mark.parametrize("name,variant", photos.SMOKE)
def test_photo_goal(name, variant):
    """The issue's goal: plain float64 distance within the bound on at least two of the photos."""
    es = _ENTRIES.get((name, variant)) or [photos.measure(arch(name, variant), p, pool=0) for p in photos.PHOTOS]
    assert len(es) == len(photos.PHOTOS)
    assert photos.arch_ok(es), "\n".join(photos.fmt(e) for e in es)
