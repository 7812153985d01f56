#!/usr/bin/env python3
"""CPU inference, model only: imgpipe (build/tests/inference/infer_bench), PyTorch
(tests/inference/torch_infer_bench.py) and onnxruntime (tests/inference/ort_infer_bench.py)
on the same weights and the same input tensors, run alternately (imgpipe, torch, ort,
imgpipe, ...), each a fresh process with one untimed warm-up run, so the ratios hold on a
noisy machine. Models are exported with scripts/export_torchvision.py (--weights none, seed 0).

  scripts/bench/infer_peers.py [--models resnet50,mobilenet_v2,efficientnet_b0]
      [--batches 8,32] [--threads 2] [--rounds 5] [--iters 2] [--work /tmp/imgpipe-peers]
      [--record]   (appends to docs/bench/inference.jsonl; then scripts/bench/render.py)

Before timing, each model's outputs are compared: imgpipe against onnxruntime (max |diff|
over max |ort|) and top-1 agreement, so a figure never comes from a wrong result."""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs/bench/inference.jsonl"


def rate(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"([0-9.]+) images/s", out.stdout)
    if out.returncode or not m:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out.stdout}{out.stderr}")
    return float(m.group(1))


def git_commit():
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()
    # Dirty: the code differs from the commit (the results file itself does not count).
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/bench"))}


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet_v2,efficientnet_b0")
    ap.add_argument("--batches", default="8,32", help="32 is imgpipe's own CPU batch (batch.size auto)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2, help="timed runs per process")
    ap.add_argument("--work", default="/tmp/imgpipe-peers")
    ap.add_argument("--bench", default=str(ROOT / "build/tests/inference/infer_bench"))
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    # Each tool gets the same thread count (imgpipe's OpenMP team: OMP_NUM_THREADS; the peers
    # take --threads). Each keeps its own wait policy: imgpipe's is a short spin (parallel.h).
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for name in a.models.split(","):
        onnx = work / f"{name}.onnx"
        if not onnx.exists():
            subprocess.run([py, str(ROOT / "scripts/export_torchvision.py"), "--model", name, "--weights", "none",
                            "--seed", "0", "--out", str(onnx)], check=True)
        for batch in map(int, a.batches.split(",")):
            x = work / f"x{batch}.npy"
            if not x.exists():
                np.save(x, np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32))
            tools = {
                "imgpipe": [a.bench, str(onnx), "--in", str(x), "--iters", str(a.iters)],
                "torch": [py, str(ROOT / "tests/inference/torch_infer_bench.py"), "--model", name, "--seed", "0",
                          "--in", str(x), "--threads", str(a.threads), "--iters", str(a.iters)],
                "ort": [py, str(ROOT / "tests/inference/ort_infer_bench.py"), str(onnx), "--in", str(x),
                        "--threads", str(a.threads), "--iters", str(a.iters)],
            }
            outs = {}
            for t, cmd in tools.items():  # the agreement check doubles as each tool's first run
                rate(cmd[:-1] + ["1", "--out", str(work / f"y_{t}.npy")], env)
                outs[t] = np.load(work / f"y_{t}.npy").reshape(batch, -1)
            scale = float(np.abs(outs["ort"]).max())
            diff = {t: float(np.abs(outs[t] - outs["ort"]).max()) / scale for t in ("imgpipe", "torch")}
            top1 = {t: int((outs[t].argmax(1) == outs["ort"].argmax(1)).sum()) for t in ("imgpipe", "torch")}
            load = os.getloadavg()[0]
            runs = {t: [] for t in tools}
            for _ in range(a.rounds):
                for t, cmd in tools.items():
                    runs[t].append(rate(cmd, env))
            med = {t: statistics.median(v) for t, v in runs.items()}
            rec = {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "git": git_commit(), "model": name, "batch": batch, "threads": a.threads,
                "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_at_start": load},
                "rounds": a.rounds, "iters": a.iters, "images_per_s": runs, "median": med,
                "ratio_vs_ort": med["imgpipe"] / med["ort"], "ratio_vs_torch": med["imgpipe"] / med["torch"],
                "max_rel_diff_vs_ort": diff, "top1_agree_with_ort": top1,
            }
            print(f"{name} batch {batch}: imgpipe {med['imgpipe']:.1f}, torch {med['torch']:.1f}, "
                  f"ort {med['ort']:.1f} images/s (median of {a.rounds}); imgpipe/ort {rec['ratio_vs_ort']:.2f}x; "
                  f"max rel diff vs ort: imgpipe {diff['imgpipe']:.1e}, torch {diff['torch']:.1e}; "
                  f"top-1 agree {top1['imgpipe']}/{batch}", flush=True)
            if a.record:
                with RESULTS.open("a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
