#!/usr/bin/env bash
# A real Slurm test: starts a single-node Slurm (munged, slurmctld, slurmd, with their own
# config in a temp folder), submits a 4-task job array that runs imgpipe with
# input.shard.index/count: auto on generated images, merges the parts, and checks that the
# predictions and every image's tensor equal a single-process run, byte for byte. Stops all
# it started. Installs slurm-wlm and munge with apt when missing (as root, as in CI); skips
# (exit 0, "SKIP: reason") where Slurm cannot start.
# Usage: tests/slurm/run.sh [path/to/imgpipe]   (default build/app/imgpipe)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMGPIPE="$(realpath "${1:-build/app/imgpipe}")"
skip() { echo "SKIP: slurm test: $*"; exit 0; }
[ -x "$IMGPIPE" ] || { echo "slurm test: no imgpipe binary at $IMGPIPE (build first)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || skip "not root (slurmd and munged are started as root)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
    skip "slurm-wlm and munge cannot be installed with apt"
fi

T="$(mktemp -d /tmp/imgpipe-slurm.XXXXXX)"
chmod 700 "$T"
PIDS=()
cleanup() {
  set +e
  [ -n "${JOB:-}" ] && scancel "$JOB" >/dev/null 2>&1
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: slurm test: $*" >&2
  for f in "$T"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}

# munge with its own key and socket.
mkdir -p "$T/munge" "$T/state" "$T/spool"
chmod 700 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
munged --foreground --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.sock" \
  --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/seed" >"$T/munged.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$T/munge/munge.sock" ] && break; sleep 0.1; done
[ -S "$T/munge/munge.sock" ] || skip "munged did not start: $(tail -n 3 "$T/munged.log" 2>/dev/null)"

# Ports that are free now (so a cluster already on this machine is not disturbed).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HOST="$(hostname -s)"
CPUS="$(nproc)"
export SLURM_CONF="$T/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=imgpipe-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$(port)
SlurmdPort=$(port)
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
NodeName=imgpipe-node NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=imgpipe-node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
# Slurm 22.05's slurmd always loads a cgroup plugin; tasks are not confined (task/none).
printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nIgnoreSystemd=yes\n' >"$T/cgroup.conf"
slurmctld -D -i -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
PIDS+=($!)
slurmd -D -N imgpipe-node -f "$SLURM_CONF" >>"$T/slurmd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  state="$(sinfo -h -n imgpipe-node -o %t 2>/dev/null || true)"
  [[ "$state" == idle* || "$state" == mix* ]] && break
  sleep 0.2
done
[[ "${state:-}" == idle* || "${state:-}" == mix* ]] ||
  skip "Slurm did not come up (node state '${state:-none}'): $(tail -n 3 "$T/slurmd.log" "$T/slurmctld.log" 2>/dev/null | tr '\n' ' ')"

# 4-task array on generated images (two of them unreadable, to be skipped alike).
python3 - "$T/images" <<'PY'
import os, sys, zlib, struct
out = sys.argv[1]; os.makedirs(out)
def png(w, h, seed):  # an RGB PNG written with the standard library only
    raw = b"".join(b"\0" + bytes((x * 7 + y * 3 + seed * 11 + c * 50) % 256 for x in range(w) for c in range(3)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
for i in range(38):
    open(os.path.join(out, f"img{i:03d}.png"), "wb").write(png(48 + i % 9, 40 + i % 5, i))
for name in ("bad1.jpg", "bad2.png"):
    open(os.path.join(out, name), "wb").write(b"not an image")
PY
ARGS=(--config "$PWD/configs/sample.yaml" --set "input.path=$T/images" --set "model.path=$PWD/data/sample/model.onnx"
  --set "model.labels=$PWD/data/sample/labels.txt" --set output.images_per_shard=4 --device cpu -q)
JOB="$(sbatch --parsable --array=0-3 --chdir="$T" -o "$T/task-%a.log" -e "$T/task-%a.log" --time=5 --wait \
  --wrap "$IMGPIPE ${ARGS[*]} --set output.dir=$T/out --set input.shard.index=auto --set input.shard.count=auto")" ||
  fail "the array job failed"
JOB="${JOB%%;*}"
"$IMGPIPE" merge "$T/out" >"$T/merge.log" 2>&1 || fail "merge failed"
"$IMGPIPE" "${ARGS[@]}" --set "output.dir=$T/single" >"$T/single.log" 2>&1 || fail "the single-process run failed"

cmp "$T/out/merged-predictions.csv" "$T/single/predictions.csv" || fail "merged predictions differ from a single process's"
python3 - "$T" <<'PY' || fail "tensors differ"
import csv, os, sys
t = sys.argv[1]
def rows(path):  # the rows of a .npy (format 1.0) as bytes
    b = open(path, "rb").read(); n = 10 + b[8] + 256 * b[9]
    count = int(b[:n].split(b"'shape': (")[1].split(b",")[0].rstrip(b")"))
    size = (len(b) - n) // count
    return [b[n + i * size:n + (i + 1) * size] for i in range(count)]
single = {}
for name in sorted(os.listdir(f"{t}/single")):
    if name.startswith("index-"):
        data = rows(f"{t}/single/tensors-{name[6:11]}.npy")
        for r in list(csv.reader(open(f"{t}/single/{name}")))[1:]:
            single[r[1]] = data[int(r[0])] if r[0] else None
merged = list(csv.reader(open(f"{t}/out/merged-index.csv")))[1:]
assert len(merged) == len(single) == 40, (len(merged), len(single))
tasks = {r[2] for r in merged}
assert tasks == {"0", "1", "2", "3"}, tasks
for pos, path, part, file, row, error in merged:
    want = single[path]
    got = rows(f"{t}/out/{file}")[int(row)] if file else None
    assert got == want, f"{path}: part {part} {file} row {row}"
print(f"slurm test: {len(merged)} images, tensors equal, from tasks {sorted(tasks)}")
PY
echo "PASS: slurm test: 4-task array job $JOB, merged output equals a single-process run"
