#!/usr/bin/env python3
"""Exports torchvision classifiers (random weights, scripts/export_torchvision.py) and checks
that imgpipe's logits, through the CLI with model.output: logits, match PyTorch's (float64)
on the tensors imgpipe itself wrote: fp32 max relative difference < 1e-4 and equal top-1.
README's list of the architectures known to load and match (between its
"torchvision-models" markers) must agree with every result: a model that passes is listed,
one that fails is not (printed as "known", and the exit status is 0 when the list is right).

    torchvision_models.py --imgpipe BUILD/imgpipe [--models a,b|all] [--opsets 13,17]

IMGPIPE_TORCHVISION_MODELS=all (or a list) overrides the default subset. Exit 77 (skipped)
when PyTorch/torchvision are not installed; prints one result line per model and opset."""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

# The 18 architectures of issue 11, with the smallest input size each allows (ViT is built at it).
SIZES = {
    "resnet18": 64, "resnet50": 64, "resnext50_32x4d": 64, "wide_resnet50_2": 64,
    "vgg11": 224, "alexnet": 224, "squeezenet1_0": 64, "googlenet": 64,
    "mobilenet_v2": 64, "mobilenet_v3_small": 64, "mobilenet_v3_large": 64,
    "efficientnet_b0": 64, "mnasnet1_0": 64, "regnet_y_400mf": 64,
    "densenet121": 64, "inception_v3": 96, "shufflenet_v2_x1_0": 64,
    "convnext_tiny": 64, "vit_b_16": 64, "swin_t": 64,
}
ALL = list(SIZES)
# Models whose export needs a newer opset than asked (scaled_dot_product_attention: 14).
MIN_OPSET = {"vit_b_16": 14, "swin_t": 14}
# One model per op family the issue added (Pad, live Slice, LayerNorm/Erf, attention).
# The default (CI) subset: one of the classic CNNs and those that needed new ops or whole
# batches (ViT, Swin).
DEFAULT = ["resnet18", "densenet121", "shufflenet_v2_x1_0", "convnext_tiny", "vit_b_16", "swin_t"]
IMAGES = 4  # in a batch of 6: a short batch, padded for models that keep the batch elsewhere
MAX_REL = 1e-4


def check(imgpipe, name, opset, work, torch, np, Image):
    from export_torchvision import build_model, export
    size = SIZES[name]
    d = work / f"{name}-op{opset}"
    (d / "img").mkdir(parents=True)
    rng = np.random.default_rng(opset)
    for k in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / "img" / f"{k}.png")
    model = build_model(name, "none", size, seed=0)
    export(model, str(d / "model.onnx"), opset, size)
    cfg = d / "run.yaml"
    cfg.write_text(f"""input: {{path: {d / 'img'}}}
preprocess: {{resize: {{width: {size}, height: {size}}}, crop: {{center: [{size}, {size}]}}}}
model: {{path: {d / 'model.onnx'}, output: logits}}
device: cpu
precision: fp32
batch: {{size: {IMAGES + 2}}}
output: {{dir: {d / 'out'}, report: false}}
progress: off
""")
    t0 = time.time()
    r = subprocess.run([imgpipe, "--config", str(cfg)], capture_output=True, text=True)
    seconds = time.time() - t0
    if r.returncode != 0:
        return False, f"does not load/run (exit {r.returncode}): {r.stderr.strip()[-600:]}"
    x = np.load(d / "out" / "tensors-00000.npy")
    got = np.load(d / "out" / "outputs-00000.npy")
    # The reference is PyTorch in float64: some random-weight models are ill-conditioned
    # enough that PyTorch's own float32 result is 1e-4 away from it (EfficientNet-B0 on image
    # tensors), so two correct float32 engines need not agree to 1e-4 with each other.
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        want32 = model(xt).numpy()
        want = model.double()(xt.double()).numpy()
    if np.ptp(want) == 0:  # e.g. a zero-initialised head: any engine would "match"
        return False, "PyTorch's logits are constant: the comparison would prove nothing"
    scale = max(np.abs(want).max(), 1e-12)
    rel = float(np.abs(got - want).max() / scale)
    torch_rel = float(np.abs(want32 - want).max() / scale)
    top1 = bool((got.argmax(1) == want.argmax(1)).all())
    ok = rel < MAX_REL and top1 and got.shape == want.shape
    return ok, (f"max rel diff {rel:.2e} (PyTorch float32: {torch_rel:.2e}), top-1 equal {top1}, "
                f"imgpipe {seconds:.1f} s")


def readme_models():
    text = (ROOT / "README.md").read_text()
    begin, end = text.index("<!-- torchvision-models -->"), text.index("<!-- /torchvision-models -->")
    return {w.strip(" ,.\n`") for w in text[begin:end].split()} & set(SIZES)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgpipe", required=True)
    ap.add_argument("--models", default=os.environ.get("IMGPIPE_TORCHVISION_MODELS", ",".join(DEFAULT)))
    ap.add_argument("--opsets", default="13,17")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torchvision  # noqa: F401
        from PIL import Image
    except ImportError as e:
        print(f"skipped: PyTorch, torchvision and Pillow are needed ({e})")
        return 77
    torch.set_num_threads(2)
    names = ALL if args.models == "all" else args.models.split(",")
    listed = readme_models()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            opsets = sorted({max(int(o), MIN_OPSET.get(name, 0)) for o in args.opsets.split(",")})
            for opset in opsets:
                t0 = time.time()
                ok, what = check(args.imgpipe, name, opset, Path(tmp), torch, np, Image)
                known = not ok and name not in listed  # README says it does not match yet
                print(f"{'ok  ' if ok else 'known' if known else 'FAIL'} {name} opset {opset}: {what} "
                      f"({time.time() - t0:.0f} s in all)", flush=True)
                if ok != (name in listed):
                    failed += 1
                    print(f"FAIL README.md {'does not list' if ok else 'lists'} {name} among the architectures "
                          "known to load and match", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
