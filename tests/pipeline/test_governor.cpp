// The memory governor on the CPU backend: small budgets and fault injection reproduce
// every path (plan, shrink, downcast, stop, grow back) without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "governor.h"
#include "model_builder.h"

using namespace imgpipe;
using infer::Precision;
using infer::test::attr;
using infer::test::ModelBuilder;

namespace {

// 3x16x16 -> conv 8 -> relu -> conv 16 /2 -> relu -> GAP -> flatten -> gemm 10.
infer::Model small_cnn() {
  ModelBuilder b;
  b.input("x", {-1, 3, 16, 16}).output("y");
  attr(attr(b.node("Conv", {"x", b.random("w1", {8, 3, 3, 3}), b.random("b1", {8})}, {"c1"}), "pads",
            std::vector<int64_t>{1, 1, 1, 1}),
       "kernel_shape", std::vector<int64_t>{3, 3});
  b.node("Relu", {"c1"}, {"r1"});
  attr(attr(attr(b.node("Conv", {"r1", b.random("w2", {16, 8, 3, 3}), b.random("b2", {16})}, {"c2"}), "pads",
                 std::vector<int64_t>{1, 1, 1, 1}),
            "strides", std::vector<int64_t>{2, 2}),
       "kernel_shape", std::vector<int64_t>{3, 3});
  b.node("Relu", {"c2"}, {"r2"});
  b.node("GlobalAveragePool", {"r2"}, {"g"});
  attr(b.node("Flatten", {"g"}, {"f"}), "axis", int64_t(1));
  attr(b.node("Gemm", {"f", b.random("w3", {10, 16}), b.random("b3", {10})}, {"y"}), "transB", int64_t(1));
  return b.model();
}

struct Harness {
  infer::HostAllocator host;
  infer::BudgetedAllocator alloc{host};
  infer::Executor exec{small_cnn(), alloc};
  CpuRunner runner{exec};
  // A device: free memory is its capacity minus what another process took minus what this
  // run holds.
  int64_t capacity = int64_t(1) << 40, taken = 0;
  std::vector<std::string> log;
  std::unique_ptr<Governor> gov;

  explicit Harness(Governor::Options o) {
    gov = std::make_unique<Governor>(
        o, runner, alloc, [this] { return MemoryReading{capacity - taken - int64_t(alloc.used()), capacity}; },
        [this](const std::string& l) { log.push_back(l); });
  }
  int64_t need(int b, Precision p) const { return gov->bytes_needed(b, p); }
  int count(const std::string& kind) const {
    int n = 0;
    for (const auto& e : gov->events()) n += e.kind == kind;
    return n;
  }
};

std::vector<float> images(int n) { return ModelBuilder::random_values({n, 3, 16, 16}, "images", 0.f, 1.f); }

// The reference: an unpressured run at the same precision.
std::vector<float> reference(int n, Precision p) {
  infer::HostAllocator host;
  infer::Executor exec(small_cnn(), host);
  exec.prepare(n, p);
  std::vector<float> out(size_t(n) * 10);
  exec.run(images(n).data(), n, out.data());
  return out;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "row " << i / 10 << " col " << i % 10;
}

std::vector<float> run_all(Harness& h, int n) {
  std::vector<float> out(size_t(n) * 10, NAN);
  const auto in = images(n);
  h.gov->infer(n, out.data(), [&](int first, int count, float* o) {
    h.exec.run(in.data() + first * 3 * 16 * 16, count, o);
  });
  return out;
}

Governor::Options options(int max = 32) {
  Governor::Options o;
  o.batch_min = 1;
  o.batch_max = max;
  o.budget = int64_t(1) << 40;
  return o;
}

}  // namespace

TEST(Governor, InitialPlanPicksTheLargestFittingBatch) {
  Governor::Options o = options(64);
  Harness probe(o);
  o.budget = probe.need(12, Precision::FP32) + 1;
  Harness h(o);
  h.gov->start();
  EXPECT_EQ(h.gov->batch(), 12);
  EXPECT_EQ(h.gov->precision(), Precision::FP32);
  ASSERT_EQ(h.gov->events().size(), 1u);
  EXPECT_EQ(h.gov->events()[0].kind, "plan");
  EXPECT_NE(h.gov->describe_plan().find("choice: {precision: fp32, batch: 12}"), std::string::npos);
  expect_close(run_all(h, 30), reference(30, Precision::FP32), 1e-5f);
  EXPECT_LE(int64_t(h.alloc.peak()), o.budget);  // the plan is what was allocated
}

TEST(Governor, ShrinksOnAMidRunFailureAndLosesNoImage) {
  Governor::Options o = options(16);
  o.faults = FaultPlan::parse("fail_batch=3");
  Harness h(o);
  h.gov->start();
  ASSERT_EQ(h.gov->batch(), 16);
  const auto out = run_all(h, 100);
  expect_close(out, reference(100, Precision::FP32), 1e-5f);  // every image once, in order
  EXPECT_EQ(h.count("shrink"), 1);
  EXPECT_EQ(h.gov->images_retried(), 16);
  const auto& e = h.gov->events()[1];
  EXPECT_EQ(e.batch_before, 16);
  EXPECT_EQ(e.batch_after, 8);  // at least halved
  EXPECT_EQ(e.images_retried, 16);
  EXPECT_NE(h.log[1].find("retrying 16 images"), std::string::npos) << h.log[1];
}

TEST(Governor, RealAllocationRefusalIsCaughtAndRetried) {
  Governor::Options o = options(16);
  o.faults = FaultPlan::parse("fail_alloc=2");  // the executor's second allocation fails
  Harness h(o);
  h.gov->start();
  expect_close(run_all(h, 40), reference(40, Precision::FP32), 1e-5f);
  EXPECT_EQ(h.count("shrink"), 1);
  EXPECT_EQ(h.alloc.used(), h.exec.memory_plan().batch_bytes());
}

TEST(Governor, MemoryTakenByAnotherProcessShrinksTheBatch) {
  Governor::Options o = options(32);
  o.budget = 0;  // auto: free memory at start minus the margin
  o.safety_margin = 1000;
  Harness h(o);
  h.capacity = h.need(32, Precision::FP32) + 1000;
  h.gov->start();
  ASSERT_EQ(h.gov->batch(), 32);
  const auto in = images(96);
  std::vector<float> out(96 * 10);
  auto run = [&](const float* base) {
    return [&h, base](int first, int count, float* o) { h.exec.run(base + first * 3 * 16 * 16, count, o); };
  };
  h.gov->infer(32, out.data(), run(in.data()));
  // Another process takes all but what a batch of 8 needs.
  h.taken = h.need(32, Precision::FP32) - h.need(8, Precision::FP32);
  h.gov->infer(64, out.data() + 320, run(in.data() + 32 * 3 * 16 * 16));
  EXPECT_GE(h.count("shrink"), 1);
  EXPECT_LE(h.gov->batch(), 8);
  expect_close(out, reference(96, Precision::FP32), 1e-5f);
}

TEST(Governor, DowncastsToFp16AtTheMinimumBatch) {
  Governor::Options o = options(8);
  Harness probe(o);
  ASSERT_LT(probe.need(4, Precision::FP16), probe.need(4, Precision::FP32));
  o.batch_min = 4;
  // From batch 3 on, fp32 no longer fits at batch.min but fp16 does.
  o.faults.budget_at[3] = probe.need(4, Precision::FP16);
  Harness h(o);
  h.gov->start();
  const auto out = run_all(h, 64);
  EXPECT_EQ(h.gov->precision(), Precision::FP16);
  EXPECT_EQ(h.count("downcast"), 1);
  EXPECT_EQ(h.gov->batch(), 4);
  // fp16 storage: close to fp32 and the same top-1 class for every image.
  const auto ref = reference(64, Precision::FP32);
  expect_close(out, ref, 2e-2f);
  for (int i = 0; i < 64; ++i) {
    const auto* a = out.data() + i * 10;
    const auto* r = ref.data() + i * 10;
    EXPECT_EQ(std::max_element(a, a + 10) - a, std::max_element(r, r + 10) - r) << i;
  }
}

TEST(Governor, TimelineRecordsEachBatchWithTheStateItRanIn) {
  Governor::Options o = options(8);
  Harness probe(o);
  o.batch_min = 4;
  const int64_t cap = probe.need(4, Precision::FP16);  // from batch 3: fp16 at batch 4 only
  o.faults.budget_at[3] = cap;
  Harness h(o);
  h.gov->start();
  run_all(h, 64);
  const auto t = h.gov->timeline().to_json();
  ASSERT_EQ(t["images"].size(), size_t(h.gov->batches_run()));  // 2 batches of 8, then 12 of 4
  EXPECT_EQ(t["images"].size(), 14u);
  EXPECT_EQ(t["images"][0], 8);
  EXPECT_EQ(t["images"].back(), 64);
  EXPECT_EQ(t["batch"][1], 8);
  EXPECT_EQ(t["precision"][1], "fp32");
  EXPECT_EQ(t["batch"][2], 4);
  EXPECT_EQ(t["precision"][2], "fp16");
  EXPECT_EQ(t["budget_bytes"][2], cap);
  EXPECT_EQ(t["needed_bytes"][2], cap);
  // Events and samples share one clock: the downcast comes between batch 2 and batch 3.
  const auto& down = h.gov->events()[1];
  ASSERT_EQ(down.kind, "downcast");
  EXPECT_GE(down.time_s, t["time_s"][1].get<double>() - 1e-4);
  EXPECT_LE(down.time_s, t["time_s"][2].get<double>() + 1e-4);
}

TEST(Governor, InitialPlanTakesFp16OnlyWhenFp32DoesNotFitAtTheMinimum) {
  Governor::Options o = options(8);
  Harness probe(o);
  o.batch_min = 2;
  o.budget = probe.need(2, Precision::FP16);
  Harness h(o);
  h.gov->start();
  EXPECT_EQ(h.gov->precision(), Precision::FP16);
  EXPECT_EQ(h.gov->batch(), 2);
}

TEST(Governor, FixedFp32StopsAndSaysFp16WouldFit) {
  Governor::Options o = options(8);
  Harness probe(o);
  o.batch_min = 2;
  o.precision = PrecisionMode::Fp32;
  o.faults.budget_at[2] = probe.need(2, Precision::FP16);
  Harness h(o);
  h.gov->start();
  try {
    run_all(h, 32);
    FAIL() << "expected GovernorStop";
  } catch (const GovernorStop& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("batch 2 at fp32 needs"), std::string::npos) << m;
    EXPECT_NE(m.find("fp16 would fit"), std::string::npos) << m;
  }
  EXPECT_EQ(h.gov->precision(), Precision::FP32);  // never downcast against the user's choice
  EXPECT_EQ(h.count("stop"), 1);
}

TEST(Governor, ImpossibleBudgetStopsBeforeAnyWork) {
  Governor::Options o = options(8);
  o.budget = 1000;
  Harness h(o);
  try {
    h.gov->start();
    FAIL() << "expected GovernorStop";
  } catch (const GovernorStop& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("batch 1 at fp16 needs"), std::string::npos) << m;
    EXPECT_NE(m.find("budget is 1000 B"), std::string::npos) << m;
  }
  EXPECT_EQ(h.alloc.peak(), 0u);
}

TEST(Governor, GrowsBackWhenPressureGoesAndDoesNotOscillate) {
  Governor::Options o = options(16);
  Harness probe(o);
  o.grow_after = 2;
  o.faults.budget_at[3] = probe.need(4, Precision::FP32);
  o.faults.budget_at[6] = -1;  // the other process is gone
  Harness h(o);
  h.gov->start();
  expect_close(run_all(h, 400), reference(400, Precision::FP32), 1e-5f);
  EXPECT_GE(h.count("shrink"), 1);
  EXPECT_EQ(h.count("grow"), 2);  // 4 -> 8 -> 16 (and no flapping)
  EXPECT_EQ(h.gov->batch(), 16);
  EXPECT_EQ(h.gov->precision(), Precision::FP32);
}

namespace {
// The CPU executor with the CUDA backend's handle overhead: `overhead` bytes that the first
// prepare() takes outside the allocator and keeps (cuDNN/cuBLAS handles and modules).
struct HandleRunner : CpuRunner {
  int64_t overhead, paid = 0;
  HandleRunner(infer::Executor& e, int64_t o) : CpuRunner(e), overhead(o) {}
  void prepare(int b, Precision p) override {
    paid = overhead;
    CpuRunner::prepare(b, p);
  }
  int64_t overhead_bytes() const override { return paid ? 0 : overhead; }
};
}  // namespace

TEST(Governor, PlansTheHandleOverheadUntilItIsPaid) {
  infer::HostAllocator host;
  infer::BudgetedAllocator alloc(host);
  infer::Executor exec(small_cnn(), alloc);
  const int64_t plan8 = int64_t(exec.model().bytes_needed(8, Precision::FP32));
  const int64_t overhead = int64_t(exec.model().bytes_needed(16, Precision::FP32)) - plan8;
  HandleRunner runner(exec, overhead);
  // Room for a batch of 8 and the handles; without counting them, 16 would seem to fit.
  const int64_t margin = 1000, capacity = plan8 + overhead + margin;
  Governor::Options o = options(16);
  o.budget = 0;
  o.safety_margin = margin;
  std::vector<std::string> log;
  Governor gov(o, runner, alloc, [&] { return MemoryReading{capacity - int64_t(alloc.used()) - runner.paid, capacity}; },
               [&](const std::string& l) { log.push_back(l); });
  gov.start();
  EXPECT_EQ(gov.batch(), 8);
  EXPECT_EQ(gov.bytes_needed(8, Precision::FP32), plan8 + overhead);
  std::vector<float> out(40 * 10, NAN);
  const auto in = images(40);
  gov.infer(40, out.data(), [&](int first, int count, float* o) { exec.run(in.data() + first * 3 * 16 * 16, count, o); });
  expect_close(out, reference(40, Precision::FP32), 1e-5f);
  EXPECT_EQ(runner.paid, overhead);
  // Paid, the handles are missing from free memory and no longer in the plan: not counted twice.
  EXPECT_EQ(gov.bytes_needed(8, Precision::FP32), plan8);
  EXPECT_EQ(gov.events().size(), 1u) << log.back();  // the plan, and no shrink
  EXPECT_EQ(gov.batch(), 8);
}

TEST(Governor, StagingHeldOutsideTheAllocatorIsNotCountedTwice) {
  Governor::Options o = options(32);
  o.budget = 0;
  o.safety_margin = 1000;
  o.extra_bytes_per_image = 5000;  // the GPU preprocessing's staging, planned per image
  int64_t staging = 0;
  o.staging_bytes = [&] { return staging; };
  Harness h(o);
  h.capacity = h.need(32, Precision::FP32) + 1000;
  h.gov->start();
  ASSERT_EQ(h.gov->batch(), 32);
  // The preprocessing allocates the staging it was planned for: device memory the
  // allocator does not see, so missing from free memory.
  staging = 32 * 5000;
  h.taken = staging;
  expect_close(run_all(h, 96), reference(96, Precision::FP32), 1e-5f);
  EXPECT_EQ(h.count("shrink"), 0) << h.log.back();
  EXPECT_EQ(h.gov->batch(), 32);
  // Memory another process takes still counts. (Once at batch 8, the governor credits the
  // staging of 8 images, so the other process leaves room for the plan at 8 with that.)
  h.taken = 8 * 5000 + h.need(32, Precision::FP32) - h.need(8, Precision::FP32);
  run_all(h, 32);
  EXPECT_GE(h.count("shrink"), 1);
  EXPECT_LE(h.gov->batch(), 8);
}

TEST(Governor, FaultPlanParsesAndRejects) {
  const FaultPlan f = FaultPlan::parse("fail_alloc=3;fail_batch=2,5;budget_at=4:64MiB,9:none");
  EXPECT_EQ(f.fail_alloc_at, 3);
  EXPECT_EQ(f.fail_batch, (std::set<int>{2, 5}));
  EXPECT_EQ(f.budget_at.at(4), 64 << 20);
  EXPECT_EQ(f.budget_at.at(9), -1);
  EXPECT_THROW(FaultPlan::parse("explode=1"), std::invalid_argument);
  EXPECT_THROW(FaultPlan::parse("budget_at=4"), std::invalid_argument);
}

namespace {
std::vector<int> batches_of(const Harness& h) { return h.gov->timeline().to_json()["batch"].get<std::vector<int>>(); }
std::vector<std::string> event_steps(const Harness& h) {
  std::vector<std::string> s;
  for (const auto& e : h.gov->events())
    s.push_back(e.kind + " " + std::to_string(e.batch_before) + "->" + std::to_string(e.batch_after));
  return s;
}
}  // namespace

// The documented back-off: a shrink doubles the good batches needed before a grow (2 -> 4).
TEST(Governor, AShrinkDoublesTheWaitBeforeTheNextGrow) {
  Governor::Options o = options(16);
  Harness probe(o);
  o.grow_after = 2;
  o.faults.budget_at[3] = probe.need(4, Precision::FP32);
  o.faults.budget_at[6] = -1;
  Harness h(o);
  h.gov->start();
  run_all(h, 400);
  EXPECT_EQ(event_steps(h), (std::vector<std::string>{"plan 0->16", "shrink 16->4", "grow 4->8", "grow 8->16"}));
  // Batches 3..6 at 4 (four good batches, not two), then four at 8, then 16 to the end.
  std::vector<int> expected{16, 16, 4, 4, 4, 4, 8, 8, 8, 8};
  expected.resize(expected.size() + 20, 16);  // 80 images so far, 320 left
  EXPECT_EQ(batches_of(h), expected);
}

// The documented hysteresis: a grow takes only what fits in 90% of the budget.
TEST(Governor, GrowsOnlyIntoNinetyPercentOfTheBudget) {
  Governor::Options o = options(16);
  Harness probe(o);
  o.grow_after = 2;
  const int64_t budget = probe.need(8, Precision::FP32);
  o.faults.budget_at[1] = probe.need(4, Precision::FP32);
  o.faults.budget_at[3] = budget;  // batch 8 fits exactly: 100%, not 90%
  Harness h(o);
  h.gov->start();
  run_all(h, 64);
  const int64_t room = budget - budget / 10;
  ASSERT_GE(h.gov->events().size(), 2u);
  EXPECT_EQ(event_steps(h)[0], "plan 0->4");
  for (const auto& e : h.gov->events()) {
    if (e.kind != "grow") continue;
    EXPECT_LT(e.batch_after, 8);
    EXPECT_LE(h.need(e.batch_after, Precision::FP32), room);
    EXPECT_GT(h.need(e.batch_after + 1, Precision::FP32), room);  // the largest that does
  }
  EXPECT_EQ(h.count("grow"), 1);
  EXPECT_EQ(h.count("shrink"), 0);
}

// memory.device_budget: 25% is a quarter of the device's total memory, whatever is free: on a
// device whose total holds exactly 4x the plan of batch 12 (and far more free), the run gets batch 12.
TEST(Governor, APercentageBudgetIsThatShareOfTheTotalMemory) {
  Governor::Options o = options(64);
  Harness probe(o);
  const int64_t quarter = probe.need(12, Precision::FP32) + 1;
  o.budget = 0;
  o.budget_percent = 25;
  Harness h(o);
  h.capacity = 4 * quarter;  // free memory at start: all of it
  h.gov->start();
  EXPECT_EQ(h.gov->batch(), 12);
  EXPECT_EQ(h.gov->precision(), Precision::FP32);
  ASSERT_FALSE(h.gov->events().empty());
  EXPECT_LE(h.gov->events()[0].budget_bytes, quarter);
  EXPECT_GE(h.gov->events()[0].budget_bytes, quarter - 4);
}
