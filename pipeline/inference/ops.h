#pragma once
// Operator interface: setup() resolves the output shape and workspace for the shapes of
// one batch size before any memory is touched; run() then computes in fp32 on raw
// pointers. Storage precision is handled by the executor, not by ops.
#include <cstddef>
#include <memory>
#include <vector>

#include "graph.h"

namespace imgpipe::infer {

/// What setup() knows about an input: its shape and, when constant, its value.
struct ValueInfo {
  Shape shape;
  const Constant* constant = nullptr;
};

/// Pointers and shapes for one run; shapes carry the batch actually run.
struct OpArgs {
  const float* const* in;  ///< one per input; nullptr for inputs that are not data_input()
  const Shape* in_shapes;
  size_t n_in;
  float* out;
  const Shape* out_shape;
  float* workspace;  ///< workspace_floats() floats, fp32
};

class Op {
 public:
  virtual ~Op() = default;
  /// Output shape for these inputs; throws UnsupportedModel for what run() cannot do.
  virtual Shape setup(const std::vector<ValueInfo>& in) = 0;
  /// False for inputs only setup() reads (a Reshape's shape, Clip's bounds).
  virtual bool data_input(size_t i) const { (void)i; return true; }
  /// fp32 scratch, in floats, needed by run() for the shapes of the last setup().
  virtual size_t workspace_floats() const { return 0; }
  /// Asks the op to add a residual (data input 3, the output's shape) to its result and
  /// then apply `act`; false when it cannot. Called after setup(); see fuse_residual_adds().
  virtual bool fuse_residual(const FusedActivation& act) { (void)act; return false; }
  /// Input whose memory run() may write the output over (reading each element before
  /// writing it); -1 when none. choose_cpu_layouts() uses it when that input dies there.
  virtual int in_place_input() const { return -1; }
  /// Asks the op to apply `act` to its result; false when it cannot (fuse_silu()).
  virtual bool fuse_activation(const FusedActivation& act) { (void)act; return false; }
  /// True when run() can also read and write its 4-D activations (data input 0, a fused
  /// residual, the output) channels-last (NHWC); see choose_cpu_layouts().
  virtual bool takes_channels_last() const { return false; }
  /// Which activations are NHWC: per input, and the output. Called after setup() and the
  /// fusions; workspace_floats() may change.
  virtual void set_channels_last(const std::vector<bool>& inputs, bool output) { (void)inputs; (void)output; }
  /// Floats constant input i takes in the op's own layout (pack()); 0 when run() reads it
  /// as the model gives it.
  virtual size_t packed_floats(size_t i) const { (void)i; return 0; }
  /// Writes constant input i in the op's layout, for run(); src is as the model gives it,
  /// or packed in `from` (a layout of an earlier pack, see Constant::packed).
  virtual void pack(size_t i, const float* src, const PackedLayout* from, float* dst) const {
    (void)i; (void)src; (void)from; (void)dst;
  }
  /// The layout pack() writes for input i, to keep with a weight packed at load.
  virtual std::shared_ptr<const PackedLayout> packed_layout(size_t i) const { (void)i; return nullptr; }
  /// Computes the output; the batch (dim 0) of the shapes may be below the setup() one.
  virtual void run(const OpArgs& a) const = 0;
};

// Shape rules shared by the ops and constant folding.
Shape reshape_shape(const Shape& in, const std::vector<int64_t>& target, bool allowzero);
Shape squeeze_shape(const Shape& in, std::vector<int64_t> axes);
Shape unsqueeze_shape(const Shape& in, std::vector<int64_t> axes);

/// Creates the CPU op for a node; throws UnsupportedModel naming the problem.
std::unique_ptr<Op> make_op(const Node& node, int opset);

}  // namespace imgpipe::infer
