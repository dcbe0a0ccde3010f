# Load balancer: deploy/nginx.conf (the compose file's nginx) in front of three `explaind serve`
# on loopback, under wrk load while one replica is killed and another drained (tests/lb/lb_test.py).
# Needs Debian's nginx and wrk (installed by make test); no root, no Docker. ~35 s.
# When nginx or wrk is missing and cannot be installed the test prints the reason and the suite
# FAILS: `make test` never passes with the load balancer untested.
.PHONY: lb-test
EXTRA_TEST_PKGS += nginx wrk
export EXTRA_TEST_PKGS

lb-test: $(BIN)
	$(PYTHON) tests/lb/lb_test.py

TEST_SUITES += lb-test
