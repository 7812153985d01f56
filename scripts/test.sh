#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, builds if needed, runs CTest.
# GPU suites (label gpu) skip without a GPU; IMGPIPE_REQUIRE_GPU=1 makes a skip a failure.
# Extra ctest arguments pass through, e.g. scripts/test.sh -L cpu
# IMGPIPE_SANITIZE=1 builds build-asan/ with ASan and UBSan (CPU code only) and runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
install_packages "${IMGPIPE_PACKAGES[@]}" "${IMGPIPE_TEST_PACKAGES[@]}"
# With the oracle installed, its comparisons must run rather than skip.
install_test_python && export IMGPIPE_REQUIRE_ORT="${IMGPIPE_REQUIRE_ORT:-1}"
if [ "${IMGPIPE_SANITIZE:-0}" = 1 ]; then
  export IMGPIPE_BUILD_DIR=build-asan
  export IMGPIPE_CMAKE_ARGS="${IMGPIPE_CMAKE_ARGS:-} -DIMGPIPE_SANITIZE=ON -DIMGPIPE_ENABLE_CUDA=OFF"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
"${IMGPIPE_PYTHON:-python3}" -c "import numpy" 2>/dev/null && export IMGPIPE_REQUIRE_NUMPY="${IMGPIPE_REQUIRE_NUMPY:-1}"
"${IMGPIPE_PYTHON:-python3}" -c "import numpy, PIL" 2>/dev/null && export IMGPIPE_REQUIRE_PIL="${IMGPIPE_REQUIRE_PIL:-1}"
trap report_oracles EXIT
build_imgpipe
ctest --test-dir "${IMGPIPE_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
