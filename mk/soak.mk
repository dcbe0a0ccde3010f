# Soak: sustained load at saturation on build/explaind (tests/soak/soak.py): the shipped fashion-cnn
# and a seeded-random resnet18 at 224x224 (exported once with python3-torch, cached in SOAK_DIR),
# mixed methods and body forms, 1% bad inputs. Fails on any 5xx but 503, any unexpected status,
# any 200 body unlike the in-process result, RSS growth over 5% after warm-up, fd growth, or a
# server that does not exit 0 on SIGTERM. Report: $(SOAK_DIR)/report.json and the RSS plot.
#   make soak         SOAK_SECONDS (default 300); the plot goes to docs/soak-rss.png (commit it)
#   make soak-smoke   60 s into build/soak-smoke (what .ci/run runs)
# Not in TEST_SUITES: .ci/run runs soak-smoke after make test.
.PHONY: soak soak-smoke
SOAK_SECONDS ?= 300
SOAK_CLIENTS ?= 8
SOAK_DIR     ?= $(BUILD)/soak
EXTRA_TEST_PKGS += python3-matplotlib python3-pil
export EXTRA_TEST_PKGS

soak: $(BIN)
	$(PYTHON) tests/soak/soak.py --bin $(BIN) --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS) --out $(SOAK_DIR) \
		--models $(BUILD)/soak-models --plot docs/soak-rss.png

soak-smoke: $(BIN)
	$(PYTHON) tests/soak/soak.py --bin $(BIN) --seconds 60 --clients $(SOAK_CLIENTS) --out $(BUILD)/soak-smoke \
		--models $(BUILD)/soak-models
