# Fuzzing with libFuzzer (Debian clang): tests/fuzz/fuzz_{decode,request,onnx,sidecar}.c, built with
# -fsanitize=fuzzer,address,undefined over a libexplaind.a of their own in $(FUZZ_BUILD) (the normal
# build is untouched). Seeds are committed in tests/fuzz/corpus/<harness>/; what a run adds goes to
# $(FUZZ_BUILD)/corpus/<harness>/ and crashes to $(FUZZ_BUILD)/artifacts/<harness>/.
#   make fuzz              each harness for FUZZ_SECONDS (default 300), one after the other
#   make fuzz-smoke        each harness for 60 s (what .ci/run runs)
#   make fuzz-regress      every committed seed and regression input (tests/fuzz/regressions/) replayed
#                          through the harnesses built normally (no libFuzzer): part of `make test`
# A crash found becomes a file in tests/fuzz/regressions/<harness>/ (named after what it broke),
# fixed in the module at fault, and fuzz-regress replays it from then on (under ASan in test-asan).
.PHONY: fuzz fuzz-smoke fuzz-build fuzz-lib fuzz-regress
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_HARNESSES := decode request onnx sidecar
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LIBFLAGS = -O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_INC      = -I. -I$(FUZZ_BUILD)/gen -Iengine -Iserver -Itests/fuzz -I/usr/include/stb $(PKG_CFLAGS)
FUZZ_BINS    := $(patsubst %,$(FUZZ_BUILD)/fuzz/fuzz_%,$(FUZZ_HARNESSES))
# -max_len: seeds go up to the 1.5 MB shipped model; -timeout: one input over 25 s is a finding
# (its cost is milliseconds; 25 s leaves room for a machine shared with other CI jobs)
FUZZ_FLAGS   ?= -timeout=25 -rss_limit_mb=2048 -max_len=2000000 -print_final_stats=1
EXTRA_TEST_PKGS += clang
export EXTRA_TEST_PKGS

# the library, compiled by a sub-make in its own build directory
fuzz-lib:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CFLAGS="$(FUZZ_LIBFLAGS)" $(FUZZ_BUILD)/libexplaind.a

$(FUZZ_BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h fuzz-lib
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -std=gnu11 -pthread $(FUZZ_INC) -o $@ $< \
		$(FUZZ_BUILD)/libexplaind.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# run each harness for $(1) seconds
define fuzz_run
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$h $(FUZZ_BUILD)/artifacts/$$h; \
	  dict=; [ -f tests/fuzz/$$h.dict ] && dict=-dict=tests/fuzz/$$h.dict; \
	  echo "==== fuzz $$h: $(1) s"; \
	  t0=$$(date +%s); \
	  nice -n 10 $(FUZZ_BUILD)/fuzz/fuzz_$$h $(FUZZ_FLAGS) $$dict -max_total_time=$(1) \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$h/ $(FUZZ_BUILD)/corpus/$$h tests/fuzz/corpus/$$h \
	    > $(FUZZ_BUILD)/fuzz-$$h.log 2>&1 \
	  || { tail -60 $(FUZZ_BUILD)/fuzz-$$h.log; echo "fuzz $$h: CRASH, input in $(FUZZ_BUILD)/artifacts/$$h/"; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs" $(FUZZ_BUILD)/fuzz-$$h.log || true; \
	  echo "fuzz $$h: no crash in $$(( $$(date +%s) - t0 )) s, corpus $$(ls $(FUZZ_BUILD)/corpus/$$h | wc -l) files"; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call fuzz_run,60)

# the harnesses as plain programs (tests/fuzz/replay.c instead of libFuzzer), in the current $(BUILD)
FUZZ_REPLAY := $(patsubst %,$(BUILD)/fuzz/replay_%,$(FUZZ_HARNESSES))
$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz -o $@ $< tests/fuzz/replay.c $(LIB) $(LDLIBS)

fuzz-regress: $(FUZZ_REPLAY)
	@set -e; pass=0; for h in $(FUZZ_HARNESSES); do \
	  dirs=tests/fuzz/corpus/$$h; [ -d tests/fuzz/regressions/$$h ] && dirs="$$dirs tests/fuzz/regressions/$$h"; \
	  $(BUILD)/fuzz/replay_$$h $$dirs 2>$(BUILD)/fuzz/replay_$$h.log || { tail -40 $(BUILD)/fuzz/replay_$$h.log; \
	    echo "fuzz-regress: $$h FAILED"; echo "$$pass passed, 1 failed"; exit 1; }; \
	  pass=$$((pass + 1)); \
	done; echo "fuzz-regress: $$pass passed, 0 failed"

TEST_SUITES += fuzz-regress
