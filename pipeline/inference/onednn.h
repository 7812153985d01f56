#pragma once
// oneDNN (libdnnl 2.x or 3.x) for the CPU executor: its GEMM, and 2-D convolution (direct,
// grouped and depthwise kernels computing channels-last (NHWC), up to 8 images per call, with
// bias, a residual and Relu/Clip/Swish as fused post-ops; Winograd for large 3x3 ones where
// oneDNN 2.x has it, see onednn.cpp). Every buffer comes from the caller: the weights in
// oneDNN's own layout (pack_weights(), at load or at prepare) and a user scratchpad plus
// layout copies (NCHW<->NHWC, Winograd's nChw16c) in the op's planned workspace.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "graph.h"

namespace imgpipe::infer {

/// Row-major C = alpha * op(A) * op(B) + beta * C (op: transposed when asked), M x N by K,
/// on oneDNN's GEMM and threads (parallel_threads()).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

/// Geometry and epilogue of one Conv, per image.
struct ConvParams {
  int64_t batch = 1;  ///< images per run() call at most
  int64_t c = 0, h = 0, w = 0;  ///< input channels and size
  int64_t m = 0, oh = 0, ow = 0;  ///< output channels and size
  int64_t group = 1, kh = 1, kw = 1;
  int64_t stride[2] = {1, 1}, dilation[2] = {1, 1}, pad_begin[2] = {0, 0}, pad_end[2] = {0, 0};
  bool bias = false, residual = false;  ///< residual: added before the activation
  FusedActivation act;
  // Layout of each activation in memory (the convolution itself always runs NHWC).
  bool src_nhwc = false, residual_nhwc = false, dst_nhwc = false;
};

/// Reorders weights packed by an OnednnConv (its weights_layout()) back to ONNX's OIHW.
void unpack_weights(const PackedLayout& packed, const float* src, float* oihw);

class OnednnConv {
 public:
  /// nullptr when oneDNN has no optimized kernel for it (only its reference one).
  static std::unique_ptr<OnednnConv> create(const ConvParams& p);
  ~OnednnConv();

  /// fp32 scratch per call, in floats: oneDNN's scratchpad plus the layout copies.
  size_t workspace_floats() const { return ws_floats_; }
  /// Floats of the weights in oneDNN's layout (may exceed ONNX's with channel padding).
  size_t packed_weight_floats() const { return packed_floats_; }
  /// Reorders weights into packed_weight_floats() floats at `dst`: ONNX's OIHW when
  /// `from` is null, else the layout of another OnednnConv's weights_layout().
  void pack_weights(const float* src, const PackedLayout* from, float* dst) const;
  /// The layout pack_weights() writes.
  std::shared_ptr<const PackedLayout> weights_layout() const;
  /// True when run() reads weights packed in `l` as they are.
  bool reads(const PackedLayout& l) const;
  /// n images: x, res and y in the layouts of ConvParams, w packed; ws holds
  /// workspace_floats() floats.
  void run(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t n,
           float* ws) const;
  /// oneDNN's name of the kernel it picked (e.g. "brgconv:avx512_core").
  const char* kernel() const;

 private:
  struct Impl;
  explicit OnednnConv(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  size_t ws_floats_ = 0, packed_floats_ = 0;
};

}  // namespace imgpipe::infer
