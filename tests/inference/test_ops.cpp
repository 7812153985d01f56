// Per-op checks: hand-computed values and edge shapes against direct reference loops.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "model_builder.h"

namespace imgpipe::infer::test {
namespace {

using V = std::vector<float>;
using S = std::vector<int64_t>;

/// Direct convolution, NCHW, for reference.
V reference_conv(const V& x, S xs, const V& w, S wsh, const V& b, int64_t group, S strides, S pads,
                 S dils) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3], m = wsh[0], kh = wsh[2], kw = wsh[3];
  const int64_t oh = (h + pads[0] + pads[2] - ((kh - 1) * dils[0] + 1)) / strides[0] + 1;
  const int64_t ow = (wd + pads[1] + pads[3] - ((kw - 1) * dils[1] + 1)) / strides[1] + 1;
  const int64_t cg = c / group, mg = m / group;
  V y(n * m * oh * ow);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t om = 0; om < m; ++om)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double s = b.empty() ? 0 : b[om];
          const int64_t g = om / mg;
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iy = oy * strides[0] - pads[0] + i * dils[0];
                const int64_t ix = ox * strides[1] - pads[1] + j * dils[1];
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += x[((in * c + g * cg + ic) * h + iy) * wd + ix] * w[((om * cg + ic) * kh + i) * kw + j];
              }
          y[((in * m + om) * oh + oy) * ow + ox] = static_cast<float>(s);
        }
  return y;
}

struct ConvCase {
  S x, w;
  int64_t group;
  S strides, pads, dils;
  bool bias;
};

class ConvShapes : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvShapes, MatchesDirectConvolution) {
  const ConvCase c = GetParam();
  ModelBuilder b;
  b.input("x", {-1, c.x[1], c.x[2], c.x[3]}).output("y");
  std::vector<std::string> ins = {"x", b.random("w", c.w)};
  V bias;
  if (c.bias) {
    bias = ModelBuilder::random_values({c.w[0]}, "b");
    ins.push_back(b.init("b", {c.w[0]}, bias));
  }
  auto& n = b.node("Conv", ins, {"y"});
  attr(n, "group", c.group);
  attr(n, "strides", c.strides);
  attr(n, "pads", c.pads);
  attr(n, "dilations", c.dils);
  const V x = ModelBuilder::random_values(c.x, "x");
  const V w = ModelBuilder::random_values(c.w, "w", -0.5f, 0.5f);
  const V want = reference_conv(x, c.x, w, c.w, bias, c.group, c.strides, c.pads, c.dils);
  const Model m = b.model();
  const V got = run_model(m, x, static_cast<int>(c.x[0]));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(max_abs_diff(got, want), 1e-4f);
  // fp16 storage keeps about three decimal digits
  const V half = run_model(m, x, static_cast<int>(c.x[0]), Precision::FP16);
  EXPECT_LT(max_abs_diff(half, want), 2e-2f);
}

INSTANTIATE_TEST_SUITE_P(
    Edge, ConvShapes,
    ::testing::Values(ConvCase{{1, 1, 1, 1}, {1, 1, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, false},  // 1x1
                      ConvCase{{2, 3, 5, 7}, {4, 3, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, true},  // pointwise
                      ConvCase{{2, 3, 7, 5}, {4, 3, 3, 3}, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, true},  // stride 2, pad, odd
                      ConvCase{{1, 2, 9, 9}, {3, 2, 3, 3}, 1, {1, 2}, {0, 2, 1, 0}, {2, 1}, true},  // asym pads, dilation
                      ConvCase{{2, 6, 6, 6}, {6, 1, 3, 3}, 6, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},  // depthwise
                      ConvCase{{1, 4, 7, 7}, {8, 1, 3, 3}, 4, {2, 2}, {1, 1, 1, 1}, {1, 1}, false},  // depthwise x2
                      ConvCase{{1, 4, 5, 5}, {6, 2, 3, 3}, 2, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},  // groups
                      ConvCase{{1, 3, 4, 4}, {2, 3, 2, 2}, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}, false},
                      // several images per GEMM (small maps), a short last chunk, one per GEMM
                      ConvCase{{5, 3, 6, 6}, {4, 3, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},
                      ConvCase{{3, 8, 20, 20}, {6, 8, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, true},
                      ConvCase{{5, 4, 7, 7}, {6, 2, 1, 1}, 2, {1, 1}, {0, 0, 0, 0}, {1, 1}, false},
                      ConvCase{{3, 4, 9, 11}, {6, 2, 3, 3}, 2, {2, 1}, {2, 0, 1, 3}, {1, 2}, true},
                      ConvCase{{3, 2, 40, 40}, {4, 2, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},
                      // Winograd's size (3x3, stride 1, pixels >= channels, >= 50 M MACs per
                      // image): a call of 8 images and 1 left, NCHW in and out; one image;
                      // asymmetric pads
                      ConvCase{{9, 64, 40, 40}, {64, 64, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},
                      ConvCase{{1, 64, 40, 40}, {80, 64, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, false},
                      ConvCase{{3, 16, 17, 13}, {24, 16, 3, 3}, 1, {1, 1}, {0, 1, 2, 0}, {1, 1}, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) {  // readable names: x5x3x6x6_w4x3x3x3_g1
      auto dims = [](const S& s) {
        std::string t;
        for (auto d : s) t += "x" + std::to_string(d);
        return t;
      };
      return std::to_string(info.index) + "_x" + dims(info.param.x).substr(1) + "_w" + dims(info.param.w).substr(1) +
             "_g" + std::to_string(info.param.group);
    });

TEST(Conv, HandComputed3x3WithPadding) {
  // 3x3 input 1..9, all-ones 3x3 kernel, pad 1: each output sums its neighbourhood.
  ModelBuilder b;
  b.input("x", {-1, 1, 3, 3}).output("y");
  attr(b.node("Conv", {"x", b.init("w", {1, 1, 3, 3}, V(9, 1.f)), b.init("b", {1}, {0.5f})}, {"y"}),
       "pads", S{1, 1, 1, 1});
  const V got = run_model(b.model(), {1, 2, 3, 4, 5, 6, 7, 8, 9}, 1);
  const V want = {12, 21, 16, 27, 45, 33, 24, 39, 28};
  for (size_t k = 0; k < want.size(); ++k) EXPECT_FLOAT_EQ(got[k], want[k] + 0.5f) << k;
}

TEST(Conv, AutoPadSameUpperAndLower) {
  // 1x4 input, kernel 1x2 stride 1: SAME needs one pad column, on the right (UPPER) or left.
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER", "VALID"}) {
    ModelBuilder b;
    b.input("x", {-1, 1, 1, 4}).output("y");
    attr(b.node("Conv", {"x", b.init("w", {1, 1, 1, 2}, {1.f, 10.f})}, {"y"}), "auto_pad", std::string(mode));
    const Model m = b.model();
    const V got = run_model(m, {1, 2, 3, 4}, 1);
    const std::string m_ = mode;
    const V want = m_ == "SAME_UPPER" ? V{21, 32, 43, 4} : m_ == "SAME_LOWER" ? V{10, 21, 32, 43} : V{21, 32, 43};
    EXPECT_EQ(got, want) << mode;
  }
}

TEST(Conv, BatchNormFoldedEqualsStandalone) {
  // The same Conv+BN twice: once folded (single consumer), once standalone (Conv output
  // also read by an Add), so both paths are compared.
  auto build = [](bool shared) {
    ModelBuilder b;
    b.input("x", {-1, 2, 4, 4}).output("out");
    b.node("Conv", {"x", b.random("w", {3, 2, 3, 3}), b.random("cb", {3})}, {"c"});
    b.node("BatchNormalization", {"c", b.random("g", {3}, 0.5f, 1.5f), b.random("be", {3}),
                                  b.random("mu", {3}), b.random("var", {3}, 0.5f, 2.f)}, {"bn"});
    if (shared) {
      b.node("Sub", {"c", "c"}, {"zero"});
      b.node("Add", {"bn", "zero"}, {"out"});
    } else {
      b.node("Relu", {"bn"}, {"r"});
      b.node("Sub", {"bn", "r"}, {"neg"});
      b.node("Add", {"neg", "r"}, {"out"});
    }
    return b.model();
  };
  const V x = ModelBuilder::random_values({2, 2, 4, 4}, "x");
  EXPECT_LT(max_abs_diff(run_model(build(false), x, 2), run_model(build(true), x, 2)), 1e-5f);
}

TEST(Conv, FusedReluMatchesReferenceOnEveryGemmPath) {
  // Conv+Relu is fused at load; batch 5 on an 8x8 map runs several images per GEMM, on a
  // 40x40 map one image per GEMM. Both must add the bias and clamp like the reference.
  for (const int64_t side : {int64_t{8}, int64_t{40}}) {
    const S xs{5, 3, side, side}, ws{4, 3, 3, 3};
    const V x = ModelBuilder::random_values(xs, "x");
    const V w = ModelBuilder::random_values(ws, "w", -0.5f, 0.5f);
    const V bias = ModelBuilder::random_values({4}, "b");
    ModelBuilder b;
    b.input("x", {-1, 3, side, side}).output("y");
    attr(b.node("Conv", {"x", b.init("w", ws, w), b.init("b", {4}, bias)}, {"c"}), "pads",
         std::vector<int64_t>{1, 1, 1, 1});
    b.node("Relu", {"c"}, {"y"});
    V want = reference_conv(x, xs, w, ws, bias, 1, {1, 1}, {1, 1, 1, 1}, {1, 1});
    for (float& v : want) v = std::max(v, 0.f);
    EXPECT_LT(max_abs_diff(run_model(b.model(), x, 5), want), 1e-4f) << "side " << side;
  }
}

V run_unary(const std::string& op, const V& x, const std::function<void(onnx::NodeProto&)>& set = {},
            int opset = 13, std::vector<std::string> extra = {}, ModelBuilder* pre = nullptr) {
  ModelBuilder b(opset);
  if (pre) b = *pre;
  b.input("x", {-1, static_cast<int64_t>(x.size())}).output("y");
  std::vector<std::string> ins = {"x"};
  ins.insert(ins.end(), extra.begin(), extra.end());
  auto& n = b.node(op, ins, {"y"});
  if (set) set(n);
  return run_model(b.model(), x, 1);
}

TEST(Elementwise, Activations) {
  const V x = {-3.f, -0.5f, 0.f, 0.5f, 4.f, 8.f};
  EXPECT_EQ(run_unary("Relu", x), (V{0, 0, 0, 0.5f, 4, 8}));
  EXPECT_EQ(run_unary("LeakyRelu", x, [](auto& n) { attr(n, "alpha", 0.5f); }),
            (V{-1.5f, -0.25f, 0, 0.5f, 4, 8}));
  EXPECT_EQ(run_unary("Clip", x, [](auto& n) { attr(n, "min", 0.f); attr(n, "max", 6.f); }, 11),
            (V{0, 0, 0, 0.5f, 4, 6}));
  const V hs = run_unary("HardSwish", x);
  const V want_hs = {0.f, -0.5f * 2.5f / 6.f, 0.f, 0.5f * 3.5f / 6.f, 4.f, 8.f};
  for (size_t k = 0; k < x.size(); ++k) EXPECT_NEAR(hs[k], want_hs[k], 1e-6f);
  const V hsig = run_unary("HardSigmoid", x);
  const V sig = run_unary("Sigmoid", x);
  const V th = run_unary("Tanh", x);
  for (size_t k = 0; k < x.size(); ++k) {
    EXPECT_NEAR(hsig[k], std::min(1.f, std::max(0.f, 0.2f * x[k] + 0.5f)), 1e-6f);
    EXPECT_NEAR(sig[k], 1.f / (1.f + std::exp(-x[k])), 1e-6f);
    EXPECT_NEAR(th[k], std::tanh(x[k]), 1e-6f);
  }
}

TEST(Elementwise, ClipBoundsAsInputsAndRelu6) {
  ModelBuilder b(13);
  b.init("lo", {}, {0.f});
  b.init("hi", {}, {6.f});
  EXPECT_EQ(run_unary("Clip", {-1.f, 3.f, 7.f}, {}, 13, {"lo", "hi"}, &b), (V{0, 3, 6}));
  ModelBuilder only_max(13);
  only_max.init("hi", {}, {1.f});
  EXPECT_EQ(run_unary("Clip", {-1.f, 3.f}, {}, 13, {"", "hi"}, &only_max), (V{-1, 1}));
}

TEST(Elementwise, BroadcastingBinaryOps) {
  // x [N,2,3] op c [3] / [2,1] / scalar
  const V x = {1, 2, 3, 4, 5, 6};
  auto run = [&](const std::string& op, S cs, V c) {
    ModelBuilder b;
    b.input("x", {-1, 2, 3}).output("y");
    b.node(op, {"x", b.init("c", cs, c)}, {"y"});
    return run_model(b.model(), x, 1);
  };
  EXPECT_EQ(run("Add", {3}, {10, 20, 30}), (V{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(run("Sub", {2, 1}, {1, 2}), (V{0, 1, 2, 2, 3, 4}));
  EXPECT_EQ(run("Mul", {}, {2}), (V{2, 4, 6, 8, 10, 12}));
  EXPECT_EQ(run("Div", {1, 3}, {1, 2, 4}), (V{1, 1, 0.75f, 4, 2.5f, 1.5f}));
  // constant on the left, broadcasting both ways: [2,1] - [N,2,3]
  ModelBuilder b;
  b.input("x", {-1, 2, 3}).output("y");
  b.node("Sub", {b.init("c", {2, 1}, {10, 20}), "x"}, {"y"});
  EXPECT_EQ(run_model(b.model(), x, 1), (V{9, 8, 7, 16, 15, 14}));
}

TEST(Pooling, MaxAndAverageWithPadding) {
  // 3x3 input 1..9, kernel 2, stride 2, pad 1 on all sides -> 2x2
  const V x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto pool = [&](const std::string& op, int64_t include_pad) {
    ModelBuilder b;
    b.input("x", {-1, 1, 3, 3}).output("y");
    auto& n = b.node(op, {"x"}, {"y"});
    attr(n, "kernel_shape", S{2, 2});
    attr(n, "strides", S{2, 2});
    attr(n, "pads", S{1, 1, 1, 1});
    if (op == "AveragePool") attr(n, "count_include_pad", include_pad);
    return run_model(b.model(), x, 1);
  };
  EXPECT_EQ(pool("MaxPool", 0), (V{1, 3, 7, 9}));
  EXPECT_EQ(pool("AveragePool", 0), (V{1, 2.5f, 5.5f, 7}));
  EXPECT_EQ(pool("AveragePool", 1), (V{0.25f, 1.25f, 2.75f, 7}));
  ModelBuilder b;
  b.input("x", {-1, 1, 3, 3}).output("y");
  b.node("GlobalAveragePool", {"x"}, {"y"});
  EXPECT_EQ(run_model(b.model(), x, 1), (V{5}));
}

TEST(Pooling, CeilModeOddSize) {
  // 1x5 input, kernel 1x2 stride 2: floor -> 2 outputs, ceil -> 3 (last window partial)
  ModelBuilder b;
  b.input("x", {-1, 1, 1, 5}).output("y");
  auto& n = b.node("MaxPool", {"x"}, {"y"});
  attr(n, "kernel_shape", S{1, 2});
  attr(n, "strides", S{1, 2});
  attr(n, "ceil_mode", int64_t{1});
  const Model m = b.model();
  EXPECT_EQ(m.output_shape(), (S{1, 1, 3}));
  EXPECT_EQ(run_model(m, {1, 5, 2, 4, 3}, 1), (V{5, 4, 3}));
}

TEST(Pooling, MaxMatchesDirectLoopOnOddShapes) {
  // Interior columns take an unchecked path: compare with a direct loop over padded,
  // strided, dilated and ceil-mode windows on odd sizes (including windows wider than W).
  struct Case { S x, k, st, pads, dil; int64_t ceil; };
  for (const Case& c : {Case{{2, 3, 9, 11}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
                        Case{{1, 2, 7, 5}, {2, 3}, {1, 2}, {0, 1, 1, 0}, {2, 1}, 0},
                        Case{{1, 1, 6, 2}, {3, 3}, {2, 1}, {1, 2, 1, 2}, {1, 1}, 1},
                        Case{{1, 1, 5, 13}, {1, 4}, {1, 3}, {0, 0, 0, 2}, {1, 2}, 1}}) {
    ModelBuilder b;
    b.input("x", {-1, c.x[1], c.x[2], c.x[3]}).output("y");
    auto& n = b.node("MaxPool", {"x"}, {"y"});
    attr(n, "kernel_shape", c.k);
    attr(n, "strides", c.st);
    attr(n, "pads", c.pads);
    attr(n, "dilations", c.dil);
    attr(n, "ceil_mode", c.ceil);
    const Model m = b.model();
    const S out = m.output_shape();
    const V x = ModelBuilder::random_values(c.x, "x", -1.f, 1.f);
    const V got = run_model(m, x, static_cast<int>(c.x[0]));
    const int64_t h = c.x[2], w = c.x[3], oh = out[1], ow = out[2];
    ASSERT_EQ(static_cast<int64_t>(got.size()), c.x[0] * c.x[1] * oh * ow);
    for (int64_t q = 0; q < c.x[0] * c.x[1]; ++q)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          float want = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < c.k[0]; ++i)
            for (int64_t j = 0; j < c.k[1]; ++j) {
              const int64_t iy = oy * c.st[0] - c.pads[0] + i * c.dil[0];
              const int64_t ix = ox * c.st[1] - c.pads[1] + j * c.dil[1];
              if (iy >= 0 && iy < h && ix >= 0 && ix < w) want = std::max(want, x[(q * h + iy) * w + ix]);
            }
          EXPECT_EQ(got[(q * oh + oy) * ow + ox], want) << q << " " << oy << " " << ox;
        }
  }
}

TEST(Linear, GemmTransposesAlphaBetaBroadcastC) {
  // A = x [N=2,3]; B given as [4,3] with transB; C [4] broadcast over rows.
  const V x = {1, 2, 3, 4, 5, 6};
  ModelBuilder b;
  b.input("x", {-1, 3}).output("y");
  auto& n = b.node("Gemm", {"x", b.init("w", {2, 3}, {1, 0, 0, 0, 1, 1}), b.init("c", {2}, {1, 2})}, {"y"});
  attr(n, "transB", int64_t{1});
  attr(n, "alpha", 2.f);
  attr(n, "beta", 0.5f);
  EXPECT_EQ(run_model(b.model(), x, 2), (V{2.5f, 11, 8.5f, 23}));
}

TEST(Linear, MatMulBatchedAndWeights) {
  ModelBuilder b;
  b.input("x", {-1, 2, 2}).output("y");
  b.node("MatMul", {"x", b.init("w", {2, 3}, {1, 0, 1, 0, 1, 1})}, {"y"});
  EXPECT_EQ(run_model(b.model(), {1, 2, 3, 4}, 1), (V{1, 2, 3, 3, 4, 7}));
  ModelBuilder t;  // x @ x^T per image
  t.input("x", {-1, 2, 2}).output("y");
  attr(t.node("Transpose", {"x"}, {"xt"}), "perm", S{0, 2, 1});
  t.node("MatMul", {"x", "xt"}, {"y"});
  EXPECT_EQ(run_model(t.model(), {1, 2, 3, 4, 0, 1, 1, 0}, 2), (V{5, 11, 11, 25, 1, 0, 0, 1}));
}

TEST(Softmax, AxisSemanticsBeforeAndFromOpset13) {
  // x [1,2,2], axis=1: opset 11 normalises over all 4 values, opset 13 over dim 1 only.
  const V x = {0, 1, 2, 3};
  auto run = [&](int opset) {
    ModelBuilder b(opset);
    b.input("x", {-1, 2, 2}).output("y");
    attr(b.node("Softmax", {"x"}, {"y"}), "axis", int64_t{1});
    return run_model(b.model(), x, 1);
  };
  const V v11 = run(11), v13 = run(13);
  const float z = 1 + std::exp(1.f) + std::exp(2.f) + std::exp(3.f);
  EXPECT_NEAR(v11[3], std::exp(3.f) / z, 1e-6f);
  EXPECT_NEAR(v13[0], 1.f / (1.f + std::exp(2.f)), 1e-6f);
  EXPECT_NEAR(v13[0] + v13[2], 1.f, 1e-6f);
}

TEST(ShapeOps, ReshapeFlattenTransposeConcatReduceMean) {
  const V x = {1, 2, 3, 4, 5, 6};
  {
    ModelBuilder b;
    b.input("x", {-1, 2, 3}).output("y");
    b.node("Reshape", {"x", b.init_i64("s", {3}, {0, 3, -1})}, {"y"});
    const Model m = b.model();
    EXPECT_EQ(m.output_shape(), (S{3, 2}));
    EXPECT_EQ(run_model(m, x, 1), x);
  }
  {
    ModelBuilder b;
    b.input("x", {-1, 2, 3}).output("y");
    attr(b.node("Transpose", {"x"}, {"t"}), "perm", S{0, 2, 1});
    b.node("Flatten", {"t"}, {"y"});
    EXPECT_EQ(run_model(b.model(), x, 1), (V{1, 4, 2, 5, 3, 6}));
  }
  {
    ModelBuilder b;
    b.input("x", {-1, 2, 3}).output("y");
    attr(b.node("Concat", {"x", b.init("c", {1, 2, 1}, {7, 8})}, {"y"}), "axis", int64_t{-1});
    EXPECT_EQ(run_model(b.model(), x, 1), (V{1, 2, 3, 7, 4, 5, 6, 8}));
  }
  {
    ModelBuilder b(13);
    b.input("x", {-1, 2, 3}).output("y");
    auto& n = b.node("ReduceMean", {"x"}, {"y"});
    attr(n, "axes", S{2});
    attr(n, "keepdims", int64_t{0});
    const Model m = b.model();
    EXPECT_EQ(m.output_shape(), (S{2}));
    EXPECT_EQ(run_model(m, x, 1), (V{2, 5}));
  }
  {
    ModelBuilder b(13);
    b.input("x", {-1, 2, 3}).output("y");
    attr(b.node("ReduceMean", {"x"}, {"y"}), "axes", S{1});
    EXPECT_EQ(b.model().output_shape(), (S{1, 3}));
    EXPECT_EQ(run_model(b.model(), x, 1), (V{2.5f, 3.5f, 4.5f}));
  }
}

TEST(ShapeOps, SliceStepsNegativeIndicesAndEndPastTheAxis) {
  const V x = {0, 1, 2, 3, 4, 5, 6, 7};  // [N,2,4]
  auto run = [&](S starts, S ends, S axes, S steps) {
    ModelBuilder b(13);
    b.input("x", {-1, 2, 4}).output("y");
    b.node("Slice", {"x", b.init_i64("s", {static_cast<int64_t>(starts.size())}, starts),
                     b.init_i64("e", {static_cast<int64_t>(ends.size())}, ends),
                     b.init_i64("a", {static_cast<int64_t>(axes.size())}, axes),
                     b.init_i64("st", {static_cast<int64_t>(steps.size())}, steps)},
           {"y"});
    return run_model(b.model(), x, 1);
  };
  // torch's x[..., 1:] exports ends = INT64_MAX, which must not overflow on the way.
  EXPECT_EQ(run({1}, {std::numeric_limits<int64_t>::max()}, {2}, {1}), (V{1, 2, 3, 5, 6, 7}));
  EXPECT_EQ(run({-1}, {std::numeric_limits<int64_t>::min()}, {-1}, {-2}), (V{3, 1, 7, 5}));
  EXPECT_EQ(run({1, 0}, {2, 4}, {1, 2}, {1, 3}), (V{4, 7}));
}

TEST(ShapeOps, GatherAlongAnAxisThatIsNotTheBatch) {
  // attention's q = qkv[0] after the batch moved to axis 1: [2,N,3] gathered at axis 0
  ModelBuilder b(13);
  b.input("x", {-1, 2, 3}).output("y");
  attr(b.node("Transpose", {"x"}, {"t"}), "perm", S{1, 0, 2});
  attr(b.node("Gather", {"t", b.init_i64("i", {}, {1})}, {"y"}), "axis", int64_t{0});
  EXPECT_EQ(run_model(b.model(), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 2, Precision::FP32, 2),
            (V{4, 5, 6, 10, 11, 12}));
}

TEST(Folding, ConstantTransposeCastToBoolAndWhere) {
  // Swin's window mask: a constant built, transposed and cast to bool, then used on live data.
  ModelBuilder b(13);
  b.input("x", {-1, 3, 2}).output("y");
  attr(b.node("Transpose", {b.init_i64("c", {2, 3}, {0, 5, 0, -1, 0, 2})}, {"ct"}), "perm", S{1, 0});
  attr(b.node("Cast", {"ct"}, {"mask"}), "to", int64_t{onnx::TensorProto::BOOL});
  b.node("Where", {"mask", "x", b.init("zero", {}, {0.f})}, {"y"});
  EXPECT_EQ(run_model(b.model(), {1, 2, 3, 4, 5, 6}, 1), (V{0, 2, 3, 0, 0, 6}));
}

TEST(Folding, ConstantOfShapeRangeAndScatterND) {
  // y = x + ScatterND(ConstantOfShape(Shape(x)[1:]) , [[1]], [Range(0, 3, 1) as float])
  ModelBuilder b(13);
  b.input("x", {-1, 2, 3}).output("y");
  b.node("Shape", {"x"}, {"shape"});
  b.node("Slice", {"shape", b.init_i64("s", {1}, {1}), b.init_i64("e", {1}, {3})}, {"dims"});
  b.node("ConstantOfShape", {"dims"}, {"zeros"});
  b.node("Range", {b.init("r0", {}, {0.f}), b.init("r1", {}, {3.f}), b.init("r2", {}, {1.f})}, {"ramp"});
  b.node("Unsqueeze", {"ramp", b.init_i64("ax", {1}, {0})}, {"upd"});
  b.node("ScatterND", {"zeros", b.init_i64("ix", {1, 1}, {1}), "upd"}, {"added"});
  b.node("Add", {"x", "added"}, {"y"});
  EXPECT_EQ(run_model(b.model(), {1, 1, 1, 1, 1, 1}, 1), (V{1, 1, 1, 1, 2, 3}));
}

TEST(Elementwise, PowSqrtErfNegNotEqualModOnLiveTensors) {
  const V x = {-2.f, -0.5f, 0.f, 1.f, 2.25f, 3.f};
  ModelBuilder pw(13);
  pw.input("x", {-1, 6}).output("y");
  pw.node("Pow", {"x", pw.init("two", {}, {2.f})}, {"y"});
  EXPECT_EQ(run_model(pw.model(), x, 1), (V{4, 0.25f, 0, 1, 5.0625f, 9}));
  const V sq = run_unary("Sqrt", {0.f, 1.f, 2.25f, 9.f});
  EXPECT_EQ(sq, (V{0, 1, 1.5f, 3}));
  const V erf = run_unary("Erf", x);
  for (size_t k = 0; k < x.size(); ++k) EXPECT_NEAR(erf[k], std::erf(x[k]), 1e-6f) << k;
  EXPECT_EQ(run_unary("Neg", x), (V{2, 0.5f, -0.f, -1, -2.25f, -3}));
  EXPECT_EQ(run_unary("Not", {0.f, 1.f, 0.f}), (V{1, 0, 1}));
  ModelBuilder eq(13);
  eq.input("x", {-1, 6}).output("y");
  eq.node("Equal", {"x", eq.init("c", {6}, {-2, 0, 0, 2, 2.25f, 0})}, {"y"});
  EXPECT_EQ(run_model(eq.model(), x, 1), (V{1, 0, 1, 0, 1, 0}));
  for (int64_t fmod : {0, 1}) {  // integer Mod takes the divisor's sign; fmod the dividend's
    ModelBuilder md(13);
    md.input("x", {-1, 4}).output("y");
    attr(md.node("Mod", {"x", md.init("d", {}, {3.f})}, {"y"}), "fmod", fmod);
    EXPECT_EQ(run_model(md.model(), {-4, -3, 5, 7.5f}, 1), fmod ? (V{-1, -0.f, 2, 1.5f}) : (V{2, 0, 2, 1.5f}));
  }
}

TEST(ShapeOps, ExpandToABroadcastShape) {
  ModelBuilder b(13);
  b.input("x", {-1, 1, 3}).output("y");
  b.node("Expand", {"x", b.init_i64("s", {3}, {1, 2, 1})}, {"y"});
  EXPECT_EQ(run_model(b.model(), {1, 2, 3, 4, 5, 6}, 2, Precision::FP32, 2), (V{1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}));
}

TEST(ShapeOps, PadConstantReflectEdge) {
  const V x = {1, 2, 3, 4, 5, 6};  // [N,2,3]; pad the last axis by 2 before, 1 after
  auto run = [&](const std::string& mode) {
    ModelBuilder b(13);
    b.input("x", {-1, 2, 3}).output("y");
    attr(b.node("Pad", {"x", b.init_i64("p", {6}, {0, 0, 2, 0, 0, 1}), b.init("v", {}, {9.f})}, {"y"}),
         "mode", mode);
    return run_model(b.model(), x, 1);
  };
  EXPECT_EQ(run("constant"), (V{9, 9, 1, 2, 3, 9, 9, 9, 4, 5, 6, 9}));
  EXPECT_EQ(run("reflect"), (V{3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5}));
  EXPECT_EQ(run("edge"), (V{1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6}));
}

TEST(Normalization, LayerNormalizationOpAndTheOpset13Pattern) {
  // rows {1,2,3} and {2,4,9}: mean 2 and 5, variance 2/3 and 26/3; scale {1,2,1}, bias {0,0,1}
  const V x = {1, 2, 3, 2, 4, 9};
  auto want = [&](float eps) {
    V y;
    for (int r = 0; r < 2; ++r) {
      const float mean = r ? 5.f : 2.f, var = r ? 26.f / 3 : 2.f / 3;
      const float scale[3] = {1, 2, 1}, bias[3] = {0, 0, 1};
      for (int k = 0; k < 3; ++k) y.push_back((x[r * 3 + k] - mean) / std::sqrt(var + eps) * scale[k] + bias[k]);
    }
    return y;
  };
  ModelBuilder ln(17);
  ln.input("x", {-1, 2, 3}).output("y");
  attr(ln.node("LayerNormalization", {"x", ln.init("g", {3}, {1, 2, 1}), ln.init("b", {3}, {0, 0, 1})}, {"y"}),
       "epsilon", 1e-5f);
  EXPECT_LT(max_abs_diff(run_model(ln.model(), x, 1), want(1e-5f)), 2e-6f);
  // what the TorchScript exporter writes below opset 17
  ModelBuilder p(13);
  p.input("x", {-1, 2, 3}).output("y");
  p.node("Mul", {layer_norm_pattern(p, "x", "ln"), p.init("g", {3}, {1, 2, 1})}, {"ng"});
  p.node("Add", {"ng", p.init("b", {3}, {0, 0, 1})}, {"y"});
  EXPECT_LT(max_abs_diff(run_model(p.model(), x, 1), want(1e-5f)), 2e-6f);
}

TEST(ShapeOps, DropoutAndIdentityAreNoOps) {
  ModelBuilder b;
  b.input("x", {-1, 3}).output("y");
  b.node("Dropout", {"x"}, {"d"});
  b.node("Relu", {"d"}, {"r"});
  b.node("Identity", {"r"}, {"y"});
  EXPECT_EQ(run_model(b.model(), {-1, 0, 2}, 1), (V{0, 0, 2}));
}

}  // namespace
}  // namespace imgpipe::infer::test
