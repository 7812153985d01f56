# Shared by setup.sh and test.sh: package installation and the CMake build.
# shellcheck shell=bash

# Debian packages the tool needs to build and run, and those only the tests need.
IMGPIPE_PACKAGES=(build-essential cmake pkg-config ccache
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libturbojpeg0-dev libpng-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libonnx-dev libprotobuf-dev libopenblas-dev)
IMGPIPE_TEST_PACKAGES=(libgtest-dev libopencv-dnn-dev python3 python3-numpy)

# Installs the missing ones with apt-get; says nothing when all are there.
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "imgpipe: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The test oracle (onnxruntime) and NumPy, from PyPI, for the python3 the tests call.
install_test_python() {
  local py="${IMGPIPE_PYTHON:-python3}"
  "$py" -c "import onnxruntime, numpy" 2>/dev/null && return 0
  echo "imgpipe: installing onnxruntime and numpy for $py (pip)" >&2
  "$py" -m pip install --quiet --disable-pip-version-check onnxruntime numpy 2>/dev/null ||
    "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages onnxruntime numpy
}

# CUDA lives outside PATH on many machines (Colab included); let CMake find nvcc there.
find_cuda() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# Configures (once) and builds Release into build/ (or IMGPIPE_BUILD_DIR). Extra CMake
# arguments come from IMGPIPE_CMAKE_ARGS, e.g. IMGPIPE_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=75".
build_imgpipe() {
  find_cuda
  # shellcheck disable=SC2086
  cmake -S . -B "${IMGPIPE_BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release ${IMGPIPE_CMAKE_ARGS:-} >/dev/null
  cmake --build "${IMGPIPE_BUILD_DIR:-build}" -j "$(nproc)"
}
