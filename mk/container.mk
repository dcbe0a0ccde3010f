# Container image: the Dockerfile built and run for real with buildah (no Docker engine needed).
#   make container-test    static checks of Dockerfile/compose/k8s files and `explaind healthcheck`
#                          (pytest tests/container), then tests/container/image_test.py: a local
#                          debootstrap'ed bookworm base, `buildah bud` of the Dockerfile, the image
#                          run with `buildah run` and on a read-only root (needs root; see the file)
#   make container-image   only build localhost/explaind:test the same way (no checks)
# When this machine cannot build or run containers (not root, buildah/debootstrap missing, no
# bookworm source in its apt sources, the mirror unreachable) image_test.py prints the reason and
# the suite FAILS: `make test` never passes with the image untested.
# The base image and the layers are cached in CONTAINER_STORAGE (outside the tree, so a fresh
# clone on the same machine reuses them).
.PHONY: container-test container-image
CONTAINER_STORAGE ?= /var/tmp/explaind-container
export CONTAINER_STORAGE
EXTRA_TEST_PKGS += buildah debootstrap docker-compose
export EXTRA_TEST_PKGS

container-test: $(BIN)
	$(PYTHON) -m pytest -q tests/container
	$(PYTHON) tests/container/image_test.py

container-image:
	$(PYTHON) tests/container/image_test.py --build-only

TEST_SUITES += container-test
