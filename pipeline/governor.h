#pragma once
// The memory governor: plans the batch size and precision from the executor's exact
// memory plan, re-reads free memory between batches, shrinks the batch and then downcasts
// to fp16 when memory runs short (retrying the same images), and grows back when memory
// returns. Every decision is an event. The same logic runs on the CPU backend (through the
// budgeted allocator) and on CUDA.
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.h"
#include "inference/allocator.h"
#include "inference/executor.h"
#include "timeline.h"

namespace imgpipe {

/// The run cannot go on: not even batch.min at the lowest allowed precision fits.
class GovernorStop : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Memory of the device the model runs on, in bytes, read now.
struct MemoryReading {
  int64_t free = 0, total = 0;
};

/// Test and demo faults, from IMGPIPE_FAULT_INJECT, e.g.
/// "fail_alloc=3;fail_batch=5;budget_at=4:64MiB,9:none". Batches count from 1.
struct FaultPlan {
  int fail_alloc_at = 0;             ///< the Nth allocation of the run fails (0: never)
  std::set<int> fail_batch;          ///< batch K fails as if out of memory, once
  std::map<int, int64_t> budget_at;  ///< from batch K on, cap the budget (-1 lifts the cap)
  /// Parses the text; throws std::invalid_argument naming what is wrong.
  static FaultPlan parse(const std::string& text);
};

struct GovernorEvent {
  double time_s = 0;  ///< since the governor started (the timeline's clock)
  std::string kind;   ///< plan | shrink | downcast | grow | upcast | stop
  int batch_before = 0, batch_after = 0;
  std::string precision_before, precision_after;
  int64_t free_bytes = 0, budget_bytes = 0, needed_bytes = 0;
  int64_t images_retried = 0;
  std::string reason;
};

/// What the governor drives: an executor of either backend, seen through its memory plan.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  /// Bytes prepare(batch, p) will allocate; computed without allocating.
  virtual int64_t bytes_needed(int batch, infer::Precision p) const = 0;
  virtual void prepare(int batch, infer::Precision p) = 0;
  virtual void release() noexcept = 0;
  virtual bool prepared() const = 0;
  virtual int batch() const = 0;
  virtual infer::Precision precision() const = 0;
  virtual int64_t output_size() const = 0;  ///< floats per image
  /// Device bytes the next prepare() takes outside the allocator besides the plan (the CUDA
  /// backend's cuDNN/cuBLAS handles until they exist); 0 by default.
  virtual int64_t overhead_bytes() const { return 0; }
};

/// The CPU executor as a ModelRunner.
class CpuRunner : public ModelRunner {
 public:
  explicit CpuRunner(infer::Executor& e) : e_(e) {}
  int64_t bytes_needed(int b, infer::Precision p) const override { return int64_t(e_.model().bytes_needed(b, p)); }
  void prepare(int b, infer::Precision p) override { e_.prepare(b, p); }
  void release() noexcept override { e_.release(); }
  bool prepared() const override { return e_.prepared(); }
  int batch() const override { return e_.batch(); }
  infer::Precision precision() const override { return e_.precision(); }
  int64_t output_size() const override { return e_.model().output_size(); }

 private:
  infer::Executor& e_;
};

class Governor {
 public:
  struct Options {
    int batch_min = 1, batch_max = 256;
    int batch_fixed = 0;  ///< batch.size; 0 = auto
    PrecisionMode precision = PrecisionMode::Auto;
    int64_t budget = 0;           ///< memory.device_budget bytes; 0 = auto
    double budget_percent = 0;    ///< of total memory, when > 0
    int64_t safety_margin = 0;
    bool restore_precision = false;
    int grow_after = 4;           ///< good batches in a row before trying a larger batch
    int64_t extra_bytes_per_image = 0;  ///< preprocessing buffers that scale with the batch
    /// Device bytes the preprocessing buffers hold now (outside the allocator, so missing from
    /// free memory) that extra_bytes_per_image already plans for; counted as available to
    /// this run, like what the allocator holds, so they are not counted twice.
    std::function<int64_t()> staging_bytes;
    FaultPlan faults;
  };

  /// `memory` reads the device's free/total bytes now; `log` receives one line per event.
  Governor(Options opt, ModelRunner& runner, infer::BudgetedAllocator& allocator,
           std::function<MemoryReading()> memory, std::function<void(const std::string&)> log);

  /// Bytes a batch needs at a precision: the executor's plan, its overhead (handles not
  /// created yet) and the preprocessing buffers.
  [[nodiscard]] int64_t bytes_needed(int batch, infer::Precision p) const;

  /// The plan table for --dry-run: candidate batches and precisions against the budget.
  /// After it, batch() and precision() are the choice (0 when nothing fits).
  [[nodiscard]] std::string describe_plan();

  /// Picks the largest fitting batch (fp32 first under precision auto) and prepares the
  /// executor. Throws GovernorStop with both numbers when nothing fits.
  void start();

  /// Runs images [first, first + count) of the caller's batch into `out` (count x
  /// output_size floats) on the prepared runner.
  using RunRange = std::function<void(int first, int count, float* out)>;

  /// Runs n images through the model into out (n x output_size), in sub-batches of the
  /// current batch size, calling `run` for each; on an allocation failure, shrinks or
  /// downcasts and retries the same images. Throws GovernorStop when it cannot go on.
  void infer(int n, float* out, const RunRange& run);

  int batch() const { return batch_; }
  infer::Precision precision() const { return precision_; }
  const std::vector<GovernorEvent>& events() const { return events_; }
  int64_t budget() const { return budget_; }
  int batches_run() const { return batches_; }
  int64_t images_retried() const { return retried_; }
  /// Counts the preprocessing buffers as this run's own memory from now on.
  void set_staging_bytes(std::function<int64_t()> f) { opt_.staging_bytes = std::move(f); }
  /// One sample per batch run: images done, batch, precision, free/budget/needed bytes.
  const Timeline& timeline() const { return timeline_; }

 private:
  int64_t effective_budget();
  /// The initial batch and precision for the current budget; false when nothing fits.
  bool choose(int& batch, infer::Precision& p) const;
  /// The largest batch in [min, cap] whose plan fits `budget` at p; 0 when none does.
  int largest_fitting(infer::Precision p, int64_t budget, int cap) const;
  void event(const std::string& kind, int before, infer::Precision pbefore, int64_t needed,
             const std::string& reason, int64_t retried = 0);
  /// Called after an allocation failure or a budget drop: smaller batch, or fp16, or stop.
  void shrink(const std::string& reason, int64_t retried);
  void maybe_grow();
  [[noreturn]] void stop(const std::string& why);

  Options opt_;
  ModelRunner& exec_;
  infer::BudgetedAllocator& alloc_;
  std::function<MemoryReading()> memory_;
  std::function<void(const std::string&)> log_;
  int64_t configured_budget_ = 0, budget_ = 0, last_free_ = 0;
  int batch_ = 0, good_streak_ = 0, grow_after_ = 4, batches_ = 0;
  int64_t retried_ = 0, images_ = 0;
  infer::Precision precision_ = infer::Precision::FP32;
  bool downcast_by_governor_ = false;
  bool injected_cap_ = false;  // the budget is capped by fault injection right now
  std::vector<GovernorEvent> events_;
  Timeline timeline_;
};

}  // namespace imgpipe
