#!/usr/bin/env python3
"""Regenerates data/sample/: a handful of small images whose dominant colour is obvious by
eye, in every supported format, plus one deliberately corrupt JPEG. The images are
committed; this script only documents (and can redo) how they were made.
Needs numpy and OpenCV's Python module (Debian: python3-numpy python3-opencv)."""
import os
import numpy as np
import cv2

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample")

# name, (B, G, R) of the dominant colour, size, shape
IMAGES = [
    ("red_disc.jpg", (40, 40, 220), (160, 120), "disc"),
    ("green_square.png", (50, 200, 40), (128, 96), "square"),
    ("blue_stripes.bmp", (210, 60, 30), (120, 120), "stripes"),
    ("yellow_disc.tiff", (30, 220, 230), (100, 140), "disc"),
    ("white_square.webp", (245, 245, 245), (150, 100), "square"),
    ("nested/black_disc.jpg", (15, 15, 15), (90, 120), "disc"),
]


def make(bgr, size, shape, seed):
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), bgr, np.float32)
    accent = tuple(float(255 - c) * 0.5 for c in bgr)
    if shape == "disc":
        cv2.circle(img, (w // 2, h // 2), min(w, h) // 6, accent, -1)
    elif shape == "square":
        cv2.rectangle(img, (w // 3, h // 3), (w // 3 + w // 6, h // 3 + h // 6), accent, -1)
    else:
        img[:, ::12] = accent
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    for i, (name, bgr, size, shape) in enumerate(IMAGES):
        path = os.path.join(OUT, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, make(bgr, size, shape, i), [cv2.IMWRITE_JPEG_QUALITY, 90])
    # A JPEG cut off halfway: imgpipe must skip it, name it, and go on.
    good = cv2.imencode(".jpg", make((40, 40, 220), (160, 120), "disc", 99))[1].tobytes()
    with open(os.path.join(OUT, "corrupt_truncated.jpg"), "wb") as f:
        f.write(good[: len(good) // 2])


if __name__ == "__main__":
    main()
