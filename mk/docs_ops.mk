# docs/OPS.md: the op listing, generated from the engine (`explaind ops --markdown`).
#   make docs-ops   rewrite docs/OPS.md (commit it with the op change)
# tests/unit/test_ops_doc.c (in `make unit`) fails when the committed file differs from the listing.
.PHONY: docs-ops
docs-ops: $(BIN)
	$(BIN) ops --markdown > docs/OPS.md
