#!/usr/bin/env python3
"""Exports a torchvision classification model to ONNX for imgpipe (needs PyTorch, e.g. Colab).

    python3 scripts/export_torchvision.py --model resnet50 --out model.onnx
        [--weights DEFAULT|none] [--opset 17] [--batch dynamic|N] [--size 224]

The input is named "input" (N x 3 x size x size, float32, normalised as torchvision
expects); the output "logits". With --batch dynamic (default) the batch axis is symbolic,
so imgpipe can pick any batch size.
"""
import argparse
import inspect
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="torchvision.models name, e.g. resnet50, mobilenet_v3_large")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--weights", default="DEFAULT", help="DEFAULT (pretrained, downloads) or none (random)")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset, 11 to 17")
    ap.add_argument("--batch", default="dynamic", help="'dynamic' or a fixed batch size")
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    args = ap.parse_args()

    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"PyTorch and torchvision are needed: {e}", file=sys.stderr)
        return 2
    if not 11 <= args.opset <= 17:
        print("--opset must be between 11 and 17 (what imgpipe loads)", file=sys.stderr)
        return 1

    builder = getattr(torchvision.models, args.model, None)
    if builder is None:
        print(f"unknown torchvision model '{args.model}'", file=sys.stderr)
        return 1
    weights = None if args.weights.lower() == "none" else args.weights
    try:
        model = builder(weights=weights)
    except TypeError:  # torchvision < 0.13
        model = builder(pretrained=weights is not None)
    model.eval()

    dynamic = args.batch == "dynamic"
    batch = 1 if dynamic else int(args.batch)
    dummy = torch.randn(batch, 3, args.size, args.size)
    # The TorchScript exporter: newer PyTorch defaults to the dynamo one (opset 18 and up).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(
        model, dummy, args.out, **legacy,
        input_names=["input"], output_names=["logits"],
        opset_version=args.opset, do_constant_folding=True,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
    )
    print(f"wrote {args.out}: {args.model}, weights={args.weights}, opset {args.opset}, "
          f"batch {'dynamic' if dynamic else batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
