# Methods conformance (tests/conformance/methods): every explanation method of shared/API.md against
# a PyTorch implementation on the same ONNX weights, plus the properties of the stochastic methods and
# the fused pass counts. Models are exported into $(BUILD)/methods-conformance/ on the first run;
# the measured errors go to $(BUILD)/methods_report.json.
#   make methods-conformance   the suite (part of `make test`)
#   make methods-gallery       regenerate docs/METHODS.md and docs/gallery/ from a run of the suite
.PHONY: methods-conformance methods-gallery
TEST_SUITES += methods-conformance

methods-conformance: $(BUILD)/explaind
	BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider tests/conformance/methods

methods-gallery: $(BUILD)/explaind
	BUILD=$(BUILD) $(PYTHON) tests/conformance/methods/make_gallery.py --report $(BUILD)/methods_report.json
