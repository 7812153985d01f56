#include "progress.h"

#include <unistd.h>

namespace imgpipe {

Progress::Progress(ProgressMode mode, size_t total, FILE* out, double line_interval_s)
    : mode_(mode), total_(total), out_(out), interval_s_(line_interval_s), start_(Clock::now()), last_(start_) {
  if (mode_ == ProgressMode::Auto) mode_ = isatty(fileno(out_)) ? ProgressMode::Bar : ProgressMode::Lines;
}

void Progress::update(size_t done, size_t skipped) {
  if (mode_ == ProgressMode::Off) return;
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (since < (mode_ == ProgressMode::Bar ? 0.1 : interval_s_)) return;
  last_ = now;
  print(done, skipped, false);
}

void Progress::finish(size_t done, size_t skipped) {
  if (mode_ == ProgressMode::Off) return;
  print(done, skipped, true);
}

void Progress::print(size_t done, size_t skipped, bool final) {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
  const double eta = rate > 0 && total_ > done ? double(total_ - done) / rate : 0.0;
  char tail[160];
  std::snprintf(tail, sizeof tail, "%zu/%zu images, %zu skipped, %.1f images/s, %s %.0fs", done, total_, skipped, rate,
                final ? "took" : "ETA", final ? elapsed : eta);
  if (mode_ == ProgressMode::Bar) {
    constexpr int kWidth = 30;
    const int filled = total_ ? int(kWidth * double(done) / double(total_)) : kWidth;
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r[%s] %s\x1b[K%s", bar.c_str(), tail, final ? "\n" : "");
  } else {
    std::fprintf(out_, "progress: %s\n", tail);
  }
  std::fflush(out_);
}

}  // namespace imgpipe
