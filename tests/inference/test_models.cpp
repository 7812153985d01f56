// Whole models: ResNet- and MobileNet-style graphs against onnxruntime, PyTorch-style
// shape subgraphs, and what the loader accepts and refuses.
#include <gtest/gtest.h>

#include <limits>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model_builder.h"

namespace imgpipe::infer::test {
namespace {

namespace fs = std::filesystem;
using V = std::vector<float>;
using S = std::vector<int64_t>;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("imgpipe_infer_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d;
}

std::string conv_bn(ModelBuilder& b, const std::string& in, const std::string& name, int64_t cin,
                    int64_t cout, int64_t k, int64_t stride, bool relu) {
  const int64_t pad = k / 2;
  auto& c = b.node("Conv", {in, b.random(name + ".w", {cout, cin, k, k})}, {name + ".c"});
  attr(c, "kernel_shape", S{k, k});
  attr(c, "strides", S{stride, stride});
  attr(c, "pads", S{pad, pad, pad, pad});
  b.node("BatchNormalization", {name + ".c", b.random(name + ".g", {cout}, 0.5f, 1.5f),
                                b.random(name + ".be", {cout}), b.random(name + ".mu", {cout}),
                                b.random(name + ".var", {cout}, 0.5f, 2.f)},
         {name + ".bn"});
  if (!relu) return name + ".bn";
  b.node("Relu", {name + ".bn"}, {name + ".r"});
  return name + ".r";
}

ModelBuilder resnet_style() {
  ModelBuilder b(13);
  b.input("images", {-1, 3, 32, 32}).output("logits");
  std::string x = conv_bn(b, "images", "stem", 3, 8, 3, 2, true);  // 16x16
  auto& mp = b.node("MaxPool", {x}, {"pool"});
  attr(mp, "kernel_shape", S{3, 3});
  attr(mp, "strides", S{2, 2});
  attr(mp, "pads", S{1, 1, 1, 1});  // 8x8
  // basic block, identity shortcut
  std::string y = conv_bn(b, "pool", "b1a", 8, 8, 3, 1, true);
  y = conv_bn(b, y, "b1b", 8, 8, 3, 1, false);
  b.node("Add", {y, "pool"}, {"b1.add"});
  b.node("Relu", {"b1.add"}, {"b1.out"});
  // downsampling block with a 1x1 stride-2 projection and a 1x1 stride-1 conv
  std::string z = conv_bn(b, "b1.out", "b2a", 8, 16, 3, 2, true);
  z = conv_bn(b, z, "b2b", 16, 16, 1, 1, false);
  const std::string proj = conv_bn(b, "b1.out", "b2p", 8, 16, 1, 2, false);
  b.node("Add", {z, proj}, {"b2.add"});
  b.node("Relu", {"b2.add"}, {"b2.out"});
  b.node("GlobalAveragePool", {"b2.out"}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  attr(b.node("Gemm", {"flat", b.random("fc.w", {10, 16}), b.random("fc.b", {10})}, {"logits"}),
       "transB", int64_t{1});
  return b;
}

ModelBuilder mobilenet_style() {
  ModelBuilder b(14);  // HardSwish needs opset 14
  b.input("input", {-1, 3, 33, 33}).output("prob");
  auto& c0 = b.node("Conv", {"input", b.random("c0.w", {8, 3, 3, 3}), b.random("c0.b", {8})}, {"c0"});
  attr(c0, "strides", S{2, 2});
  attr(c0, "auto_pad", std::string("SAME_UPPER"));  // 17x17
  b.node("Clip", {"c0", b.init("zero", {}, {0.f}), b.init("six", {}, {6.f})}, {"c0.r6"});
  auto& dw = b.node("Conv", {"c0.r6", b.random("dw.w", {8, 1, 3, 3})}, {"dw"});
  attr(dw, "group", int64_t{8});
  attr(dw, "strides", S{2, 2});
  attr(dw, "pads", S{1, 1, 1, 1});  // 9x9
  b.node("BatchNormalization", {"dw", b.random("dw.g", {8}, 0.5f, 1.5f), b.random("dw.be", {8}),
                                b.random("dw.mu", {8}), b.random("dw.var", {8}, 0.5f, 2.f)},
         {"dw.bn"});
  b.node("HardSwish", {"dw.bn"}, {"dw.hs"});
  b.node("Conv", {"dw.hs", b.random("pw.w", {16, 8, 1, 1}), b.random("pw.b", {16})}, {"pw"});
  // squeeze-excite: pool, 1x1 down + relu, 1x1 up + hard sigmoid, scale
  b.node("GlobalAveragePool", {"pw"}, {"se.pool"});
  b.node("Conv", {"se.pool", b.random("se1.w", {4, 16, 1, 1}), b.random("se1.b", {4})}, {"se1"});
  b.node("Relu", {"se1"}, {"se1.r"});
  b.node("Conv", {"se1.r", b.random("se2.w", {16, 4, 1, 1}), b.random("se2.b", {16})}, {"se2"});
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
  b.node("Gemm", {"lr", b.random("fc.w", {16, 10}, -2.f, 2.f), b.random("fc.b", {10})}, {"fc"});
  attr(b.node("Softmax", {"fc"}, {"prob"}), "axis", int64_t{-1});
  return b;
}

/// PyTorch's x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
ModelBuilder torch_flatten_style(int opset) {
  ModelBuilder b(opset);
  b.input("x", {-1, 3, 8, 8}).output("y");
  b.node("Conv", {"x", b.random("w", {4, 3, 3, 3})}, {"c"});  // 6x6
  b.node("Shape", {"c"}, {"shape"});
  onnx::TensorProto zero;
  zero.set_data_type(onnx::TensorProto::INT64);
  zero.add_int64_data(0);
  attr_tensor(b.node("Constant", {}, {"idx"}), "value", zero);
  attr(b.node("Gather", {"shape", "idx"}, {"n"}), "axis", int64_t{0});
  if (opset >= 13) {
    b.node("Unsqueeze", {"n", b.init_i64("ax", {1}, {0})}, {"n1"});
  } else {
    attr(b.node("Unsqueeze", {"n"}, {"n1"}), "axes", S{0});
  }
  attr(b.node("Concat", {"n1", b.init_i64("minus1", {1}, {-1})}, {"target"}), "axis", int64_t{0});
  attr(b.node("Concat", {"target"}, {"target2"}), "axis", int64_t{0});
  attr(b.node("Cast", {"target2"}, {"target3"}), "to", int64_t{onnx::TensorProto::INT64});
  b.node("Reshape", {"c", "target3"}, {"flat"});
  attr(b.node("Gemm", {"flat", b.random("fc", {144, 5})}, {"y"}), "alpha", 1.f);
  return b;
}

enum class OrtStatus { Ok, Unavailable };

/// Runs ort_compare.py; Unavailable when onnxruntime cannot be imported.
OrtStatus run_ort(const fs::path& model, const S& shape, const V& x, V& out, std::string& why) {
  const char* py = std::getenv("IMGPIPE_PYTHON");
  const std::string python = py && *py ? py : "python3";
  const fs::path in = model.parent_path() / "input.npy", res = model.parent_path() / "output.npy";
  write_npy(in.string(), shape, x);
  const std::string cmd = python + " " + IMGPIPE_ORT_COMPARE + " " + model.string() + " " +
                          in.string() + " " + res.string() + " 2>" + (model.parent_path() / "err.txt").string();
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream f(model.parent_path() / "err.txt");
    why.assign(std::istreambuf_iterator<char>(f), {});
    if (WIFEXITED(rc) && (WEXITSTATUS(rc) == 2 || WEXITSTATUS(rc) == 127)) return OrtStatus::Unavailable;
    ADD_FAILURE() << "ort_compare.py failed (" << rc << "): " << why;
    return OrtStatus::Unavailable;
  }
  out = read_npy(res.string());
  return OrtStatus::Ok;
}

void compare_with_ort(ModelBuilder& b, const std::string& name, int batch) {
  const fs::path dir = temp_dir(name);
  const fs::path file = dir / "model.onnx";
  b.save(file.string());
  const Model m = Model::load(file.string());
  S shape = m.input_shape();
  shape.insert(shape.begin(), batch);
  const V x = ModelBuilder::random_values(shape, name + ".input");
  V want;
  std::string why;
  const char* req = std::getenv("IMGPIPE_REQUIRE_ORT");
  if (run_ort(file, shape, x, want, why) != OrtStatus::Ok) {
    if (req && std::string(req) == "1") FAIL() << "onnxruntime required but unavailable: " << why;
    GTEST_SKIP() << "onnxruntime not available (set IMGPIPE_PYTHON): " << why;
  }
  const V got = run_model(m, x, batch);
  ASSERT_EQ(got.size(), want.size());
  // Tolerance: 1e-4 relative to the largest reference magnitude (at least 1e-4 absolute).
  float scale = 1.f;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  EXPECT_LE(max_abs_diff(got, want), 1e-4f * scale) << name;
  const V half = run_model(m, x, batch, Precision::FP16);
  EXPECT_LE(max_abs_diff(half, want), 3e-2f * scale) << name << " fp16";
}

TEST(OnnxRuntimeOracle, ResNetStyle) {
  ModelBuilder b = resnet_style();
  compare_with_ort(b, "resnet_style", 3);
}

TEST(OnnxRuntimeOracle, MobileNetStyle) {
  ModelBuilder b = mobilenet_style();
  compare_with_ort(b, "mobilenet_style", 2);
}

TEST(OnnxRuntimeOracle, TorchShapeSubgraph) {
  ModelBuilder b = torch_flatten_style(13);
  compare_with_ort(b, "torch_flatten", 4);
}

// The ops issue 11 added for DenseNet/Inception (Pad), ShuffleNet (live Slice), ConvNeXt
// (LayerNormalization, Erf, Pow, Sqrt), ViT and Swin (attention: batched MatMul, Softmax,
// Transpose; Expand, Where, Equal, Not, Neg, Mod), each against onnxruntime.
ModelBuilder pads_and_slices() {
  ModelBuilder b(17);
  b.input("x", {-1, 4, 5, 6}).output("y");
  b.node("Pad", {"x", b.init_i64("p1", {8}, {0, 0, 1, 2, 0, 0, 2, 1}), b.init("v", {}, {0.5f})}, {"pc"});  // 8x9
  attr(b.node("Pad", {"pc", b.init_i64("p2", {8}, {0, 0, 2, 1, 0, 0, 1, 3})}, {"pr"}), "mode", std::string("reflect"));
  attr(b.node("Pad", {"pr", b.init_i64("p3", {8}, {0, 0, 1, 0, 0, 0, 0, 2})}, {"pe"}), "mode", std::string("edge"));
  // 4 x 12 x 15: channels 3,1 (step -2), rows from -10 in steps of 3, columns 1..-1.
  b.node("Slice", {"pe", b.init_i64("st", {3}, {3, -10, 1}), b.init_i64("en", {3}, {-5, 100, -1}),
                   b.init_i64("ax", {3}, {1, 2, -1}), b.init_i64("sp", {3}, {-2, 3, 1})},
         {"y"});
  return b;
}

ModelBuilder transformer_block() {
  ModelBuilder b(17);
  b.input("x", {-1, 6, 8}).output("y");  // 6 tokens of 8
  // Opset 13's layer norm pattern, then opset 17's LayerNormalization.
  const std::string ln1 = layer_norm_pattern(b, "x", "ln1");
  // Attention, one head: q k^T / sqrt(8), softmax, times v.
  b.node("MatMul", {ln1, b.random("wq", {8, 8})}, {"q"});
  b.node("MatMul", {ln1, b.random("wk", {8, 8})}, {"k"});
  b.node("MatMul", {ln1, b.random("wv", {8, 8})}, {"v"});
  attr(b.node("Transpose", {"k"}, {"kt"}), "perm", S{0, 2, 1});
  b.node("MatMul", {"q", "kt"}, {"s"});
  b.node("Mul", {"s", b.init("scale", {}, {0.35355339f})}, {"ss"});
  attr(b.node("Softmax", {"ss"}, {"a"}), "axis", int64_t{-1});
  b.node("MatMul", {"a", "v"}, {"att"});
  b.node("Add", {"x", "att"}, {"r"});
  attr(b.node("LayerNormalization", {"r", b.random("g", {8}, 0.5f, 1.5f), b.random("be", {8})}, {"ln2"}), "axis",
       int64_t{-1});
  const std::string gelu = gelu_pattern(b, "ln2", "gelu");
  // Where(not(x == -x), x, -x) is x except at 0; Expand a per-token bias over the batch.
  b.node("Neg", {gelu}, {"ng"});
  b.node("Equal", {gelu, "ng"}, {"eq"});
  b.node("Not", {"eq"}, {"ne"});
  b.node("Where", {"ne", gelu, "ng"}, {"w"});
  b.node("Expand", {b.random("tb", {6, 1}), b.init_i64("es", {2}, {6, 8})}, {"bias"});
  b.node("Add", {"w", "bias"}, {"y"});
  return b;
}

/// EfficientNet's squeeze-and-excitation around oneDNN convolutions, which keep their
/// activations channels-last (NHWC) between them: x * sigmoid(x) fused into the Conv,
/// GlobalAveragePool and the [N,C,1,1] scale read NHWC, same-shape and per-channel binary
/// ops in NHWC, a binary op with a broadcast along W (which keeps its operands NCHW), and
/// average and max pooling reading and writing either layout.
ModelBuilder squeeze_excitation() {
  ModelBuilder b(17);
  b.input("x", {-1, 16, 16, 16}).output("y");
  attr(b.node("Conv", {"x", b.random("w1", {32, 16, 3, 3}, -0.3f, 0.3f), b.random("b1", {32})}, {"c1"}), "pads",
       S{1, 1, 1, 1});
  b.node("Sigmoid", {"c1"}, {"s1"});
  b.node("Mul", {"c1", "s1"}, {"sw"});
  b.node("GlobalAveragePool", {"sw"}, {"gp"});
  b.node("Conv", {"gp", b.random("w2", {8, 32, 1, 1}), b.random("b2", {8})}, {"r1"});
  b.node("Relu", {"r1"}, {"r2"});
  b.node("Conv", {"r2", b.random("w3", {32, 8, 1, 1}), b.random("b3", {32})}, {"e"});
  b.node("Sigmoid", {"e"}, {"scale"});
  b.node("Mul", {"sw", "scale"}, {"se"});
  b.node("Add", {"se", b.random("cb", {32, 1, 1})}, {"sb"});
  b.node("Conv", {"sb", b.random("w4", {32, 32, 1, 1}, -0.3f, 0.3f)}, {"c3"});
  b.node("Mul", {"c3", "sb"}, {"sq"});
  b.node("Mul", {"sq", b.random("wb", {16}, 0.5f, 1.5f)}, {"cols"});
  attr(b.node("Conv", {"cols", b.random("w5", {16, 32, 3, 3}, -0.2f, 0.2f)}, {"c5"}), "pads", S{1, 1, 1, 1});
  auto& ap = b.node("AveragePool", {"c5"}, {"ap"});
  attr(ap, "kernel_shape", S{3, 3});
  attr(ap, "pads", S{1, 1, 1, 1});
  attr(ap, "count_include_pad", int64_t{1});
  b.node("Add", {"ap", "x"}, {"sum"});
  auto& mp = b.node("MaxPool", {"sum"}, {"y"});
  attr(mp, "kernel_shape", S{3, 3});
  attr(mp, "strides", S{2, 2});
  attr(mp, "pads", S{1, 1, 1, 1});
  return b;
}

TEST(OnnxRuntimeOracle, SqueezeExcitationChannelsLast) {
  ModelBuilder b = squeeze_excitation();
  compare_with_ort(b, "squeeze_excitation", 3);
}

// Convolutions of Winograd's size (3x3, stride 1, at least as many pixels as channels and
// 50 M multiply-adds per image) between channels-last activations, with the bias and Relu
// fused; one with Clip, which Winograd does not take, between them.
ModelBuilder winograd_chain() {
  ModelBuilder b(17);
  b.input("x", {-1, 16, 40, 40}).output("y");
  attr(b.node("Conv", {"x", b.random("w1", {64, 16, 3, 3}, -0.3f, 0.3f), b.random("b1", {64})}, {"c1"}), "pads",
       S{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  attr(b.node("Conv", {"r1", b.random("w2", {64, 64, 3, 3}, -0.1f, 0.1f), b.random("b2", {64})}, {"c2"}), "pads",
       S{1, 1, 1, 1});
  b.node("Relu", {"c2"}, {"r2"});
  attr(b.node("Conv", {"r2", b.random("w3", {64, 64, 3, 3}, -0.1f, 0.1f), b.random("b3", {64})}, {"c3"}), "pads",
       S{1, 1, 1, 1});
  b.node("Clip", {"c3", b.init("lo", {}, {0.f}), b.init("hi", {}, {2.f})}, {"r3"});
  attr(b.node("Conv", {"r3", b.random("w4", {80, 64, 3, 3}, -0.1f, 0.1f)}, {"c4"}), "pads", S{1, 1, 1, 1});
  b.node("Relu", {"c4"}, {"r4"});
  b.node("Conv", {"r4", b.random("w5", {16, 80, 3, 3}, -0.1f, 0.1f), b.random("b5", {16})}, {"y"});
  return b;
}

// Wider than an image has pixels (14x14 < 264): Winograd with its weights transformed at
// each call of 8 images, the direct kernel for the rest, on the same weights.
ModelBuilder winograd_wide() {
  ModelBuilder b(17);
  b.input("x", {-1, 24, 14, 14}).output("y");
  attr(b.node("Conv", {"x", b.random("w1", {264, 24, 3, 3}, -0.2f, 0.2f), b.random("b1", {264})}, {"c1"}), "pads",
       S{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  attr(b.node("Conv", {"r1", b.random("w2", {264, 264, 3, 3}, -0.05f, 0.05f), b.random("b2", {264})}, {"c2"}),
       "pads", S{1, 1, 1, 1});
  b.node("Relu", {"c2"}, {"r2"});
  attr(b.node("Conv", {"r2", b.random("w3", {16, 264, 3, 3}, -0.05f, 0.05f)}, {"y"}), "pads", S{1, 1, 1, 1});
  return b;
}

TEST(OnnxRuntimeOracle, WinogradSizedConvolutions) {
  for (int batch : {11, 3, 1}) {
    ModelBuilder b = winograd_chain();
    compare_with_ort(b, "winograd_" + std::to_string(batch), batch);
    ModelBuilder w = winograd_wide();
    compare_with_ort(w, "winograd_wide_" + std::to_string(batch), batch);
  }
}

/// The models whose Convs take oneDNN's kernels in every layout and way: the direct ones
/// (squeeze-and-excitation) and Winograd's two.
std::vector<std::pair<const char*, ModelBuilder>> cpu_layout_models() {
  return {{"squeeze_excitation", squeeze_excitation()},
          {"winograd_chain", winograd_chain()},
          {"winograd_wide", winograd_wide()}};
}

// A model loaded for the CPU holds each oneDNN Conv's weights once, in oneDNN's layout: the
// plan packs nothing at prepare, counts the packed weights as the model's, and the results
// are those of weights packed at prepare, at both precisions.
TEST(Models, WeightsPackedAtLoadAreHeldOnceAndGiveTheSameResults) {
  for (const auto& [name, builder] : cpu_layout_models()) {
    const fs::path dir = temp_dir(std::string("packed_at_load_") + name);
    builder.save((dir / "model.onnx").string());
    const Model plain = Model::load((dir / "model.onnx").string());
    const Model packed = Model::load((dir / "model.onnx").string(), "", /*for_cpu=*/true);
    const MemoryPlan a = plain.plan(9, Precision::FP32), b = packed.plan(9, Precision::FP32);
    EXPECT_GT(a.packed_bytes, 0u) << name << ": the model's Convs no longer run on oneDNN";
    EXPECT_EQ(b.packed_bytes, 0u) << name;
    EXPECT_GE(b.weight_bytes, a.weight_bytes) << name;  // oneDNN may pad channels
    EXPECT_LT(b.total(), a.total()) << name;
    // 9 images: a call of 8 and one alone, on weights packed at load for batch 1.
    S shape = packed.input_shape();
    shape.insert(shape.begin(), 9);
    const V x = ModelBuilder::random_values(shape, "packed_at_load");
    for (const Precision p : {Precision::FP32, Precision::FP16}) {
      const V want = run_model(plain, x, 9, p), got = run_model(packed, x, 9, p);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(max_abs_diff(got, want), 0.f) << name << (p == Precision::FP16 ? " fp16" : " fp32");
    }
  }
}

// oneDNN runs a whole batch in one call where the activations stay channels-last, and image
// by image otherwise (a short last batch, layout copies): an image's result is the same
// either way, alone or in any batch.
TEST(Models, AnImageGetsTheSameResultAloneAsInAWholeOrShortBatch) {
  for (const auto& [name, builder] : cpu_layout_models()) {
    const fs::path dir = temp_dir(std::string("batch_invariance_") + name);
    builder.save((dir / "model.onnx").string());
    const Model m = Model::load((dir / "model.onnx").string(), "", /*for_cpu=*/true);
    const int64_t in = m.input_size(), out = m.output_size();
    // 9 images: a call of 8 and one alone; a short batch of 5 runs image by image.
    S shape = m.input_shape();
    shape.insert(shape.begin(), 9);
    const V x = ModelBuilder::random_values(shape, "batch_invariance");
    const V whole = run_model(m, x, 9);
    HostAllocator host;
    Executor ex(m, host);
    ex.prepare(9, Precision::FP32);
    V y(static_cast<size_t>(5 * out));
    ex.run(x.data(), 5, y.data());  // short batch
    float scale = 1.f;
    for (float v : whole) scale = std::max(scale, std::fabs(v));
    EXPECT_LE(max_abs_diff(y, V(whole.begin(), whole.begin() + 5 * out)), 1e-5f * scale) << name;
    for (int k = 0; k < 9; ++k) {
      const V alone = run_model(m, V(x.begin() + k * in, x.begin() + (k + 1) * in), 1);
      EXPECT_LE(max_abs_diff(alone, V(whole.begin() + k * out, whole.begin() + (k + 1) * out)), 1e-5f * scale)
          << name << " image " << k;
    }
  }
}

TEST(OnnxRuntimeOracle, PadModesAndLiveSlices) {
  ModelBuilder b = pads_and_slices();
  compare_with_ort(b, "pads_and_slices", 3);
}

TEST(OnnxRuntimeOracle, TransformerBlock) {
  ModelBuilder b = transformer_block();
  compare_with_ort(b, "transformer_block", 3);
}

TEST(Loader, FoldsTorchShapeSubgraphAtEveryBatch) {
  for (int opset : {11, 13, 17}) {
    const Model m = torch_flatten_style(opset).model();
    EXPECT_EQ(m.output_shape(), (S{5})) << opset;
    const V x = ModelBuilder::random_values({3, 3, 8, 8}, "x");
    const V three = run_model(m, x, 3);
    const V first = run_model(m, V(x.begin(), x.begin() + 192), 1);
    EXPECT_LT(max_abs_diff(V(three.begin(), three.begin() + 5), first), 1e-5f);
    EXPECT_EQ(m.plan(4, Precision::FP32).arena_bytes > m.plan(1, Precision::FP32).arena_bytes, true);
  }
}

TEST(Loader, ResNetStyleFoldsBatchNormAndRelu) {
  const Model m = resnet_style().model();
  int bn = 0, relu = 0;
  for (const Node& n : m.graph()->nodes) {
    bn += n.op_type == "BatchNormalization";
    relu += n.op_type == "Relu";
  }
  EXPECT_EQ(bn, 0);
  EXPECT_EQ(relu, 2);  // the two after residual Adds stay
  EXPECT_EQ(m.input_shape(), (S{3, 32, 32}));
  EXPECT_EQ(m.output_shape(), (S{10}));
}

// Every unsupported node is named in the one error, so a user sees the whole list at once.
TEST(Loader, UnsupportedOpNamesNodeOpAndOpset) {
  ModelBuilder b(12);
  b.input("x", {-1, 4}).output("y");
  b.node("Hardmax", {"x"}, {"h"}, "my_hardmax");
  b.node("Relu", {"h"}, {"r"});
  b.node("Celu", {"r"}, {"y"}, "my_celu");
  try {
    b.model();
    FAIL();
  } catch (const UnsupportedModel& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("2 unsupported nodes"), std::string::npos) << w;
    EXPECT_NE(w.find("my_hardmax"), std::string::npos) << w;
    EXPECT_NE(w.find("Hardmax"), std::string::npos) << w;
    EXPECT_NE(w.find("my_celu"), std::string::npos) << w;
    EXPECT_NE(w.find("Celu"), std::string::npos) << w;
    EXPECT_NE(w.find("opset 12"), std::string::npos) << w;
    EXPECT_EQ(w.find("Relu"), std::string::npos) << w;
  }
}

TEST(Loader, UnsupportedAttributeAndDtypeAndOpset) {
  {
    ModelBuilder b;
    b.input("x", {-1, 1, 4, 4}).output("y");
    auto& n = b.node("MaxPool", {"x"}, {"y"}, "pool1");
    attr(n, "kernel_shape", S{2, 2});
    attr(n, "auto_pad", std::string("SAME_MIDDLE"));
    try { b.model(); FAIL(); } catch (const UnsupportedModel& e) {
      EXPECT_NE(std::string(e.what()).find("pool1"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("SAME_MIDDLE"), std::string::npos) << e.what();
    }
  }
  {
    ModelBuilder b;
    b.input("x", {-1, 2}).output("y");
    auto* t = b.proto().mutable_graph()->add_initializer();
    t->set_name("u8");
    t->set_data_type(onnx::TensorProto::UINT8);
    t->add_dims(2);
    t->set_raw_data(std::string(2, '\1'));
    b.node("Add", {"x", "u8"}, {"y"}, "add_u8");
    try { b.model(); FAIL(); } catch (const UnsupportedModel& e) {
      EXPECT_NE(std::string(e.what()).find("add_u8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("UINT8"), std::string::npos) << e.what();
    }
  }
  {
    ModelBuilder b(9);
    b.input("x", {-1, 2}).output("y");
    b.node("Relu", {"x"}, {"y"});
    EXPECT_THROW(b.model(), UnsupportedModel);
  }
}

TEST(Loader, InitializerEncodingsAndExternalData) {
  // the same Gemm weights as raw, float_data, double_data, int32->via Cast, external file
  const V w = {1, 2, 3, 4, 5, 6};
  const V x = {1, -1};
  const V want = {-3, -3, -3};
  auto base = [](ModelBuilder& b) { b.input("x", {-1, 2}).output("y"); };
  {
    ModelBuilder b;
    base(b);
    b.node("MatMul", {"x", b.init("w", {2, 3}, w, /*typed=*/true)}, {"y"});
    EXPECT_EQ(run_model(b.model(), x, 1), want);
  }
  {
    ModelBuilder b;
    base(b);
    auto* t = b.proto().mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::DOUBLE);
    t->add_dims(2);
    t->add_dims(3);
    for (float f : w) t->add_double_data(f);
    b.node("MatMul", {"x", "w"}, {"y"});
    EXPECT_EQ(run_model(b.model(), x, 1), want);
  }
  {
    ModelBuilder b;
    base(b);
    auto* t = b.proto().mutable_graph()->add_initializer();
    t->set_name("shape");
    t->set_data_type(onnx::TensorProto::INT32);
    t->add_dims(2);
    t->add_int32_data(0);
    t->add_int32_data(-1);
    b.node("Cast", {"shape"}, {"shape64"});
    attr(*b.proto().mutable_graph()->mutable_node(0), "to", int64_t{onnx::TensorProto::INT64});
    b.node("Reshape", {"x", "shape64"}, {"xr"});
    b.node("MatMul", {"xr", b.init("w", {2, 3}, w)}, {"y"});
    EXPECT_EQ(run_model(b.model(), x, 1), want);
  }
  {
    const fs::path dir = temp_dir("external");
    {
      std::ofstream f(dir / "weights.bin", std::ios::binary);
      const float pad = 0.f;
      f.write(reinterpret_cast<const char*>(&pad), 4);  // offset 4
      f.write(reinterpret_cast<const char*>(w.data()), 24);
    }
    ModelBuilder b;
    base(b);
    auto* t = b.proto().mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(2);
    t->add_dims(3);
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto kv = [&](const char* k, const char* v) {
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    kv("location", "weights.bin");
    kv("offset", "4");
    kv("length", "24");
    b.node("MatMul", {"x", "w"}, {"y"});
    b.save((dir / "model.onnx").string());
    EXPECT_EQ(run_model(Model::load((dir / "model.onnx").string()), x, 1), want);
  }
}

TEST(Loader, AFileLoadsAsTheModelParsedInMemory) {
  // load() reads the initializers' raw data from the file straight into the weights, past
  // protobuf: the model must equal the one parsed in memory (raw and typed floats, raw and
  // typed int64, a Constant node's tensor, BatchNorm folded, the other fields kept), and a
  // cut or corrupt file must be refused, not half read.
  ModelBuilder b;
  b.proto().set_doc_string("fields around the weights");
  b.proto().mutable_graph()->set_doc_string("and in the graph");
  b.input("x", {-1, 3, 8, 8}).output("y");
  auto& conv = b.node("Conv", {"x", b.random("w", {4, 3, 3, 3}), b.init("bias", {4}, {0.1f, -0.2f, 0.3f, -0.4f}, true)}, {"c"});
  attr(conv, "pads", S{1, 1, 1, 1});
  b.node("BatchNormalization", {"c", b.random("g", {4}, 0.5f, 1.5f), b.random("be", {4}), b.random("mu", {4}),
                                b.random("var", {4}, 0.5f, 2.f)}, {"bn"});
  onnx::TensorProto scale;
  scale.set_data_type(onnx::TensorProto::FLOAT);
  const float s = 1.5f;
  scale.set_raw_data(std::string(reinterpret_cast<const char*>(&s), 4));
  attr_tensor(b.node("Constant", {}, {"s"}), "value", scale);
  b.node("Mul", {"bn", "s"}, {"m"});
  auto* shape = b.proto().mutable_graph()->add_initializer();
  shape->set_name("shape");
  shape->set_data_type(onnx::TensorProto::INT64);
  shape->add_dims(2);
  const int64_t dims[2] = {0, -1};
  shape->set_raw_data(std::string(reinterpret_cast<const char*>(dims), sizeof dims));
  b.node("Reshape", {"m", "shape"}, {"r"});
  attr(b.node("Gemm", {"r", b.random("fc", {5, 256}), b.random("fcb", {5})}, {"g"}), "transB", int64_t{1});
  b.node("Reshape", {"g", b.init_i64("flat", {2}, {0, -1})}, {"y"});
  const fs::path dir = temp_dir("load");
  const std::string path = (dir / "model.onnx").string();
  b.save(path);
  const Model loaded = Model::load(path), parsed = b.model();
  EXPECT_EQ(loaded.plan(2, Precision::FP32).total(), parsed.plan(2, Precision::FP32).total());
  const V x = ModelBuilder::random_values({2, 3, 8, 8}, "x");
  const V want = run_model(parsed, x, 2);
  ASSERT_EQ(want.size(), 10u);
  EXPECT_EQ(run_model(loaded, x, 2), want);

  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  // graph { initializer { raw_data of 4 GiB - 1 bytes } } in a 10-byte file: refused, not allocated
  const std::string huge = "\x3a\x08\x2a\x06\x4a\xff\xff\xff\xff\x0f";
  for (const std::string& cut : {bytes.substr(0, bytes.size() / 2), bytes.substr(0, bytes.size() - 1), huge}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << cut;
    try {
      Model::load(path);
      ADD_FAILURE() << "a file cut to " << cut.size() << " of " << bytes.size() << " bytes loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot parse model"), std::string::npos) << e.what();
    }
  }
}

TEST(Loader, InputSelectionAndFixedBatch) {
  ModelBuilder b;
  b.input("x", {1, 3}).input("w", {3}).output("y");
  b.init("w", {3}, {1, 2, 3});  // an input that is also an initializer (IR < 4 style)
  b.node("Mul", {"x", "w"}, {"y"});
  const Model m = b.model("x");
  EXPECT_EQ(m.input_name(), "x");
  EXPECT_EQ(run_model(m, {1, 1, 1, 2, 2, 2}, 2), (V{1, 2, 3, 2, 4, 6}));  // fixed 1 -> batch 2
  ModelBuilder two;
  two.input("a", {-1, 3}).input("b", {-1, 3}).output("y");
  two.node("Add", {"a", "b"}, {"y"});
  EXPECT_THROW(two.model(), UnsupportedModel);
  EXPECT_THROW(two.model("a"), UnsupportedModel);
  EXPECT_THROW(b.model("nope"), UnsupportedModel);
}

TEST(Loader, ParsesFilesAbove64MB) {
  // 17.5M floats = 70 MB of weights in one protobuf file
  const int64_t k = 1750, n = 10000;
  ModelBuilder b;
  b.input("x", {-1, k}).output("y");
  V w(static_cast<size_t>(k * n), 0.f);
  for (int64_t j = 0; j < n; ++j) w[static_cast<size_t>((j % k) * n + j)] = 1.f;
  b.node("MatMul", {"x", b.init("w", {k, n}, w)}, {"y"});
  const fs::path dir = temp_dir("large");
  b.save((dir / "big.onnx").string());
  ASSERT_GT(fs::file_size(dir / "big.onnx"), 64u << 20);
  b = ModelBuilder();
  w = V();
  const Model m = Model::load((dir / "big.onnx").string());
  V x(k);
  for (int64_t i = 0; i < k; ++i) x[i] = static_cast<float>(i);
  const V y = run_model(m, x, 1);
  ASSERT_EQ(y.size(), static_cast<size_t>(n));
  EXPECT_EQ(y[1751], 1.f);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace imgpipe::infer::test

namespace imgpipe::infer::test {
namespace {

// ViT's attention in miniature: the batch moved out of dim 0 (Transpose), a Gather along dim
// 0 that picks within each image, and a Reshape whose target comes from Slice(Shape, -1,
// INT64_MAX) as PyTorch exports "to the end" (INT64_MAX must survive exactly), through a
// Transpose and a Cast to bool folded at load. Such a model cannot be split by image, so a
// short batch runs padded: 3 images in a batch of 4 give exactly channel 1 of each image.
TEST(Models, BatchKeptInAnotherAxisRunsPaddedWholeBatches) {
  ModelBuilder b(17);
  b.input("x", {-1, 3, 2, 2}).output("y");
  attr(b.node("Transpose", {"x"}, {"t"}), "perm", std::vector<int64_t>{1, 0, 2, 3});  // 3 x N x 2 x 2
  auto* idx = b.proto().mutable_graph()->add_initializer();
  idx->set_name("one");
  idx->set_data_type(onnx::TensorProto::INT64);
  idx->add_int64_data(1);  // a scalar index: channel 1
  attr(b.node("Gather", {"t", "one"}, {"g"}), "axis", int64_t{0});  // N x 2 x 2
  attr(b.node("Flatten", {"g"}, {"f"}), "axis", int64_t{1});       // N x 4
  b.node("Shape", {"f"}, {"shape"});
  b.node("Slice", {"shape", b.init_i64("start", {1}, {-1}), b.init_i64("end", {1}, {std::numeric_limits<int64_t>::max()})},
         {"last"});  // [4]
  // [[-1], [last]] transposed to [[-1, last]] and reshaped to [2]; times
  // Cast(Cast(., bool), int64), which is 1 for both: all of it folded at load.
  attr(b.node("Concat", {b.init_i64("minus1", {1}, {-1}), "last"}, {"pair"}), "axis", int64_t{0});
  b.node("Reshape", {"pair", b.init_i64("col", {2}, {2, 1})}, {"column"});
  attr(b.node("Transpose", {"column"}, {"row"}), "perm", std::vector<int64_t>{1, 0});
  b.node("Reshape", {"row", b.init_i64("flat", {1}, {2})}, {"target0"});
  attr(b.node("Cast", {"target0"}, {"nonzero"}), "to", int64_t{onnx::TensorProto::BOOL});
  attr(b.node("Cast", {"nonzero"}, {"ones"}), "to", int64_t{onnx::TensorProto::INT64});
  b.node("Mul", {"target0", "ones"}, {"target"});
  b.node("Reshape", {"f", "target"}, {"y"});
  const Model m = b.model();
  EXPECT_EQ(m.output_shape(), (S{4}));
  const V x = ModelBuilder::random_values({3, 3, 2, 2}, "x");
  V want;
  for (int n = 0; n < 3; ++n)
    for (int k = 4; k < 8; ++k) want.push_back(x[n * 12 + k]);
  EXPECT_EQ(run_model(m, x, 3, Precision::FP32, 4), want);  // 3 images, prepared for 4
  EXPECT_EQ(run_model(m, x, 3), want);
  const V half = run_model(m, x, 3, Precision::FP16, 8);
  EXPECT_LT(max_abs_diff(half, want), 1e-3f);
}

}  // namespace
}  // namespace imgpipe::infer::test
