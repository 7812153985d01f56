#pragma once
// The run over time, for report.json and scripts/plot_report.py: one sample per batch,
// bounded in size by decimation so a run of millions of images keeps a small report.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace imgpipe {

/// The state after one batch. Memory fields are -1 where no governor runs (no model).
struct TimelineSample {
  double time_s = 0;    ///< seconds since the timeline started
  int64_t images = 0;   ///< images done so far in this session
  int batch = 0;        ///< batch size in force
  std::string precision;  ///< fp32 | fp16; empty without a model
  int64_t free_bytes = -1, budget_bytes = -1, needed_bytes = -1;
};

/// Samples in time order, at most `cap`: when full, every other sample is dropped and
/// from then on only every 2nd (4th, ...) batch is recorded. The latest is always kept.
class Timeline {
 public:
  explicit Timeline(size_t cap = 1024) : cap_(cap < 2 ? 2 : cap), start_(std::chrono::steady_clock::now()) {}

  /// Seconds since construction.
  double elapsed_s() const;
  /// Records the state after a batch; `s.time_s` is set to elapsed_s().
  void add(TimelineSample s);
  /// Column arrays (time_s, images, batch, and precision/free/budget/needed_bytes when
  /// any sample has them), plus `stride`: batches per kept sample.
  nlohmann::json to_json() const;

 private:
  size_t cap_;
  std::chrono::steady_clock::time_point start_;
  std::vector<TimelineSample> kept_;
  TimelineSample last_;
  uint64_t count_ = 0, stride_ = 1;
};

}  // namespace imgpipe
