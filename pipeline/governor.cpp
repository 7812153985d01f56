#include "governor.h"

#include <algorithm>
#include <sstream>

#include "cuda_check.h"

namespace imgpipe {

FaultPlan FaultPlan::parse(const std::string& text) {
  FaultPlan f;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ';');) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("fault '" + item + "': expected key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      if (key == "fail_alloc") {
        f.fail_alloc_at = std::stoi(value);
      } else if (key == "fail_batch") {
        std::stringstream vs(value);
        for (std::string k; std::getline(vs, k, ',');) f.fail_batch.insert(std::stoi(k));
      } else if (key == "budget_at") {
        std::stringstream vs(value);
        for (std::string kv; std::getline(vs, kv, ',');) {
          const auto colon = kv.find(':');
          if (colon == std::string::npos) throw std::invalid_argument(kv);
          const std::string size = kv.substr(colon + 1);
          f.budget_at[std::stoi(kv.substr(0, colon))] = size == "none" ? -1 : parse_size(size);
        }
      } else {
        throw std::invalid_argument("unknown fault '" + key + "' (fail_alloc, fail_batch, budget_at)");
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("IMGPIPE_FAULT_INJECT '" + item + "': " + e.what());
    } catch (const std::out_of_range&) {
      throw std::invalid_argument("IMGPIPE_FAULT_INJECT '" + item + "': number out of range");
    }
  }
  return f;
}

Governor::Governor(Options opt, ModelRunner& executor, infer::BudgetedAllocator& allocator,
                   std::function<MemoryReading()> memory, std::function<void(const std::string&)> log)
    : opt_(std::move(opt)), exec_(executor), alloc_(allocator), memory_(std::move(memory)), log_(std::move(log)),
      grow_after_(opt_.grow_after) {
  if (opt_.faults.fail_alloc_at > 0) alloc_.fail_allocation_at(opt_.faults.fail_alloc_at);
}

int64_t Governor::bytes_needed(int batch, infer::Precision p) const {
  return exec_.bytes_needed(batch, p) + exec_.overhead_bytes() + int64_t(batch) * opt_.extra_bytes_per_image;
}

int64_t Governor::effective_budget() {
  const MemoryReading m = memory_();
  last_free_ = m.free;
  if (configured_budget_ == 0) {  // first reading: fix the budget the run may use
    if (opt_.budget > 0) configured_budget_ = opt_.budget;
    else if (opt_.budget_percent > 0) configured_budget_ = int64_t(double(m.total) * opt_.budget_percent / 100.0);
    else configured_budget_ = std::max<int64_t>(0, m.free - opt_.safety_margin);
  }
  // Memory that other processes took since the start lowers what this run may use; what
  // this run itself holds (the allocator's and the planned staging) counts as available to it.
  const int64_t staging =
      opt_.staging_bytes ? std::min(opt_.staging_bytes(), int64_t(batch_) * opt_.extra_bytes_per_image) : 0;
  int64_t b = std::min(configured_budget_, int64_t(alloc_.used()) + staging + m.free - opt_.safety_margin);
  int64_t cap = -1;  // fault injection: a cap from the latest budget_at at or before this batch
  for (const auto& [k, c] : opt_.faults.budget_at)
    if (k <= batches_ + 1) cap = c;
  injected_cap_ = cap >= 0 && cap < b;
  if (injected_cap_) b = cap;
  return std::max<int64_t>(0, b);
}

int Governor::largest_fitting(infer::Precision p, int64_t budget, int cap) const {
  int lo = opt_.batch_min, hi = cap;
  if (hi < lo || bytes_needed(lo, p) > budget) return 0;
  while (lo < hi) {  // the plan grows with the batch: binary search for the last fit
    const int mid = lo + (hi - lo + 1) / 2;
    if (bytes_needed(mid, p) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

void Governor::event(const std::string& kind, int before, infer::Precision pbefore, int64_t needed,
                     const std::string& reason, int64_t retried) {
  GovernorEvent e;
  e.time_s = timeline_.elapsed_s();
  e.kind = kind;
  e.batch_before = before;
  e.batch_after = batch_;
  e.precision_before = infer::to_string(pbefore);
  e.precision_after = infer::to_string(precision_);
  e.free_bytes = last_free_;
  e.budget_bytes = budget_;
  e.needed_bytes = needed;
  e.images_retried = retried;
  e.reason = reason;
  events_.push_back(e);
  std::ostringstream os;
  os << "governor: " << kind << " batch " << before << " -> " << batch_ << ", " << e.precision_before;
  if (e.precision_after != e.precision_before) os << " -> " << e.precision_after;
  os << ": " << reason << " (needs " << format_bytes(needed) << ", budget " << format_bytes(budget_) << ", free "
     << format_bytes(last_free_) << ")";
  if (retried) os << "; retrying " << retried << (retried == 1 ? " image" : " images");
  log_(os.str());
}

std::string Governor::describe_plan() {
  budget_ = effective_budget();
  std::ostringstream os;
  os << "memory_plan:\n  budget: " << format_bytes(budget_) << " (free " << format_bytes(last_free_) << ", margin "
     << format_bytes(opt_.safety_margin) << ")\n  candidates:\n";
  const int cap = opt_.batch_fixed ? opt_.batch_fixed : opt_.batch_max;
  std::vector<int> sizes;
  for (int b = opt_.batch_min; b < cap; b *= 2) sizes.push_back(b);
  sizes.push_back(cap);
  for (auto p : {infer::Precision::FP32, infer::Precision::FP16})
    for (int b : sizes) {
      const int64_t need = bytes_needed(b, p);
      os << "    - {precision: " << infer::to_string(p) << ", batch: " << b << ", needs: " << format_bytes(need)
         << ", fits: " << (need <= budget_ ? "yes" : "no") << "}\n";
    }
  int batch = 0;
  infer::Precision p = infer::Precision::FP32;
  if (choose(batch, p)) {
    batch_ = batch;  // what start() will pick, so batch() tells it before the run
    precision_ = p;
    os << "  choice: {precision: " << infer::to_string(p) << ", batch: " << batch << "}\n";
  }
  else
    os << "  choice: none fits (the run would stop with exit code 4)\n";
  return os.str();
}

void Governor::stop(const std::string& why) {
  const int64_t need_min = bytes_needed(opt_.batch_min, precision_);
  std::ostringstream os;
  os << why << ": batch " << opt_.batch_min << " at " << infer::to_string(precision_) << " needs "
     << format_bytes(need_min) << " but the budget is " << format_bytes(budget_) << " (free "
     << format_bytes(last_free_) << ")";
  if (opt_.precision == PrecisionMode::Fp32) {
    const int64_t need16 = bytes_needed(opt_.batch_min, infer::Precision::FP16);
    if (need16 <= budget_)
      os << "; fp16 would fit (needs " << format_bytes(need16) << "): set precision: auto or fp16";
  }
  event("stop", batch_, precision_, need_min, why);
  throw GovernorStop(os.str());
}

bool Governor::choose(int& batch, infer::Precision& p) const {
  // fp32 first under precision auto: fp16 only when fp32 does not fit at batch.min.
  std::vector<infer::Precision> order;
  if (opt_.precision != PrecisionMode::Fp16) order.push_back(infer::Precision::FP32);
  if (opt_.precision != PrecisionMode::Fp32) order.push_back(infer::Precision::FP16);
  const int cap = opt_.batch_fixed ? opt_.batch_fixed : opt_.batch_max;
  for (auto candidate : order) {
    p = candidate;
    if ((batch = largest_fitting(candidate, budget_, cap))) return true;
  }
  return false;
}

void Governor::start() {
  budget_ = effective_budget();
  alloc_.set_budget(size_t(budget_));
  const int cap = opt_.batch_fixed ? opt_.batch_fixed : opt_.batch_max;
  if (!choose(batch_, precision_)) stop("not enough memory to start");
  event("plan", 0, precision_, bytes_needed(batch_, precision_),
        opt_.batch_fixed ? "batch.size " + std::to_string(cap) + " fits"
                         : "largest batch within " + std::to_string(opt_.batch_min) + ".." + std::to_string(cap) +
                               " that fits the budget");
}

void Governor::shrink(const std::string& reason, int64_t retried) {
  exec_.release();
  budget_ = effective_budget();
  alloc_.set_budget(size_t(budget_));
  const int before = batch_;
  const infer::Precision pbefore = precision_;
  good_streak_ = 0;
  grow_after_ *= 2;  // back off: each shrink makes the next grow wait longer (no oscillation)
  if (batch_ > opt_.batch_min) {
    const int cap = std::max(opt_.batch_min, batch_ / 2);  // at least halve
    if (const int b = largest_fitting(precision_, budget_, cap)) {
      batch_ = b;
      event("shrink", before, pbefore, bytes_needed(b, precision_), reason, retried);
      return;
    }
  }
  if (precision_ == infer::Precision::FP32 && opt_.precision == PrecisionMode::Auto) {
    precision_ = infer::Precision::FP16;
    downcast_by_governor_ = true;
    const int b = largest_fitting(precision_, budget_, std::max(opt_.batch_min, before));
    if (b) {
      batch_ = b;
      event("downcast", before, pbefore, bytes_needed(b, precision_), reason, retried);
      return;
    }
  }
  stop(reason);
}

void Governor::maybe_grow() {
  if (good_streak_ < grow_after_) return;
  good_streak_ = 0;
  budget_ = effective_budget();
  alloc_.set_budget(size_t(budget_));
  // Hysteresis: grow only into 90% of the budget, so a size that just failed is not
  // retried on the next batch.
  const int64_t room = budget_ - budget_ / 10;
  const int before = batch_;
  const infer::Precision pbefore = precision_;
  if (opt_.restore_precision && downcast_by_governor_ && bytes_needed(batch_, infer::Precision::FP32) <= room) {
    precision_ = infer::Precision::FP32;
    downcast_by_governor_ = false;
    exec_.release();
    event("upcast", before, pbefore, bytes_needed(batch_, precision_), "memory.restore_precision and fp32 fits again");
    return;
  }
  const int cap = opt_.batch_fixed ? opt_.batch_fixed : opt_.batch_max;
  if (batch_ >= cap) return;
  const int b = largest_fitting(precision_, room, std::min(cap, batch_ * 2));
  if (b > batch_) {
    batch_ = b;
    exec_.release();
    event("grow", before, pbefore, bytes_needed(b, precision_), "memory allows a larger batch");
  }
}

void Governor::infer(int n, float* out, const RunRange& run) {
  const int64_t out_size = exec_.output_size();
  for (int done = 0; done < n;) {
    budget_ = effective_budget();
    alloc_.set_budget(size_t(budget_));
    if (bytes_needed(batch_, precision_) > budget_) {
      shrink(injected_cap_ ? "budget cut to " + format_bytes(budget_) + " (injected: IMGPIPE_FAULT_INJECT budget_at)"
                           : "free memory dropped to " + format_bytes(last_free_),
             0);
      continue;
    }
    const int m = std::min(batch_, n - done);
    try {
      if (!exec_.prepared() || exec_.batch() != batch_ || exec_.precision() != precision_)
        exec_.prepare(batch_, precision_);
      if (opt_.faults.fail_batch.erase(batches_ + 1)) {  // as if the batch failed midway
        retried_ += m;
        shrink("injected allocation failure (IMGPIPE_FAULT_INJECT fail_batch)", m);
        continue;
      }
      run(done, m, out + int64_t(done) * out_size);
    } catch (const infer::OutOfMemory& e) {
      retried_ += m;
      shrink("allocation of " + format_bytes(int64_t(e.requested())) + " failed", m);
      continue;
    } catch (const kernels::CudaOutOfMemory& e) {
      retried_ += m;
      shrink(std::string("CUDA out of memory: ") + e.what(), m);
      continue;
    }
    done += m;
    ++batches_;
    ++good_streak_;
    images_ += m;
    timeline_.add({0, images_, batch_, infer::to_string(precision_), last_free_, budget_,
                   bytes_needed(batch_, precision_)});
    maybe_grow();
  }
}

}  // namespace imgpipe
