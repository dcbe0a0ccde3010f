# mk/models.mk — retrain the shipped models (slow: hours of CPU; the committed ONNX files and
# sidecars in models/ are what ships). `make models` is not part of `make test`; models-check is.
#   make models         train all four models, export ONNX + sidecars + models/metrics/*.json
#   make models-check   check the committed models (sidecar keys, layer names, op set, accuracy)
# train.py checkpoints every epoch (~/.cache/explaind/model-ckpt) and resumes an interrupted run.
.PHONY: models models-check
models:
	$(PYTHON) models/train.py --model all --out models

models-check:
	$(PYTHON) -m pytest -q tests/models

TEST_SUITES += models-check
