#!/usr/bin/env bash
# One command from a fresh clone to a working ./imgpipe: installs the Debian packages it
# needs (apt-get; nothing when they are there), builds Release into build/, links
# ./imgpipe at the repository root, and runs the sample job.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
install_packages "${IMGPIPE_PACKAGES[@]}" "${IMGPIPE_TEST_PACKAGES[@]}"
build_imgpipe
ln -sf build/app/imgpipe imgpipe
echo "imgpipe: built ./imgpipe; running the sample job (configs/sample.yaml)" >&2
set +e
./imgpipe --config configs/sample.yaml
rc=$?
set -e
# The sample holds one deliberately corrupt image: it is skipped and named, exit code 0.
[ $rc -eq 0 ] || { echo "imgpipe: the sample job failed (exit $rc)" >&2; exit $rc; }
echo "imgpipe: sample output in out/sample/ (tensors-*.npy, index-*.csv, report.json)" >&2
