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

/// Called first thing in main(): unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT,
/// restarts the program (same pid, arguments and environment) with GOMP_SPINCOUNT=10000, so
/// that the OpenMP team spins briefly (some microseconds) at its barriers and then sleeps.
/// libgomp's default spins 30 times longer, which on busy cores (a Colab neighbour, our own
/// decode threads, compilers) holds the core a team-mate needs: EfficientNet-B0 at batch 8 on
/// this 2-core box with two compilers running, 5-12 images/s against 76-86 asleep. Asleep at
/// once (OMP_WAIT_POLICY=passive) costs a wake-up per barrier on an idle machine: MobileNetV2
/// at batch 8, 323 images/s asleep, 407-424 spinning 10,000 times, 416 libgomp's default; a
/// whole run of 200 JPEGs at batch 8, 213-220 images/s asleep, 223-252 at 10,000.
/// libgomp reads the variables once, while it loads, before main() (an executable's
/// .preinit_array is too early: libc resets the environment after it), hence the restart.
/// Returns when it cannot restart (no /proc), and the run goes on as it is.
void restart_with_short_openmp_spin(char** argv);

}  // namespace imgpipe::infer
