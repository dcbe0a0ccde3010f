# explaind container image: docs/DEPLOY.md says how to build and run it.
#
#   docker build -t explaind .            (or: buildah bud -t explaind .)
#   docker run --rm -p 8080:8080 --read-only explaind
#
# Two stages on debian:bookworm-slim. The builder installs the -dev packages of
# scripts/install-deps.sh, builds with `make` and runs the unit tests (`make unit`): an image is
# never made from a tree whose unit tests fail. The runtime stage has only the shared libraries the
# binary links (checked with ldd: libmicrohttpd12 libjansson4 libprotobuf-c1 libpng16-16
# libjpeg62-turbo libopenblas0-pthread, plus what apt pulls in for them), the binary, models/,
# config/ and openapi.yaml (the binary embeds its own copy; the file is there to read).
#
# BASE: the image both stages start from. tests/container builds a local bookworm minbase with
# debootstrap (no registry is reachable there) and passes --build-arg BASE=localhost/debian:bookworm-slim.
ARG BASE=debian:bookworm-slim

# ---- builder ----------------------------------------------------------------------------------
FROM ${BASE} AS builder
ENV DEBIAN_FRONTEND=noninteractive
# the package list of scripts/install-deps.sh (BUILD_PKGS, minus curl) plus libcmocka-dev for `make unit`;
# its own layer, before the sources, so a source change does not reinstall them
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make pkg-config libmicrohttpd-dev libjansson-dev libstb-dev libopenblas-pthread-dev \
      libopenblas-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libpng-dev libjpeg62-turbo-dev \
      libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# nproc: the build's cores; a clean tree (build/ is in .dockerignore)
RUN make -j"$(nproc)" && make unit && ./build/explaind --help >/dev/null

# ---- runtime ----------------------------------------------------------------------------------
FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# the user: a fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a passwd lookup
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libjansson4 libprotobuf-c1 libpng16-16 libjpeg62-turbo libopenblas0-pthread \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 explaind \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin explaind
# models and config are read relative to the working directory (models_dir "models",
# config/explaind.json), exactly as in the source tree
WORKDIR /opt/explaind
COPY --from=builder /src/build/explaind /usr/local/bin/explaind
COPY config/ /opt/explaind/config/
COPY models/ /opt/explaind/models/
COPY openapi.yaml /opt/explaind/openapi.yaml

# Configuration: every key of `explaind serve --help` is also EXPLAIND_<KEY> (precedence: flags >
# environment > config/explaind.json > defaults). The ones a deployment usually sets:
#   EXPLAIND_PORT (8080)  EXPLAIND_WORKERS (0 = one per core)  EXPLAIND_QUEUE_DEPTH (64)
#   EXPLAIND_REQUEST_TIMEOUT_MS (30000)  EXPLAIND_DRAIN_TIMEOUT_MS (20000)
#   EXPLAIND_MAX_UPLOAD_BYTES (16777216)  EXPLAIND_MODELS_DIR  EXPLAIND_API_KEYS_FILE
#   EXPLAIND_CORS_ORIGINS  EXPLAIND_LOG_LEVEL (info)  EXPLAIND_LOG_FORMAT (json)
# OPENBLAS_NUM_THREADS=1: the server runs one BLAS thread per worker (it says so to OpenBLAS at
# start); this also stops OpenBLAS from starting a thread per core before that.
ENV EXPLAIND_LISTEN=0.0.0.0 \
    EXPLAIND_PORT=8080 \
    EXPLAIND_MODELS_DIR=/opt/explaind/models \
    EXPLAIND_LOG_FORMAT=json \
    OPENBLAS_NUM_THREADS=1

# Nothing is written at run time (logs go to stdout/stderr, no temporary files), so the image runs
# with a read-only root filesystem (docker run --read-only, readOnlyRootFilesystem: true);
# tests/container checks it.
USER 10001:10001
EXPOSE 8080
# SIGTERM drains: /readyz answers 503 "draining", queued and running requests finish (up to
# drain_timeout_ms), then exit 0. Give the runtime a stop timeout longer than drain_timeout_ms.
STOPSIGNAL SIGTERM
# no curl in the image: the binary's own client (server/cli_healthcheck.c) GETs /healthz
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["explaind", "healthcheck", "--quiet", "--timeout-ms", "2000"]
ENTRYPOINT ["explaind"]
CMD ["serve"]
