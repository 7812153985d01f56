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

}  // namespace imgpipe::infer
