"""Fixtures of the bring-your-own-model suite (tests/byom, `make byom`): the built binary and the
preprocess_dump tool (tests/tools/preprocess_dump.c), real photos from scikit-image's data, and a
scratch directory. A missing binary or tool fails the suite; it never skips."""
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD", REPO / "build"))
BIN = Path(os.environ.get("EXPLAIND_BIN", BUILD / "explaind"))
DUMP = BUILD / "tools" / "preprocess_dump"


@pytest.fixture(scope="session")
def binary():
    if not os.access(BIN, os.X_OK):
        pytest.exit(f"{BIN} is missing: run `make` first", returncode=2)
    return str(BIN)


@pytest.fixture(scope="session")
def dump_tool():
    if not os.access(DUMP, os.X_OK):
        pytest.exit(f"{DUMP} is missing: run `make {DUMP.relative_to(REPO) if DUMP.is_relative_to(REPO) else DUMP}`", returncode=2)
    return str(DUMP)


def photos():
    """Natural photos (scikit-image's data: astronaut 512x512 RGB with flat black and white areas,
    chelsea the cat 451x300, coffee 600x400, camera 512x512 gray) and crops of odd sizes."""
    from skimage import data
    ims = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(), "camera": data.camera()}
    ims["chelsea_tall"] = data.chelsea()[:, 100:281]  # 300 x 181: portrait
    ims["coffee_odd"] = data.coffee()[13:400, 7:522]  # 387 x 515
    ims["astronaut_small"] = data.astronaut()[100:157, 200:251]  # 57 x 51: upscaling
    return ims


def rgba(img):
    """An RGBA version of an RGB photo: alpha a radial ramp with fully transparent corners and
    an opaque centre, so premultiplied resizing matters."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    a = np.clip((1.2 - r) * 255, 0, 255).astype(np.uint8)
    return np.dstack([img, a])
