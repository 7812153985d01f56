#!/usr/bin/env python3
"""Times a torchvision model alone on the CPU (random weights, eval, inference_mode, fp32),
the peer of build/tests/inference/infer_bench on the ONNX export of the same model:

    /usr/bin/python3 tests/inference/torch_infer_bench.py --model resnet50 --batch 8 --threads 2
    build/tests/inference/infer_bench resnet50.onnx --batch 8 --iters 3

With --in X.npy the input is read from the file, and with --seed S the weights are those
scripts/export_torchvision.py --weights none --seed S exports (scripts/bench/infer_peers.py
runs all three peers so). Prints one line: model, batch, threads, images/s, ms per batch."""
import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    p.add_argument("--in", dest="inp", help="input .npy (default: torch.rand of --batch images)")
    p.add_argument("--seed", type=int, help="export_torchvision.py's random weights of this seed")
    p.add_argument("--out", help="write the output of the last run to this .npy")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    if a.seed is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
        from export_torchvision import build_model
        model = build_model(a.model, "none", 224, a.seed)
    else:
        model = getattr(torchvision.models, a.model)().eval()
    if a.inp:
        import numpy as np
        x = torch.from_numpy(np.load(a.inp).astype(np.float32))
        a.batch = x.shape[0]
    else:
        x = torch.rand(a.batch, 3, 224, 224)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(a.iters):
            y = model(x)
        dt = time.perf_counter() - t
    if a.out:
        import numpy as np
        np.save(a.out, y.numpy().astype(np.float32))
    print(f"torch {torch.__version__} {a.model} fp32 batch {a.batch} threads {a.threads}"
          f"{' channels_last' if a.channels_last else ''}{' ftz' if a.flush_denormal else ''}: {a.batch * a.iters / dt:.2f} images/s "
          f"({1e3 * dt / a.iters:.1f} ms per batch)")


if __name__ == "__main__":
    main()
