#pragma once
#include <cstddef>

namespace imgpipe::infer {

/// Bytes a model holds at one batch size and precision: its weights and what prepare()
/// allocates for the batch.
struct MemoryPlan {
  /// The model's weights: on the CPU its fp32 constants, resident from load on and read in
  /// place at both precisions (so not allocated by prepare()); on CUDA, allocated at the
  /// storage precision.
  size_t weight_bytes = 0;
  size_t arena_bytes = 0;      ///< activations, shared by liveness
  size_t workspace_bytes = 0;  ///< largest per-op scratch (im2col, fp16 widening)
  size_t packed_bytes = 0;     ///< CPU: weights in an op's own layout (oneDNN's), fp32
  size_t total() const { return weight_bytes + batch_bytes(); }
  /// Allocated per prepare().
  size_t batch_bytes() const { return arena_bytes + workspace_bytes + packed_bytes; }
};

}  // namespace imgpipe::infer
