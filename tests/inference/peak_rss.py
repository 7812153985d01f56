#!/usr/bin/env python3
"""The plan is the truth: a real imgpipe run's peak resident memory against its memory plan.

    peak_rss.py --imgpipe BUILD/imgpipe [--models small_cnn,resnet50,vgg11] [--batches 1,8]

Each model (random weights: a small CNN defined here, ResNet-50 and VGG-11 exported by
scripts/export_torchvision.py at 224x224) runs on the CPU at each batch (batch.size) and
precision (fp32, fp16) over as many images. report.json gives the peak RSS
(memory.peak_rss_bytes, the process's own VmHWM) and the plan (model.memory: weight_bytes,
the weights resident from load on, plus peak_allocated_bytes, the arena and workspace the
batch allocated). Checks, per run, with README's constant (section "Memory", "The model"):

    peak RSS <= plan + memory.host_budget + 128 MiB
    fp16 plan <= fp32 plan (same batch)

A run without a model on the same images (plan 0) is held to the same bound. The figures
printed (plan, peak RSS, and what the run held beyond the plan and host budget) are README's
table. Exit 77 (skipped) without PyTorch, torchvision, NumPy or Pillow."""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

CONSTANT_MIB = 128  # README, "Memory": the process itself and its libraries' buffers
HOST_BUDGET_MIB = 16
SIZE = 224
MIB = 1 << 20


def small_cnn(torch):
    """Three conv-BN-ReLU blocks and a linear head: activations outweigh its 100 KB of weights."""
    nn = torch.nn
    torch.manual_seed(0)
    layers, c = [], 3
    for out, stride in ((16, 1), (32, 2), (64, 2)):
        layers += [nn.Conv2d(c, out, 3, stride, 1), nn.BatchNorm2d(out), nn.ReLU()]
        c = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()


def export_model(name, path, torch):
    from export_torchvision import build_model, export
    model = small_cnn(torch) if name == "small_cnn" else build_model(name, "none", SIZE, seed=0)
    export(model, str(path), 17, SIZE)


def run(imgpipe, work, images, model, precision, batch):
    """(peak RSS, plan bytes) of one run; model None: no model (plan 0)."""
    cfg = work / "run.yaml"
    cfg.write_text(f"""input: {{path: {images}}}
decode: {{threads: 2}}
preprocess: {{resize: {{width: {SIZE}, height: {SIZE}}}, crop: {{center: [{SIZE}, {SIZE}]}}}}
model: {{path: "{model or ''}", output: logits}}
device: cpu
precision: {precision or 'auto'}
batch: {{size: {batch or 'auto'}}}
memory: {{host_budget: {HOST_BUDGET_MIB}MiB}}
output: {{dir: {work / 'out'}, tensors: false, mode: overwrite}}
progress: off
""")
    r = subprocess.run([imgpipe, "-q", "--config", str(cfg)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"imgpipe exit {r.returncode}: {r.stderr.strip()[-600:]}")
    report = json.loads((work / "out" / "report.json").read_text())
    plan = 0
    if model:
        memory = report["model"]["memory"]
        plan = memory["weight_bytes"] + memory["peak_allocated_bytes"]
    return report["memory"]["peak_rss_bytes"], plan


def check(what, peak, plan):
    """Prints one result line; True when peak RSS is within the bound."""
    over = (peak - plan) / MIB - HOST_BUDGET_MIB
    ok = over <= CONSTANT_MIB
    print(f"{'ok  ' if ok else 'FAIL'} {what}: plan {plan / MIB:.1f} MiB, peak RSS {peak / MIB:.1f} MiB, "
          f"{over:.1f} MiB over plan + host budget (at most {CONSTANT_MIB})", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgpipe", required=True)
    ap.add_argument("--models", default="small_cnn,resnet50,vgg11")
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torchvision  # noqa: F401
        from PIL import Image
    except ImportError as e:
        print(f"skipped: PyTorch, torchvision, NumPy and Pillow are needed ({e})")
        return 77
    torch.set_num_threads(2)
    batches = [int(b) for b in args.batches.split(",")]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = work / "img"
        images.mkdir()
        rng = np.random.default_rng(0)
        for k in range(max(batches)):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(images / f"{k}.png")
        failed += not check("without a model", *run(args.imgpipe, work, images, None, None, 0))
        for name in args.models.split(","):
            path = work / f"{name}.onnx"
            export_model(name, path, torch)
            print(f"{name}: {path.stat().st_size / 1e6:.1f} MB file", flush=True)
            for batch in batches:
                plans = {}
                for precision in ("fp32", "fp16"):
                    peak, plans[precision] = run(args.imgpipe, work, images, path, precision, batch)
                    failed += not check(f"{name} batch {batch} {precision}", peak, plans[precision])
                fp16_ok = plans["fp16"] <= plans["fp32"]
                failed += not fp16_ok
                print(f"{'ok  ' if fp16_ok else 'FAIL'} {name} batch {batch}: fp16 plan {plans['fp16'] / MIB:.1f} MiB "
                      f"<= fp32 plan {plans['fp32'] / MIB:.1f} MiB", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
