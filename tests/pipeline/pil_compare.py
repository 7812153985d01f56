#!/usr/bin/env python3
"""imgpipe's tensors against torchvision's PIL pipeline on a generated set of images:
Image.open(f).convert('RGB'), Resize(256) (bilinear, antialias), CenterCrop(224), ToTensor,
Normalize(ImageNet). Every format imgpipe reads (JPEG, PNG, BMP, TIFF, WebP) in every mode PIL
gives (colour, grey, grey+alpha, RGBA, palette with and without transparency, 16-bit grey and
RGB, CMYK), at odd sizes and aspect ratios, must match within MAX_DIFF (normalised units,
about one grey level). With decode.exif_orientation on/off, files carrying EXIF orientation
2..8 must match ImageOps.exif_transpose / plain PIL. With decode.jpeg_downscale (fast mode),
JPEGs must match PIL with Image.draft('RGB', (224, 224)), the same DCT-domain scaling.

    pil_compare.py --imgpipe BUILD/imgpipe [--keep DIR]
    pil_compare.py --imgpipe BUILD/imgpipe --fidelity   # figures for the README, not a test

--fidelity: photo-like JPEGs (q90) at 1411x1411, 1000x872, 4000x3000 and 640x480, exact and with
decode.jpeg_downscale, max / p99 / mean difference from PIL per photo.

The reference is PIL alone (what torchvision's transforms do on a PIL image, written out with
NumPy), so torchvision need not be installed. Exit 77 (skipped) without PIL or NumPy, unless
IMGPIPE_REQUIRE_PIL=1; prints one line per image."""
import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_DIFF = 0.02
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def reference(path, np, Image, ImageOps, transpose, draft=False):
    """torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize on a PIL image."""
    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (224, 224))
        if transpose:
            im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
    w, h = im.size
    # torchvision's Resize(int): the shorter side becomes 256, the longer one is truncated.
    nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    im = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    x = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def photo(np, Image, ImageFilter, w, h, seed):
    """Something like a photograph: blurred noise, gradients and hard edges, 8-bit RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 180, (xx + yy) / (w + h) * 220], -1)
    base += rng.normal(0, 40, (h, w, 3))
    base[(xx // max(1, w // 7) + yy // max(1, h // 5)) % 3 == 0] += 60  # edges
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    return im.filter(ImageFilter.GaussianBlur(1.2))


def png_bytes(np, a, colour_type):
    """A 16-bit PNG written directly (PIL cannot write 16-bit RGB)."""
    h, w = a.shape[:2]
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def tiff16_rgb_bytes(np, a):
    """An uncompressed little-endian 16-bit RGB TIFF, one strip (PIL cannot write it)."""
    h, w = a.shape[:2]
    data = a.astype("<u2").tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, 8 + 2 + 12 * 9 + 4 + len(data)), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data))]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", t, ty, n) + (struct.pack("<HH", v, 0) if ty == 3 and n == 1 else struct.pack("<I", v))
        for t, ty, n, v in entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + data + struct.pack("<HHH", 16, 16, 16)


def generate(d, np, Image, ImageFilter):
    """Writes the set; returns the names."""
    names = []

    def save(name, im, **kw):
        im.save(d / name, **kw)
        names.append(name)

    sizes = {"wide": (300, 200), "odd": (257, 129), "tall": (97, 301), "tiny": (13, 9), "large": (1000, 872)}
    rgb = {k: photo(np, Image, ImageFilter, w, h, i) for i, (k, (w, h)) in enumerate(sizes.items())}
    base = rgb["wide"]
    alpha = Image.fromarray((np.indices((200, 300)).sum(0) % 256).astype(np.uint8), "L")
    rgba = base.copy()
    rgba.putalpha(alpha)
    grey = base.convert("L")
    la = grey.copy()
    la.putalpha(alpha)
    pal = base.quantize(64)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 5
    cmyk = base.convert("CMYK")
    big = np.asarray(base, np.uint16) * 257 + np.arange(300, dtype=np.uint16)[None, :, None]
    grey16 = (np.asarray(grey, np.uint16) * 3).astype(np.uint16)  # values beyond 255: PIL clips them

    for k, im in rgb.items():
        save(f"rgb_{k}.jpg", im, quality=90)
        save(f"rgb_{k}.png", im)
    save("grey.jpg", grey, quality=90)
    save("cmyk.jpg", cmyk, quality=95)
    save("grey.png", grey)
    save("grey_alpha.png", la)
    save("rgba.png", rgba)
    save("palette.png", pal)
    save("palette_transparent.png", pal_t, transparency=5)
    (d / "grey16.png").write_bytes(png_bytes(np, grey16, 0))
    (d / "rgb16.png").write_bytes(png_bytes(np, big, 2))
    names += ["grey16.png", "rgb16.png"]
    save("rgb.bmp", base)
    save("rgb_odd.bmp", rgb["odd"])
    save("grey.bmp", grey)
    save("palette.bmp", pal)
    save("rgba.bmp", rgba)
    save("rgb.tif", base)
    save("rgb_lzw.tif", rgb["tall"], compression="tiff_lzw")
    save("grey.tif", grey)
    save("rgba.tif", rgba)
    save("grey_alpha.tif", la)
    save("palette.tif", pal)
    save("cmyk.tif", cmyk)
    save("grey16.tif", Image.fromarray(grey16))
    (d / "rgb16.tif").write_bytes(tiff16_rgb_bytes(np, big))
    names.append("rgb16.tif")
    save("rgb_lossless.webp", base, lossless=True)
    save("rgb_odd.webp", rgb["odd"], quality=90)
    save("rgba_lossless.webp", rgba, lossless=True)
    save("grey_lossless.webp", grey, lossless=True)
    return names


def orientation_set(d, np, Image, ImageFilter):
    """One non-square picture per format with each EXIF orientation 1..8."""
    names = []
    im = photo(np, Image, ImageFilter, 300, 200, 42)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        for ext, kw in (("jpg", {"quality": 95}), ("png", {}), ("webp", {"lossless": True})):
            im.save(d / f"orient{o}.{ext}", exif=exif.tobytes(), **kw)
        # A TIFF keeps it in its own first IFD; libtiff applies it to 8-bit pixels only.
        im.save(d / f"orient{o}.tif", tiffinfo={0x0112: o})
        names += [f"orient{o}.{ext}" for ext in ("jpg", "png", "webp", "tif")]
        if o <= 4:  # (PIL garbles 16-bit TIFFs with a quarter turn: it reads the stored rows at the turned size)
            Image.fromarray(np.asarray(im.convert("L"), np.uint16)).save(d / f"orient{o}_16.tif", tiffinfo={0x0112: o})
            names.append(f"orient{o}_16.tif")
    return names


def draft_set(d, np, Image, ImageFilter):
    """JPEGs that fast mode decodes at 1/2, 1/4 and 1/8, some of them with a quarter turn."""
    names = []
    for i, (w, h, o) in enumerate([(640, 480, 1), (1000, 560, 6), (1000, 560, 8), (1411, 1411, 3), (2000, 1500, 1)]):
        exif = Image.Exif()
        exif[0x0112] = o
        names.append(f"draft{w}x{h}_orient{o}.jpg")
        photo(np, Image, ImageFilter, w, h, 200 + i).save(d / names[-1], quality=90, exif=exif.tobytes())
    return names


def run_imgpipe(imgpipe, inputs, out, extra, np):
    cmd = [imgpipe, "-q", "--config", str(ROOT / "configs/sample.yaml"), "--set", "model.path=",
           "--set", f"input.path={inputs}", "--set", f"output.dir={out}",
           "--set", "preprocess.resize.shorter_side=256", "--set", "preprocess.crop.center=224",
           "--set", "output.images_per_shard=1000", "--set", "decode.on_error=fail"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"imgpipe failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
    rows = [line.split(",")[1] for line in (out / "index-00000.csv").read_text().splitlines()[1:]]
    return dict(zip(rows, np.load(out / "tensors-00000.npy")))


def compare(imgpipe, d, names, transpose, np, Image, ImageOps, fast=False):
    key = "true" if transpose else "false"
    got = run_imgpipe(imgpipe, d, d.parent / f"out-{d.name}-{key}", ["--set", f"decode.exif_orientation={key}",
                                                                     "--set", f"decode.jpeg_downscale={str(fast).lower()}"], np)
    bad = 0
    for name in names:
        path = str(d / name)
        if path not in got:
            print(f"FAIL {name}: no tensor from imgpipe")
            bad += 1
            continue
        # A TIFF is upright once loaded (libtiff applied its tag; Pillow 13 then drops it, Debian 12's
        # Pillow 9.4 turned it a second time in exif_transpose).
        ref = reference(path, np, Image, ImageOps, transpose and not name.endswith(".tif"), fast)
        diff = float(np.abs(got[path] - ref).max())
        bad += diff > MAX_DIFF
        with Image.open(path) as im:
            mode = im.mode
        print(f"{'ok  ' if diff <= MAX_DIFF else 'FAIL'} {name:28s} PIL mode {mode:5s} exif_orientation={key:5s} "
              f"{'fast vs PIL draft' if fast else 'exact vs PIL'}: max diff {diff:.4f}")
    return bad


def fidelity(imgpipe, d, np, Image, ImageFilter, ImageOps):
    names = []
    for i, (w, h) in enumerate([(1411, 1411), (1000, 872), (4000, 3000), (640, 480)]):
        names.append(f"photo{w}x{h}.jpg")
        photo(np, Image, ImageFilter, w, h, 100 + i).save(d / names[-1], quality=90)
    for fast in ("false", "true"):
        got = run_imgpipe(imgpipe, d, d.parent / f"out-fidelity-{fast}", ["--set", f"decode.jpeg_downscale={fast}"], np)
        for name in names:
            diff = np.abs(got[str(d / name)] - reference(str(d / name), np, Image, ImageOps, False))
            print(f"jpeg_downscale={fast:5s} {name:22s} max {diff.max():.3f}  p99 {np.percentile(diff, 99):.3f}  "
                  f"mean {diff.mean():.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imgpipe", required=True)
    p.add_argument("--keep", help="write the images and outputs here instead of a temporary folder")
    p.add_argument("--fidelity", action="store_true", help="measure decode.jpeg_downscale against PIL instead")
    a = p.parse_args()
    try:
        import numpy as np
        from PIL import Image, ImageFilter, ImageOps
    except ImportError as e:
        if os.environ.get("IMGPIPE_REQUIRE_PIL") == "1":
            sys.exit(f"IMGPIPE_REQUIRE_PIL=1 but {sys.executable} cannot import it: {e}")
        print(f"skipped: {e}")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.keep or tmp)
        if a.fidelity:
            (work / "photos").mkdir(parents=True, exist_ok=True)
            return fidelity(a.imgpipe, work / "photos", np, Image, ImageFilter, ImageOps)
        (work / "formats").mkdir(parents=True, exist_ok=True)
        (work / "orient").mkdir(parents=True, exist_ok=True)
        names = generate(work / "formats", np, Image, ImageFilter)
        bad = compare(a.imgpipe, work / "formats", names, False, np, Image, ImageOps)
        onames = orientation_set(work / "orient", np, Image, ImageFilter)
        bad += compare(a.imgpipe, work / "orient", onames, False, np, Image, ImageOps)
        bad += compare(a.imgpipe, work / "orient", onames, True, np, Image, ImageOps)
        (work / "draft").mkdir(parents=True, exist_ok=True)
        dnames = draft_set(work / "draft", np, Image, ImageFilter)
        bad += compare(a.imgpipe, work / "draft", dnames, True, np, Image, ImageOps, fast=True)
    print(f"{bad} of {len(names) + 2 * len(onames) + len(dnames)} comparisons above {MAX_DIFF}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
