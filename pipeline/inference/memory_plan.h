#pragma once
#include <cstddef>

namespace imgpipe::infer {

/// Bytes a prepared executor allocates for one batch size and precision.
struct MemoryPlan {
  size_t weight_bytes = 0;     ///< weights at the storage precision
  size_t arena_bytes = 0;      ///< activations, shared by liveness
  size_t workspace_bytes = 0;  ///< largest per-op scratch (im2col, fp16 widening)
  size_t total() const { return weight_bytes + arena_bytes + workspace_bytes; }
};

}  // namespace imgpipe::infer
