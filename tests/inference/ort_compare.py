#!/usr/bin/env python3
"""Runs onnxruntime (CPU) on a model: ort_compare.py MODEL INPUT.npy OUTPUT.npy

Feeds INPUT.npy to the model's first non-initializer input and writes the first output
as float32 to OUTPUT.npy. Exit code 2 when onnxruntime is not importable."""
import sys

def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 1
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnxruntime not available: {e}", file=sys.stderr)
        return 2
    model, inp, out = sys.argv[1:]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.load(inp).astype(np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.save(out, np.ascontiguousarray(y, dtype=np.float32))
    return 0

if __name__ == "__main__":
    sys.exit(main())
