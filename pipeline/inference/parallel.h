#pragma once
// Threads of the CPU inference: one OpenMP team, the one oneDNN's convolutions and GEMMs
// run on, also runs the loops around them (im2col, epilogues, pooling, elementwise), so
// that no second pool's spinning workers take the cores from it.
#include <cstdint>
#include <functional>

namespace imgpipe::infer {

/// Calls fn(begin, end) on disjoint ranges covering [0, n), on parallel_threads()
/// threads; ranges hold at least `grain` items. Returns when every range is done. Inside
/// a parallel region (fn calling it) it runs on the calling thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

/// Threads of the CPU inference, the caller included: OMP_NUM_THREADS, else one per
/// hardware thread.
int parallel_threads();

/// Called first thing in main(): restarts the program (same pid, arguments and
/// environment) with OMP_WAIT_POLICY=passive unless the user set OMP_WAIT_POLICY or
/// GOMP_SPINCOUNT. The OpenMP team then sleeps at its barriers instead of spinning: on an
/// idle machine spinning is a little faster, on a busy one it crawls, because a spinning
/// thread holds the core its team-mate or the decode threads need (EfficientNet-B0, batch
/// 8, this 2-core box with two compilers running: 5-12 images/s spinning, 76-85 asleep).
/// libgomp reads the variable once, while it loads, before main() (an executable's
/// .preinit_array is too early: libc resets the environment after it), hence the restart.
/// Returns when it cannot restart (no /proc), and the run goes on as it is.
void restart_with_passive_openmp(char** argv);

}  // namespace imgpipe::infer
