# mk/corpus.mk — the byte-identity corpus (tests/e2e/corpus.py) as a developer tool, not a suite of
# `make test`: it compares the binary with an older build of itself, nothing independent.
#   make corpus-check BASE=<commit>   build BASE in a temporary worktree, record its answers into
#                                     build/corpus-base/<commit>/ (kept: later checks reuse it), then
#                                     check that this tree's build/explaind answers the same bytes
#   make corpus-record DIR=<dir>      record this tree's answers (no comparison)
CORPUS := tests/e2e/corpus.py

.PHONY: corpus-check corpus-record

corpus-record: $(BUILD)/explaind
	$(PYTHON) $(CORPUS) --record $(or $(DIR),$(BUILD)/corpus) --bin $(BUILD)/explaind

corpus-check: $(BUILD)/explaind
	@test -n "$(BASE)" || { echo "corpus-check: BASE=<commit> is required" >&2; exit 2; }
	@set -e; sha=$$(git rev-parse --verify "$(BASE)^{commit}"); out=$(BUILD)/corpus-base/$$sha; \
	if [ ! -f $$out/INDEX ]; then \
	  tmp=$$(mktemp -d); trap 'git worktree remove --force $$tmp/src >/dev/null 2>&1 || true; rm -rf $$tmp' EXIT; \
	  git worktree add --detach $$tmp/src $$sha >/dev/null; \
	  $(MAKE) --no-print-directory -C $$tmp/src -j2 build/explaind >/dev/null; \
	  $(PYTHON) $(CORPUS) --record $$out --bin $$tmp/src/build/explaind; \
	fi; \
	$(PYTHON) $(CORPUS) --check $$out --bin $(BUILD)/explaind
