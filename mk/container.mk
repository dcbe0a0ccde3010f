# Container image: the Dockerfile built and run for real with buildah (no Docker engine needed).
#   make container-test    static checks of Dockerfile/compose/k8s files and `explaind healthcheck`
#                          (pytest tests/container), then tests/container/image_test.py: a local
#                          debootstrap'ed bookworm base, `buildah bud` of the Dockerfile, the image
#                          run with `buildah run` and on a read-only root (needs root; see the file)
#   make container-image   only build localhost/explaind:test the same way (no checks)
# image_test.py exits 77 when this machine cannot build or run containers: the suite then prints
# SKIPPED with the reason and does not fail `make test`, unless CONTAINER_TEST_REQUIRED=1.
# The base image and the layers are cached in CONTAINER_STORAGE (outside the tree, so a fresh
# clone on the same machine reuses them).
.PHONY: container-test container-image
CONTAINER_STORAGE ?= /var/tmp/explaind-container
export CONTAINER_STORAGE
EXTRA_TEST_PKGS += buildah debootstrap docker-compose
export EXTRA_TEST_PKGS

container-test: $(BIN)
	$(PYTHON) -m pytest -q tests/container
	@rc=0; $(PYTHON) tests/container/image_test.py || rc=$$?; \
	if [ $$rc -eq 77 ]; then \
	  echo "==== container-test: SKIPPED (the reason is above); the image was NOT tested"; \
	  echo "container-image: 0 passed, 0 failed, 1 skipped"; \
	  [ -z "$(CONTAINER_TEST_REQUIRED)" ] || exit 1; \
	else exit $$rc; fi

container-image:
	$(PYTHON) tests/container/image_test.py --build-only

TEST_SUITES += container-test
