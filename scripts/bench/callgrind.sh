#!/usr/bin/env bash
# Instruction counts for imgpipe's CPU hot paths (decode, resample, normalise, write), which
# stay put when timings on a shared machine do not: W2's preprocessing over a fixed set (the
# first N images of the small benchmark set, default 20), one decode thread, tensors written
# to a temporary folder, under valgrind's callgrind. Prints `total_Ir: <count>` and the top
# functions by inclusive cost. Compare total_Ir between commits; a few tenths of a percent
# of drift is noise (thread interleaving), a few percent is a change.
#   scripts/bench/callgrind.sh [N] [TOP]      (needs valgrind; the images come from bench.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20}
top=${2:-25}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
[ -x ./imgpipe ] || { echo "callgrind.sh: ./imgpipe not found: build it first (scripts/setup.sh)" >&2; exit 2; }
images=$(python3 scripts/bench/bench.py --small --prepare-only)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
find "$images" -name '*.jpg' | sort | head -n "$n" > "$tmp/list.txt"
valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" --dump-instr=no \
  ./imgpipe --config configs/bench_w2_preprocess.yaml --device cpu --quiet \
  --set input.path="$tmp/list.txt" --set decode.threads=1 --set output.tensors=true \
  --set output.dir="$tmp/out" --set output.mode=overwrite 2> "$tmp/valgrind.log" ||
  { cat "$tmp/valgrind.log" >&2; exit 1; }
rows=$(tail -n +2 "$tmp/out/index-00000.csv" | grep -c '^[0-9]' || true)
[ "$rows" -eq "$n" ] || { echo "callgrind.sh: expected $n images written, got $rows" >&2; exit 1; }
total=$(callgrind_annotate "$tmp/callgrind.out" | awk '/PROGRAM TOTALS/ && !t++ {gsub(",", "", $1); print $1}')
echo "# callgrind: imgpipe W2 preprocessing, $n images 640x480 q90, decode.threads 1, tensors written"
echo "total_Ir: $total"
# The hot paths alone (inclusive), without the dynamic loader's share of total_Ir.
callgrind_annotate --inclusive=yes "$tmp/callgrind.out" 2>/dev/null | awk -v n="$n" '
  function emit(name) { v = $1; gsub(",", "", v); printf "%s_Ir: %s (%.1f M per image)\n", name, v, v / n / 1e6 }
  /imgpipe::Decoder::decode\(/ && !d++ { emit("decode") }
  /imgpipe::kernels::preprocess_cpu\(/ && !p++ { emit("preprocess") }
  /_dl_start / && !l++ { v = $1; gsub(",", "", v); print "dynamic_loader_Ir: " v " (process start-up, not per image)" }'
echo "# top $top functions by inclusive Ir"
callgrind_annotate --inclusive=yes "$tmp/callgrind.out" 2>/dev/null |
  awk '/^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/' | head -n "$top" || true
