# explaind — top-level build.
#   make            build build/explaind (warnings are errors in CI: -Wall -Wextra, no warnings allowed)
#   make run        install missing Debian packages, build, serve the shipped models on :8080
#   make test       install what the tests need, build, run every test suite that CI runs
#   make bench      benchmarks against PyTorch (never part of make test)
#   make models     retrain the shipped models (slow; the committed files are what ships)
# Fragments under mk/*.mk add suites and targets; each owns its own files.

PYTHON  ?= /usr/bin/python3
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2 -fvect-cost-model=dynamic
CFLAGS  ?= $(OPT) -g
PKGS    := libmicrohttpd jansson libprotobuf-c libpng openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
override CFLAGS += -Wall -Wextra -std=gnu11 -pthread -fno-strict-aliasing \
	-I. -I$(BUILD)/gen -Iengine -Iserver -I/usr/include/stb $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -ljpeg -lm -lpthread
DEPFLAGS = -MMD -MP

ENGINE_SRC := $(shell find engine -name '*.c' | sort)
SERVER_SRC := $(shell find server -name '*.c' ! -name main.c | sort)
GEN_SRC    := $(BUILD)/gen/onnx.pb-c.c
ASSETS     := openapi.yaml $(sort $(wildcard web/*.html web/*.css web/*.js web/*.svg web/*.png))
LIB_OBJ    := $(patsubst %.c,$(BUILD)/obj/%.o,$(ENGINE_SRC) $(SERVER_SRC)) $(BUILD)/obj/gen/onnx.pb-c.o \
              $(BUILD)/obj/gen/assets.o
LIB        := $(BUILD)/libexplaind.a
BIN        := $(BUILD)/explaind

.PHONY: all deps deps-test run test unit clean help
all: $(BIN)

help:
	@sed -n '2,8p' Makefile

# ---- generated protobuf-c code (never committed) ----------------------------------------------
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(BUILD)/gen
	cp $(ONNX_PROTO) $(BUILD)/gen/onnx.proto
	cd $(BUILD)/gen && protoc-c --c_out=. onnx.proto

$(BUILD)/obj/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -w -c $< -o $@

$(BUILD)/gen/assets.c: $(ASSETS) scripts/embed-assets.sh
	@mkdir -p $(BUILD)/gen
	scripts/embed-assets.sh $@ $(ASSETS)

$(BUILD)/obj/gen/assets.o: $(BUILD)/gen/assets.c server/assets.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# every object may include the generated header, so it must exist first
$(BUILD)/obj/%.o: %.c | $(BUILD)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/server/main.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- unit tests (cmocka): tests/unit/test_*.c, one binary each ---------------------------------
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

# helper programs the tests drive (tests/tools/*.c)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRC))
$(BUILD)/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIB) $(LDLIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; (cd tests/unit && ../../$$t); done

# ---- packages ----------------------------------------------------------------------------------
deps:
	@scripts/install-deps.sh run
deps-test:
	@scripts/install-deps.sh test

run: deps
	$(MAKE) all
	$(BIN) serve

# test: every suite CI runs; suites register themselves by appending to TEST_SUITES in mk/*.mk
TEST_SUITES := unit
-include $(wildcard mk/*.mk)

test: deps-test
	$(MAKE) all $(UNIT_BIN) $(TOOL_BIN)
	@set -e; for s in $(TEST_SUITES); do echo "==== suite: $$s"; $(MAKE) --no-print-directory $$s; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/tests $(BUILD)/tools -name '*.d' 2>/dev/null)
