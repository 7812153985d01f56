# Shared by setup.sh and test.sh: package installation and the CMake build. The same
# scripts serve Debian 12/13 and Ubuntu 22.04/24.04 (Google Colab included).
# shellcheck shell=bash

# Tools, checked by command, and the package that provides each when it is missing (Colab's
# pkgconf provides pkg-config; cmake may come from pip, which is fine).
IMGPIPE_TOOLS=(c++:build-essential make:build-essential cmake:cmake pkg-config:pkg-config ccache:ccache)
# Libraries the tool needs to build and run, and those only the tests need.
IMGPIPE_PACKAGES=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libturbojpeg0-dev libpng-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libonnx-dev libprotobuf-dev libdnnl-dev)
IMGPIPE_TEST_PACKAGES=(libgtest-dev libopencv-dnn-dev python3-pil)

# The packages of the tools that are not on PATH.
missing_tools() {
  local t
  for t in "${IMGPIPE_TOOLS[@]}"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || echo "${t#*:}"
  done | sort -u
}

# Installs the missing packages (and tools) with apt-get; says nothing when all are there.
# An apt-get update error (a broken third-party repository) is a warning: what is missing
# is installed from the lists at hand, and only a failed install stops setup.
install_packages() {
  local missing=() p
  mapfile -t missing < <(missing_tools)
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "imgpipe: installing ${missing[*]}" >&2
  $sudo apt-get update -qq ||
    echo "imgpipe: warning: apt-get update reported errors (above); installing from the package lists at hand" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "imgpipe: error: apt-get install failed for: ${missing[*]} (apt's message above)" >&2
    return 1
  }
}

# Installs PyPI packages ($3...) for python $1 unless `import $2` already works there.
pip_install_for() {
  local py="$1" modules="$2"
  shift 2
  "$py" -c "import $modules" 2>/dev/null && return 0
  echo "imgpipe: installing $* for $py (pip)" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

# Whether $1 (a command) is the python3 of the system's packages (apt's), not pyenv's,
# conda's or Colab's own.
is_apt_python() {
  local path
  path="$(command -v "$1" 2>/dev/null)" || return 1
  dpkg-query -S "$(readlink -f "$path")" >/dev/null 2>&1
}

# The test oracle (onnxruntime), NumPy and matplotlib (scripts/plot_report.py), for the
# python3 the tests call: with pip, and for apt's python3 its numpy and pip packages first
# (never apt packages for another python3).
install_test_python() {
  local py="${IMGPIPE_PYTHON:-python3}"
  "$py" -c "import onnxruntime, numpy, matplotlib" 2>/dev/null && return 0
  if ! command -v "$py" >/dev/null 2>&1 || is_apt_python "$py"; then
    install_packages python3 python3-numpy python3-pip || return 1
  fi
  pip_install_for "$py" "onnxruntime, numpy, matplotlib" onnxruntime numpy matplotlib
}

# Which test oracles this run had (required: their tests fail rather than skip) and which not, and why.
report_oracles() {
  local py="${IMGPIPE_PYTHON:-python3}" o
  echo "imgpipe: oracles:" >&2
  for o in "onnxruntime:$py:whole-model comparisons:${IMGPIPE_REQUIRE_ORT:-0}" \
    "numpy:python3:.npy files as numpy loads them:${IMGPIPE_REQUIRE_NUMPY:-0}" \
    "PIL:$py:tensors against torchvision's PIL pipeline:${IMGPIPE_REQUIRE_PIL:-0}" \
    "matplotlib:$py:plot_report.py:0"; do
    IFS=: read -r m p what req <<<"$o"
    if ! "$p" -c "import $m" 2>/dev/null; then
      echo "  $m ($what): skipped, $p cannot import $m" >&2
    elif [ "$req" = 1 ]; then
      echo "  $m ($what): ran, required" >&2
    else
      echo "  $m ($what): available, not required (its tests would skip without it)" >&2
    fi
  done
  echo "  torchvision: not used; its rounding is checked with golden values (test_placement)" >&2
}

# CUDA lives outside PATH on many machines (Colab included); let CMake find nvcc there.
find_cuda() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# The CUDA architectures to build: the GPUs of this machine (compute capability 7.5 -> 75,
# one entry per distinct GPU), or nothing (CMake's full default list) without a GPU, when
# nvidia-smi cannot tell, or with IMGPIPE_CUDA_ARCHS=all. IMGPIPE_CUDA_ARCHS=75;86 sets them.
cuda_archs() {
  case "${IMGPIPE_CUDA_ARCHS:-}" in
    all) return 0 ;;
    "") ;;
    *) echo "$IMGPIPE_CUDA_ARCHS" && return 0 ;;
  esac
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  { nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true; } |
    tr -d ' .' | sed -n '/^[0-9][0-9]*$/p' | sort -un | paste -sd ';'
}

# Configures and builds Release into build/ (or IMGPIPE_BUILD_DIR). Extra CMake arguments
# come from IMGPIPE_CMAKE_ARGS, e.g. IMGPIPE_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=75" (which also
# overrides the architectures cuda_archs picks).
build_imgpipe() {
  find_cuda
  local archs=(-UCMAKE_CUDA_ARCHITECTURES) a  # no GPU: back to the default list
  if [[ "${IMGPIPE_CMAKE_ARGS:-}" == *CMAKE_CUDA_ARCHITECTURES* ]]; then
    archs=()
  elif a="$(cuda_archs)" && [ -n "$a" ]; then
    echo "imgpipe: building the CUDA code for this machine's GPU only (sm_${a//;/, sm_}; IMGPIPE_CUDA_ARCHS=all for all)" >&2
    archs=(-DCMAKE_CUDA_ARCHITECTURES="$a")
  fi
  # shellcheck disable=SC2086
  cmake -S . -B "${IMGPIPE_BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release "${archs[@]}" ${IMGPIPE_CMAKE_ARGS:-} >/dev/null
  cmake --build "${IMGPIPE_BUILD_DIR:-build}" -j "$(nproc)"
}
