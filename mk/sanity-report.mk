# mk/sanity-report.mk — reproduce Adebayo et al. 2018's sanity checks on Fashion-MNIST and write
# docs/SANITY.md, docs/sanity/*.png and docs/sanity/report.json (tests/sanity_report/make_report.py).
#   make sanity-report         the full report: 100 test images, 7 methods, cascading top-down (+ label
#                              randomization) and bottom-up, on fashion-cnn and, when trained, the
#                              paper's CNN (about 4 min of CPU for fashion-cnn; not part of `make test`)
#   make sanity-report-smoke   the generator on 3 images, into a temporary folder (part of `make test`, ~10 s of CPU)
# SANITY_TWIN_DIR=DIR takes the label-randomized twins from DIR (an interim export; the document says so).
# SANITY_REPORT_NOTE="..." adds a sentence on the machine's state next to the recorded runtime.
.PHONY: sanity-report sanity-report-smoke
SANITY_TWIN_DIR ?=

sanity-report: $(BUILD)/explaind
	BUILD=$(BUILD) $(PYTHON) tests/sanity_report/make_report.py --bin $(BUILD)/explaind \
		--command "make sanity-report$(if $(SANITY_TWIN_DIR), SANITY_TWIN_DIR=$(SANITY_TWIN_DIR))" \
		$(if $(SANITY_TWIN_DIR),--twin-dir $(SANITY_TWIN_DIR))

sanity-report-smoke: $(BUILD)/explaind
	EXPLAIND_BIN=$(abspath $(BUILD)/explaind) BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider tests/sanity_report

TEST_SUITES += sanity-report-smoke
