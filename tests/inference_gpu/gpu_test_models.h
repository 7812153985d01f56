#pragma once
// Small ResNet-, MobileNet- and ViT/Swin-style graphs for the CUDA backend tests (seeded weights).
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "model_builder.h"

namespace imgpipe::infer::test {

inline std::string gpu_conv_bn(ModelBuilder& b, const std::string& in, const std::string& name, int64_t cin,
                               int64_t cout, int64_t k, int64_t stride, bool relu) {
  using S = std::vector<int64_t>;
  const int64_t pad = k / 2;
  auto& c = b.node("Conv", {in, b.random(name + ".w", {cout, cin, k, k})}, {name + ".c"});
  attr(c, "kernel_shape", S{k, k});
  attr(c, "strides", S{stride, stride});
  attr(c, "pads", S{pad, pad, pad, pad});
  b.node("BatchNormalization", {name + ".c", b.random(name + ".g", {cout}, 0.5f, 1.5f), b.random(name + ".be", {cout}),
                                b.random(name + ".mu", {cout}), b.random(name + ".var", {cout}, 0.5f, 2.f)},
         {name + ".bn"});
  if (!relu) return name + ".bn";
  b.node("Relu", {name + ".bn"}, {name + ".r"});
  return name + ".r";
}

/// Stem conv+BN+Relu, max pool, an identity and a projection basic block, GAP, Flatten, Gemm.
inline ModelBuilder gpu_resnet_style() {
  using S = std::vector<int64_t>;
  ModelBuilder b(13);
  b.input("images", {-1, 3, 32, 32}).output("logits");
  std::string x = gpu_conv_bn(b, "images", "stem", 3, 16, 3, 2, true);
  auto& mp = b.node("MaxPool", {x}, {"pool"});
  attr(mp, "kernel_shape", S{3, 3});
  attr(mp, "strides", S{2, 2});
  attr(mp, "pads", S{1, 1, 1, 1});
  std::string y = gpu_conv_bn(b, "pool", "b1a", 16, 16, 3, 1, true);
  y = gpu_conv_bn(b, y, "b1b", 16, 16, 3, 1, false);
  b.node("Add", {y, "pool"}, {"b1.add"});
  b.node("Relu", {"b1.add"}, {"b1.out"});
  std::string z = gpu_conv_bn(b, "b1.out", "b2a", 16, 32, 3, 2, true);
  z = gpu_conv_bn(b, z, "b2b", 32, 32, 1, 1, false);
  const std::string proj = gpu_conv_bn(b, "b1.out", "b2p", 16, 32, 1, 2, false);
  b.node("Add", {z, proj}, {"b2.add"});
  b.node("Relu", {"b2.add"}, {"b2.out"});
  b.node("GlobalAveragePool", {"b2.out"}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  attr(b.node("Gemm", {"flat", b.random("fc.w", {10, 32}, -2.f, 2.f), b.random("fc.b", {10})}, {"logits"}), "transB",
       int64_t{1});
  return b;
}

/// SAME_UPPER stride-2 stem with Relu6, depthwise conv + BN + HardSwish, pointwise conv,
/// squeeze-excite (GAP, 1x1 convs, HardSigmoid, Mul), average pool, ReduceMean, Gemm, Softmax.
inline ModelBuilder gpu_mobilenet_style() {
  using S = std::vector<int64_t>;
  ModelBuilder b(14);
  b.input("input", {-1, 3, 33, 33}).output("prob");
  auto& c0 = b.node("Conv", {"input", b.random("c0.w", {16, 3, 3, 3}), b.random("c0.b", {16})}, {"c0"});
  attr(c0, "strides", S{2, 2});
  attr(c0, "auto_pad", std::string("SAME_UPPER"));
  b.node("Clip", {"c0", b.init("zero", {}, {0.f}), b.init("six", {}, {6.f})}, {"c0.r6"});
  auto& dw = b.node("Conv", {"c0.r6", b.random("dw.w", {16, 1, 3, 3})}, {"dw"});
  attr(dw, "group", int64_t{16});
  attr(dw, "strides", S{2, 2});
  attr(dw, "pads", S{1, 1, 1, 1});
  b.node("BatchNormalization", {"dw", b.random("dw.g", {16}, 0.5f, 1.5f), b.random("dw.be", {16}),
                                b.random("dw.mu", {16}), b.random("dw.var", {16}, 0.5f, 2.f)},
         {"dw.bn"});
  b.node("HardSwish", {"dw.bn"}, {"dw.hs"});
  b.node("Conv", {"dw.hs", b.random("pw.w", {24, 16, 1, 1}), b.random("pw.b", {24})}, {"pw"});
  b.node("GlobalAveragePool", {"pw"}, {"se.pool"});
  b.node("Conv", {"se.pool", b.random("se1.w", {8, 24, 1, 1}), b.random("se1.b", {8})}, {"se1"});
  b.node("Relu", {"se1"}, {"se1.r"});
  b.node("Conv", {"se1.r", b.random("se2.w", {24, 8, 1, 1}), b.random("se2.b", {24})}, {"se2"});
  b.node("HardSigmoid", {"se2"}, {"se2.hs"});
  b.node("Mul", {"pw", "se2.hs"}, {"se.out"});
  auto& ap = b.node("AveragePool", {"se.out"}, {"ap"});
  attr(ap, "kernel_shape", S{3, 3});
  attr(ap, "strides", S{2, 2});
  attr(ap, "pads", S{1, 1, 1, 1});
  attr(ap, "count_include_pad", int64_t{1});
  auto& rm = b.node("ReduceMean", {"ap"}, {"rm"});
  attr(rm, "axes", S{2, 3});
  attr(rm, "keepdims", int64_t{0});
  b.node("LeakyRelu", {"rm"}, {"lr"});
  b.node("Gemm", {"lr", b.random("fc.w", {24, 10}, -2.f, 2.f), b.random("fc.b", {10})}, {"fc"});
  attr(b.node("Softmax", {"fc"}, {"prob"}), "axis", int64_t{-1});
  return b;
}

/// The ops ViT and Swin exports run at run time, small: a patch-embedding conv, Swin's
/// padding (Pad) and patch merging (Slices with steps, one reversed), LayerNormalization,
/// attention (MatMul to q, k, v picked by Gather from [3, N, ...], batched MatMul, Softmax),
/// the opset-13 LayerNorm pattern (ReduceMean, Sub, Pow, Sqrt, Div), Erf GELU, the class
/// token (Gather along the tokens), Gemm. Opset 17.
inline ModelBuilder gpu_transformer_style() {
  using S = std::vector<int64_t>;
  const int64_t end = std::numeric_limits<int64_t>::max();
  ModelBuilder b(17);
  b.input("images", {-1, 3, 16, 16}).output("logits");
  attr(attr(b.node("Conv", {"images", b.random("pe.w", {8, 3, 4, 4}), b.random("pe.b", {8})}, {"pe"}),
            "kernel_shape", S{4, 4}), "strides", S{4, 4});
  attr(b.node("Transpose", {"pe"}, {"nhwc"}), "perm", S{0, 2, 3, 1});              // [N,4,4,8]
  b.node("Pad", {"nhwc", b.init_i64("pads", {8}, {0, 0, 0, 0, 0, 1, 2, 0}), b.init("pv", {}, {0.5f})},
         {"padded"});                                                                  // [N,5,6,8]
  b.node("Slice", {"padded", b.init_i64("a.s", {2}, {0, 0}), b.init_i64("a.e", {2}, {end, end}),
                   b.init_i64("a.ax", {2}, {1, 2}), b.init_i64("a.st", {2}, {2, 2})},
         {"even"});                                                                    // [N,3,3,8]
  b.node("Slice", {"padded", b.init_i64("b.s", {2}, {-1, -2}), b.init_i64("b.e", {2}, {-end, -end}),
                   b.init_i64("b.ax", {2}, {1, 2}), b.init_i64("b.st", {2}, {-2, -2})},
         {"reversed"});                                                                // [N,3,3,8]
  attr(b.node("Concat", {"even", "reversed"}, {"merged"}), "axis", int64_t{-1});     // [N,3,3,16]
  b.node("Reshape", {"merged", b.init_i64("tok.s", {3}, {0, 9, 16})}, {"tok"});
  b.node("LayerNormalization", {"tok", b.random("ln.g", {16}, 0.5f, 1.5f), b.random("ln.b", {16})}, {"ln"});
  b.node("MatMul", {"ln", b.random("qkv.w", {16, 48})}, {"qkv"});
  b.node("Reshape", {"qkv", b.init_i64("qkv.s", {5}, {0, 9, 3, 2, 8})}, {"qkv5"});
  attr(b.node("Transpose", {"qkv5"}, {"qkvT"}), "perm", S{2, 0, 3, 1, 4});        // [3,N,2,9,8]
  for (int i = 0; i < 3; ++i)
    b.node("Gather", {"qkvT", b.init_i64("i" + std::to_string(i), {}, {i})}, {std::string(1, "qkv"[i])});
  attr(b.node("Transpose", {"k"}, {"kT"}), "perm", S{0, 1, 3, 2});
  b.node("MatMul", {"q", "kT"}, {"scores"});
  b.node("Mul", {"scores", b.init("scale", {}, {0.35f})}, {"scaled"});
  attr(b.node("Softmax", {"scaled"}, {"att"}), "axis", int64_t{-1});
  b.node("MatMul", {"att", "v"}, {"ctx"});
  attr(b.node("Transpose", {"ctx"}, {"ctxT"}), "perm", S{0, 2, 1, 3});
  b.node("Reshape", {"ctxT", b.init_i64("ctx.s", {3}, {0, 9, 16})}, {"attn"});
  b.node("Add", {"tok", "attn"}, {"res"});
  const std::string gelu = gelu_pattern(b, layer_norm_pattern(b, "res", "ln"), "gelu");
  attr(b.node("Gather", {gelu, b.init_i64("cls", {}, {0})}, {"cls.tok"}), "axis", int64_t{1});
  b.node("Gemm", {"cls.tok", b.random("fc.w", {16, 10}, -2.f, 2.f), b.random("fc.b", {10})}, {"logits"});
  return b;
}

}  // namespace imgpipe::infer::test
