#!/usr/bin/env python3
"""Times onnxruntime alone on the CPU (CPUExecutionProvider, all graph optimizations, fp32),
the peer of build/tests/inference/infer_bench on the same ONNX file and input:

    python3 tests/inference/ort_infer_bench.py resnet50.onnx --in x.npy --threads 2 --iters 3

Prints one line: model, batch, threads, images/s, ms per batch; --out Y.npy saves the output."""
import argparse
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--in", dest="inp", help="input .npy (default: uniform [0, 1), batch 8, 3x224x224)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the output of the last run to this .npy")
    a = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    x = np.load(a.inp).astype(np.float32) if a.inp else \
        np.random.default_rng(0).random((8, 3, 224, 224), dtype=np.float32)
    feed = {sess.get_inputs()[0].name: x}
    y = sess.run(None, feed)[0]  # warm-up
    t = time.perf_counter()
    for _ in range(a.iters):
        y = sess.run(None, feed)[0]
    dt = time.perf_counter() - t
    if a.out:
        np.save(a.out, np.ascontiguousarray(y, dtype=np.float32))
    print(f"onnxruntime {ort.__version__} {a.model} fp32 batch {len(x)} threads {a.threads}: "
          f"{len(x) * a.iters / dt:.2f} images/s ({1e3 * dt / a.iters:.1f} ms per batch)")


if __name__ == "__main__":
    main()
