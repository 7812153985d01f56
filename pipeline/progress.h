#pragma once
// Progress on stderr: a redrawn bar on a terminal, a line every few seconds otherwise
// (a Colab `!` cell, a log file), nothing when off.
#include <chrono>
#include <cstdio>
#include <string>

#include "config.h"

namespace imgpipe {

class Progress {
 public:
  /// `mode` Auto picks Bar when `out` is a terminal and Lines otherwise.
  Progress(ProgressMode mode, size_t total, FILE* out = stderr, double line_interval_s = 5.0);
  /// Called after each image; cheap when nothing is due to print.
  void update(size_t done, size_t skipped);
  /// The final state, always printed unless off.
  void finish(size_t done, size_t skipped);

 private:
  void print(size_t done, size_t skipped, bool final);
  using Clock = std::chrono::steady_clock;
  ProgressMode mode_;
  size_t total_;
  FILE* out_;
  double interval_s_;
  Clock::time_point start_, last_;
};

}  // namespace imgpipe
