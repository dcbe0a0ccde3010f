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
# The OpenAPI linter (tests/e2e) and the browser tests (tests/browser) run on Node.js + npm: the
# one on PATH, else Debian's nodejs and npm (bookworm: Node 18.19+). The version they need is the
# "engines" of their package.json; it is checked below, not left to fail inside a suite.
node_wanted=""
if [ "${1:-run}" = test ]; then
  node_wanted=1
  # no Node at all, or Debian's nodejs without its npm: Debian's nodejs and npm
  node=$(command -v node 2>/dev/null || true)
  if ! command -v npm >/dev/null 2>&1 && { [ -z "$node" ] || [ "$node" = /usr/bin/node ]; }; then
    want="$want nodejs npm"
  fi
fi
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
[ -n "$node_wanted" ] || exit 0
# the highest ">=X.Y[.Z]" of the "node" engines of the Node tools the tests install
here=$(cd "$(dirname "$0")/.." && pwd)
need=$(sed -n 's/.*"node": *">= *\([0-9][0-9.]*\)".*/\1/p' "$here/tests/browser/package.json" \
  "$here/tests/e2e/package.json" | sort -V | tail -n 1)
[ -n "$need" ] || { echo "install-deps: no node engines in tests/browser, tests/e2e package.json" >&2; exit 1; }
node_fail() {
  echo "install-deps: $1" >&2
  echo "install-deps: the browser tests and the OpenAPI linter need Node.js >= $need and npm (the" \
    "\"engines\" of tests/browser/package.json and tests/e2e/package.json). Put such a node and npm" \
    "first on PATH, or remove the one found so that Debian's nodejs and npm are installed." >&2
  exit 1
}
command -v node >/dev/null 2>&1 || node_fail "npm is on PATH ($(command -v npm)) but node is not"
command -v npm >/dev/null 2>&1 || node_fail "node is on PATH ($(command -v node)) but npm is not"
have=$(node --version 2>/dev/null | sed 's/^v//')
dpkg --compare-versions "${have:-0}" ge "$need" ||
  node_fail "$(command -v node) is Node.js ${have:-(no version)}, older than $need"
