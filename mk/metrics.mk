# Sanity-check similarity metrics (engine/sanity/metrics.c) against scipy 1.10 / skimage 0.19 /
# numpy: tests/metrics/test_metrics_vs_scipy.py drives build/tools/metrics_check.
.PHONY: metrics-test metrics-bench
metrics-test: $(BUILD)/tools/metrics_check
	METRICS_CHECK=$(BUILD)/tools/metrics_check $(PYTHON) -m pytest -q tests/metrics

# time of sim_compare per pair of maps (not part of make test)
metrics-bench: $(BUILD)/tools/metrics_check
	@for shape in "0 28 28" "3 28 28" "0 7 7" "0 224 224" "3 224 224"; do \
		$(BUILD)/tools/metrics_check bench $$shape 200 | cut -c1-160; done

TEST_SUITES += metrics-test
