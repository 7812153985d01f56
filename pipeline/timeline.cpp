#include "timeline.h"

#include <cmath>

namespace imgpipe {

double Timeline::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Timeline::add(TimelineSample s) {
  s.time_s = std::round(elapsed_s() * 1e4) / 1e4;  // 0.1 ms is plenty and keeps the JSON short
  if (count_++ % stride_ == 0) {
    if (kept_.size() == cap_) {  // halve: keep samples 0, 2, 4, ..., which are multiples of 2 * stride
      for (size_t i = 0; 2 * i < kept_.size(); ++i) kept_[i] = kept_[2 * i];
      kept_.resize((kept_.size() + 1) / 2);
      stride_ *= 2;
    }
    if ((count_ - 1) % stride_ == 0) kept_.push_back(s);
  }
  last_ = std::move(s);
}

nlohmann::json Timeline::to_json() const {
  std::vector<const TimelineSample*> samples;
  for (const auto& s : kept_) samples.push_back(&s);
  if (count_ > 0 && (count_ - 1) % stride_ != 0) samples.push_back(&last_);
  nlohmann::json time = nlohmann::json::array(), images = time, batch = time, precision = time, free = time,
                 budget = time, needed = time;
  bool memory = false;
  for (const TimelineSample* s : samples) {
    time.push_back(s->time_s);
    images.push_back(s->images);
    batch.push_back(s->batch);
    precision.push_back(s->precision);
    free.push_back(s->free_bytes);
    budget.push_back(s->budget_bytes);
    needed.push_back(s->needed_bytes);
    memory = memory || s->budget_bytes >= 0;
  }
  nlohmann::json j = {{"stride", stride_}, {"time_s", time}, {"images", images}, {"batch", batch}};
  if (memory) {
    j["precision"] = precision;
    j["free_bytes"] = free;
    j["budget_bytes"] = budget;
    j["needed_bytes"] = needed;
  }
  return j;
}

}  // namespace imgpipe
