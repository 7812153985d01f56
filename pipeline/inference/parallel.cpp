#include "parallel.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define IMGPIPE_PAUSE() _mm_pause()
#else
#define IMGPIPE_PAUSE() std::this_thread::yield()
#endif

namespace imgpipe::infer {
namespace {

/// A job is cut into a few ranges per thread; the caller and the helpers claim them
/// from one counter tagged with the job's number, so a helper that wakes late claims
/// nothing from a finished job, and a caller whose helper is descheduled (a busy machine)
/// runs the ranges itself instead of waiting.
class Pool {
 public:
  explicit Pool(int helpers) {
    for (int k = 0; k < helpers; ++k) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  int threads() const { return static_cast<int>(threads_.size()) + 1; }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t ranges = std::min<int64_t>(4 * threads(), (n + grain - 1) / grain);
    if (ranges <= 1 || threads_.empty() || busy_.exchange(true)) {  // small, or nested
      fn(0, n);
      return;
    }
    fn_.store(&fn, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    chunk_.store((n + ranges - 1) / ranges, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t job = ++job_ & kJobMask;
    ticket_.store(job << 40 | static_cast<uint64_t>(ranges) << 20, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1);
    }
    if (sleeping_.load() > 0) cv_.notify_all();
    work(job);
    while (done_.load(std::memory_order_acquire) < ranges) IMGPIPE_PAUSE();
    busy_.store(false);
  }

 private:
  // ticket: job number (24 bits) | ranges (20 bits) | next range (20 bits), one word so
  // that a claim checks the job and its range count together.
  static constexpr uint64_t kJobMask = (uint64_t{1} << 24) - 1, kField = (uint64_t{1} << 20) - 1;

  /// Claims and runs ranges of job `job` until none is left.
  void work(uint64_t job) {
    for (;;) {
      uint64_t t = ticket_.load(std::memory_order_acquire);
      const uint64_t k = t & kField;
      if ((t >> 40) != job || k >= ((t >> 20) & kField)) return;
      // Read before claiming: while a range of this job is unclaimed the job cannot
      // finish, so the caller cannot have changed these for the next one.
      const auto* fn = fn_.load(std::memory_order_relaxed);
      const int64_t n = n_.load(std::memory_order_relaxed), chunk = chunk_.load(std::memory_order_relaxed);
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
      const int64_t begin = static_cast<int64_t>(k) * chunk;
      if (begin < n) (*fn)(begin, std::min(begin + chunk, n));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      // Spin a little (the next loop usually comes within microseconds), then sleep.
      for (int spin = 0; spin < 4000 && generation_.load(std::memory_order_acquire) == seen; ++spin)
        IMGPIPE_PAUSE();
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.fetch_add(1);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
        sleeping_.fetch_sub(1);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      work(ticket_.load(std::memory_order_acquire) >> 40);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0}, ticket_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<int64_t> done_{0}, n_{0}, chunk_{0};
  std::atomic<const std::function<void(int64_t, int64_t)>*> fn_{nullptr};
  std::atomic<bool> busy_{false};
  uint64_t job_ = 0;    // caller only
  bool stop_ = false;  // written under mu_ before the last generation change
};

Pool& pool() {
  static Pool p(std::max(0, std::min(openblas_get_num_threads(),
                                     static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) - 1));
  return p;
}

}  // namespace

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  pool().run(n, std::max<int64_t>(grain, 1), fn);
}

int parallel_threads() { return pool().threads(); }

}  // namespace imgpipe::infer
