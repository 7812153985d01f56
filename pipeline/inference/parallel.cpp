#include "parallel.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace imgpipe::infer {

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = parallel_threads();
  // A few ranges per thread, claimed in turn, so a thread that the machine delays holds
  // up little of the loop.
  const int64_t ranges = std::min<int64_t>(4 * threads, (n + std::max<int64_t>(grain, 1) - 1) / std::max<int64_t>(grain, 1));
  if (ranges <= 1 || threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + ranges - 1) / ranges;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t r = 0; r < ranges; ++r) fn(r * chunk, std::min(n, (r + 1) * chunk));
}

int parallel_threads() {
  static const int n = std::max(1, std::min(omp_get_max_threads(),
                                            static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))));
  return n;
}

void restart_with_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "10000", 1) == 0) execv("/proc/self/exe", argv);
}

}  // namespace imgpipe::infer
