#!/usr/bin/env python3
"""Exports a torchvision classification model to ONNX for imgpipe (needs PyTorch, e.g. Colab).

    python3 scripts/export_torchvision.py --model resnet50 --out model.onnx
        [--weights DEFAULT|none] [--opset 17] [--batch dynamic|N] [--size 224] [--seed 0]

The input is named "input" (N x 3 x size x size, float32, normalised as torchvision
expects); the output "logits". With --batch dynamic (default) the batch axis is symbolic,
so imgpipe can pick any batch size. With --weights none the weights are random (--seed) and
BatchNorm statistics are measured on random inputs, so that the logits stay O(1).
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
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights (--weights none)")
    args = ap.parse_args()

    try:
        import torch  # noqa: F401  (checked here for a clear message)
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"PyTorch and torchvision are needed: {e}", file=sys.stderr)
        return 2
    if not 11 <= args.opset <= 17:
        print("--opset must be between 11 and 17 (what imgpipe loads)", file=sys.stderr)
        return 1

    try:
        model = build_model(args.model, args.weights, args.size, args.seed)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    dynamic = args.batch == "dynamic"
    export(model, args.out, args.opset, args.size, None if dynamic else int(args.batch))
    print(f"wrote {args.out}: {args.model}, weights={args.weights}, opset {args.opset}, "
          f"batch {args.batch}")
    return 0


def build_model(name, weights="DEFAULT", size=224, seed=0):
    """The torchvision model in eval mode; weights "none" = random (seeded), BatchNorm calibrated."""
    import torch
    import torchvision
    builder = getattr(torchvision.models, name, None)
    if builder is None:
        raise ValueError(f"unknown torchvision model '{name}'")
    weights = None if weights.lower() == "none" else weights
    torch.manual_seed(seed)
    kwargs = {}
    if weights is None and name.startswith("vit_"):
        kwargs["image_size"] = size  # a random ViT at another input size
    try:
        model = builder(weights=weights, **kwargs)
    except TypeError:  # torchvision < 0.13
        model = builder(pretrained=weights is not None)
    if weights is None:
        randomize_zero_layers(torch, model)
        calibrate_batchnorm(torch, model, size)
    return model.eval()


def export(model, out, opset=17, size=224, batch=None):
    """Writes the model as ONNX: input "input" (batch x 3 x size x size), output "logits";
    batch None = a symbolic batch axis."""
    import torch
    dummy = torch.randn(batch or 1, 3, size, size)
    # The TorchScript exporter: newer PyTorch defaults to the dynamo one (opset 18 and up).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(
        model, dummy, out, **legacy,
        input_names=["input"], output_names=["logits"],
        opset_version=opset, do_constant_folding=True,
        dynamic_axes=None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def randomize_zero_layers(torch, model):
    """Gives random weights to the Linear layers torchvision starts at zero (ViT's and Swin's
    heads), so that random logits differ between classes and images."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and not m.weight.detach().any():
            torch.nn.init.normal_(m.weight, std=0.02)


def calibrate_batchnorm(torch, model, size):
    """Sets BatchNorm running statistics to those of random inputs (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    # Inception's auxiliary head runs only in training mode, and not below 299x299 inputs:
    # off while calibrating (eval mode never uses it).
    aux = getattr(model, "AuxLogits", None)
    model.AuxLogits = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, size, size))
    model.AuxLogits = aux


if __name__ == "__main__":
    sys.exit(main())
