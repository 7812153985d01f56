#!/usr/bin/env bash
# scripts/common.sh as setup.sh and test.sh run it (set -euo pipefail), with fake
# nvidia-smi, apt-get and dpkg-query on PATH: the CUDA architectures setup builds, the
# packages it installs for missing tools, and what an apt-get update error does.
# Usage: test_common.sh <repository root>
set -uo pipefail
root="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
# expect <name> <expected stdout> <expected exit code> <script run with common.sh sourced>
expect() {
  local out rc
  out="$(PATH="$tmp/bin:$PATH" bash -c "set -euo pipefail; source '$root/scripts/common.sh'; $4" 2>"$tmp/err")"
  rc=$?
  if [ "$out" != "$2" ] || [ "$rc" -ne "$3" ]; then
    echo "FAIL $1: got '$out' (exit $rc), expected '$2' (exit $3); stderr: $(cat "$tmp/err")"
    failures=$((failures + 1))
  else
    echo "ok   $1"
  fi
}
fake() {  # fake <command> <body>
  mkdir -p "$tmp/bin"
  printf '#!/bin/sh\n%s\n' "$2" >"$tmp/bin/$1"
  chmod +x "$tmp/bin/$1"
}

# CUDA architectures: the machine's GPUs only; the default list without one or when asked.
fake nvidia-smi 'echo 7.5'
expect "one T4 -> 75" "75" 0 "cuda_archs"
fake nvidia-smi 'printf "8.6\n7.5\n8.6\n"'
expect "two kinds of GPU -> 75;86" "75;86" 0 "cuda_archs"
expect "IMGPIPE_CUDA_ARCHS=all -> default list" "" 0 "IMGPIPE_CUDA_ARCHS=all cuda_archs"
expect "IMGPIPE_CUDA_ARCHS=89 -> 89" "89" 0 "IMGPIPE_CUDA_ARCHS=89 cuda_archs"
fake nvidia-smi 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver"; exit 9'
expect "nvidia-smi without a driver -> default list" "" 0 "cuda_archs"
rm "$tmp/bin/nvidia-smi"
expect "no nvidia-smi -> default list" "" 0 "PATH=/nonexistent; cuda_archs"

# Tools are checked by command: a pkg-config from pkgconf, cmake from pip are enough.
mkdir -p "$tmp/tools"
for t in pkg-config cmake ccache; do printf '#!/bin/sh\n' >"$tmp/tools/$t" && chmod +x "$tmp/tools/$t"; done
ln -s "$(command -v sort)" "$tmp/tools/sort"
expect "only the compiler's package is missing" "build-essential" 0 "PATH='$tmp/tools'; missing_tools"

# apt-get: an update error (a third-party repository) does not stop the install; a failed
# install does, naming the packages.
fake dpkg-query 'exit 1'  # nothing installed
fake sudo 'exec "$@"'
fake apt-get 'case "$1" in update) echo "E: The repository x does not have a Release file" >&2; exit 100;; install) echo "installed $*" >>"'"$tmp"'/apt.log";; esac'
expect "update error: the missing packages are installed anyway" "" 0 "install_packages libfoo-dev"
grep -q "install -y -qq --no-install-recommends .*libfoo-dev" "$tmp/apt.log" ||
  { echo "FAIL libfoo-dev was not installed"; failures=$((failures + 1)); }
grep -q "apt-get update reported errors" "$tmp/err" || { echo "FAIL no warning"; failures=$((failures + 1)); }
fake apt-get 'case "$1" in update) exit 0;; install) echo "E: Unable to locate package libfoo-dev" >&2; exit 100;; esac'
expect "a failed install stops setup" "" 1 "install_packages libfoo-dev; echo not reached"
grep -q "apt-get install failed for: .*libfoo-dev" "$tmp/err" || { echo "FAIL no error line"; failures=$((failures + 1)); }

# A python3 that apt did not install gets no apt packages.
fake python3 'exit 0'
expect "a python3 outside apt is not apt's" "no" 0 "is_apt_python python3 && echo yes || echo no"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
