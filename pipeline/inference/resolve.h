#pragma once
// A graph resolved for one batch size: every tensor has a static shape, shape
// computations are folded to constants, and the remaining nodes are runnable steps.
#include <memory>
#include <string>
#include <vector>

#include "graph.h"
#include "ops.h"

namespace imgpipe::infer {

struct Value {
  std::string name;
  Shape shape;
  std::shared_ptr<const Constant> constant;  ///< set for constants (never in the arena)
  bool weight = false;                        ///< a constant some step reads at run time
  int def = -1, last_use = -1;                ///< steps that write and last read it
  size_t packed_floats = 0;  ///< CPU: floats its one reader stores it in (Op::pack), 0: as given
};

/// Floats a value takes in memory: its elements, or its packed size.
inline size_t stored_floats(const Value& v) {
  return v.packed_floats ? v.packed_floats : static_cast<size_t>(numel(v.shape));
}

struct Step {
  const Node* node = nullptr;
  std::unique_ptr<Op> op;
  std::vector<int> inputs;  ///< value indices; -1 for a left-out optional input
  int output = -1;
  size_t workspace_floats = 0;
  int in_place = -1;  ///< CPU: input whose memory the output takes (it dies here), -1: none
};

struct ResolvedGraph {
  std::vector<Value> values;
  std::vector<Step> steps;
  int input = -1, output = -1;
};

/// Shape inference and constant folding for `batch` images; throws UnsupportedModel
/// naming the node, op type and opset.
ResolvedGraph resolve(const Graph& g, int64_t batch);

/// CPU executor only (the memory plan of Model::plan() includes it): folds each Add of a
/// Conv's output (read by nothing else) and an activation computed before that Conv, of
/// the same shape, into the Conv, with the Relu that alone reads the sum if there is one.
/// The Conv then reads the residual as input 3 and writes the Add's (or Relu's) output;
/// the folded steps are removed, the values only they wrote or read are left unused
/// (def = last_use = -1, not planned), and liveness is recomputed.
void fuse_residual_adds(ResolvedGraph& g);

/// Recomputes def and last_use of the activations from the steps (after steps were
/// removed or rewired); values no step writes or reads get -1 (not planned).
void recompute_liveness(ResolvedGraph& g);

/// CPU executor only (Model::plan() and Executor::prepare()): fuse_residual_adds(), then
/// folds x * Sigmoid(x) of a Conv's output x into the Conv (Swish), keeps channels-last
/// (NHWC) the 4-D activations that only ops taking it write and read
/// (Op::takes_channels_last()), and gives each constant that an op packs into its own
/// layout (Op::packed_floats()) a value of its own with packed_floats set.
void prepare_cpu_graph(ResolvedGraph& g);

/// For a model the CPU executor runs: each weight that one op keeps in a layout of its own
/// (a oneDNN Conv's) is packed now, in place of the model's copy (Constant::packed), so the
/// weights are held once and prepare() packs nothing. The graph then runs on the CPU only.
void pack_cpu_weights(Graph& g);

/// Per value of `g` (resolved at `batch`): dim 0 for one image when the tensor scales
/// with the batch, 0 for constants and batch-independent tensors. `one` is the same graph
/// resolved at batch 1. separable is false when some tensor mixes images.
std::vector<int64_t> batch_units(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch,
                                 bool& separable);

}  // namespace imgpipe::infer
