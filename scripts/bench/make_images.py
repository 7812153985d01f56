#!/usr/bin/env python3
# Copy of shared/bench/make_images.py (shared/ does not travel with the repository). Keep it identical
# to the shared one apart from this comment, so that the same seeds give the same files/figures.
"""Write N synthetic photo-like JPEGs (gradients, discs, sensor noise) for benchmarks.
Same seed, same files, on any machine: `make_images.py --out /tmp/w1 --n 2000 --size 640x480`.
Needs numpy and OpenCV's Python module (Debian: python3-opencv; the GPU machine has both)."""
import argparse, os
from multiprocessing import Pool
import numpy as np, cv2

def make(args):
    i, out, w, h, q = args
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (w + h)], -1) * rng.uniform(0.3, 1.0, 3)
    for _ in range(12):
        c = tuple(float(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(10, max(11, h // 4))), c, -1)
    img += rng.normal(0, 12, img.shape)
    cv2.imwrite(os.path.join(out, f"{i:07d}.jpg"), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q])

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True); p.add_argument("--n", type=int, default=2000)
    p.add_argument("--size", default="640x480"); p.add_argument("--quality", type=int, default=90)
    a = p.parse_args(); w, h = map(int, a.size.split("x")); os.makedirs(a.out, exist_ok=True)
    with Pool(os.cpu_count()) as pool:
        pool.map(make, [(i, a.out, w, h, a.quality) for i in range(a.n)], chunksize=16)
