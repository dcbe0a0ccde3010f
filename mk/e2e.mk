# mk/e2e.mk — the HTTP end-to-end suite (tests/e2e) and the OpenAPI lint, as `make e2e`; part of
# `make test`. Needs Debian's python3 with pytest, requests, jsonschema, yaml, numpy, PIL, torch,
# torchvision and onnx (scripts/install-deps.sh test), curl, and Node.js + npm for the linter,
# which `npm ci` installs into tests/e2e/node_modules from the committed package-lock.json:
# @redocly/cli 1.x, whose tree runs on Node >= 18.19 (Debian bookworm's; its `npm >= 9.5` engines
# only warn under bookworm's npm 9.2), with two 2.x rules from tests/e2e/redocly-rules.js.
E2E_DIR   := tests/e2e
E2E_NODE  := $(E2E_DIR)/node_modules
E2E_LINT  := $(E2E_NODE)/.bin/redocly

.PHONY: e2e e2e-lint e2e-tools

$(E2E_LINT): $(E2E_DIR)/package.json $(E2E_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "e2e: npm is missing (Debian packages nodejs and npm)" >&2; exit 1; }
	cd $(E2E_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

e2e-tools: $(E2E_LINT)

e2e-lint: $(E2E_LINT)
	$(E2E_LINT) lint --config redocly.yaml openapi.yaml

e2e: $(BUILD)/explaind e2e-lint
	EXPLAIND_BIN=$(abspath $(BUILD)/explaind) $(PYTHON) -m pytest -q $(E2E_DIR)

TEST_SUITES += e2e
