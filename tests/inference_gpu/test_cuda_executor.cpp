// CudaExecutor against the CPU Executor (the oracle) on the same Model: every op, a
// ResNet-style and a MobileNet-style graph, fp32 and fp16, full and partial batches; and the
// memory contract (bytes allocated == plan, OutOfMemory under a small budget, recovery).
// Without a GPU every test skips with the reason; with IMGPIPE_REQUIRE_GPU=1 a missing GPU is
// a failure instead.
//
// Tolerances, relative to the largest |reference| value (at least 1): fp32 1e-3 (cuDNN keeps
// FMA math, cuBLAS fp32 compute, no TF32); fp16 2e-2 against the CPU fp32 result, plus the
// same top-1 class for classifier outputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "cuda_check.h"
#include "cuda_executor.h"
#include "cuda_resources.h"
#include "device_query.h"
#include "gpu_test_models.h"

namespace imgpipe::infer::test {
namespace {

using V = std::vector<float>;
using S = std::vector<int64_t>;

void require_gpu() {
  const kernels::CudaProbe probe = kernels::probe_cuda();
  if (probe.device_count > 0) return;
  const char* require = std::getenv("IMGPIPE_REQUIRE_GPU");
  if (require && std::string(require) == "1") FAIL() << "IMGPIPE_REQUIRE_GPU=1 but no usable GPU: " << probe.reason;
  GTEST_SKIP() << "no usable GPU: " << probe.reason;
}

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override { require_gpu(); }
};

/// Largest |a - b| divided by max(1, largest |b|).
float rel_err(const V& a, const V& b) {
  float scale = 1.f, err = 0.f;
  for (size_t i = 0; i < b.size(); ++i) {
    scale = std::max(scale, std::fabs(b[i]));
    err = std::max(err, std::fabs(a[i] - b[i]));
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
  }
  return err / scale;
}

V run_cuda(const Model& m, const V& input, int items, Precision p, int batch = 0) {
  CudaDeviceAllocator device(0);
  CudaExecutor ex(m, 0, device);
  ex.prepare(batch > 0 ? batch : items, p);
  V out(static_cast<size_t>(m.output_size() * items));
  ex.run(input.data(), items, out.data());
  return out;
}

/// Runs m on both backends: fp32 within 1e-3, fp16 within 2e-2 of the CPU fp32 result;
/// also a partial batch (items < prepared batch) when the model is separable.
void expect_matches_cpu(const Model& m, int items, float tol16 = 2e-2f, const std::string& what = "") {
  S shape = m.input_shape();
  shape.insert(shape.begin(), items);
  const V x = ModelBuilder::random_values(shape, "input:" + what);
  const V want = run_model(m, x, items);
  const V got = run_cuda(m, x, items, Precision::FP32);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(rel_err(got, want), 1e-3f) << what << " fp32";
  const V half = run_cuda(m, x, items, Precision::FP16);
  EXPECT_LT(rel_err(half, want), tol16) << what << " fp16";
  // Fp16 on the GPU against fp16 storage on the CPU: both round the same weights.
  const V cpu_half = run_model(m, x, items, Precision::FP16);
  EXPECT_LT(rel_err(half, cpu_half), tol16) << what << " fp16 vs cpu fp16";
}

// ---------------------------------------------------------------- per-op -------------
struct OpCase {
  std::string name;
  std::function<ModelBuilder()> build;
  int items = 3;
};

void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

ModelBuilder conv(S x, S w, int64_t group, S strides, S pads, S dils, bool bias, const std::string& act = "",
                  const std::string& auto_pad = "") {
  ModelBuilder b;
  b.input("x", {-1, x[1], x[2], x[3]}).output("y");
  std::vector<std::string> ins = {"x", b.random("w", w)};
  if (bias) ins.push_back(b.random("b", {w[0]}));
  auto& n = b.node("Conv", ins, {act.empty() ? "y" : "c"});
  attr(n, "group", group);
  attr(n, "strides", strides);
  if (auto_pad.empty()) attr(n, "pads", pads);
  else attr(n, "auto_pad", auto_pad);
  attr(n, "dilations", dils);
  if (act == "Relu") b.node("Relu", {"c"}, {"y"});
  if (act == "Clip") b.node("Clip", {"c", b.init("lo", {}, {-0.1f}), b.init("hi", {}, {0.2f})}, {"y"});
  return b;
}

ModelBuilder unary(const std::string& op, int opset = 13, std::function<void(onnx::NodeProto&)> set = {}) {
  ModelBuilder b(opset);
  b.input("x", {-1, 3, 5, 7}).output("y");
  auto& n = b.node(op, {"x"}, {"y"});
  if (set) set(n);
  return b;
}

ModelBuilder binary(const std::string& op, S other, bool constant) {
  ModelBuilder b;
  b.input("x", {-1, 4, 3, 5}).output("y");
  std::string rhs;
  if (constant) {
    rhs = b.random("k", other, 0.5f, 1.5f);
  } else {  // an activation of shape [N, 4, 1, 1]: GAP of a Sigmoid (positive, for Div)
    b.node("Sigmoid", {"x"}, {"s"});
    b.node("GlobalAveragePool", {"s"}, {"g"});
    rhs = "g";
  }
  b.node(op, {"x", rhs}, {"y"});
  return b;
}

ModelBuilder pool(const std::string& op, S k, S strides, S pads, int64_t ceil, int64_t include_pad, S dils = {}) {
  ModelBuilder b(12);
  b.input("x", {-1, 3, 9, 8}).output("y");
  auto& n = b.node(op, {"x"}, {"y"});
  attr(n, "kernel_shape", k);
  attr(n, "strides", strides);
  attr(n, "pads", pads);
  attr(n, "ceil_mode", ceil);
  if (op == "AveragePool") attr(n, "count_include_pad", include_pad);
  if (!dils.empty()) attr(n, "dilations", dils);
  return b;
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> c;
  // Convolution: the CPU suite's edge shapes, plus fused activations and SAME pads.
  c.push_back({"conv_1x1_single", [] { return conv({1, 1, 1, 1}, {1, 1, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, false); }, 1});
  c.push_back({"conv_pointwise", [] { return conv({2, 3, 5, 7}, {4, 3, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, true); }});
  c.push_back({"conv_stride2_pad", [] { return conv({2, 3, 7, 5}, {4, 3, 3, 3}, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, true); }});
  c.push_back({"conv_asym_pads_dilation", [] { return conv({1, 2, 9, 9}, {3, 2, 3, 3}, 1, {1, 2}, {0, 2, 1, 0}, {2, 1}, true); }});
  c.push_back({"conv_depthwise", [] { return conv({2, 6, 6, 6}, {6, 1, 3, 3}, 6, {1, 1}, {1, 1, 1, 1}, {1, 1}, true); }});
  c.push_back({"conv_depthwise_x2", [] { return conv({1, 4, 7, 7}, {8, 1, 3, 3}, 4, {2, 2}, {1, 1, 1, 1}, {1, 1}, false); }});
  c.push_back({"conv_groups", [] { return conv({1, 4, 5, 5}, {6, 2, 3, 3}, 2, {1, 1}, {1, 1, 1, 1}, {1, 1}, true); }});
  c.push_back({"conv_bias_relu_fused", [] { return conv({2, 8, 9, 9}, {16, 8, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, "Relu"); }});
  c.push_back({"conv_relu_no_bias", [] { return conv({2, 8, 9, 9}, {16, 8, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, false, "Relu"); }});
  c.push_back({"conv_bias_clip_fused", [] { return conv({2, 8, 9, 9}, {16, 8, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, "Clip"); }});
  c.push_back({"conv_same_upper", [] { return conv({2, 3, 8, 8}, {5, 3, 2, 2}, 1, {1, 1}, {}, {1, 1}, true, "", "SAME_UPPER"); }});
  c.push_back({"conv_same_lower_stride2", [] { return conv({2, 3, 9, 8}, {5, 3, 3, 3}, 1, {2, 2}, {}, {1, 1}, true, "", "SAME_LOWER"); }});
  c.push_back({"conv_wide_odd", [] { return conv({2, 33, 17, 13}, {65, 33, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, "Relu"); }});
  // Elementwise
  c.push_back({"relu", [] { return unary("Relu"); }});
  c.push_back({"leaky_relu", [] { return unary("LeakyRelu", 13, [](onnx::NodeProto& n) { attr(n, "alpha", 0.3f); }); }});
  c.push_back({"clip_attrs", [] { return unary("Clip", 11, [](onnx::NodeProto& n) { attr(attr(n, "min", -0.25f), "max", 0.5f); }); }});
  c.push_back({"clip_inputs_relu6", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 5, 7}).output("y");
                 b.node("Mul", {"x", b.init("ten", {}, {10.f})}, {"m"});
                 b.node("Clip", {"m", b.init("zero", {}, {0.f}), b.init("six", {}, {6.f})}, {"y"});
                 return b;
               }});
  c.push_back({"sigmoid", [] { return unary("Sigmoid"); }});
  c.push_back({"hard_sigmoid", [] { return unary("HardSigmoid", 13, [](onnx::NodeProto& n) { attr(attr(n, "alpha", 0.25f), "beta", 0.4f); }); }});
  c.push_back({"hard_swish", [] { return unary("HardSwish", 14); }});
  c.push_back({"tanh", [] { return unary("Tanh"); }});
  c.push_back({"add_same_shape", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Tanh", {"x"}, {"t"});
                 b.node("Add", {"x", "t"}, {"y"});
                 return b;
               }});
  c.push_back({"sub_channel_constant", [] { return binary("Sub", {4, 1, 1}, true); }});
  c.push_back({"mul_row_constant", [] { return binary("Mul", {5}, true); }});
  c.push_back({"div_scalar_constant", [] { return binary("Div", {}, true); }});
  c.push_back({"mul_activation_broadcast", [] { return binary("Mul", {}, false); }});
  c.push_back({"div_activation_broadcast", [] { return binary("Div", {}, false); }});
  c.push_back({"batchnorm_standalone", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 b.node("BatchNormalization", {"x", b.random("g", {3}, 0.5f, 1.5f), b.random("be", {3}),
                                               b.random("mu", {3}), b.random("var", {3}, 0.5f, 2.f)},
                        {"y"});
                 return b;
               }});
  // Pooling
  c.push_back({"maxpool_3x3_s2_pad", [] { return pool("MaxPool", {3, 3}, {2, 2}, {1, 1, 1, 1}, 0, 0); }});
  c.push_back({"maxpool_ceil_asym", [] { return pool("MaxPool", {2, 3}, {2, 2}, {0, 1, 1, 0}, 1, 0); }});
  c.push_back({"maxpool_dilated", [] { return pool("MaxPool", {2, 2}, {1, 1}, {0, 0, 0, 0}, 0, 0, {2, 2}); }});
  c.push_back({"avgpool_exclude_pad", [] { return pool("AveragePool", {3, 3}, {2, 2}, {1, 1, 1, 1}, 0, 0); }});
  c.push_back({"avgpool_include_pad_ceil", [] { return pool("AveragePool", {3, 2}, {2, 2}, {1, 0, 1, 1}, 1, 1); }});
  c.push_back({"global_avg_pool", [] { return unary("GlobalAveragePool"); }});
  // Shapes, layout, GEMM
  c.push_back({"flatten_gemm_transb_alpha_beta", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 b.node("Flatten", {"x"}, {"f"});
                 auto& g = b.node("Gemm", {"f", b.random("w", {7, 60}), b.random("c", {7})}, {"y"});
                 attr(attr(attr(g, "transB", int64_t{1}), "alpha", 0.5f), "beta", 2.f);
                 return b;
               }});
  c.push_back({"gemm_no_c", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 6}).output("y");
                 b.node("Gemm", {"x", b.random("w", {6, 9})}, {"y"});
                 return b;
               }});
  c.push_back({"reshape_transpose", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Reshape", {"x", b.init_i64("s", {3}, {0, 4, 15})}, {"r"});
                 attr(b.node("Transpose", {"r"}, {"y"}), "perm", S{0, 2, 1});
                 return b;
               }});
  c.push_back({"transpose_nhwc", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(b.node("Transpose", {"x"}, {"y"}), "perm", S{0, 2, 3, 1});
                 return b;
               }});
  c.push_back({"concat_channels_three_inputs", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 2, 3, 3}).output("y");
                 b.node("Relu", {"x"}, {"r"});
                 attr(b.node("Concat", {"x", "r", "x"}, {"y"}), "axis", int64_t{1});
                 return b;
               }});
  c.push_back({"concat_last_axis", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 2, 3, 3}).output("y");
                 b.node("Sigmoid", {"x"}, {"s"});
                 attr(b.node("Concat", {"x", "s"}, {"y"}), "axis", int64_t{-1});
                 return b;
               }});
  c.push_back({"matmul_3d_by_weight", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 5, 6}).output("y");
                 b.node("MatMul", {"x", b.random("w", {6, 4})}, {"y"});
                 return b;
               }});
  c.push_back({"matmul_batched_activations", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 2, 5, 6}).output("y");
                 attr(b.node("Transpose", {"x"}, {"t"}), "perm", S{0, 1, 3, 2});
                 b.node("MatMul", {"x", "t"}, {"y"});  // [N,2,5,5]
                 return b;
               }});
  c.push_back({"matmul_broadcast_weight_batch", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 2, 5, 6}).output("y");
                 b.node("MatMul", {"x", b.random("w", {2, 6, 3})}, {"y"});  // loop over broadcast batches
                 return b;
               }});
  c.push_back({"softmax_last_axis", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 10}).output("y");
                 b.node("Mul", {"x", b.init("k", {}, {4.f})}, {"m"});
                 attr(b.node("Softmax", {"m"}, {"y"}), "axis", int64_t{-1});
                 return b;
               }});
  c.push_back({"softmax_channel_axis", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 5, 3, 4}).output("y");
                 attr(b.node("Softmax", {"x"}, {"y"}), "axis", int64_t{1});
                 return b;
               }});
  c.push_back({"softmax_opset11_flattened", [] {
                 ModelBuilder b(11);
                 b.input("x", {-1, 3, 4}).output("y");
                 attr(b.node("Softmax", {"x"}, {"y"}), "axis", int64_t{1});
                 return b;
               }});
  c.push_back({"softmax_long_row", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 1000}).output("y");
                 b.node("Softmax", {"x"}, {"y"});
                 return b;
               }});
  c.push_back({"reduce_mean_spatial_keepdims", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(b.node("ReduceMean", {"x"}, {"y"}), "axes", S{2, 3});
                 return b;
               }});
  c.push_back({"reduce_mean_channels_no_keep", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(attr(b.node("ReduceMean", {"x"}, {"y"}), "axes", S{1}), "keepdims", int64_t{0});
                 return b;
               }});
  c.push_back({"reduce_mean_longer_than_a_block", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 20, 20}).output("y");
                 attr(b.node("ReduceMean", {"x"}, {"y"}), "axes", S{2, 3});
                 return b;
               }});
  // The ops ViT, Swin, ConvNeXt and ShuffleNet exports run on activations.
  c.push_back({"sqrt", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 5, 7}).output("y");
                 b.node("Mul", {"x", "x"}, {"sq"});
                 b.node("Sqrt", {"sq"}, {"y"});
                 return b;
               }});
  c.push_back({"erf", [] { return unary("Erf"); }});
  c.push_back({"neg", [] { return unary("Neg"); }});
  c.push_back({"pow_square", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Pow", {"x", b.init("two", {}, {2.f})}, {"y"});
                 return b;
               }});
  c.push_back({"pow_row_exponents", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Sigmoid", {"x"}, {"s"});
                 b.node("Pow", {"s", b.init("e", {5}, {0.5f, 1.f, 2.f, 3.f, -0.5f})}, {"y"});
                 return b;
               }});
  c.push_back({"equal_not_where_broadcast", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Relu", {"x"}, {"r"});
                 b.node("Equal", {"r", b.init("zero", {}, {0.f})}, {"neg"});  // 1 where x <= 0
                 b.node("Not", {"neg"}, {"pos"});
                 b.node("Where", {"pos", "x", b.random("other", {5})}, {"y"});
                 return b;
               }});
  c.push_back({"where_same_shapes", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Relu", {"x"}, {"r"});
                 b.node("Tanh", {"x"}, {"t"});
                 b.node("Where", {"r", "t", "x"}, {"y"});
                 return b;
               }});
  c.push_back({"expand", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 1, 3, 1}).output("y");
                 b.node("Expand", {"x", b.init_i64("s", {4}, {1, 4, 3, 5})}, {"y"});
                 return b;
               }});
  c.push_back({"slice_channel_split", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("Slice", {"x", b.init_i64("s", {1}, {2}), b.init_i64("e", {1}, {4}), b.init_i64("a", {1}, {1})},
                        {"y"});
                 return b;
               }});
  c.push_back({"slice_steps_negative", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 4, 6, 7}).output("y");
                 b.node("Slice", {"x", b.init_i64("s", {3}, {1, -1, 0}), b.init_i64("e", {3}, {1000, -8, -1}),
                                  b.init_i64("a", {3}, {1, 3, 2}), b.init_i64("st", {3}, {2, -2, 3})},
                        {"y"});
                 return b;
               }});
  c.push_back({"gather_scalar_of_leading_axis", [] {  // ViT's q, k, v from [3, N, ...]
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(b.node("Transpose", {"x"}, {"t"}), "perm", S{1, 0, 2, 3});
                 b.node("Gather", {"t", b.init_i64("i", {}, {1})}, {"y"});
                 return b;
               }});
  c.push_back({"gather_list_last_axis", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(b.node("Gather", {"x", b.init_i64("i", {3}, {4, 2, 0})}, {"y"}), "axis", int64_t{-1});
                 return b;
               }});
  c.push_back({"gather_negative_scalar", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 4, 5}).output("y");
                 attr(b.node("Gather", {"x", b.init_i64("i", {}, {-1})}, {"y"}), "axis", int64_t{2});
                 return b;
               }});
  for (const char* mode : {"constant", "reflect", "edge"})
    c.push_back({std::string("pad_") + mode, [mode] {
                   ModelBuilder b;
                   b.input("x", {-1, 3, 5, 7}).output("y");
                   attr(b.node("Pad", {"x", b.init_i64("p", {8}, {0, 1, 2, 0, 0, 0, 1, 3}), b.init("v", {}, {0.25f})},
                               {"y"}),
                        "mode", std::string(mode));
                   return b;
                 }});
  c.push_back({"pad_reflect_rank3_no_value", [] {
                 ModelBuilder b(11);
                 b.input("x", {-1, 6, 4}).output("y");
                 attr(b.node("Pad", {"x", b.init_i64("p", {6}, {0, 2, 1, 0, 3, 0})}, {"y"}), "mode", std::string("reflect"));
                 return b;
               }});
  c.push_back({"layer_norm_last_axis", [] {
                 ModelBuilder b(17);
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 b.node("LayerNormalization", {"x", b.random("g", {5}, 0.5f, 1.5f), b.random("b", {5})}, {"y"});
                 return b;
               }});
  c.push_back({"layer_norm_block_no_bias", [] {
                 ModelBuilder b(17);
                 b.input("x", {-1, 4, 3, 5}).output("y");
                 auto& n = b.node("LayerNormalization", {"x", b.random("g", {4, 3, 5}, 0.5f, 1.5f)}, {"y"});
                 attr(attr(n, "axis", int64_t{1}), "epsilon", 1e-3f);
                 return b;
               }});
  c.push_back({"layer_norm_longer_than_a_block", [] {
                 ModelBuilder b(17);
                 b.input("x", {-1, 2, 600}).output("y");
                 b.node("LayerNormalization", {"x", b.random("g", {600}, 0.5f, 1.5f), b.random("b", {600})}, {"y"});
                 return b;
               }});
  c.push_back({"squeeze_unsqueeze_identity_output", [] {
                 ModelBuilder b;
                 b.input("x", {-1, 3, 1, 5}).output("y");
                 b.node("Squeeze", {"x", b.init_i64("ax", {1}, {2})}, {"s"});
                 b.node("Relu", {"s"}, {"r"});
                 b.node("Unsqueeze", {"r", b.init_i64("ax2", {1}, {1})}, {"u"});
                 b.node("Identity", {"u"}, {"y"});
                 return b;
               }});
  return c;
}

class CudaOps : public ::testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override { require_gpu(); }
};

TEST_P(CudaOps, MatchesCpuExecutor) {
  const OpCase& c = GetParam();
  const Model m = c.build().model();
  expect_matches_cpu(m, c.items, 2e-2f, c.name);
}

TEST_P(CudaOps, PartialBatchMatchesCpu) {
  const OpCase& c = GetParam();
  if (c.items < 2) GTEST_SKIP() << "single-image case";
  const Model m = c.build().model();
  S shape = m.input_shape();
  shape.insert(shape.begin(), 2);
  const V x = ModelBuilder::random_values(shape, "partial:" + c.name);
  const V want = run_model(m, x, 2);
  EXPECT_LT(rel_err(run_cuda(m, x, 2, Precision::FP32, 5), want), 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(Every, CudaOps, ::testing::ValuesIn(op_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& i) { return i.param.name; });

// ---------------------------------------------------------------- models -------------
size_t argmax(const float* v, int64_t n) { return static_cast<size_t>(std::max_element(v, v + n) - v); }

void expect_model_matches(const Model& m, int items) {
  S shape = m.input_shape();
  shape.insert(shape.begin(), items);
  const V x = ModelBuilder::random_values(shape, "images");
  const V want = run_model(m, x, items);
  const V got = run_cuda(m, x, items, Precision::FP32);
  EXPECT_LT(rel_err(got, want), 1e-3f);
  const V half = run_cuda(m, x, items, Precision::FP16);
  EXPECT_LT(rel_err(half, want), 2e-2f);
  const int64_t k = m.output_size();
  for (int i = 0; i < items; ++i) {
    EXPECT_EQ(argmax(got.data() + i * k, k), argmax(want.data() + i * k, k)) << "image " << i << " fp32";
    EXPECT_EQ(argmax(half.data() + i * k, k), argmax(want.data() + i * k, k)) << "image " << i << " fp16";
  }
}

TEST_F(Gpu, ResNetStyleMatchesCpu) { expect_model_matches(gpu_resnet_style().model(), 6); }
TEST_F(Gpu, MobileNetStyleMatchesCpu) { expect_model_matches(gpu_mobilenet_style().model(), 6); }
TEST_F(Gpu, TransformerStyleMatchesCpu) { expect_model_matches(gpu_transformer_style().model(), 6); }

// Mod on integers (Swin's window indices), where fp16 is exact too: both modes, divisors of
// both signs, against the CPU op.
TEST_F(Gpu, ModOfBothSignsMatchesCpuExactly) {
  for (int64_t fmod : {0, 1}) {
    ModelBuilder b;
    b.input("x", {-1, 2, 6}).output("y");
    attr(b.node("Mod", {"x", b.init("d", {6}, {3.f, -3.f, 2.5f, -2.5f, 7.f, 1.f})}, {"y"}), "fmod", fmod);
    const Model m = b.model();
    V x(3 * 2 * 6);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i * 7 % 17) - 8);
    const V want = run_model(m, x, 3);
    EXPECT_EQ(run_cuda(m, x, 3, Precision::FP32), want) << "fmod " << fmod;
    EXPECT_EQ(run_cuda(m, x, 3, Precision::FP16), want) << "fmod " << fmod;
  }
}

TEST_F(Gpu, DeviceInputFp32AndFp16AndDeviceOutput) {
  const Model m = gpu_resnet_style().model();
  const int items = 4;
  S shape = m.input_shape();
  shape.insert(shape.begin(), items);
  const V x = ModelBuilder::random_values(shape, "dev");
  const V want = run_model(m, x, items);
  CudaDeviceAllocator device(0);
  CudaExecutor ex(m, 0, device);
  ex.prepare(items, Precision::FP32);
  kernels::Stream stream;
  kernels::DeviceBuffer d_x(x.size() * 4), d_h(x.size() * 2), d_y(want.size() * 4);
  std::vector<uint16_t> xh(x.size());
  for (size_t i = 0; i < x.size(); ++i) xh[i] = float_to_half(x[i]);
  IMGPIPE_CUDA_CHECK(cudaMemcpy(d_x.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  IMGPIPE_CUDA_CHECK(cudaMemcpy(d_h.get(), xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  V out(want.size());
  ex.run_device(d_x.get(), false, items, out.data(), stream);
  EXPECT_LT(rel_err(out, want), 1e-3f);
  ex.run_device(d_h.get(), true, items, out.data(), stream);
  EXPECT_LT(rel_err(out, want), 2e-2f);  // the input itself was rounded to fp16
  ex.run_device_to_device(d_x.get(), false, items, d_y.as<float>(), stream);
  stream.synchronize();
  IMGPIPE_CUDA_CHECK(cudaMemcpy(out.data(), d_y.get(), out.size() * 4, cudaMemcpyDeviceToHost));
  EXPECT_LT(rel_err(out, want), 1e-3f);
  // A matching input is read in place, never written; host input afterwards uses the arena.
  V back(x.size());
  IMGPIPE_CUDA_CHECK(cudaMemcpy(back.data(), d_x.get(), back.size() * 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, x);
  ex.run(x.data(), items, out.data());
  EXPECT_LT(rel_err(out, want), 1e-3f);
  // fp16 storage reads an fp16 device input in place too.
  ex.prepare(items, Precision::FP16);
  ex.run_device(d_h.get(), true, items, out.data(), stream);
  EXPECT_LT(rel_err(out, want), 2e-2f);
  ex.run(x.data(), items, out.data());
  EXPECT_LT(rel_err(out, want), 2e-2f);
}

TEST_F(Gpu, HandlesArePlannedUntilCreatedThenKept) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaOptions options;
  CudaExecutor ex(m, 0, budget, options);
  EXPECT_EQ(ex.overhead_bytes(), options.handle_overhead_estimate);
  EXPECT_EQ(ex.handle_bytes(), 0u);
  ex.prepare(4, Precision::FP32);
  const size_t measured = ex.handle_bytes();
  std::printf("cuDNN/cuBLAS handles took %.1f MiB (planned %.1f MiB before)\n", double(measured) / (1 << 20),
              double(options.handle_overhead_estimate) / (1 << 20));
  EXPECT_EQ(ex.overhead_bytes(), 0u);
  EXPECT_LE(measured, options.handle_overhead_estimate) << "raise CudaOptions::handle_overhead_estimate";
  ex.release();
  EXPECT_EQ(budget.used(), 0u);
  ex.prepare(8, Precision::FP16);  // the same handles: nothing measured again
  EXPECT_EQ(ex.handle_bytes(), measured);
  EXPECT_EQ(ex.overhead_bytes(), 0u);
}

// ---------------------------------------------------------------- memory contract ----
TEST_F(Gpu, AllocatesExactlyThePlan) {
  const Model m = gpu_mobilenet_style().model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaExecutor ex(m, 0, budget);
  for (Precision p : {Precision::FP32, Precision::FP16}) {
    for (int batch : {1, 7, 32}) {
      budget.reset_peak();
      ex.prepare(batch, p);
      EXPECT_EQ(budget.used(), ex.plan(batch, p).total()) << batch << " " << to_string(p);
      EXPECT_EQ(budget.used(), ex.memory_plan().total());
      // run() allocates nothing
      S shape = m.input_shape();
      shape.insert(shape.begin(), batch);
      const V x = ModelBuilder::random_values(shape, "plan");
      V out(static_cast<size_t>(m.output_size() * batch));
      const size_t peak = budget.peak();
      ex.run(x.data(), batch, out.data());
      EXPECT_EQ(budget.peak(), peak);
    }
  }
  ex.release();
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_FALSE(ex.prepared());
}

/// Each image's k best classes as the predictions file ranks them on the host: decreasing
/// output, equal outputs in class order.
std::vector<int32_t> host_top(const V& out, int items, int64_t classes, int k) {
  std::vector<int32_t> top;
  for (int i = 0; i < items; ++i) {
    const float* o = out.data() + i * classes;
    std::vector<int32_t> idx(static_cast<size_t>(classes));
    for (int32_t c = 0; c < classes; ++c) idx[c] = c;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return o[a] > o[b] || (o[a] == o[b] && a < b); });
    top.insert(top.end(), idx.begin(), idx.begin() + k);
  }
  return top;
}

// The predictions' top-k ranked on the GPU (CUB segmented radix sort): 1000 classes with
// ties (Relu zeros, repeated values), full and partial batches, fp32 and fp16, within the plan.
TEST_F(Gpu, TopClassesRankedOnTheGpuMatchTheHostRanking) {
  ModelBuilder b;
  b.input("x", {-1, 1000}).output("y");
  b.node("Relu", {"x"}, {"y"});
  const Model m = b.model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaOptions opt;
  opt.top_k = 7;
  CudaExecutor ex(m, 0, budget, opt);
  EXPECT_EQ(ex.top_k(), 7);
  for (Precision p : {Precision::FP32, Precision::FP16}) {
    ex.prepare(6, p);
    EXPECT_EQ(budget.used(), ex.plan(6, p).total());
    for (int items : {6, 4}) {
      V x = ModelBuilder::random_values({items, 1000}, "topk");
      for (size_t i = 0; i < x.size(); i += 3) x[i] = 0.5f;  // ties among the largest too
      V out(x.size());
      ex.run(x.data(), items, out.data());
      EXPECT_EQ(ex.top_classes(), host_top(out, items, 1000, 7)) << to_string(p) << " " << items;
    }
  }
  CudaOptions more;
  more.top_k = 2000;  // more than the classes: all of them
  CudaExecutor all(m, 0, device, more);
  EXPECT_EQ(all.top_k(), 1000);
  all.prepare(2, Precision::FP32);
  V x = ModelBuilder::random_values({2, 1000}, "all"), out(x.size());
  all.run(x.data(), 2, out.data());
  EXPECT_EQ(all.top_classes(), host_top(out, 2, 1000, 1000));
}

TEST_F(Gpu, BudgetBelowPlanThrowsAndSmallerBatchRecovers) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaExecutor ex(m, 0, budget);
  const size_t big = ex.bytes_needed(64, Precision::FP32), small = ex.bytes_needed(4, Precision::FP32);
  ASSERT_LT(small, big);
  budget.set_budget(big - 1);
  EXPECT_THROW(ex.prepare(64, Precision::FP32), OutOfMemory);
  EXPECT_FALSE(ex.prepared());
  EXPECT_EQ(budget.used(), 0u);  // everything released
  ex.prepare(4, Precision::FP32);
  EXPECT_EQ(budget.used(), small);
  S shape = m.input_shape();
  shape.insert(shape.begin(), 4);
  const V x = ModelBuilder::random_values(shape, "recover");
  V out(static_cast<size_t>(m.output_size() * 4));
  ex.run(x.data(), 4, out.data());
  EXPECT_LT(rel_err(out, run_model(m, x, 4)), 1e-3f);
}

TEST_F(Gpu, FaultInjectionMidPrepareReleasesEverything) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaExecutor ex(m, 0, budget);
  for (int nth : {1, 2, 3}) {
    budget.fail_allocation_at(nth);
    EXPECT_THROW(ex.prepare(8, Precision::FP32), OutOfMemory) << nth;
    EXPECT_EQ(budget.used(), 0u) << nth;
  }
  budget.fail_allocation_at(0);
  ex.prepare(8, Precision::FP32);
  EXPECT_EQ(budget.used(), ex.bytes_needed(8, Precision::FP32));
}

TEST_F(Gpu, SetPrecisionReprepresWithHalfWeights) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  BudgetedAllocator budget(device);
  CudaExecutor ex(m, 0, budget);
  ex.prepare(8, Precision::FP32);
  const size_t f32 = budget.used();
  ex.set_precision(Precision::FP16);
  EXPECT_EQ(ex.precision(), Precision::FP16);
  EXPECT_EQ(ex.batch(), 8);
  EXPECT_EQ(budget.used(), ex.bytes_needed(8, Precision::FP16));
  EXPECT_LT(budget.used(), f32);
  // The fp16 plan fits a budget the fp32 one does not (the governor's last resort).
  ex.release();
  budget.set_budget(ex.bytes_needed(8, Precision::FP16));
  EXPECT_THROW(ex.prepare(8, Precision::FP32), OutOfMemory);
  ex.prepare(8, Precision::FP16);
  EXPECT_TRUE(ex.prepared());
}

TEST_F(Gpu, DeviceAllocatorReportsOutOfMemoryWithSizes) {
  CudaDeviceAllocator device(0);
  const size_t huge = size_t{1} << 50;  // 1 PiB
  try {
    (void)device.allocate(huge);
    FAIL() << "1 PiB allocation succeeded";
  } catch (const OutOfMemory& e) {
    EXPECT_EQ(e.requested(), huge);
    EXPECT_GT(e.available(), 0u);
    EXPECT_LT(e.available(), huge);
  }
  // The device still works afterwards.
  void* p = device.allocate(1 << 20);
  EXPECT_NE(p, nullptr);
  device.deallocate(p, 1 << 20);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST_F(Gpu, RunArgumentsAreChecked) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  CudaExecutor ex(m, 0, device);
  V x(static_cast<size_t>(m.input_size() * 3)), out(static_cast<size_t>(m.output_size() * 3));
  EXPECT_THROW(ex.run(x.data(), 1, out.data()), std::logic_error);
  ex.prepare(2, Precision::FP32);
  EXPECT_THROW(ex.run(x.data(), 3, out.data()), std::invalid_argument);
  EXPECT_THROW(ex.run(x.data(), 0, out.data()), std::invalid_argument);
}

}  // namespace
}  // namespace imgpipe::infer::test
