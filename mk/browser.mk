# Browser tests of the dashboard (web/): tests/browser/*.test.mjs drive Debian's chromium
# (/usr/bin/chromium, installed with apt when missing) through playwright-core from npm
# (tests/browser/node_modules, from package-lock.json; 1.61, the last that runs on Debian bookworm's
# Node 18). No browser is ever downloaded.
# The models come from tests/browser/make_models.py (the shipped fashion-cnn, or a stand-in trained
# once with python3-torch on dataset-fashion-mnist and cached in $(BUILD)/browser/models).
#   make browser-test          both suites, about a minute; screenshot in $(BUILD)/browser/dashboard.png
#   make browser-screenshot    the same, and refresh docs/dashboard.png (commit it)
.PHONY: browser-test browser-screenshot browser-deps
CHROMIUM    ?= /usr/bin/chromium
BROWSER_DIR := tests/browser
BROWSER_NPM := $(BROWSER_DIR)/node_modules/.package-lock.json

browser-deps: $(BROWSER_NPM)
	@test -x $(CHROMIUM) || { \
		echo "browser-test: installing Debian's chromium"; \
		SUDO=; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq || true; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# npm ci installs exactly the lock file; playwright-core has no install script that fetches a browser
$(BROWSER_NPM): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

browser-test: $(BUILD)/explaind browser-deps
	cd $(BROWSER_DIR) && BUILD=$(abspath $(BUILD)) CHROMIUM=$(CHROMIUM) node dashboard.test.mjs
	cd $(BROWSER_DIR) && BUILD=$(abspath $(BUILD)) CHROMIUM=$(CHROMIUM) node cors.test.mjs

browser-screenshot: $(BUILD)/explaind browser-deps
	cd $(BROWSER_DIR) && BUILD=$(abspath $(BUILD)) CHROMIUM=$(CHROMIUM) UPDATE_SCREENSHOT=1 node dashboard.test.mjs

TEST_SUITES += browser-test
