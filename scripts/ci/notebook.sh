#!/usr/bin/env bash
# CI: executes notebooks/quickstart.ipynb headless (nbclient + ipykernel from PyPI, in the
# python the tests use) against this checked-out tree in place of a clone
# (IMGPIPE_NOTEBOOK_REPO), and fails when a cell fails. Its setup cell reuses build/.
# The notebook must be committed without outputs. The executed copy is left in
# build/quickstart.executed.ipynb.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh
py="${IMGPIPE_PYTHON:-python3}"
pip_install_for "$py" "nbclient, nbformat, ipykernel, pandas, matplotlib" nbclient nbformat ipykernel pandas matplotlib
mkdir -p build
IMGPIPE_NOTEBOOK_REPO="$PWD" "$py" - notebooks/quickstart.ipynb build/quickstart.executed.ipynb <<'PY'
import sys, time
import nbclient, nbformat

src, dst = sys.argv[1], sys.argv[2]
nb = nbformat.read(src, as_version=4)
stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
if stale:
    sys.exit(f"{src}: cells {stale} hold outputs; commit the notebook without outputs")
start = time.monotonic()
client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": "."}})
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
code_cells = sum(c.cell_type == "code" for c in nb.cells)
print(f"notebook: {src}: {code_cells} code cells ran without error in {time.monotonic() - start:.0f} s "
      f"(executed copy: {dst})")
PY
