// The CUDA backend's memory plan, computed on the host: no GPU needed (label cpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "cuda_executor.h"
#include "cuda_ops.h"
#include "cuda_plan.h"
#include "gpu_test_models.h"
#include "graph.h"
#include "resolve.h"

namespace imgpipe::infer::test {
namespace {

using S = std::vector<int64_t>;

cuda::CudaLayout layout_of(const Model& m, int batch, Precision p, const CudaOptions& opt = {}) {
  const Graph& g = *m.graph();
  return cuda::make_cuda_layout(resolve(g, batch), resolve(g, 1), batch, g.opset, p, opt);
}

TEST(CudaPlan, ExecutorPlanNeedsNoDeviceAndMatchesTheLayout) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);  // constructing touches no device
  CudaExecutor ex(m, 0, device);
  for (int batch : {1, 3, 16}) {
    for (Precision p : {Precision::FP32, Precision::FP16}) {
      const MemoryPlan plan = ex.plan(batch, p);
      const MemoryPlan again = layout_of(m, batch, p).plan;
      EXPECT_EQ(plan.total(), again.total());
      EXPECT_EQ(ex.bytes_needed(batch, p), plan.total());
      EXPECT_EQ(plan.weight_bytes % cuda::kCudaAlign, 0u);
      EXPECT_EQ(plan.arena_bytes % cuda::kCudaAlign, 0u);
    }
  }
  EXPECT_FALSE(ex.prepared());
  EXPECT_EQ(ex.batch(), 0);
}

TEST(CudaPlan, Fp16HalvesWeightsAndActivationsAndPlansGrowWithBatch) {
  const Model m = gpu_resnet_style().model();
  CudaDeviceAllocator device(0);
  CudaExecutor ex(m, 0, device);
  const MemoryPlan f32 = ex.plan(8, Precision::FP32), f16 = ex.plan(8, Precision::FP16);
  EXPECT_LT(f16.weight_bytes, f32.weight_bytes);
  EXPECT_GE(f16.weight_bytes * 2, f32.weight_bytes);  // at most the alignment more than half
  EXPECT_LT(f16.arena_bytes, f32.arena_bytes);
  EXPECT_LT(f16.total(), f32.total());
  size_t last = 0;
  for (int b : {1, 2, 4, 8, 32}) {
    const size_t t = ex.bytes_needed(b, Precision::FP32);
    EXPECT_GT(t, last) << b;
    last = t;
  }
  // Weights do not depend on the batch.
  EXPECT_EQ(ex.plan(1, Precision::FP32).weight_bytes, ex.plan(32, Precision::FP32).weight_bytes);
}

TEST(CudaPlan, WorkspaceHoldsCublasOnlyWithGemmAndRespectsTheCudnnCap) {
  CudaOptions opt;
  opt.cudnn_workspace_cap = 4096;
  opt.cublas_workspace = 1 << 20;
  const cuda::CudaLayout with_gemm = layout_of(gpu_resnet_style().model(), 4, Precision::FP32, opt);
  EXPECT_EQ(with_gemm.cublas_bytes, size_t{1} << 20);
  EXPECT_EQ(with_gemm.plan.workspace_bytes, with_gemm.cublas_bytes + with_gemm.scratch_bytes);
  for (const cuda::CudaStep& s : with_gemm.steps) EXPECT_LE(s.cudnn_bytes, 4096u);

  ModelBuilder b;
  b.input("x", {-1, 3, 8, 8}).output("y");
  b.node("Conv", {"x", b.random("w", {4, 3, 3, 3})}, {"y"});
  const cuda::CudaLayout conv_only = layout_of(b.model(), 2, Precision::FP32, opt);
  EXPECT_EQ(conv_only.cublas_bytes, 0u);
  // im2col of this conv (2 x 3x3x3 x 6x6 floats) is above the cap: the cap applies.
  EXPECT_EQ(conv_only.scratch_bytes, 4096u);
}

TEST(CudaPlan, AsymmetricPadsReservePaddedInputInScratch) {
  ModelBuilder b;
  b.input("x", {-1, 2, 5, 5}).output("y");
  attr(attr(b.node("Conv", {"x", b.random("w", {3, 2, 2, 2})}, {"y"}), "auto_pad", std::string("SAME_UPPER")),
       "strides", S{1, 1});
  const cuda::CudaLayout l = layout_of(b.model(), 3, Precision::FP32);
  ASSERT_EQ(l.steps.size(), 1u);
  EXPECT_TRUE(l.steps[0].asymmetric_pad);
  EXPECT_EQ(l.steps[0].win[0].pad_begin, 0);
  EXPECT_EQ(l.steps[0].win[0].pad_end, 1);
  EXPECT_EQ(l.steps[0].pad_bytes, cuda::cuda_align(3 * 2 * 6 * 6 * 4));
  EXPECT_GE(l.scratch_bytes, l.steps[0].pad_bytes + l.steps[0].cudnn_bytes);
}

TEST(CudaPlan, ViewsShareTheirInputsMemory) {
  ModelBuilder b;
  b.input("x", {-1, 2, 4, 4}).output("y");
  b.node("Conv", {"x", b.random("w", {3, 2, 3, 3})}, {"c"});
  b.node("Flatten", {"c"}, {"f"});
  b.node("Reshape", {"f", b.init_i64("shape", {2}, {0, -1})}, {"r"});
  b.node("Gemm", {"r", b.random("fc", {12, 5}), b.random("fb", {5})}, {"y"});
  const Model m = b.model();
  const ResolvedGraph g = resolve(*m.graph(), 4), one = resolve(*m.graph(), 1);
  const cuda::CudaLayout l = cuda::make_cuda_layout(g, one, 4, m.opset(), Precision::FP32, {});
  auto id = [&](const std::string& name) {
    for (size_t v = 0; v < g.values.size(); ++v)
      if (g.values[v].name == name) return static_cast<int>(v);
    return -1;
  };
  const int c = id("c"), f = id("f"), r = id("r"), x = id("x"), y = id("y");
  EXPECT_EQ(l.storage[f], c);
  EXPECT_EQ(l.storage[r], c);
  EXPECT_EQ(l.offset[f], l.offset[c]);
  EXPECT_EQ(l.offset[r], l.offset[c]);
  // c lives until the Gemm reads r; y is written while r is read, so they do not overlap.
  const size_t c_bytes = cuda::cuda_align(4 * 3 * 2 * 2 * 4), y_bytes = cuda::cuda_align(4 * 5 * 4);
  const bool disjoint = l.offset[y] + y_bytes <= l.offset[c] || l.offset[c] + c_bytes <= l.offset[y];
  EXPECT_TRUE(disjoint);
  EXPECT_NE(l.offset[x], l.offset[c]);
  // Views take no arena bytes of their own.
  EXPECT_EQ(l.sum_activation_bytes, cuda::cuda_align(4 * 2 * 4 * 4 * 4) + c_bytes + y_bytes);
}

TEST(CudaPlan, LiveTensorsNeverOverlapInTheArena) {
  for (ModelBuilder b : {gpu_resnet_style(), gpu_mobilenet_style()}) {
    const Model m = b.model();
    const ResolvedGraph g = resolve(*m.graph(), 5), one = resolve(*m.graph(), 1);
    const cuda::CudaLayout l = cuda::make_cuda_layout(g, one, 5, m.opset(), Precision::FP16, {});
    struct Live { size_t begin, end; int first, last; };
    std::vector<Live> live;
    std::vector<int> last(g.values.size(), -1);
    for (size_t v = 0; v < g.values.size(); ++v)
      if (!g.values[v].constant)
        last[l.storage[v]] = std::max({last[l.storage[v]], g.values[v].last_use, g.values[v].def});
    for (size_t v = 0; v < g.values.size(); ++v) {
      if (g.values[v].constant || l.storage[v] != static_cast<int>(v)) continue;
      const size_t bytes = static_cast<size_t>(numel(g.values[v].shape)) * 2;
      live.push_back({l.offset[v], l.offset[v] + bytes, std::max(g.values[v].def, 0), last[v]});
      EXPECT_LE(l.offset[v] + bytes, l.plan.arena_bytes);
    }
    for (size_t i = 0; i < live.size(); ++i)
      for (size_t j = i + 1; j < live.size(); ++j) {
        const bool time = live[i].first <= live[j].last && live[j].first <= live[i].last;
        const bool space = live[i].begin < live[j].end && live[j].begin < live[i].end;
        EXPECT_FALSE(time && space) << i << " and " << j;
      }
    EXPECT_LE(l.plan.arena_bytes, l.sum_activation_bytes);
  }
}

TEST(CudaPlan, Fp16ScratchHoldsTheFp32InputAndOutput) {
  const Model m = gpu_mobilenet_style().model();
  const cuda::CudaLayout l = layout_of(m, 7, Precision::FP16);
  EXPECT_GE(l.scratch_bytes, static_cast<size_t>(m.input_size() * 7 * 4));
  EXPECT_GE(l.scratch_bytes, static_cast<size_t>(m.output_size() * 7 * 4));
}

/// The ops of `m`'s steps at `batch` the CUDA backend rejects, with how many nodes each
/// ("Erf x12, Pad x2"; "" when none) and the first reason for each.
std::string cuda_rejects(const Model& m, int batch) {
  const Graph& g = *m.graph();
  const ResolvedGraph r = resolve(g, batch);
  std::map<std::string, std::pair<int, std::string>> ops;
  for (size_t k = 0; k < r.steps.size(); ++k) {
    try {
      (void)cuda::describe_step(r, k, g.opset, Precision::FP32, {});
    } catch (const UnsupportedModel& e) {
      auto& [count, why] = ops[r.steps[k].node->op_type];
      if (count++ == 0) why = e.what();
    }
  }
  std::string list;
  for (const auto& [op, what] : ops)
    list += (list.empty() ? "" : ", ") + op + " x" + std::to_string(what.first) + " (" + what.second + ")";
  return list;
}

// ViT and Swin run Gather, Slice, Pad, LayerNormalization, Erf, Pow and Sqrt on activations.
TEST(CudaPlan, PlansTheOpsOfViTAndSwin) {
  const Model m = gpu_transformer_style().model();
  EXPECT_EQ(cuda_rejects(m, 3), "");
  const MemoryPlan f32 = cuda::cuda_plan(*m.graph(), 3, Precision::FP32);
  const MemoryPlan f16 = cuda::cuda_plan(*m.graph(), 3, Precision::FP16);
  EXPECT_LT(f16.total(), f32.total());
  EXPECT_GT(f32.arena_bytes, 0u);
}

// The top-k sort's buffers (4 planes of the fp32 output, the row offsets, CUB's reserve) are
// in the workspace after the fp16 output's conversion, and only when top-k is asked for.
TEST(CudaPlan, TopKSortBuffersArePlanned) {
  const Model m = gpu_resnet_style().model();  // 10 classes
  CudaOptions opt;
  opt.top_k = 5;
  for (Precision p : {Precision::FP32, Precision::FP16}) {
    const cuda::CudaLayout with = layout_of(m, 4, p, opt), without = layout_of(m, 4, p);
    const size_t sort = cuda::sort_rows_scratch_bytes(4, 10);
    EXPECT_GE(sort, 4 * cuda::cuda_align(4 * 10 * 4) + cuda::kSortCubReserve);
    EXPECT_EQ(with.sort_offset, p == Precision::FP16 ? cuda::cuda_align(4 * 10 * 4) : 0u);
    EXPECT_EQ(with.scratch_bytes, std::max(without.scratch_bytes, with.sort_offset + sort));
    EXPECT_EQ(with.plan.total() - without.plan.total(), with.scratch_bytes - without.scratch_bytes);
  }
}

// The exported torchvision models (scripts/export_torchvision.py) in the folder named by
// IMGPIPE_CUDA_PLAN_MODELS: every step the CPU runs, the CUDA backend plans too.
TEST(CudaPlan, PlansEveryStepOfTheModelsInImgpipeCudaPlanModels) {
  const char* dir = std::getenv("IMGPIPE_CUDA_PLAN_MODELS");
  if (!dir) GTEST_SKIP() << "set IMGPIPE_CUDA_PLAN_MODELS to a folder of .onnx files";
  int seen = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".onnx") continue;
    ++seen;
    const Model m = Model::load(f.path().string());
    EXPECT_EQ(cuda_rejects(m, 2), "") << f.path();
    EXPECT_NO_THROW(cuda::cuda_plan(*m.graph(), 2, Precision::FP16)) << f.path();
  }
  EXPECT_GT(seen, 0) << "no .onnx file in " << dir;
}

}  // namespace
}  // namespace imgpipe::infer::test
