#pragma once
// Static memory plan of the CUDA backend, computed on the host with no device: what every
// step of a resolved graph does on the GPU (its kind and parameters), where every weight
// and activation lives, and how much scratch the steps need. CudaExecutor::plan() and
// prepare() both use it, so what prepare() allocates is exactly what plan() reported.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda_types.h"
#include "graph.h"
#include "memory_plan.h"
#include "precision.h"
#include "resolve.h"

namespace imgpipe::infer::cuda {

/// Workspace limits of the CUDA backend (bytes). Part of the plan, so the same on every GPU.
struct CudaOptions {
  /// Most scratch one convolution may give cuDNN; each conv asks for at most the size of
  /// its im2col matrix, so small models stay small.
  size_t cudnn_workspace_cap = size_t{64} << 20;
  /// Workspace handed to cuBLAS (cublasSetWorkspace) when the graph has Gemm/MatMul.
  size_t cublas_workspace = size_t{4} << 20;
  /// Device memory the cuDNN/cuBLAS handles and the kernel modules they load take, planned
  /// until the first prepare() has created them (CudaExecutor::overhead_bytes()).
  size_t handle_overhead_estimate = size_t{128} << 20;
  /// Classes per image run_device() and run() rank on the GPU (CudaExecutor::top_classes());
  /// 0: none. The sort's buffers are part of the workspace.
  int top_k = 0;
};

/// Byte alignment of every tensor in the weight buffer, the arena and the workspace.
constexpr size_t kCudaAlign = 256;
inline size_t cuda_align(size_t n) { return (n + kCudaAlign - 1) / kCudaAlign * kCudaAlign; }

/// What one resolved step runs on the GPU.
struct CudaStep {
  enum class Kind {
    Conv, BatchNorm, Unary, Binary, Where, MaxPool, AvgPool, GlobalAvgPool, View, Copy,
    Pad, Concat, Gemm, MatMul, Softmax, ReduceMean, LayerNorm
  };
  using Unary = UnaryKind;
  using Binary = BinaryKind;

  Kind kind = Kind::View;
  // Unary / fused activation parameters
  Unary unary = Unary::Relu;
  float alpha = 0.f, beta = 0.f;  ///< LeakyRelu alpha, HardSigmoid alpha/beta, Gemm alpha/beta
  float lo = 0.f, hi = 0.f;       ///< Clip bounds
  Binary binary = Binary::Add;
  // Conv / pooling
  int64_t group = 1;
  Window win[2];
  bool has_bias = false;        ///< Conv and LayerNormalization: the optional bias is given
  FusedActivation act;
  bool asymmetric_pad = false;  ///< pads differ begin/end: the input is padded into scratch
  bool ceil_mode = false, count_include_pad = false;
  float eps = 1e-5f;            ///< BatchNormalization, LayerNormalization
  /// Copy (Transpose, Slice, Gather, Expand): where each output element is read, for the
  /// shapes at the planned batch; run time takes the dims from the output's shape then.
  Strided copy;
  // Pad
  PadShape pad;                 ///< at the planned batch; dim 0 (never padded) set at run time
  PadMode pad_mode = PadMode::Constant;
  float pad_value = 0.f;
  // Concat / Softmax / ReduceMean / LayerNorm
  int64_t axis = 0;
  bool softmax_flat = false;    ///< opset < 13: softmax over the flattened [axis, rank)
  std::vector<bool> reduced;    ///< ReduceMean: per input dim
  // Gemm
  bool trans_a = false, trans_b = false, has_c = false;

  size_t pad_bytes = 0;     ///< scratch for the padded input (asymmetric pads)
  size_t cudnn_bytes = 0;   ///< scratch offered to cuDNN (before the executor adds slack)
  size_t scratch_bytes() const { return pad_bytes + cudnn_bytes; }
};

/// Where everything lives for one batch size and precision.
struct CudaLayout {
  MemoryPlan plan;  ///< weight_bytes + arena_bytes + workspace_bytes (cuBLAS + scratch)
  std::vector<size_t> offset;      ///< per value: byte offset in the weights or the arena
  std::vector<int> storage;        ///< per value: the value whose memory it uses (views)
  std::vector<CudaStep> steps;     ///< per resolved step
  std::vector<int64_t> unit0;      ///< per value: dim 0 per image when it scales, else 0
  bool separable = true;           ///< false when some tensor mixes images
  size_t cublas_bytes = 0;         ///< first part of the workspace
  size_t scratch_bytes = 0;        ///< rest of the workspace (conv padding, cuDNN, fp16 I/O, top-k)
  size_t sort_offset = 0;          ///< where in the scratch the top-k sort's buffers begin
  size_t sum_activation_bytes = 0; ///< the arena without liveness sharing (views excluded)
};

/// Describes the step `k` of `g` for the GPU; throws UnsupportedModel for what the CUDA
/// backend cannot run.
CudaStep describe_step(const ResolvedGraph& g, size_t k, int opset, Precision p,
                       const CudaOptions& opt);

/// The full layout of `g` (resolved at `batch`; `one` resolved at batch 1).
CudaLayout make_cuda_layout(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch,
                            int opset, Precision p, const CudaOptions& opt);

/// Bytes CudaExecutor::prepare(batch, p) allocates for `graph`; touches no device.
MemoryPlan cuda_plan(const Graph& graph, int batch, Precision p, const CudaOptions& opt = {});

}  // namespace imgpipe::infer::cuda
