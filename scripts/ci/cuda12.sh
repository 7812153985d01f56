#!/usr/bin/env bash
# CI: proves that every target (imgpipe and all test binaries, which all link the CUDA code)
# compiles and links against CUDA 12 for sm_75, configured and built by CMake 3.22, the
# oldest CMake the project supports (Ubuntu 22.04's). The system's CUDA 13 is untouched:
#   - CUDA 12: Debian trixie's non-free nvidia-cuda-toolkit and nvidia-cuda-dev, fetched with
#     apt's own client (a private config and state; signatures checked against the system's
#     Debian archive keyring) and unpacked with dpkg -x, then arranged as a standard toolkit;
#   - cuDNN 9 for CUDA 12 (nvidia-cudnn-cu12) and CMake 3.22 (cmake) from PyPI, pip --target.
# They are kept in ${IMGPIPE_CI_CACHE:-$HOME/.cache/imgpipe-ci}/cuda12, so a warm run only
# builds (with ccache) into build-cuda12/. Fails unless the compile and link lines and the
# headers the objects depend on are free of the system's CUDA (/usr/local/cuda,
# /usr/local/include). Debian packages come from the mirror the system's apt uses for its own
# release (override: IMGPIPE_DEBIAN_MIRROR).
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
trap 'echo "cuda12: FAILED (line $LINENO) after $((SECONDS - start)) s" >&2' ERR
fail() { echo "cuda12: $*" >&2; exit 1; }

cache="${IMGPIPE_CI_CACHE:-$HOME/.cache/imgpipe-ci}/cuda12"
python="${IMGPIPE_PYTHON:-python3}"
# Compiling and linking needs nvcc and its tools (toolkit), the headers and libcudart.so
# (dev, cudart), libcu++'s <nv/target> (which CUDA 12's cuda_fp16.hpp includes) and CUB (the
# inference backend's reductions and top-k sort), which includes Thrust: Debian packages CCCL
# apart from the toolkit. cuBLAS is loaded with dlopen, so its libraries are not needed.
packages=(nvidia-cuda-toolkit nvidia-cuda-dev libcudart12 libcu++-dev libcub-dev libthrust-dev)
toolkit="$cache/toolkit"  # debroot/: the unpacked packages; cuda/: the toolkit layout
cuda="$toolkit/cuda"
cudnn="$cache/cudnn-cu12/nvidia/cudnn"
cmake="$cache/cmake-3.22/cmake/data/bin/cmake"
build="build-cuda12"

# Downloads and unpacks the CUDA 12 packages into $toolkit (once).
fetch_toolkit() {
  [ "$(cut -d= -f1 "$toolkit/versions" 2>/dev/null | xargs)" = "${packages[*]}" ] && return 0
  local mirror="${IMGPIPE_DEBIAN_MIRROR:-}" codename apt="$cache/apt" tmp="$toolkit.partial"
  if [ -z "$mirror" ]; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    # shellcheck disable=SC2016  # apt expands $(REPO_URI)
    mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
      awk -v c="$codename" '$2 == c { print $1; exit }')"
    [ -n "$mirror" ] || fail "no Debian mirror in the system's apt sources; set IMGPIPE_DEBIAN_MIRROR"
  fi
  echo "cuda12: fetching ${packages[*]} from trixie ($mirror)"
  rm -rf "$apt" "$tmp"
  mkdir -p "$apt/etc/parts" "$apt/lists/partial" "$apt/archives/partial" "$tmp/debs"
  touch "$apt/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main contrib non-free non-free-firmware" \
    >"$apt/etc/sources.list"
  cat >"$apt/etc/apt.conf" <<EOF
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/parts";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$apt/etc/parts";
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt";
Dir::Cache::Archives "$apt/archives";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
EOF
  export APT_CONFIG="$apt/etc/apt.conf"
  apt-get update -qq || fail "apt-get update of trixie failed (signatures are checked with" \
    "/usr/share/keyrings/debian-archive-keyring.gpg: it needs the trixie keys, in bookworm's" \
    "debian-archive-keyring since 2023.3+deb12u1)"
  local p v
  for p in "${packages[@]}"; do
    v="$(apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')"
    [[ "$v" =~ ^[0-9] ]] || fail "trixie has no $p"
    echo "$p=$v" >>"$tmp/versions"
  done
  grep -q '^nvidia-cuda-toolkit=12\.' "$tmp/versions" || fail "trixie's toolkit is not CUDA 12"
  (cd "$tmp/debs" && apt-get download -qq "${packages[@]}")
  unset APT_CONFIG
  for p in "$tmp"/debs/*.deb; do dpkg -x "$p" "$tmp/debroot"; done
  rm -rf "$tmp/debs" "$apt"
  # The static libraries (2.3 GB) are not linked, except the CUDA runtime's.
  find "$tmp/debroot/usr/lib" -name '*_static*.a' ! -name libcudart_static.a -delete
  # Debian spreads the toolkit over /usr; nvcc and CMake expect NVIDIA's layout, with an
  # nvcc.profile beside the real nvcc (Debian's /etc/nvcc.profile has absolute /usr paths).
  local deb="$tmp/debroot/usr" tk="$tmp/debroot/usr/lib/nvidia-cuda-toolkit" c="$tmp/cuda"
  mkdir -p "$c/bin" "$c/nvvm/bin"
  for p in "$deb"/bin/*; do [ "${p##*/}" = nvcc ] || ln -sr "$p" "$c/bin/"; done
  cp "$tk/bin/nvcc" "$c/bin/nvcc"  # a copy: nvcc reads the profile beside its real path
  ln -sr "$tk/bin/crt" "$c/bin/crt"
  ln -sr "$tk/bin/cicc" "$c/nvvm/bin/cicc"
  ln -sr "$tk/libdevice" "$c/nvvm/libdevice"
  ln -sr "$deb/include" "$c/include"
  ln -sr "$deb/lib/x86_64-linux-gnu" "$c/lib64"
  cat >"$c/bin/nvcc.profile" <<'EOF'
TOP = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
EOF
  rm -rf "$toolkit" && mv "$tmp" "$toolkit"
  # A header new to the toolkit can shadow one that objects were built with: rebuild them all.
  rm -rf "$build"
  export CCACHE_RECACHE=1
}

# Installs a PyPI package into $1 (once).
pip_target() {
  [ -d "$1" ] && return 0
  echo "cuda12: installing $2 from PyPI"
  rm -rf "$1.partial"
  PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$1.partial" "$2"
  mv "$1.partial" "$1"
}

fetch_toolkit
pip_target "$cache/cudnn-cu12" "nvidia-cudnn-cu12==9.1.*"
pip_target "$cache/cmake-3.22" "cmake==3.22.*"
# The wheel has only the versioned library; the linker looks for libcudnn.so.
ln -sf libcudnn.so.9 "$cudnn/lib/libcudnn.so"
fetched=$((SECONDS - start))

# Nothing may point this build at CUDA 13: the toolkit, cuDNN and CMake are named explicitly.
unset CUDACXX CUDA_PATH CUDA_HOME CUDAToolkit_ROOT
export PATH="$cuda/bin:$PATH" CCACHE_BASEDIR="$PWD"
mkdir -p "$build"
"$cmake" -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=75 \
  -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" -DCUDAToolkit_ROOT="$cuda" \
  -DCUDNN_INCLUDE_DIR="$cudnn/include" -DCUDNN_LIBRARY="$cudnn/lib/libcudnn.so" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; fail "CMake 3.22 could not configure the CUDA 12 build"; }
cuda_version="$(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/\1/p' \
  "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake)"
[[ "$cuda_version" == 12.* ]] || fail "the build uses CUDA '$cuda_version', not 12"
grep -q "IMGPIPE_HAVE_CUDNN=1" "$build/compile_commands.json" ||
  fail "cuDNN was not found: the CUDA inference backend is not built"
"$cmake" --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 ||
  { tail -n 100 "$build/build.log"; fail "the CUDA 12 build failed (log: $build/build.log)"; }
warnings="$(grep -ciE 'warning[ :#]' "$build/build.log" || true)"

# What the build read: compile and link lines, and every header the objects depend on.
mapfile -t read_files < <(find "$build" \( -name compile_commands.json -o -name link.txt \
  -o -name '*.d' -o -name compiler_depend.make \) -type f)
system_cuda="$(readlink -f /usr/local/cuda || echo /usr/local/cuda)"
leaks="$({ grep -ho '/usr/local/[^ :"\\]*' "${read_files[@]}" || true; } | sort -u | while read -r p; do
  case "$(readlink -f "$p" || echo "$p")" in /usr/local/cuda* | "$system_cuda"/*) echo "$p" ;; esac
done)"
[ -z "$leaks" ] || fail "the system's CUDA leaked into the CUDA 12 build:"$'\n'"$leaks"
# Each CUDA, cuBLAS and cuDNN header that was read is the CUDA 12 / cudnn-cu12 one.
headers="$({ grep -ho '[^ :"\\]*/\(cuda_runtime_api\|cublas_api\|cudnn_version\)\.h' "${read_files[@]}" || true; } |
  xargs -r readlink -f | sort -u)"
for h in cuda_runtime_api cublas_api cudnn_version; do
  grep -q "/$h\.h$" <<<"$headers" || fail "no object depends on $h.h"
done
foreign="$(grep -v -e "^$(readlink -f "$toolkit")/" -e "^$(readlink -f "$cudnn")/" <<<"$headers" || true)"
[ -z "$foreign" ] || fail "headers from outside CUDA 12 / cudnn-cu12 were read:"$'\n'"$foreign"
# The binary runs and links CUDA 12's runtime.
readelf -d "$build/app/imgpipe" | grep -q 'libcudart.so.12' || fail "imgpipe does not link libcudart.so.12"
"$build/app/imgpipe" --version >/dev/null

targets="$(find "$build" -maxdepth 3 -type f -executable -name 'test_*' | wc -l)"
echo "cuda12: CUDA $cuda_version ($(xargs <"$toolkit/versions")), cuDNN" \
  "$(sed -n 's/^Version: //p' "$cache"/cudnn-cu12/*.dist-info/METADATA), CMake" \
  "$("$cmake" --version | awk 'NR == 1 { print $3 }'): imgpipe and $targets test binaries built" \
  "for sm_75 with 0 errors and $warnings warnings; no system CUDA header or library used"
echo "cuda12: done in $((SECONDS - start)) s (fetching $fetched s)"
