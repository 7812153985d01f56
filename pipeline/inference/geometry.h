#pragma once
// Shape rules shared by the CPU ops and the CUDA backend's planner.
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

}  // namespace imgpipe::infer
