# Op conformance: every op of the engine's table, alone or in a small module, against PyTorch float64
# (forward and input gradient) across the opsets it claims; harness in tests/conformance/ops/opcase.py,
# cases in tests/conformance/ops/test_ops_*.py (one file per op group).
#   make ops-conformance     all cases (about a minute); errors per case in $(BUILD)/ops/summary.txt
OPS_DIR ?= $(BUILD)/ops
.PHONY: ops-conformance
ops-conformance: $(CONFORMANCE_RUN)
	cd tests/conformance/ops && OPS_DIR=$(abspath $(OPS_DIR)) CONFORMANCE_RUN=$(abspath $(CONFORMANCE_RUN)) \
		$(PYTHON) -m pytest -q -p no:cacheprovider .
	@cat $(OPS_DIR)/summary.txt

TEST_SUITES += ops-conformance
