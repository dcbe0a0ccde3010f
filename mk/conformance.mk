# Conformance suite: the engine vs PyTorch on exported torchvision / CBAM / opset-9..17 models.
#   make conformance          export models + inputs + torch references (cached in $(CONFORMANCE_DIR)), then pytest
#   make conformance-export   only the export (prints per model: input policy, value names, op histogram, timings)
#   make conformance-dry-run  the whole harness against tests/conformance/ref_engine.py (no C code needed)
# Compared (tests/conformance/test_engine.py), at the issue's tolerances, never raised: logits max|d| <= 1e-4
# max|ref|; input grad, value, value grad rel L2 <= 1e-3 (argmax and a fixed class); batch vs single images
# rel L2 <= 1e-4; 4 threads byte-identical to one; broken / unsupported / external-data-abusing models exit 2
# with a message naming the node/op/opset.  Inputs are kink-free where a seed budget allows; the deep models
# are compared with a float64 reference whose near-kink units follow the engine's measured sides (kinks.py).
# The engine side is one conformance_run process per model.  Report: $(CONFORMANCE_DIR)/report.json.
CONFORMANCE_DIR ?= $(BUILD)/conformance
CONFORMANCE_RUN := $(BUILD)/tools/conformance_run
# glibc.malloc.hugetlb=1: large allocations get transparent huge pages (where THP is in madvise mode): writing
# vgg16's 528 MB ONNX file took 59 s without, 19 s with on the 2-core test machine; the engine loads it in 7 s not 11
CONFORMANCE_ENV  = CONFORMANCE_DIR=$(abspath $(CONFORMANCE_DIR)) CONFORMANCE_RUN=$(abspath $(CONFORMANCE_RUN)) \
                   GLIBC_TUNABLES=glibc.malloc.hugetlb=1
CONFORMANCE_PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider tests/conformance/test_engine.py

.PHONY: conformance conformance-export conformance-dry-run

$(CONFORMANCE_RUN): tests/conformance/conformance_run.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIB) $(LDLIBS)

conformance-export:
	$(CONFORMANCE_ENV) nice -n 10 $(PYTHON) tests/conformance/export_models.py

conformance: $(CONFORMANCE_RUN) conformance-export
	$(CONFORMANCE_ENV) $(CONFORMANCE_PYTEST)

conformance-dry-run: conformance-export
	$(CONFORMANCE_ENV) CONFORMANCE_RUN="$(PYTHON) $(abspath tests/conformance/ref_engine.py)" $(CONFORMANCE_PYTEST)

TEST_SUITES += conformance
