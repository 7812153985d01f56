#pragma once
// Static memory plan for a resolved graph at one precision: where every weight and
// activation lives, computed before anything is allocated.
#include <cstddef>
#include <vector>

#include "memory_plan.h"
#include "precision.h"
#include "resolve.h"

namespace imgpipe::infer {

/// Lifetime of one arena tensor over step indices [first, last], both inclusive.
struct Interval {
  size_t bytes = 0;
  int first = 0, last = 0;
};

/// Greedy best-fit by size: each tensor, largest first, takes the smallest gap between
/// tensors already placed whose lifetimes overlap its own. Returns the arena size.
size_t assign_offsets(const std::vector<Interval>& tensors, std::vector<size_t>& offsets);

constexpr size_t kAlign = 64;
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
/// Floats of fp32 scratch one operand takes in the workspace (64-byte steps).
inline size_t scratch_floats(size_t n) { return (n + 15) / 16 * 16; }

struct Layout {
  MemoryPlan plan;
  std::vector<size_t> offset;  ///< per value: byte offset in the weight buffer or the arena
  size_t sum_activation_bytes = 0;  ///< what the arena would be without sharing
  /// fp16 activations stored as fp16 (false: in fp32, each rounded to fp16, where that
  /// needs less memory, at batch 1 when one image's step widened to fp32 would outweigh
  /// what halving saves; so fp16 never needs more than fp32).
  bool half_storage = false;
};

/// Images per op call of each step when fp16 operands are widened to fp32 scratch: as
/// many as keep the step's scratch within what the largest step needs for one image, so
/// the workspace is no bigger than with one image per call, and late steps on small maps
/// still run several images per GEMM. `unit` and `separable` come from batch_units().
std::vector<int64_t> fp16_chunk_images(const ResolvedGraph& g, const std::vector<int64_t>& unit,
                                       bool separable, int64_t batch);

/// `one` is the graph resolved at batch 1 (sizes fp16 scratch per image chunk). At fp16 the
/// smaller of fp16 storage and fp32 storage of fp16-rounded values (see half_storage).
Layout make_layout(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch, Precision p);

}  // namespace imgpipe::infer
