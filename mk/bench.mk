# Benchmarks: never part of `make test`. Each writes its table into docs/PERFORMANCE.md.
.PHONY: bench bench-engine
BENCH_REPS ?= 10
bench: bench-engine

bench-engine: $(BUILD)/explaind
	nice -n 0 $(PYTHON) tests/bench/bench_engine.py --threads 1 --reps $(BENCH_REPS) --profile --write-doc docs/PERFORMANCE.md
	$(PYTHON) tests/bench/bench_engine.py --threads 2 --reps $(BENCH_REPS) --write-doc docs/PERFORMANCE.md
