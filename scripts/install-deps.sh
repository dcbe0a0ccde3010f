#!/bin/sh
# Install the Debian packages explaind needs, only those missing; uses sudo when not root.
#   scripts/install-deps.sh run    build + runtime packages (make run)
#   scripts/install-deps.sh test   the above + what the test suites need (make test)
#   scripts/install-deps.sh bench  build packages + what the benchmarks need (make bench, make loadtest)
set -eu
BUILD_PKGS="gcc make pkg-config libmicrohttpd-dev libjansson-dev libstb-dev libopenblas-pthread-dev
 libopenblas-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libpng-dev libjpeg62-turbo-dev curl"
TEST_PKGS="python3 python3-torch python3-torchvision python3-onnx python3-pytest python3-numpy
 python3-scipy python3-skimage python3-jsonschema python3-requests python3-yaml libcmocka-dev
 dataset-fashion-mnist libonnx-testdata"
BENCH_PKGS="python3 python3-torch python3-torchvision python3-onnx python3-numpy python3-scipy python3-skimage
 python3-pil wrk"
case "${1:-run}" in
  run)  want="$BUILD_PKGS" ;;
  test) want="$BUILD_PKGS $TEST_PKGS ${EXTRA_TEST_PKGS:-}" ;;
  bench) want="$BUILD_PKGS $BENCH_PKGS" ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
missing=""
# the OpenAPI linter and the browser tests run on Node: Debian's nodejs/npm unless one is on PATH
if [ "${1:-run}" = test ] && ! command -v npm >/dev/null 2>&1; then
  want="$want nodejs npm"
fi
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
