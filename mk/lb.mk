# Load balancer: deploy/nginx.conf (the compose file's nginx) in front of three `explaind serve`
# on loopback, under wrk load while one replica is killed and another drained (tests/lb/lb_test.py).
# Needs Debian's nginx and wrk (installed by make test); no root, no Docker. ~35 s.
# Exit 77 from the test (nginx or wrk missing, not installable) prints SKIPPED and does not fail
# `make test`, unless LB_TEST_REQUIRED=1.
.PHONY: lb-test
EXTRA_TEST_PKGS += nginx wrk
export EXTRA_TEST_PKGS

lb-test: $(BIN)
	@rc=0; $(PYTHON) tests/lb/lb_test.py || rc=$$?; \
	if [ $$rc -eq 77 ]; then \
	  echo "==== lb-test: SKIPPED (the reason is above); the load balancer was NOT tested"; \
	  echo "lb-test: 0 passed, 0 failed, 1 skipped"; \
	  [ -z "$(LB_TEST_REQUIRED)" ] || exit 1; \
	else exit $$rc; fi

TEST_SUITES += lb-test
