// Memory plan, budgeted allocation, re-preparation, batch and precision invariance.
#include <gtest/gtest.h>

#include <algorithm>

#include "model_builder.h"
#include "planner.h"

namespace imgpipe::infer::test {
namespace {

using V = std::vector<float>;

/// A small conv classifier: conv-relu, conv stride 2, pool, gemm -> 10 logits.
Model classifier() {
  ModelBuilder b;
  b.input("x", {-1, 3, 16, 16}).output("logits");
  attr(b.node("Conv", {"x", b.random("w1", {8, 3, 3, 3}), b.random("b1", {8})}, {"c1"}), "pads",
       std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  auto& c2 = b.node("Conv", {"r1", b.random("w2", {16, 8, 3, 3}), b.random("b2", {16})}, {"c2"});
  attr(c2, "strides", std::vector<int64_t>{2, 2});
  attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c2"}, {"r2"});
  b.node("GlobalAveragePool", {"r2"}, {"g"});
  b.node("Flatten", {"g"}, {"f"});
  attr(b.node("Gemm", {"f", b.random("wf", {10, 16}, -2.f, 2.f), b.random("bf", {10})}, {"logits"}),
       "transB", int64_t{1});
  return b.model();
}

/// A chain of elementwise ops: each activation dies right after the next op reads it.
Model chain(int length) {
  ModelBuilder b;
  b.input("x", {-1, 4, 8, 8}).output("y" + std::to_string(length));
  std::string prev = "x";
  for (int k = 1; k <= length; ++k) {
    const std::string out = "y" + std::to_string(k);
    b.node(k % 2 ? "Sigmoid" : "Tanh", {prev}, {out});
    prev = out;
  }
  return b.model();
}

TEST(Planner, BestFitReusesDeadSpace) {
  // a [0,1] 100 B, b [1,2] 50 B, c [2,3] 100 B: c reuses a's bytes.
  std::vector<size_t> off;
  const size_t arena = assign_offsets({{100, 0, 1}, {50, 1, 2}, {100, 2, 3}}, off);
  EXPECT_EQ(arena, 150u);
  EXPECT_EQ(off[0], off[2]);
  EXPECT_NE(off[1], off[0]);
}

TEST(Planner, ArenaSmallerThanSumOnAChain) {
  const Model m = chain(6);
  const MemoryPlan p = m.plan(2, Precision::FP32);
  const size_t tensor = 2 * 4 * 8 * 8 * 4;
  EXPECT_EQ(m.unshared_activation_bytes(2, Precision::FP32), 7 * tensor);
  EXPECT_EQ(p.arena_bytes, 2 * tensor);  // two tensors alive at any step
  EXPECT_EQ(p.weight_bytes, 0u);
}

TEST(Planner, BytesGrowWithBatchAndHalveWithFp16) {
  const Model m = classifier();
  size_t last = 0;
  for (int b : {1, 2, 4, 8, 16}) {
    const size_t n = m.bytes_needed(b, Precision::FP32);
    EXPECT_GT(n, last) << "batch " << b;
    last = n;
    const MemoryPlan p32 = m.plan(b, Precision::FP32), p16 = m.plan(b, Precision::FP16);
    // The weights are the same fp32 copy at both precisions, read in place (never widened
    // into scratch), and the activations halve; where one image's step widened to fp32
    // would outweigh that (batch 1), fp16 keeps fp32 storage of fp16-rounded values.
    EXPECT_LE(p16.total(), p32.total()) << "batch " << b;
    if (b > 1) {
      EXPECT_EQ(p16.arena_bytes * 2, p32.arena_bytes);
    }
    EXPECT_EQ(p16.weight_bytes, p32.weight_bytes);
    EXPECT_GT(p32.weight_bytes, 0u);
    EXPECT_EQ(p32.total(), p32.weight_bytes + m.bytes_needed(b, Precision::FP32));
  }
}

TEST(Executor, PreparesExactlyThePlanAndRunAllocatesNothing) {
  const Model m = classifier();
  HostAllocator host;
  BudgetedAllocator budget(host);
  Executor ex(m, budget);
  ex.prepare(4, Precision::FP32);
  EXPECT_EQ(budget.used(), m.bytes_needed(4, Precision::FP32));
  const size_t peak = budget.peak();
  const V x = ModelBuilder::random_values({4, 3, 16, 16}, "in");
  V y(4 * 10);
  ex.run(x.data(), 4, y.data());
  EXPECT_EQ(budget.used(), m.bytes_needed(4, Precision::FP32));
  EXPECT_EQ(budget.peak(), peak);
  ex.release();
  EXPECT_EQ(budget.used(), 0u);
}

/// Two residual blocks, conv-relu-conv then Add(identity) and Relu, on a side x side map.
/// With `block_fusion` false every conv output is also read by a Sub, so nothing folds.
Model residual(int64_t side, bool block_fusion) {
  ModelBuilder b;
  b.input("x", {-1, 4, side, side}).output("out");
  std::string prev = "x";
  for (int k = 0; k < 2; ++k) {
    const std::string s = std::to_string(k);
    attr(b.node("Conv", {prev, b.random("wa" + s, {4, 4, 3, 3}, -0.3f, 0.3f), b.random("ba" + s, {4})}, {"a" + s}),
         "pads", std::vector<int64_t>{1, 1, 1, 1});
    b.node("Relu", {"a" + s}, {"ra" + s});
    b.node("Conv", {"ra" + s, b.random("wb" + s, {4, 4, 1, 1}, -0.5f, 0.5f)}, {"c" + s});
    b.node("Add", {"c" + s, prev}, {"sum" + s});
    b.node("Relu", {"sum" + s}, {"r" + s});
    prev = "r" + s;
    if (block_fusion) {
      b.node("Sub", {"c" + s, "c" + s}, {"z" + s});
      b.node("Add", {prev, "z" + s}, {"rz" + s});
      prev = "rz" + s;
    }
  }
  b.node("Identity", {prev}, {"out"});
  return b.model();
}

TEST(Executor, ResidualAddsFoldedIntoConvKeepResultsAndExactPlan) {
  // 4x4 maps run several images per GEMM, 40x40 one image per GEMM; fp16 too.
  for (const int64_t side : {int64_t{4}, int64_t{40}}) {
    const Model fused = residual(side, false), plain = residual(side, true);
    const V x = ModelBuilder::random_values({5, 4, side, side}, "in");
    EXPECT_LT(max_abs_diff(run_model(fused, x, 5), run_model(plain, x, 5)), 1e-5f) << side;
    EXPECT_LT(max_abs_diff(run_model(fused, x, 5, Precision::FP16), run_model(plain, x, 5)), 2e-2f) << side;
    // folding leaves x, two conv-relu outputs, two block outputs and the Identity's copy
    // in the plan (the conv and sum tensors go), never grows the arena, and stays exact
    const size_t t = 5 * 4 * side * side * 4;
    EXPECT_EQ(fused.unshared_activation_bytes(5, Precision::FP32), 6 * t);
    EXPECT_LE(fused.plan(5, Precision::FP32).arena_bytes, plain.plan(5, Precision::FP32).arena_bytes);
    for (const Precision p : {Precision::FP32, Precision::FP16}) {
      HostAllocator host;
      BudgetedAllocator budget(host);
      Executor ex(fused, budget);
      ex.prepare(5, p);
      EXPECT_EQ(budget.used(), fused.bytes_needed(5, p));
    }
  }
}

TEST(Executor, BatchSizeDoesNotChangeResults) {
  const Model m = classifier();
  const V x = ModelBuilder::random_values({5, 3, 16, 16}, "in");
  const V ref = run_model(m, x, 5);
  HostAllocator host;
  Executor ex(m, host);
  ex.prepare(8, Precision::FP32);
  V y(5 * 10);
  ex.run(x.data(), 5, y.data());  // partial batch
  EXPECT_LT(max_abs_diff(y, ref), 1e-5f);
  for (int k = 0; k < 5; ++k) {
    const V one(x.begin() + k * 768, x.begin() + (k + 1) * 768);
    const V out = run_model(m, one, 1);
    for (int j = 0; j < 10; ++j) EXPECT_NEAR(out[j], ref[k * 10 + j], 1e-5f);
  }
}

TEST(Executor, BudgetRefusalThenSmallerBatchGivesSameResults) {
  const Model m = classifier();
  HostAllocator host;
  BudgetedAllocator budget(host, m.bytes_needed(8, Precision::FP32) - 1);
  Executor ex(m, budget);
  try {
    ex.prepare(8, Precision::FP32);
    FAIL() << "prepare(8) should exceed the budget";
  } catch (const OutOfMemory& e) {
    EXPECT_GT(e.requested(), e.available());
  }
  EXPECT_FALSE(ex.prepared());
  EXPECT_EQ(budget.used(), 0u);
  ex.prepare(4, Precision::FP32);  // what the governor does after the refusal
  EXPECT_LE(budget.used(), budget.budget());
  const V x = ModelBuilder::random_values({8, 3, 16, 16}, "in");
  const V ref = run_model(m, x, 8);
  V y(8 * 10);
  ex.run(x.data(), 4, y.data());
  ex.run(x.data() + 4 * 768, 4, y.data() + 40);
  EXPECT_LT(max_abs_diff(y, ref), 1e-5f);
}

TEST(Executor, InjectedFailureReleasesEverythingAndCanRetry) {
  const Model m = classifier();
  HostAllocator host;
  BudgetedAllocator budget(host);
  Executor ex(m, budget);
  for (int nth : {1, 2}) {  // the arena, the workspace (the weights are the model's own)
    budget.fail_allocation_at(nth);
    EXPECT_THROW(ex.prepare(2, Precision::FP32), OutOfMemory) << nth;
    EXPECT_EQ(budget.used(), 0u);
    EXPECT_FALSE(ex.prepared());
  }
  ex.prepare(2, Precision::FP32);
  EXPECT_EQ(budget.used(), m.bytes_needed(2, Precision::FP32));
}

TEST(Executor, SetPrecisionFreesFp32WeightsAndKeepsTop1) {
  const Model m = classifier();
  HostAllocator host;
  BudgetedAllocator budget(host);
  Executor ex(m, budget);
  const int n = 32;
  ex.prepare(n, Precision::FP32);
  const V x = ModelBuilder::random_values({n, 3, 16, 16}, "images", 0.f, 1.f);
  V y32(n * 10), y16(n * 10);
  ex.run(x.data(), n, y32.data());
  ex.set_precision(Precision::FP16);
  EXPECT_EQ(ex.precision(), Precision::FP16);
  EXPECT_EQ(budget.used(), m.bytes_needed(n, Precision::FP16));
  EXPECT_LT(budget.used(), m.bytes_needed(n, Precision::FP32));
  ex.run(x.data(), n, y16.data());
  int agree = 0;
  for (int k = 0; k < n; ++k) {
    auto top = [&](const V& y) { return std::max_element(y.begin() + k * 10, y.begin() + k * 10 + 10) - y.begin(); };
    agree += top(y32) == top(y16);
  }
  EXPECT_GE(agree, n - 1) << "fp16 top-1 agreed on " << agree << " of " << n;
  EXPECT_LT(max_abs_diff(y32, y16), 2e-2f);
}

TEST(Allocator, BudgetAccounting) {
  HostAllocator host;
  BudgetedAllocator b(host, 1000);
  void* p = b.allocate(600);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_EQ(b.used(), 600u);
  try {
    b.allocate(500);
    FAIL();
  } catch (const OutOfMemory& e) {
    EXPECT_EQ(e.requested(), 500u);
    EXPECT_EQ(e.available(), 400u);
  }
  b.deallocate(p, 600);
  EXPECT_EQ(b.used(), 0u);
  EXPECT_EQ(b.peak(), 600u);
}

TEST(Precision, Fp16StorageRoundsLikeFloatToHalf) {
  // The executor's bulk (vectorized) conversion must round every value as float_to_half:
  // ties, subnormals, overflow to inf, and lengths that are not a multiple of 8.
  V x = {1.f, -2.5f, 65504.f, 65520.f, 1e6f, -1e6f, 6e-5f, 6.1e-5f, 3e-8f, -3e-8f, 1e-9f, 0.f,
         1.00048828125f, 1.00146484375f, 0.333333f, -0.1f, 2049.f, 2051.f, 1e-7f};
  ModelBuilder b;
  b.input("x", {-1, static_cast<int64_t>(x.size())}).output("y");
  b.node("Identity", {"x"}, {"y"});
  const V got = run_model(b.model(), x, 1, Precision::FP16);
  ASSERT_EQ(got.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(got[i], half_to_float(float_to_half(x[i]))) << "x = " << x[i];
}

TEST(Precision, HalfConversionRoundTrips) {
  for (float f : {0.f, -0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f, 0.1f})
    EXPECT_NEAR(half_to_float(float_to_half(f)), f, std::abs(f) * 1e-3f) << f;
  EXPECT_EQ(float_to_half(1.f), 0x3c00);
  EXPECT_EQ(float_to_half(65520.f), 0x7c00);  // rounds to inf
  EXPECT_EQ(half_to_float(0x0001), 5.9604645e-08f);
}

}  // namespace
}  // namespace imgpipe::infer::test
