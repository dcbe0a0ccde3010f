"""Preprocessing conformance: the engine's input tensor for an upload equals, bit for bit, what
torchvision's transforms (or PIL for the modes torchvision has no transform for) make of the same
file — the reference is torchvision 0.14 / Pillow 9.4, never the engine.

Every case writes a sidecar next to a small ONNX model of the case's input shape (the model's
weights do not matter: only its input is read), saves a real photo as PNG (or JPEG), and runs
build/tools/preprocess_dump, which loads the model and preprocesses the file as the server does.
Covered: torchvision Resize(S) + CenterCrop (landscape, portrait, odd sizes, upscaling, a crop
larger than the resized image), Resize((h, w)) + CenterCrop, stretch, the center_crop and
letterbox modes (PIL's resize with a box, and a paste on zeros), gray (convert('L')), RGBA with a
real alpha ramp (PIL resizes RGBA premultiplied), channel_order bgr with Keras caffe
normalization, invert, a scale other than 255, and a JPEG upload.
"""
import json
import math
import subprocess

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image, ImageOps

from conftest import photos, rgba

torch.set_num_threads(1)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CAFFE_MEAN = [103.939, 116.779, 123.68]


def export(path, C, H, W):
    m = torch.nn.Sequential(torch.nn.Conv2d(C, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(2, 3)).eval()
    torch.onnx.export(m, torch.zeros(1, C, H, W), str(path), opset_version=13, input_names=["input"],
                      output_names=["logits"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pp")
    made = {}

    def get(C, H, W):
        if (C, H, W) not in made:
            p = d / f"m{C}x{H}x{W}"
            p.mkdir()
            export(p / "m.onnx", C, H, W)
            made[(C, H, W)] = p
        return made[(C, H, W)]
    return get


def engine_tensor(dump_tool, model_dir, spec, pil_img, C, H, W, fmt="PNG"):
    (model_dir / "m.json").write_text(json.dumps({"input": spec}))
    src = model_dir / ("img.png" if fmt == "PNG" else "img.jpg")
    pil_img.save(src, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    out = model_dir / "t.f32"
    p = subprocess.run([dump_tool, str(model_dir / "m.onnx"), str(src), str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return np.fromfile(out, dtype=np.float32).reshape(C, H, W), src


def norm(mean, std):
    return T.Normalize(mean, std)


def letterbox_ref(img, H, W):
    """explaind's letterbox with PIL: fit inside (sizes rounded half up), centred on zeros."""
    s = min(W / img.width, H / img.height)
    nw = min(W, max(1, math.floor(img.width * s + 0.5)))
    nh = min(H, max(1, math.floor(img.height * s + 0.5)))
    canvas = Image.new(img.mode, (W, H), 0)
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((W - nw) // 2, (H - nh) // 2))
    return canvas


def center_crop_mode_ref(img, H, W):
    """explaind's center_crop mode: PIL resize with the centred box of the model's aspect."""
    s = max(W / img.width, H / img.height)
    bw, bh = W / s, H / s
    x0, y0 = max(0.0, (img.width - bw) / 2), max(0.0, (img.height - bh) / 2)
    return img.resize((W, H), Image.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh))


# (case, C, H, W, sidecar input, reference: PIL image (as opened) -> C x H x W tensor)
CASES = [
    ("resize256_crop224", 3, 224, 224, {"resize": 256, "crop": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
     lambda im: T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm(IMAGENET_MEAN, IMAGENET_STD)])(im.convert("RGB"))),
    ("resize64_crop_hw", 3, 56, 48, {"resize": 64, "crop": [56, 48]},
     lambda im: T.Compose([T.Resize(64), T.CenterCrop((56, 48)), T.ToTensor()])(im.convert("RGB"))),
    ("crop_larger_than_resize", 3, 80, 80, {"resize": 60, "crop": 80},  # CenterCrop pads with zeros
     lambda im: T.Compose([T.Resize(60), T.CenterCrop(80), T.ToTensor()])(im.convert("RGB"))),
    ("resize_hw_crop", 3, 64, 64, {"resize": [80, 70], "crop": 64, "mean": [0.5], "std": [0.25]},
     lambda im: T.Compose([T.Resize((80, 70)), T.CenterCrop(64), T.ToTensor(), norm([0.5] * 3, [0.25] * 3)])(im.convert("RGB"))),
    ("stretch", 3, 96, 128, {"resize": "stretch", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
     lambda im: T.Compose([T.Resize((96, 128)), T.ToTensor(), norm(IMAGENET_MEAN, IMAGENET_STD)])(im.convert("RGB"))),
    ("center_crop_mode", 3, 100, 150, {"resize": "center_crop"},
     lambda im: T.ToTensor()(center_crop_mode_ref(im.convert("RGB"), 100, 150))),
    ("letterbox", 3, 90, 120, {"resize": "letterbox"},
     lambda im: T.ToTensor()(letterbox_ref(im.convert("RGB"), 90, 120))),
    ("gray", 1, 64, 64, {"color": "gray", "resize": 72, "crop": 64, "mean": [0.1307], "std": [0.3081]},
     lambda im: T.Compose([T.Grayscale(), T.Resize(72), T.CenterCrop(64), T.ToTensor(), norm([0.1307], [0.3081])])(im)),
    ("gray_invert", 1, 28, 28, {"color": "gray", "invert": True, "mean": [0.1307], "std": [0.3081]},
     lambda im: norm([0.1307], [0.3081])(T.ToTensor()(ImageOps.invert(im.convert("L").resize((28, 28), Image.BILINEAR))))),
    ("bgr_caffe", 3, 64, 64, {"channel_order": "bgr", "scale": 1, "mean": CAFFE_MEAN, "std": [1]},
     lambda im: torch.from_numpy((np.asarray(im.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32)[..., ::-1]
                                  - np.array(CAFFE_MEAN, np.float32)).transpose(2, 0, 1).copy())),
    ("bgr_torchvision", 3, 64, 64, {"channel_order": "bgr", "resize": 70, "crop": 64, "mean": [0.406, 0.456, 0.485],
                                    "std": [0.225, 0.224, 0.229]},
     lambda im: norm([0.406, 0.456, 0.485], [0.225, 0.224, 0.229])(
         T.Compose([T.Resize(70), T.CenterCrop(64), T.ToTensor()])(im.convert("RGB"))[[2, 1, 0]])),
    ("scale_1", 3, 32, 32, {"scale": 1, "mean": [127.5], "std": [127.5]},
     lambda im: torch.from_numpy(((np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float32)
                                   - np.float32(127.5)) / np.float32(127.5)).transpose(2, 0, 1).copy())),
]
RGBA_CASES = [
    ("rgba_resize_crop", 4, 64, 64, {"resize": [72, 72], "crop": 64, "mean": [0.5], "std": [0.5]},
     lambda im: T.Compose([T.Resize((72, 72)), T.CenterCrop(64), T.ToTensor(), norm([0.5] * 4, [0.5] * 4)])(im.convert("RGBA"))),
    ("rgba_shorter", 4, 48, 48, {"resize": 48, "crop": 48},
     lambda im: T.Compose([T.Resize(48), T.CenterCrop(48), T.ToTensor()])(im.convert("RGBA"))),
    ("bgra", 4, 40, 40, {"channel_order": "bgr"},
     lambda im: T.ToTensor()(im.convert("RGBA").resize((40, 40), Image.BILINEAR))[[2, 1, 0, 3]]),
]
IMAGES = ["astronaut", "chelsea_tall", "coffee_odd", "astronaut_small"]


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tensor_equals_torchvision(models, dump_tool, case, image):
    name, C, H, W, spec, ref = case
    arr = photos()[image]
    pil = Image.fromarray(arr)
    got, _ = engine_tensor(dump_tool, models(C, H, W), spec, pil, C, H, W)
    want = ref(pil).numpy()
    assert want.shape == got.shape
    assert np.array_equal(got, want), f"{name}/{image}: max |diff| {np.abs(got - want).max()} at {np.unravel_index(np.abs(got - want).argmax(), got.shape)}"


@pytest.mark.parametrize("image", ["astronaut", "chelsea_tall", "coffee_odd", "astronaut_small"])
@pytest.mark.parametrize("case", RGBA_CASES, ids=[c[0] for c in RGBA_CASES])
def test_rgba_tensor_equals_torchvision(models, dump_tool, case, image):
    name, C, H, W, spec, ref = case
    pil = Image.fromarray(rgba(photos()[image]), "RGBA")
    got, _ = engine_tensor(dump_tool, models(C, H, W), spec, pil, C, H, W)
    want = ref(pil).numpy()
    assert np.array_equal(got, want), f"{name}/{image}: max |diff| {np.abs(got - want).max()}"
    assert got[3].min() < got[3].max()  # the alpha ramp came through


@pytest.mark.parametrize("image", ["astronaut", "camera"])
def test_rgba_model_gets_opaque_alpha_from_images_without_one(models, dump_tool, image):
    pil = Image.fromarray(photos()[image])  # RGB or L: convert('RGBA') adds alpha 255
    got, _ = engine_tensor(dump_tool, models(4, 32, 32), {}, pil, 4, 32, 32)
    want = T.ToTensor()(pil.convert("RGBA").resize((32, 32), Image.BILINEAR)).numpy()
    assert np.array_equal(got, want) and (got[3] == 1).all()


def test_gray_model_from_rgba_png_drops_alpha(models, dump_tool):
    pil = Image.fromarray(rgba(photos()["coffee"]), "RGBA")
    got, _ = engine_tensor(dump_tool, models(1, 50, 50), {"color": "gray"}, pil, 1, 50, 50)
    want = T.ToTensor()(pil.convert("L").resize((50, 50), Image.BILINEAR)).numpy()
    assert np.array_equal(got, want)


def test_jpeg_upload(models, dump_tool, tmp_path):
    pil = Image.fromarray(photos()["chelsea"])
    spec = {"resize": 80, "crop": 64, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    got, src = engine_tensor(dump_tool, models(3, 64, 64), spec, pil, 3, 64, 64, fmt="JPEG")
    want = T.Compose([T.Resize(80), T.CenterCrop(64), T.ToTensor(), norm(IMAGENET_MEAN, IMAGENET_STD)])(
        Image.open(src).convert("RGB")).numpy()
    assert np.array_equal(got, want)


def test_torchvision_tensor_resize_differs_and_is_not_what_explaind_does(models, dump_tool):
    """docs/MODELS.md says explaind matches Resize on a PIL image, not on a tensor: on a tensor,
    torchvision 0.14 interpolates in float without antialias, which is visibly different."""
    pil = Image.fromarray(photos()["astronaut"])
    got, _ = engine_tensor(dump_tool, models(3, 64, 64), {"resize": 64, "crop": 64}, pil, 3, 64, 64)
    on_tensor = T.Compose([T.Resize(64), T.CenterCrop(64)])(T.ToTensor()(pil)).numpy()
    assert np.abs(got - on_tensor).max() > 0.05
