#!/usr/bin/env bash
# First light on a GPU (issue 13), in one device call of under 5 minutes: every `gpu` test
# binary with IMGPIPE_REQUIRE_GPU=1, W1 under a real memory hog (a second process takes most
# of the GPU's memory midway; every image written once with the values of an unpressured run),
# then W2, W1 and W3 against the torchvision peer; logs, reports and nvidia-smi readings land
# under $OUT.
#   here:  scripts/gpu/first_light.sh prepare        # build-sm90/, .devbundle.tar.xz, .gpurun/
#   there: scripts/gpu/first_light.sh run            # device tool: carry [".devbundle.tar.xz",
#                                                    # ".gpurun"], timeout_s 330
#          scripts/gpu/first_light.sh run --dry-run  # everything up to the first GPU need
# The GPU machine has CUDA 13, cuDNN 9, python3 with torch/torchvision/numpy/cv2, and no
# OpenCV C++: the bundle (../shared/device/bundle.sh) carries imgpipe's libraries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GPU_TESTS=(test_kernels_gpu test_inference_gpu test_governor_gpu test_cli_gpu test_pipeline_gpu)
SHARED=${IMGPIPE_SHARED:-$ROOT/../shared}
[ -d "$SHARED/device" ] || SHARED=/work/shared

prepare() {
  source scripts/common.sh
  find_cuda
  # sm_90: H100 and H200, the GPUs the device tool lends.
  cmake -S . -B build-sm90 -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
  cmake --build build-sm90 -j2 --target imgpipe "${GPU_TESTS[@]}"
  local bins=() t
  for t in imgpipe "${GPU_TESTS[@]}"; do bins+=("$(find build-sm90 -name "$t" -type f -perm -u+x | head -1)"); done
  "$SHARED/device/bundle.sh" .devbundle.tar.xz "${bins[@]}"
  rm -rf .gpurun && mkdir -p .gpurun/bench
  cp "$SHARED/bench/peer_torch.py" "$SHARED/bench/make_images.py" .gpurun/bench/
  du -ch .devbundle.tar.xz .gpurun | tail -1
}

run() {
  local dry=0
  [ "${1:-}" = "--dry-run" ] && dry=1
  OUT=${OUT:-$ROOT/gpurun-out}
  mkdir -p "$OUT"
  local B=/tmp/imgpipe-bundle DATA=/tmp/imgpipe-bench T0=$SECONDS
  log() { echo "first_light [$((SECONDS - T0))s]: $*" | tee -a "$OUT/summary.txt" >&2; }
  [ -f .devbundle.tar.xz ] || { log "no .devbundle.tar.xz: run '$0 prepare' here first"; return 2; }
  rm -rf "$B" && mkdir -p "$B" && tar -xJf .devbundle.tar.xz -C "$B"
  printf '#!/bin/sh\nexec %s/run imgpipe "$@"\n' "$B" >"$B/imgpipe" && chmod +x "$B/imgpipe"
  local py
  py=$(command -v python3)
  log "bundle: $(ls "$B/bin" | tr '\n' ' '); python3 $py"
  "$py" -c "import torch, torchvision, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    >>"$OUT/summary.txt" 2>&1 || log "python3 lacks torch/torchvision/numpy/cv2: peer, hog and bench data will fail"
  "$B/imgpipe" --version >>"$OUT/summary.txt"
  "$B/imgpipe" --config configs/sample.yaml --device cpu --dry-run >"$OUT/sample-dry-run.txt" 2>&1 ||
    { log "the bundled imgpipe does not run: see sample-dry-run.txt"; return 1; }
  if [ $dry = 1 ]; then  # what runs without a GPU: the test binaries load (and skip), the checker
    local t
    mkdir -p "$OUT/tests"
    for t in "${GPU_TESTS[@]}"; do
      timeout 60 "$B/run" "$t" --gtest_brief=1 >"$OUT/tests/$t.log" 2>&1 || { log "$t does not run: tests/$t.log"; return 1; }
    done
    local cpu=(--config configs/sample.yaml --device cpu --quiet --set model.output=logits --set output.mode=overwrite)
    "$B/imgpipe" "${cpu[@]}" --set "output.dir=$DATA/dry-a" && "$B/imgpipe" "${cpu[@]}" --set "output.dir=$DATA/dry-b" &&
      "$py" scripts/gpu/check_outputs.py "$DATA/dry-a" "$DATA/dry-b" --inputs "$(find data/sample -type f -not -name '*.onnx' -not -name '*.txt' | wc -l)" \
        >"$OUT/dry-check.json" || { log "check_outputs.py on two CPU runs failed: dry-check.json"; return 1; }
    log "dry run: test binaries load and skip, check_outputs.py agrees on two CPU runs; next the GPU:" \
      "nvidia-smi, ${GPU_TESTS[*]} with IMGPIPE_REQUIRE_GPU=1, W1 with a hog, bench.py w2,w1,w3"
    return 0
  fi

  nvidia-smi >"$OUT/nvidia-smi-start.txt" 2>&1 || true
  nvidia-smi --query-gpu=timestamp,memory.used,memory.total,utilization.gpu --format=csv -lms 250 \
    >"$OUT/nvidia-smi-samples.csv" 2>/dev/null &
  local smi=$! rc=0 t
  trap 'kill $smi 2>/dev/null || true' RETURN

  # 1. Every gpu test binary; a skip is a failure.
  mkdir -p "$OUT/tests"
  for t in "${GPU_TESTS[@]}"; do
    if IMGPIPE_REQUIRE_GPU=1 IMGPIPE_TEST_BINARY="$B/imgpipe" IMGPIPE_TEST_SOURCE_DIR="$ROOT" \
      timeout 90 "$B/run" "$t" --gtest_output="xml:$OUT/tests/$t.xml" >"$OUT/tests/$t.log" 2>&1; then
      log "$t: $(grep -E '^\[  PASSED' "$OUT/tests/$t.log" | tail -1)"
    else
      rc=1
      log "$t: FAILED: $(grep -E '^\[  FAILED  \]' "$OUT/tests/$t.log" | head -5 | tr '\n' ' ')"
    fi
  done

  # 2. The bench images and ResNet-50 (made there: they are too large to carry).
  mkdir -p "$DATA"
  local images model
  images=$("$py" scripts/bench/bench.py --prepare-only --data "$DATA" --python "$py" 2>>"$OUT/bench-data.log") ||
    { log "making the bench images failed: bench-data.log"; return 1; }
  "$py" scripts/bench/bench.py --export-only resnet50 --data "$DATA" --python "$py" >>"$OUT/bench-data.log" 2>&1 ||
    { log "ResNet-50 export failed: bench-data.log"; return 1; }
  model=$DATA/resnet50.onnx
  log "bench data: $images, $model"

  # 3. W1 with a real hog: reference run, then the same run with a second process taking all
  # but 64 MiB of the free memory once imgpipe has planned (fp32 both: the values must agree).
  local w1=(--config configs/bench_w1_classify.yaml --device cuda --set "input.path=$images" --set "model.path=$model"
    --set model.output=logits --set precision=fp32 --set decode.threads=2 --set progress=lines)
  "$B/imgpipe" "${w1[@]}" --set "output.dir=$DATA/hog-ref" >"$OUT/hog-ref.log" 2>&1 || { rc=1; log "hog reference run failed"; }
  local sig=$DATA/hog-signal
  rm -rf "$sig" && mkdir -p "$sig"
  timeout 120 "$py" scripts/gpu/hog.py --ready "$sig/ready" --go "$sig/go" --stop "$sig/stop" >"$OUT/hog.json" \
    2>"$OUT/hog.err" &
  local hog=$!
  for _ in $(seq 300); do [ -f "$sig/ready" ] && break; sleep 0.1; done
  "$B/imgpipe" "${w1[@]}" --set "output.dir=$DATA/hog-run" >"$OUT/hog-run.log" 2>&1 &
  local run_pid=$!
  for _ in $(seq 600); do grep -q "governor: plan" "$OUT/hog-run.log" 2>/dev/null && break; sleep 0.05; done
  sleep 1
  touch "$sig/go"
  local hog_rc=0
  wait $run_pid || hog_rc=$?
  touch "$sig/stop"
  wait $hog || true
  cp "$DATA/hog-run/report.json" "$OUT/hog-run-report.json" 2>/dev/null || true
  cp "$DATA/hog-ref/report.json" "$OUT/hog-ref-report.json" 2>/dev/null || true
  if [ $hog_rc = 0 ] && "$py" scripts/gpu/check_outputs.py "$DATA/hog-ref" "$DATA/hog-run" --want-shrink \
    --inputs "$(ls "$images" | wc -l)" >"$OUT/hog-check.json"; then
    log "W1 with a hog: ok $(cut -c1-300 "$OUT/hog-check.json")"
  else
    rc=1
    log "W1 with a hog: FAILED (imgpipe exit $hog_rc) $(cut -c1-400 "$OUT/hog-check.json" 2>/dev/null)"
  fi

  # 4. W2, W1, W3 against the torchvision peer (PIL DataLoader, 15 workers), same images.
  if timeout 200 "$py" scripts/bench/bench.py --workload w2,w1,w3 --repeat 1 --device cuda --workers 15 \
    --data "$DATA" --python "$py" --imgpipe "$B/imgpipe" --peer-script .gpurun/bench/peer_torch.py \
    --json "$OUT/bench.json" >"$OUT/bench.txt" 2>"$OUT/bench.err"; then
    log "bench: $(grep -E '^==|headline' "$OUT/bench.txt" | tr '\n' ' ')"
  else
    rc=1
    log "bench failed: $(tail -3 "$OUT/bench.err" | tr '\n' ' ')"
  fi
  cp -r "$DATA/logs" "$OUT/bench-logs" 2>/dev/null || true
  nvidia-smi >"$OUT/nvidia-smi-end.txt" 2>&1 || true
  log "done, exit $rc"
  return $rc
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
