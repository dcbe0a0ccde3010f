# The ONNX project's backend test cases (Debian's libonnx-testdata: node/ and pytorch-converted/) through the
# engine: every case whose ops `explaind ops --json` lists and whose first input is a 4-D float batch, forward
# only, against the expected outputs at the ONNX runner's tolerance (rtol 1e-3, atol 1e-7). Refusals are
# allowed only as listed in tests/onnx_backend/expected_refusals.txt (batch-mixing cases, with their reason).
# Also: loading a model reports every unsupported node at once (tests/onnx_backend/test_unsupported_report.py).
#   make onnx-backend   about 10 s; counts at the end, per-case report in $(ONNX_BACKEND_DIR)/report.json
ONNX_BACKEND_DIR ?= $(BUILD)/onnx_backend
.PHONY: onnx-backend
onnx-backend: $(BIN) $(CONFORMANCE_RUN)
	nice $(PYTHON) tests/onnx_backend/run_backend.py --explaind $(BIN) --conformance-run $(CONFORMANCE_RUN) \
		--work $(ONNX_BACKEND_DIR)
	EXPLAIND=$(abspath $(BIN)) ONNX_BACKEND_DIR=$(abspath $(ONNX_BACKEND_DIR)) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/onnx_backend

TEST_SUITES += onnx-backend
