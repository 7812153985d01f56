#!/usr/bin/env bash
# CI: the newer generation of distributions (GCC 14, CMake 3.31, onnx 1.17, yaml-cpp 0.8,
# OpenCV 4.10, Python 3.13). Runs scripts/setup.sh and scripts/test.sh from a fresh clone of
# the committed HEAD inside a Debian 13 (trixie) root made with debootstrap (CPU only: no
# nvcc there). The root and a ccache folder are kept in ${IMGPIPE_CI_CACHE} between runs, so
# only the first run downloads packages. Needs root (chroot, mount). A failure inside the
# root fails this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${IMGPIPE_CI_CACHE:-$HOME/.cache/imgpipe-ci}"
root="$cache/trixie-root"
mirror="${IMGPIPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
[ "$(id -u)" -eq 0 ] || { echo "trixie.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
start=$SECONDS
mkdir -p "$cache"
exec 9>"$cache/trixie.lock"
flock 9  # one run at a time per cache: they would share the root

if [ ! -e "$root/.imgpipe-ready" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  echo "trixie.sh: making the Debian 13 root in $root (debootstrap)" >&2
  rm -rf "$root"  # a root left half-made by an interrupted run
  debootstrap --variant=minbase trixie "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  touch "$root/.imgpipe-ready"
fi

# A fresh clone of exactly what is committed.
rm -rf "$root/imgpipe"
git clone --quiet "$(git rev-parse --show-toplevel)" "$root/imgpipe"
git -C "$root/imgpipe" checkout --quiet --detach "$(git rev-parse HEAD)"
# The host's network settings: name servers, and the certificates it trusts (pip behind a
# TLS-inspecting proxy).
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/host-ca-certificates.crt"
mkdir -p "$cache/trixie-ccache" "$root/ccache"

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -R "${mounts[i]}" 2>/dev/null || umount -R -l "${mounts[i]}" || true
  done
}
trap cleanup EXIT
bind() {  # bind <source> <target inside the root>
  mount --rbind "$1" "$root$2"
  mounts+=("$root$2")
  mount --make-rslave "$root$2"
}
mount -t proc proc "$root/proc"
mounts+=("$root/proc")
bind /sys /sys
bind /dev /dev
bind "$cache/trixie-ccache" /ccache

chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CCACHE_DIR=/ccache \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PIP_CERT=/etc/host-ca-certificates.crt IMGPIPE_REQUIRE_ORT=1 \
  /bin/bash -c 'cd /imgpipe && scripts/setup.sh && scripts/test.sh'
echo "trixie.sh: setup and tests passed in Debian 13 ($((SECONDS - start)) s)" >&2
