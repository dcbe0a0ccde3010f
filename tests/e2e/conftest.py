"""Fixtures of the e2e suite.

The suite starts the real server itself: `build/explaind serve` (or $EXPLAIND_BIN) on 127.0.0.1
and a free port, over a models_dir written at session start (models.py:
the shipped models/fashion-cnn and its twin; a model whose head is not
GAP + linear; mobilenet_v2 at 64x64 as the slow model). Servers are stopped with SIGTERM and must
exit 0. Every response goes through the contract check against openapi.yaml (contract.py).
"""
import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from contract import Contract  # noqa: E402
from models import FASHION_LABELS, write_models  # noqa: E402
from server import Server  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("EXPLAIND_BIN", str(REPO / "build" / "explaind"))
FASHION = REPO / "tests" / "data" / "fashion"


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def binary():
    if not os.access(BIN, os.X_OK):
        pytest.exit(f"{BIN} is missing: run `make` first (or set EXPLAIND_BIN)", returncode=2)
    return BIN


@pytest.fixture(scope="session")
def contract():
    return Contract(str(REPO / "openapi.yaml"))


class Models:
    def __init__(self, directory, kinds):
        self.dir, self.kinds = directory, kinds
        self.labels = FASHION_LABELS
        self.names = sorted(kinds)  # the server lists its models in name order


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return Models(str(d), write_models(str(d), str(REPO / "models")))


@pytest.fixture(scope="session")
def start_server(tmp_path_factory, binary, contract, models):
    """start_server(**config) -> a started Server (models_dir=... overrides the models)."""
    started = []

    def start(models_dir=None, **config):
        s = Server(binary, models_dir or models.dir, str(tmp_path_factory.mktemp("server")), contract, **config)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        if s.proc is not None:
            s.stop()


@pytest.fixture(scope="session")
def server(start_server):
    """The shared server: defaults, 2 workers. Must exit 0 on SIGTERM at the end."""
    s = start_server()
    yield s
    rc = s.stop()
    assert rc == 0, f"the shared server exited {rc} on SIGTERM:\n{s.log()[-3000:]}"


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def fashion_index():
    import json
    with open(FASHION / "index.json") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def boot_png_path():
    return str(FASHION / "test_00000_ankle_boot.png")


@pytest.fixture(scope="session")
def boot_png(boot_png_path):
    with open(boot_png_path, "rb") as f:
        return f.read()


@pytest.fixture(scope="session")
def boot_jpeg_path(tmp_path_factory, boot_png_path):
    from PIL import Image
    p = tmp_path_factory.mktemp("img") / "boot.jpg"
    Image.open(boot_png_path).save(p, "JPEG", quality=95)
    return str(p)


@pytest.fixture(scope="session")
def boot_jpeg(boot_jpeg_path):
    with open(boot_jpeg_path, "rb") as f:
        return f.read()


def png_bytes(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


@pytest.fixture(scope="session")
def big_png(boot_png_path):
    """The boot at 56x42 (not the model's 28x28 and not square)."""
    from PIL import Image
    return png_bytes(Image.open(boot_png_path).resize((56, 42)))
