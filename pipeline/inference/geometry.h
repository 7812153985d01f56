#pragma once
// Shape rules shared by the CPU ops and the CUDA backend's planner.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "graph.h"
#include "window.h"

namespace imgpipe::infer {

/// The windows of a Conv or pooling node over input x (N, C, spatial...): explicit pads or
/// auto_pad, and ceil_mode for pooling. Throws UnsupportedModel for what does not fit.
std::vector<Window> windows(const Node& n, const Shape& x, const Shape& kernel, bool ceil_mode);

/// Element strides of `s` seen through the broadcast shape `out` (0 on broadcast dims).
void broadcast_strides(const Shape& s, const Shape& out, int64_t* strides);

/// For element i of `out`, the element offsets into two operands with strides st_a, st_b.
inline void broadcast_offsets(int64_t i, const Shape& out, const int64_t* st_a, const int64_t* st_b, int64_t& oa,
                              int64_t& ob) {
  oa = ob = 0;
  for (size_t d = out.size(); d-- > 0;) {
    const int64_t idx = i % out[d];
    i /= out[d];
    oa += idx * st_a[d];
    ob += idx * st_b[d];
  }
}

/// An axis in [-rank, rank) (or up to rank with allow_end) made non-negative; throws
/// UnsupportedModel when out of range.
int64_t norm_axis(int64_t axis, size_t rank, bool allow_end = false);

/// numpy broadcasting of two shapes; throws UnsupportedModel when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b);

/// Where a Slice reads: per input axis the first index and the step, and the output shape.
struct SliceGeometry {
  Shape begin, step, shape, in_strides;
};
/// ONNX Slice rules (negative and out-of-range indices clamped, negative steps); axes and
/// steps may be empty (all leading axes, steps of 1).
SliceGeometry slice_geometry(const Shape& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                             std::vector<int64_t> axes, std::vector<int64_t> steps);
/// A Transpose as a slice that walks the input in another order: output axis k is input axis
/// perm[k] (negative allowed; empty = reversed). perm must have x's rank.
SliceGeometry transpose_geometry(const Shape& x, std::vector<int64_t> perm);
/// Offset into the (row-major) input of output element k of the slice.
inline int64_t slice_offset(int64_t k, const SliceGeometry& g) {
  int64_t off = 0;
  for (size_t d = g.shape.size(); d-- > 0;) {
    off += (g.begin[d] + (k % g.shape[d]) * g.step[d]) * g.in_strides[d];
    k /= g.shape[d];
  }
  return off;
}

}  // namespace imgpipe::infer
