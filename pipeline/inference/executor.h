#pragma once
// Runs a Model on the CPU with one static allocation per prepare(): weights at the
// storage precision, a liveness-shared activation arena, and the largest op workspace.
#include <memory>
#include <string>
#include <vector>

#include "allocator.h"
#include "model.h"

namespace imgpipe::infer {

/// Wall time spent in one kind of step (op type, and kernel/stride for Conv).
struct OpTiming {
  std::string label;
  double seconds = 0;
  int64_t calls = 0;
};

class Executor {
 public:
  /// The allocator must outlive the executor.
  Executor(Model model, Allocator& allocator);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Allocates model.plan(batch, p) exactly (releasing what was held first). On
  /// OutOfMemory everything is released and prepare() may be called again.
  void prepare(int batch, Precision p);
  /// Re-prepares at the current batch with precision p (frees the old weights first);
  /// before any prepare() it only sets the precision the next prepare() default uses.
  void set_precision(Precision p);
  /// Frees all memory; prepared() is false afterwards.
  void release() noexcept;

  /// input: batch_n images, NCHW fp32, input_size() floats each; output: batch_n x
  /// output_size() floats. batch_n <= prepared batch. Allocates nothing.
  void run(const float* input, int batch_n, float* output);

  /// Times every step of later run()s per op kind (off by default; costs a clock read
  /// per step). Turning it on clears what was gathered.
  void enable_profiling(bool on);
  /// What enable_profiling() gathered, slowest kind first.
  std::vector<OpTiming> op_timings() const;

  bool prepared() const;
  int batch() const;  ///< prepared batch size (0 when not prepared)
  Precision precision() const;
  const MemoryPlan& memory_plan() const;  ///< of the current preparation
  const Model& model() const { return model_; }
  std::vector<int64_t> input_shape() const { return model_.input_shape(); }
  std::vector<int64_t> output_shape() const { return model_.output_shape(); }

 private:
  struct Prepared;
  Model model_;
  Allocator& allocator_;
  Precision precision_ = Precision::FP32;
  std::unique_ptr<Prepared> state_;
  bool profiling_ = false;
  std::vector<OpTiming> timings_;
};

}  // namespace imgpipe::infer
