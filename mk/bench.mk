# Benchmarks: never part of `make test`. Each writes its table between its own markers in
# docs/PERFORMANCE.md (tests/bench/bench_common.py write_doc), leaving the other sections alone.
#   make bench          engine (1 and 2 threads), methods and sanity checks vs PyTorch, one thread
#                       (default BENCH_REPS: ~15 min of CPU; 28 min wall at load average 6 on 2 cores)
#   make bench-peers    explaind over HTTP vs Captum / pytorch-grad-cam (re-implemented in plain
#                       PyTorch) on resnet50, resnet18, vgg16, mobilenet_v2, efficientnet_b0 at 224:
#                       PyTorch on every core, then both on one core (~30 min on 2 cores)
#   make bench-smoke    bench_peers.py on resnet18, two rows, one rep, no doc: that the driver runs
#                       (part of `make test`; times mean nothing there)
#   make loadtest       the HTTP service under wrk on loopback vs the in-process engine (~2 min)
# BENCH_REPS scales the repetitions (methods and sanity take theirs from it, fewer on resnet50).
.PHONY: bench bench-deps bench-engine bench-methods bench-sanity bench-peers bench-smoke loadtest
BENCH_REPS ?= 5
BENCH_DOC ?= docs/PERFORMANCE.md
LOADTEST_SECONDS ?= 10
bench: bench-deps bench-engine bench-methods bench-sanity bench-peers
TEST_SUITES += bench-smoke

bench-deps:
	@scripts/install-deps.sh bench

bench-engine: $(BUILD)/explaind
	nice -n 0 $(PYTHON) tests/bench/bench_engine.py --threads 1 --reps $(BENCH_REPS) --profile --write-doc $(BENCH_DOC)
	$(PYTHON) tests/bench/bench_engine.py --threads 2 --reps $(BENCH_REPS) --write-doc $(BENCH_DOC)

bench-methods: $(BUILD)/explaind
	OPENBLAS_NUM_THREADS=1 $(PYTHON) tests/bench/bench_methods.py --threads 1 --reps $$(( $(BENCH_REPS) * 2 )) --write-doc $(BENCH_DOC)

bench-sanity: $(BUILD)/explaind
	OPENBLAS_NUM_THREADS=1 $(PYTHON) tests/bench/bench_sanity.py --threads 1 --reps $(BENCH_REPS) --write-doc $(BENCH_DOC)

bench-peers: $(BUILD)/explaind
	$(PYTHON) tests/bench/bench_peers.py --reps $(BENCH_REPS) --write-doc $(BENCH_DOC)
	$(PYTHON) tests/bench/bench_peers.py --threads 1 --serve-flag request_threads_max=1 --reps $(BENCH_REPS) \
	    --models resnet50,resnet18,vgg16 --write-doc $(BENCH_DOC)

bench-smoke: $(BUILD)/explaind
	$(PYTHON) tests/bench/bench_peers.py --models resnet18 --rows predict,gradcam_pgc --reps 1 > /dev/null

loadtest: bench-deps $(BUILD)/explaind
	$(PYTHON) tests/bench/loadtest.py --duration $(LOADTEST_SECONDS) --write-doc $(BENCH_DOC)
