#!/usr/bin/env python3
"""Builds data/sample/model.onnx: a classifier of the dominant colour of an image, made
analytically (no training), so its answers on data/sample/ can be checked by eye.

The model takes the ImageNet-normalised NCHW tensor that configs/sample.yaml produces,
averages each channel (GlobalAveragePool), undoes the normalisation and scores each colour
prototype by minus its squared distance to the mean colour, scaled by a temperature:
    logit_k = -T * |x - p_k|^2 = T * (2 x.p_k - |p_k|^2) - T * |x|^2
The last term is the same for every class and drops out of the softmax, so the whole
model is GlobalAveragePool -> Flatten -> Gemm, and its outputs are logits.
Needs the `onnx` and `numpy` Python packages (pip)."""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "sample")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Prototype colours, RGB in 0..1 (the dominant colours scripts/make_sample_data.py paints).
LABELS = ["red", "green", "blue", "yellow", "white", "black"]
PROTOTYPES = np.array([[220, 40, 40], [40, 200, 50], [30, 60, 210], [230, 220, 30],
                       [245, 245, 245], [15, 15, 15]], np.float32) / 255.0
T = 20.0


def main():
    # x_c = n_c * std_c + mean_c, with n the channel mean of the normalised input.
    weight = 2 * T * PROTOTYPES * STD[None, :]                       # [classes, 3]
    bias = T * (2 * PROTOTYPES @ MEAN - (PROTOTYPES ** 2).sum(1))   # [classes]
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"], name="classify", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "dominant_colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 56, 56])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])],
        [numpy_helper.from_array(weight.astype(np.float32), "weight"),
         numpy_helper.from_array(bias.astype(np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="imgpipe")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "model.onnx"))
    with open(os.path.join(OUT, "labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")


if __name__ == "__main__":
    main()
