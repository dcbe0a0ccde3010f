# Sanitizer builds, each in its own build directory (the normal build is untouched):
#   make test-asan      unit, fuzz-regress and e2e suites on a build with
#                       -fsanitize=address,undefined ($(ASAN_BUILD)); LeakSanitizer on at exit
#   make test-tsan      the concurrency tests on a -fsanitize=thread build ($(TSAN_BUILD)):
#                       conformance_run with 8 threads sharing one graph (tests/sanitizers/engine_threads.py:
#                       byte-identical results) and the server's worker pool, queue, shared sanity
#                       cache, clients leaving and drain (tests/sanitizers/tsan_concurrency.py, sized
#                       for a build ~10x slower: the e2e load tests' deadlines assume a normal one).
#                       OpenBLAS is not instrumented: tests/sanitizers/tsan.supp says why it needs no rule
#   make test-valgrind  a short e2e session (tests/sanitizers/valgrind_session.py) against the
#                       normal build/explaind under valgrind --leak-check=full: 0 bytes definitely lost
# Reports go to files in $(X_BUILD)/reports/; a suite fails when any report exists, also when the
# tests themselves passed (a sanitizer error in a server the test did not look at still counts).
# Not in TEST_SUITES (they take several minutes each); .ci/run runs them after make test.
.PHONY: test-asan test-tsan test-valgrind asan-build tsan-build
ASAN_BUILD  ?= build-asan
TSAN_BUILD  ?= build-tsan
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
TSAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
EXTRA_TEST_PKGS += valgrind
export EXTRA_TEST_PKGS

# shell: fail ($$rc=1) listing the report files in $(1), if any
define sanitizer_reports
if ls $(1)/* >/dev/null 2>&1; then \
  for f in $(1)/*; do echo "==== $$f"; head -80 $$f; done; \
  echo "sanitizer reports in $(1): FAILED"; rc=1; \
else echo "sanitizer reports in $(1): none"; fi
endef

asan-build:
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" \
		$(ASAN_BUILD)/explaind $(patsubst $(BUILD)/%,$(ASAN_BUILD)/%,$(UNIT_BIN) $(FUZZ_REPLAY))

test-asan: asan-build
	@rm -rf $(ASAN_BUILD)/reports && mkdir -p $(ASAN_BUILD)/reports
	@rc=0; \
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$(abspath $(ASAN_BUILD))/reports/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(abspath $(ASAN_BUILD))/reports/ubsan \
	$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" unit fuzz-regress e2e || rc=1; \
	$(call sanitizer_reports,$(ASAN_BUILD)/reports); exit $$rc

tsan-build:
	@$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) CFLAGS="$(TSAN_CFLAGS)" \
		$(TSAN_BUILD)/explaind $(TSAN_BUILD)/tools/conformance_run

TSAN_ENV = TSAN_OPTIONS=suppressions=$(abspath tests/sanitizers/tsan.supp):halt_on_error=0:second_deadlock_stack=1:log_path=$(abspath $(TSAN_BUILD))/reports/tsan

test-tsan: tsan-build
	@rm -rf $(TSAN_BUILD)/reports && mkdir -p $(TSAN_BUILD)/reports
	@rc=0; \
	$(TSAN_ENV) $(PYTHON) tests/sanitizers/engine_threads.py $(TSAN_BUILD)/tools/conformance_run models/fashion-cnn.onnx 8 || rc=1; \
	$(TSAN_ENV) $(PYTHON) tests/sanitizers/tsan_concurrency.py $(TSAN_BUILD)/explaind models || rc=1; \
	$(call sanitizer_reports,$(TSAN_BUILD)/reports); exit $$rc

test-valgrind: $(BIN)
	$(PYTHON) tests/sanitizers/valgrind_session.py $(BIN)
