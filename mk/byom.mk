# mk/byom.mk — bringing your own model (docs/MODELS.md), as `make byom`; part of `make test`.
#   tests/byom/test_preprocess.py   the engine's input tensor equals torchvision's/PIL's, bit for bit
#                                   (resize + crop, stretch, center_crop, letterbox, gray, RGBA, BGR)
#   tests/byom/test_cam_detect.py   the auto-detected CAM layer of torchvision classifiers, module paths
#   tests/byom/test_init.py         `explaind init` and `explaind inspect`'s preprocessing
# The server-facing parts are in the e2e suite (tests/e2e/test_byom.py, test_models_doc.py).
# Needs Debian's python3 with torch, torchvision, onnx, PIL and scikit-image (scripts/install-deps.sh test).
BYOM_DUMP := $(BUILD)/tools/preprocess_dump

.PHONY: byom

byom: $(BIN) $(BYOM_DUMP)
	cd tests/byom && EXPLAIND_BIN=$(abspath $(BIN)) BUILD=$(abspath $(BUILD)) nice -n 5 $(PYTHON) -m pytest -q -p no:cacheprovider .

TEST_SUITES += byom
