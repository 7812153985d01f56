#!/bin/bash
# Runs benchmark commands alternately (A B C A B C ...) and prints, per command, the best
# and the median images/s; on a shared machine only commands measured back to back in one
# call compare. Each command must print "... N images/s".
#   tests/inference/alternate_bench.sh 5 \
#     "ours:build/tests/inference/infer_bench resnet50.onnx --batch 8 --iters 2" \
#     "torch:/usr/bin/python3 tests/inference/torch_infer_bench.py --model resnet50 --iters 2"
set -u
rounds=$1; shift
declare -A res
for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    name=${spec%%:*}; cmd=${spec#*:}
    v=$(eval "$cmd" 2>/dev/null | grep -o '[0-9.]* images/s' | tail -1 | cut -d' ' -f1)
    res[$name]="${res[$name]:-} ${v:-0}"
  done
done
for spec in "$@"; do
  name=${spec%%:*}
  echo "$name: $(echo ${res[$name]} | tr ' ' '\n' | sort -g | awk -v all="${res[$name]}" \
    '{a[NR]=$1} END {printf "best %.2f median %.2f images/s of %d runs (%s)", a[NR], a[int((NR+1)/2)], NR, all}')"
done
