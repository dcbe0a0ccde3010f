# The model zoo (issue 14): every torchvision 0.14 CNN classifier loads in explaind and matches PyTorch
# (tests/zoo/zoo_check.py: logits, input-gradient saliency against float64, the auto-detected CAM layer,
# Grad-CAM against Captum's LayerGradCam definition; load, forward and saliency times against PyTorch).
#   make zoo-check       every architecture at its own input size (224, inception_v3 299, efficientnets up to
#                        600), three photos, with timings; NOT in `make test` (hours on 2 cores). Subsets and
#                        sizes: make zoo-check ZOO_ARCHS="resnet18 vgg11" ZOO_SIZE=64. Results accumulate in
#                        $(ZOO_DIR)/results.json (one record per architecture and size, written as each ends).
#   make zoo-check-doc   the table of results.json (full-size runs) into docs/MODELS.md's "## Model zoo"
#   make zoo-smoke       part of `make test`: one member of each family at 64 x 64 (AlexNet, VGG 224; inception_v3 107)
#                        on two photos, same checks, no timings (85 s of CPU with a cold cache: 71 s wall at load
#                        average 3, 4 min at 6.5; 53 s warm)
ZOO_DIR   ?= $(BUILD)/zoo
ZOO_ARCHS ?=
ZOO_SIZE  ?=
ZOO_FLAGS ?=
ZOO_RUN   := $(BUILD)/tools/conformance_run
ZOO_ENV    = ZOO_DIR=$(abspath $(ZOO_DIR)) CONFORMANCE_RUN=$(abspath $(ZOO_RUN)) EXPLAIND=$(abspath $(BIN))
ZOO_PY     = $(ZOO_ENV) nice -n 10 $(PYTHON) tests/zoo/zoo_check.py

.PHONY: zoo-check zoo-check-doc zoo-smoke

zoo-check: $(BIN) $(ZOO_RUN)
	$(ZOO_PY) $(if $(strip $(ZOO_ARCHS)),--arch "$(ZOO_ARCHS)") $(if $(ZOO_SIZE),--size $(ZOO_SIZE)) $(ZOO_FLAGS)

zoo-check-doc:
	$(ZOO_PY) --markdown --write-doc

zoo-smoke: $(BIN) $(ZOO_RUN)
	$(ZOO_ENV) ZOO_DIR=$(abspath $(ZOO_DIR))/smoke nice -n 10 $(PYTHON) tests/zoo/zoo_check.py --smoke --size 64 \
		--no-bench --photo astronaut --photo coffee

TEST_SUITES += zoo-smoke
