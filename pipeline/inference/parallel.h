#pragma once
// A small fork-join pool for the loops around the GEMMs (im2col, epilogues, pooling),
// which otherwise run on one core while OpenBLAS's threads wait. Helpers spin briefly and
// then sleep on a condition variable, so that, unlike libgomp's spinning workers, they do
// not take the cores from OpenBLAS between loops.
#include <cstdint>
#include <functional>

namespace imgpipe::infer {

/// Calls fn(begin, end) on disjoint ranges covering [0, n), on the calling thread and the
/// pool's helpers (as many threads in all as OpenBLAS uses); ranges hold at least `grain`
/// items. Returns when every range is done. Not reentrant: fn must not call it.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

/// Threads parallel_for() runs on (the caller included).
int parallel_threads();

}  // namespace imgpipe::infer
