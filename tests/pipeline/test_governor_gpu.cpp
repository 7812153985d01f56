// GPU suite: the memory governor with real device memory — cudaMalloc failures and memory
// taken by someone else in the middle of a run — against the CPU executor's answers.
#include <gtest/gtest.h>
#include <cuda_runtime_api.h>

#include <cmath>

#include "cuda_executor.h"
#include "device_query.h"
#include "governor.h"
#include "gpu_guard.h"
#include "model_builder.h"

using namespace imgpipe;
using infer::Precision;
using infer::test::attr;
using infer::test::ModelBuilder;

namespace {

constexpr int kSide = 96;
constexpr int64_t kInSize = 3 * kSide * kSide;

// Activations of ~2.4 MB per image at fp32, so the batch size decides the memory.
infer::Model net() {
  ModelBuilder b;
  b.input("x", {-1, 3, kSide, kSide}).output("y");
  attr(attr(b.node("Conv", {"x", b.random("w1", {32, 3, 3, 3}), b.random("b1", {32})}, {"c1"}), "pads",
            std::vector<int64_t>{1, 1, 1, 1}),
       "kernel_shape", std::vector<int64_t>{3, 3});
  b.node("Relu", {"c1"}, {"r1"});
  attr(attr(b.node("Conv", {"r1", b.random("w2", {32, 32, 3, 3}), b.random("b2", {32})}, {"c2"}), "pads",
            std::vector<int64_t>{1, 1, 1, 1}),
       "kernel_shape", std::vector<int64_t>{3, 3});
  b.node("Relu", {"c2"}, {"r2"});
  b.node("GlobalAveragePool", {"r2"}, {"g"});
  attr(b.node("Flatten", {"g"}, {"f"}), "axis", int64_t(1));
  attr(b.node("Gemm", {"f", b.random("w3", {10, 32}), b.random("b3", {10})}, {"y"}), "transB", int64_t(1));
  return b.model();
}

struct CudaRunner : ModelRunner {
  infer::CudaExecutor& e;
  explicit CudaRunner(infer::CudaExecutor& x) : e(x) {}
  int64_t bytes_needed(int b, Precision p) const override { return int64_t(e.bytes_needed(b, p)); }
  void prepare(int b, Precision p) override { e.prepare(b, p); }
  void release() noexcept override { e.release(); }
  bool prepared() const override { return e.prepared(); }
  int batch() const override { return e.batch(); }
  Precision precision() const override { return e.precision(); }
  int64_t output_size() const override { return e.model().output_size(); }
  int64_t overhead_bytes() const override { return int64_t(e.overhead_bytes()); }
};

MemoryReading device_memory() {
  const auto m = kernels::device_mem_info(0);
  return {int64_t(m.free), int64_t(m.total)};
}

std::vector<float> cpu_reference(const std::vector<float>& in, int n) {
  infer::HostAllocator host;
  infer::Executor exec(net(), host);
  exec.prepare(8, Precision::FP32);
  std::vector<float> out(size_t(n) * 10);
  for (int i = 0; i < n; i += 8) exec.run(in.data() + i * kInSize, std::min(8, n - i), out.data() + i * 10);
  return out;
}

int count(const Governor& g, const std::string& kind) {
  int n = 0;
  for (const auto& e : g.events()) n += e.kind == kind;
  return n;
}

}  // namespace

TEST(GovernorGpu, MemoryTakenMidRunShrinksTheBatchAndLosesNothing) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  infer::CudaDeviceAllocator device(0);
  infer::BudgetedAllocator alloc(device);
  infer::CudaExecutor exec(net(), 0, alloc);
  CudaRunner runner(exec);
  Governor::Options o;
  o.batch_max = 64;
  o.safety_margin = 256 << 20;
  std::vector<std::string> log;
  Governor gov(o, runner, alloc, device_memory, [&](const std::string& l) { log.push_back(l); });
  gov.start();
  ASSERT_EQ(gov.batch(), 64) << "the GPU needs room for a batch of 64 (" << gov.bytes_needed(64, Precision::FP32)
                             << " bytes)";
  const int n = 256;
  const auto in = ModelBuilder::random_values({n, 3, kSide, kSide}, "gpu-images", 0.f, 1.f);
  std::vector<float> out(size_t(n) * 10, NAN);
  auto run = [&](int base) {
    return [&, base](int first, int count, float* o) { exec.run(in.data() + (base + first) * kInSize, count, o); };
  };
  gov.infer(128, out.data(), run(0));
  // Another tenant takes all but what a batch of 8 needs (plus the margin).
  const int64_t keep = gov.bytes_needed(8, Precision::FP32) + o.safety_margin;
  exec.release();
  const int64_t take = device_memory().free - keep;
  ASSERT_GT(take, 0);
  void* hog = nullptr;
  ASSERT_EQ(cudaMalloc(&hog, size_t(take)), cudaSuccess);
  gov.infer(128, out.data() + 1280, run(128));
  cudaFree(hog);
  EXPECT_GE(count(gov, "shrink"), 1);
  EXPECT_LE(gov.batch(), 8);
  const auto ref = cpu_reference(in, n);
  for (size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref[i], 1e-3f * std::max(1.f, std::fabs(ref[i]))) << "image " << i / 10;
}

TEST(GovernorGpu, RealCudaMallocFailureIsCaughtAndRetried) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  infer::CudaDeviceAllocator device(0);
  infer::BudgetedAllocator alloc(device);
  infer::CudaExecutor exec(net(), 0, alloc);
  CudaRunner runner(exec);
  // The reading claims plenty of memory, so the plan says batch 64 fits; a hog makes the
  // real cudaMalloc fail, which the governor must catch, shrink and retry.
  const int64_t fits16 = int64_t(exec.bytes_needed(16, Precision::FP32));
  Governor::Options o;
  o.batch_max = 64;
  o.budget = int64_t(1) << 40;
  o.safety_margin = 0;
  Governor gov(o, runner, alloc, [] { return MemoryReading{int64_t(1) << 40, int64_t(1) << 40}; },
               [](const std::string&) {});
  gov.start();
  ASSERT_EQ(gov.batch(), 64);
  // Create the cuDNN/cuBLAS handles and load their kernels first (they stay until the
  // executor goes), so that the hog below leaves room for a batch of 16 and not for them.
  {
    const auto one = ModelBuilder::random_values({1, 3, kSide, kSide}, "warm-up", 0.f, 1.f);
    float o[10];
    exec.prepare(1, Precision::FP32);
    exec.run(one.data(), 1, o);
    exec.release();
  }
  const int64_t take = device_memory().free - fits16 - (64 << 20);
  ASSERT_GT(take, 0);
  void* hog = nullptr;
  ASSERT_EQ(cudaMalloc(&hog, size_t(take)), cudaSuccess);
  const int n = 64;
  const auto in = ModelBuilder::random_values({n, 3, kSide, kSide}, "gpu-images", 0.f, 1.f);
  std::vector<float> out(size_t(n) * 10, NAN);
  gov.infer(n, out.data(), [&](int first, int count, float* o) { exec.run(in.data() + first * kInSize, count, o); });
  cudaFree(hog);
  EXPECT_GE(count(gov, "shrink"), 1);
  EXPECT_GT(gov.images_retried(), 0);
  const auto ref = cpu_reference(in, n);
  for (size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref[i], 1e-3f * std::max(1.f, std::fabs(ref[i]))) << "image " << i / 10;
}
