# make test-fresh: the README's `make test` in a freshly debootstrapped Debian bookworm (minbase plus
# make, git and ca-certificates; the mirror, CA certificates and apt/npm settings of this machine),
# run on a clean `git archive` of HEAD in a chroot (scripts/test-fresh.sh says how). Needs root and
# the network; installs every test package from scratch, so it takes long: NOT part of `make test`.
# Run it before resolving an issue that touches install steps. The debootstrapped base is cached in
# $(BUILD)/fresh/base; each run starts from a pristine copy of it ($(BUILD)/fresh/root).
.PHONY: test-fresh
test-fresh:
	scripts/test-fresh.sh $(abspath $(BUILD))/fresh
