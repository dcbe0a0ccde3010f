# Methods conformance (tests/conformance/methods): every explanation method of docs/API.md against
# a PyTorch implementation on the same ONNX weights, plus the properties of the stochastic methods and
# the fused pass counts. resnet18 is the engine conformance suite's export (shared cache
# $(CONFORMANCE_DIR): `make conformance` runs first in `make test`; alone, this suite exports it there);
# mobilenet_v2 is exported into $(BUILD)/methods-conformance; models/fashion-cnn.onnx is the shipped
# model. The measured errors go to $(BUILD)/methods_report.json.
#   make methods-conformance   the suite (part of `make test`)
#   make methods-gallery       regenerate docs/METHODS.md and docs/gallery/ from a run of the suite
.PHONY: methods-conformance methods-gallery
TEST_SUITES += methods-conformance
CONFORMANCE_DIR ?= $(BUILD)/conformance
METHODS_ENV = BUILD=$(BUILD) CONFORMANCE_DIR=$(abspath $(CONFORMANCE_DIR)) GLIBC_TUNABLES=glibc.malloc.hugetlb=1

methods-conformance: $(BUILD)/explaind
	$(METHODS_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider tests/conformance/methods

methods-gallery: $(BUILD)/explaind
	$(METHODS_ENV) $(PYTHON) tests/conformance/methods/make_gallery.py --report $(BUILD)/methods_report.json
