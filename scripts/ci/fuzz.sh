#!/usr/bin/env bash
# Fuzzes the decoder: builds tests/fuzz (clang's libFuzzer with ASan and UBSan) into
# build-fuzz/ and runs it for FUZZ_SECONDS (default 60), seeded with data/sample. Extra
# arguments go to libFuzzer, e.g. scripts/ci/fuzz.sh -runs=1000000 for a count instead.
# A crash, leak, sanitizer report or hang fails the script and leaves the input in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh
fuzz_packages=(clang)
# Debian splits libFuzzer's runtime into libclang-rt-dev; Ubuntu ships it with clang.
apt-cache show libclang-rt-dev >/dev/null 2>&1 && fuzz_packages+=(libclang-rt-dev)
install_packages "${IMGPIPE_PACKAGES[@]}" "${fuzz_packages[@]}"
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DIMGPIPE_FUZZ=ON -DIMGPIPE_ENABLE_CUDA=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build build-fuzz --target fuzz_decode -j "$(nproc)"
mkdir -p build-fuzz/corpus
cd build-fuzz  # crash-* files land here
# A fixed seed (FUZZ_SEED) makes CI's run the same sequence of inputs on every clean clone.
if [ "$#" -eq 0 ]; then set -- -max_total_time="${FUZZ_SECONDS:-60}" -seed="${FUZZ_SEED:-1}"; fi
tests/fuzz/fuzz_decode -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 "$@" corpus ../data/sample
