# Conformance suite: engine_run vs PyTorch on exported torchvision / CBAM / opset-9..17 models.
#   make conformance          export models + torch references (cached in $(CONFORMANCE_DIR)), then pytest
#   make conformance-export   only the export (prints op histograms, value names, noise floors, timings)
#   make conformance-dry-run  the whole harness against tests/conformance/ref_engine.py (no C code needed)
# Compared (see tests/conformance/test_engine.py): logits max|d| <= 1e-4 max|ref|; input grad, value, value
# grad relative L2 <= 1e-3 (each raised to 3x the measured float32 noise floor where gate flips make it
# unreachable, unless CONFORMANCE_STRICT=1); batch vs --single rel L2 <= 1e-5; --threads 4 byte-identical;
# broken / unsupported / external-data-abusing models exit 2 with a message naming the node/op/opset.
# Report: $(CONFORMANCE_DIR)/report.json.
CONFORMANCE_DIR ?= $(BUILD)/conformance
CONFORMANCE_ENV  = CONFORMANCE_DIR=$(abspath $(CONFORMANCE_DIR))
CONFORMANCE_PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider tests/conformance

.PHONY: conformance conformance-export conformance-dry-run

conformance-export:
	$(CONFORMANCE_ENV) nice -n 10 $(PYTHON) tests/conformance/export_models.py

conformance: $(BUILD)/tools/engine_run conformance-export
	$(CONFORMANCE_ENV) ENGINE_RUN=$(abspath $(BUILD)/tools/engine_run) $(CONFORMANCE_PYTEST)

conformance-dry-run: conformance-export
	$(CONFORMANCE_ENV) ENGINE_RUN="$(PYTHON) $(abspath tests/conformance/ref_engine.py)" $(CONFORMANCE_PYTEST)

TEST_SUITES += conformance
