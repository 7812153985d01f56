#include "cuda_executor.h"

#include "geometry.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "cuda_handles.h"
#include "cuda_ops.h"
#include "cuda_resources.h"
#include "geometry.h"
#include "graph.h"
#include "resolve.h"

namespace imgpipe::infer {

using cuda::CudaLayout;
using cuda::CudaStep;
using cuda::DType;
using cuda::Strided;

// ---------------------------------------------------------------- allocator --------
void* CudaDeviceAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  cuda::DeviceGuard guard(device_);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky; clear it so later launch checks do not see it
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      (void)cudaGetLastError();
      free = 0;
    }
    throw OutOfMemory(bytes, free);
  }
  IMGPIPE_CUDA_CHECK(e);
  return p;
}

void CudaDeviceAllocator::deallocate(void* p, size_t) noexcept {
  if (!p) return;
  int previous = 0;
  const bool known = cudaGetDevice(&previous) == cudaSuccess;
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(device_));
  (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaFree(p));
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(previous));
}

namespace {

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw UnsupportedModel(std::string(what) + " " + std::to_string(v) + " exceeds the CUDA backend's int range");
  return static_cast<int>(v);
}


Strided dims_of(const Shape& out) {
  if (out.size() > static_cast<size_t>(cuda::kMaxRank)) throw UnsupportedModel("rank above 8");
  Strided s;
  s.rank = static_cast<int>(out.size());
  for (size_t k = 0; k < out.size(); ++k) s.dims[k] = out[k];
  return s;
}

/// cuDNN state of one convolution step.
struct ConvState {
  cuda::TensorDesc x, y, bias;
  cuda::FilterDesc w;
  cuda::ConvDesc conv;
  cuda::ActivationDesc relu;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionFwdAlgo_t best = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;  ///< chosen at prepare
  size_t algo_bytes = 0;
  bool fused = false;  ///< bias + Relu in cudnnConvolutionBiasActivationForward (fp32)
  int64_t n_set = -1;  ///< batch the x/y descriptors describe now
};

}  // namespace

// ---------------------------------------------------------------- prepared state ---
struct CudaExecutor::Prepared {
  int device = 0;
  int batch = 0;
  Precision precision = Precision::FP32;
  DType dtype = DType::F32;
  ResolvedGraph graph;
  CudaLayout layout;
  Buffer weights, arena, workspace;
  kernels::PinnedBuffer h_in, h_out;  // pinned staging: h_in for run() only, allocated there
  kernels::PinnedBuffer h_top;         // the top-k classes of each image (CudaOptions::top_k)
  std::vector<int32_t> top;            // their copy for top_classes(), sized at prepare
  std::optional<kernels::Event> done;  // blocking sync: a host wait sleeps, not spins a core
  const cuda::CudnnHandle* cudnn = nullptr;    // the executor's, kept across preparations
  const cuda::CublasHandle* cublas = nullptr;  // null when the graph has no Gemm/MatMul
  const void* input = nullptr;  // run_device's input when read in place (no copy into the arena)
  std::vector<std::unique_ptr<ConvState>> conv;  // per step; null for other kinds
  cudaStream_t bound_stream = nullptr;
  bool stream_bound = false;
  // Scratch reused by every run() so that it allocates nothing.
  std::vector<std::vector<Shape>> in_shapes;
  std::vector<Shape> out_shapes;

  cudnnDataType_t cudnn_type() const { return dtype == DType::F16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT; }
  cudaDataType_t blas_type() const { return dtype == DType::F16 ? CUDA_R_16F : CUDA_R_32F; }
  size_t esize() const { return element_size(precision); }

  char* where(int v) const {
    const Value& val = graph.values[v];
    if (input && layout.storage[v] == graph.input) return static_cast<char*>(const_cast<void*>(input));
    return (val.constant ? weights.data() : arena.data()) + layout.offset[v];
  }
  char* cublas_ws() const { return workspace.data(); }
  char* scratch() const { return workspace.data() + layout.cublas_bytes; }

  void runtime_shape(int v, int n, Shape& s) const {
    s = graph.values[v].shape;  // same length every time: no reallocation
    const int64_t u = layout.unit0[v];
    if (u && !s.empty()) s[0] = u * n;
  }

  void bind(cudaStream_t stream) {
    if (stream_bound && stream == bound_stream) return;
    IMGPIPE_CUDNN_CHECK(cudnnSetStream(*cudnn, stream));
    if (cublas) {
      // cublasSetStream resets the workspace to cuBLAS's own pool: set ours again after it.
      IMGPIPE_CUBLAS_CHECK(cublasSetStream(*cublas, stream));
      IMGPIPE_CUBLAS_CHECK(cublasSetWorkspace(*cublas, cublas_ws(), layout.cublas_bytes));
    }
    bound_stream = stream;
    stream_bound = true;
  }

  // ---- convolution -------------------------------------------------------------
  /// Sets the x/y descriptors for `n` images (x padded when the pads are asymmetric).
  void set_conv_shapes(size_t k, const Shape& xs, const Shape& ys) {
    ConvState& c = *conv[k];
    if (c.n_set == xs[0]) return;
    const CudaStep& s = layout.steps[k];
    const int64_t h = xs[2] + (s.asymmetric_pad ? s.win[0].pad_begin + s.win[0].pad_end : 0);
    const int64_t w = xs[3] + (s.asymmetric_pad ? s.win[1].pad_begin + s.win[1].pad_end : 0);
    IMGPIPE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(c.x, CUDNN_TENSOR_NCHW, cudnn_type(), to_int(xs[0], "batch"),
                                                   to_int(xs[1], "channels"), to_int(h, "height"), to_int(w, "width")));
    IMGPIPE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(c.y, CUDNN_TENSOR_NCHW, cudnn_type(), to_int(ys[0], "batch"),
                                                   to_int(ys[1], "channels"), to_int(ys[2], "height"),
                                                   to_int(ys[3], "width")));
    c.n_set = xs[0];
  }

  size_t cudnn_limit(size_t k) const { return layout.scratch_bytes - layout.steps[k].pad_bytes; }

  /// Picks the fastest algorithm cuDNN expects for these shapes whose workspace fits the
  /// scratch left after padding; fp32 keeps FMA math (no TF32) to stay close to the CPU.
  void choose_algorithm(size_t k) {
    ConvState& c = *conv[k];
    const size_t limit = cudnn_limit(k);
    const bool half = dtype == DType::F16;
    const cudnnMathType_t base_math = half ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    IMGPIPE_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, base_math));
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    IMGPIPE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(*cudnn, c.x, c.w, c.conv, c.y,
                                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
    for (int i = 0; i < found; ++i) {
      const cudnnConvolutionFwdAlgoPerf_t& r = perf[i];
      if (r.status != CUDNN_STATUS_SUCCESS || r.memory > limit) continue;
      if (!half && (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        continue;
      IMGPIPE_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, half ? r.mathType : CUDNN_FMA_MATH));
      size_t bytes = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(*cudnn, c.x, c.w, c.conv, c.y, r.algo, &bytes) !=
              CUDNN_STATUS_SUCCESS ||
          bytes > limit)
        continue;
      c.algo = c.best = r.algo;
      c.algo_bytes = bytes;
      return;
    }
    // Implicit GEMM needs no workspace and supports every configuration.
    IMGPIPE_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, base_math));
    c.algo = c.best = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    IMGPIPE_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(*cudnn, c.x, c.w, c.conv, c.y, c.algo, &c.algo_bytes));
  }

  void prepare_conv(size_t k) {
    const Step& st = graph.steps[k];
    const CudaStep& s = layout.steps[k];
    auto c = std::make_unique<ConvState>();
    const Shape& ws = graph.values[st.inputs[1]].shape;
    IMGPIPE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(c->w, cudnn_type(), CUDNN_TENSOR_NCHW, to_int(ws[0], "filters"),
                                                   to_int(ws[1], "channels"), to_int(ws[2], "kernel"),
                                                   to_int(ws[3], "kernel")));
    const int ph = s.asymmetric_pad ? 0 : static_cast<int>(s.win[0].pad_begin);
    const int pw = s.asymmetric_pad ? 0 : static_cast<int>(s.win[1].pad_begin);
    IMGPIPE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        c->conv, ph, pw, to_int(s.win[0].stride, "stride"), to_int(s.win[1].stride, "stride"),
        to_int(s.win[0].dil, "dilation"), to_int(s.win[1].dil, "dilation"), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    IMGPIPE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(c->conv, to_int(s.group, "group")));
    IMGPIPE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->bias, CUDNN_TENSOR_NCHW, cudnn_type(), 1,
                                                   to_int(ws[0], "filters"), 1, 1));
    IMGPIPE_CUDNN_CHECK(cudnnSetActivationDescriptor(c->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    c->fused = dtype == DType::F32 && s.has_bias && s.act.kind == FusedActivation::Kind::Relu;
    conv[k] = std::move(c);
    set_conv_shapes(k, graph.values[st.inputs[0]].shape, graph.values[st.output].shape);
    choose_algorithm(k);
  }

  void run_conv(size_t k, cudaStream_t stream) {
    const Step& st = graph.steps[k];
    const CudaStep& s = layout.steps[k];
    ConvState& c = *conv[k];
    const Shape& xs = in_shapes[k][0];
    const Shape& ys = out_shapes[k];
    if (c.n_set != xs[0]) {
      set_conv_shapes(k, xs, ys);
      size_t bytes = 0;
      // The algorithm chosen for the prepared batch; a smaller batch rarely needs more
      // workspace, and if it does, implicit GEMM needs none. Host-only calls: no allocation.
      c.algo = c.best;
      if (cudnnGetConvolutionForwardWorkspaceSize(*cudnn, c.x, c.w, c.conv, c.y, c.algo, &bytes) != CUDNN_STATUS_SUCCESS ||
          bytes > cudnn_limit(k)) {
        c.algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        bytes = 0;
      }
      c.algo_bytes = bytes;
    }
    const void* x = where(st.inputs[0]);
    if (s.asymmetric_pad) {
      cuda::PadShape p;
      p.rank = 4;
      for (int d = 0; d < 4; ++d) p.in[d] = p.out[d] = xs[d];
      p.out[2] += s.win[0].pad_begin + s.win[0].pad_end;
      p.out[3] += s.win[1].pad_begin + s.win[1].pad_end;
      p.begin[2] = s.win[0].pad_begin;
      p.begin[3] = s.win[1].pad_begin;
      cuda::pad(cuda::PadMode::Constant, 0.f, x, scratch(), p, dtype, stream);
      x = scratch();
    }
    void* ws = scratch() + s.pad_bytes;
    void* y = where(st.output);
    const void* bias = s.has_bias ? where(st.inputs[2]) : nullptr;
    const float one = 1.f, zero = 0.f;
    if (c.fused) {
      const cudnnStatus_t r = cudnnConvolutionBiasActivationForward(*cudnn, &one, c.x, x, c.w, where(st.inputs[1]), c.conv,
                                                                    c.algo, ws, c.algo_bytes, &zero, c.y, y, c.bias,
                                                                    bias, c.relu, c.y, y);
      if (r == CUDNN_STATUS_SUCCESS) return;
      if (kernels::is_out_of_memory(r)) IMGPIPE_CUDNN_CHECK(r);  // the governor's signal
      // No fused kernel for this algorithm/configuration: a separate epilogue from now on
      // (the plain call below reports any real error in the descriptors).
      c.fused = false;
    }
    IMGPIPE_CUDNN_CHECK(cudnnConvolutionForward(*cudnn, &one, c.x, x, c.w, where(st.inputs[1]), c.conv, c.algo, ws,
                                                c.algo_bytes, &zero, c.y, y));
    const cuda::ActKind act = s.act.kind == FusedActivation::Kind::Relu   ? cuda::ActKind::Relu
                              : s.act.kind == FusedActivation::Kind::Clip ? cuda::ActKind::Clip
                                                                          : cuda::ActKind::None;
    cuda::bias_activation(y, bias, ys[0], ys[1], ys[2] * ys[3], act, s.act.min, s.act.max, dtype, stream);
  }

  // ---- GEMM ----------------------------------------------------------------------
  /// Row-major C[m x n] = alpha op(A)[m x k] op(B)[k x n] + beta C, as column-major
  /// C^T = op(B)^T op(A)^T; fp32 accumulation whatever the storage type.
  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const void* a, int64_t lda, const void* b,
            int64_t ldb, float beta, void* c, int64_t batch_count = 1, int64_t stride_a = 0, int64_t stride_b = 0,
            int64_t stride_c = 0) {
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch_count == 1) {
      IMGPIPE_CUBLAS_CHECK(cublasGemmEx(*cublas, opb, opa, to_int(n, "N"), to_int(m, "M"), to_int(k, "K"), &alpha, b,
                                        blas_type(), to_int(ldb, "ldb"), a, blas_type(), to_int(lda, "lda"), &beta, c,
                                        blas_type(), to_int(n, "ldc"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
      IMGPIPE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          *cublas, opb, opa, to_int(n, "N"), to_int(m, "M"), to_int(k, "K"), &alpha, b, blas_type(), to_int(ldb, "ldb"),
          stride_b, a, blas_type(), to_int(lda, "lda"), stride_a, &beta, c, blas_type(), to_int(n, "ldc"), stride_c,
          to_int(batch_count, "batch"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
  }

  void run_gemm(size_t k, cudaStream_t stream) {
    const Step& st = graph.steps[k];
    const CudaStep& s = layout.steps[k];
    const Shape &sa = in_shapes[k][0], &sb = in_shapes[k][1];
    const Shape& out = out_shapes[k];
    const int64_t m = out[0], n = out[1], kk = s.trans_a ? sa[0] : sa[1];
    float beta = 0.f;
    if (s.has_c) {  // broadcast C into the output, then accumulate onto it
      Strided c = dims_of(out);
      broadcast_strides(in_shapes[k][2], out, c.a);
      cuda::strided_copy(where(st.inputs[2]), where(st.output), c, dtype, stream);
      beta = s.beta;
    }
    gemm(s.trans_a, s.trans_b, m, n, kk, s.alpha, where(st.inputs[0]), sa[1], where(st.inputs[1]), sb[1], beta,
         where(st.output));
  }

  void run_matmul(size_t k) {
    const Step& st = graph.steps[k];
    const Shape &sa = in_shapes[k][0], &sb = in_shapes[k][1];
    const Shape& out = out_shapes[k];
    const int64_t kk = sa.back(), n = sb.back();
    const char* a = where(st.inputs[0]);
    const char* b = where(st.inputs[1]);
    char* y = where(st.output);
    if (sb.size() == 2) {  // fold A's leading dims into M: one GEMM
      gemm(false, false, numel(sa) / kk, n, kk, 1.f, a, kk, b, n, 0.f, y);
      return;
    }
    const int64_t m = sa[sa.size() - 2];
    const Shape ob(out.begin(), out.end() - 2), ab(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
    const int64_t nb = numel(ob), na = numel(ab), nbb = numel(bb);
    if ((na == nb || na == 1) && (nbb == nb || nbb == 1)) {  // one strided-batched call
      gemm(false, false, m, n, kk, 1.f, a, kk, b, n, 0.f, y, nb, na == 1 ? 0 : m * kk, nbb == 1 ? 0 : kk * n, m * n);
      return;
    }
    int64_t st_a[cuda::kMaxRank], st_b[cuda::kMaxRank];
    broadcast_strides(ab, ob, st_a);
    broadcast_strides(bb, ob, st_b);
    const size_t es = esize();
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, obb = 0;
      broadcast_offsets(i, ob, st_a, st_b, oa, obb);
      gemm(false, false, m, n, kk, 1.f, a + oa * m * kk * es, kk, b + obb * kk * n * es, n, 0.f, y + i * m * n * es);
    }
  }

  // ---- one step ------------------------------------------------------------------
  void run_step(size_t k, int batch_n, cudaStream_t stream) {
    const Step& st = graph.steps[k];
    const CudaStep& s = layout.steps[k];
    for (size_t i = 0; i < st.inputs.size(); ++i)
      if (st.inputs[i] >= 0) runtime_shape(st.inputs[i], batch_n, in_shapes[k][i]);
    runtime_shape(st.output, batch_n, out_shapes[k]);
    const Shape& out = out_shapes[k];
    const Shape& x = in_shapes[k][0];
    const void* in0 = where(st.inputs[0]);
    void* y = where(st.output);
    using K = CudaStep::Kind;
    switch (s.kind) {
      case K::View:
        break;
      case K::Conv:
        run_conv(k, stream);
        break;
      case K::BatchNorm: {
        const int64_t n = x[0], c = x[1], inner = numel(x) / std::max<int64_t>(1, n * c);
        cuda::batch_norm(in0, y, where(st.inputs[1]), where(st.inputs[2]), where(st.inputs[3]), where(st.inputs[4]),
                         s.eps, n, c, inner, dtype, stream);
        break;
      }
      case K::Unary:
        cuda::unary(s.unary, s.alpha, s.beta, s.lo, s.hi, in0, y, numel(out), dtype, stream);
        break;
      case K::Binary:
      case K::Where: {
        const bool three = s.kind == K::Where;
        Strided b = dims_of(out);
        broadcast_strides(in_shapes[k][0], out, b.a);
        broadcast_strides(in_shapes[k][1], out, b.b);
        if (three) broadcast_strides(in_shapes[k][2], out, b.c);
        cuda::elementwise(three ? cuda::BinaryKind::Where : s.binary, in0, where(st.inputs[1]),
                          three ? where(st.inputs[2]) : nullptr, y, b, dtype, stream);
        break;
      }
      case K::MaxPool:
      case K::AvgPool:
        cuda::pool2d(s.kind == K::MaxPool, in0, y, x[0] * x[1], x[2], x[3], s.win[0], s.win[1], s.count_include_pad,
                     dtype, stream);
        break;
      case K::GlobalAvgPool: {
        const int64_t nc = x[0] * x[1];
        cuda::global_avg_pool(in0, y, nc, numel(x) / std::max<int64_t>(nc, 1), dtype, stream);
        break;
      }
      case K::Copy: {
        Strided c = s.copy;  // the strides hold for any batch; the dims are this run's
        for (size_t d = 0; d < out.size(); ++d) c.dims[d] = out[d];
        cuda::strided_copy(in0, y, c, dtype, stream);
        break;
      }
      case K::Pad: {
        cuda::PadShape p = s.pad;
        p.in[0] = x[0];
        p.out[0] = out[0];
        cuda::pad(s.pad_mode, s.pad_value, in0, y, p, dtype, stream);
        break;
      }
      case K::LayerNorm: {
        int64_t len = 1;
        for (size_t d = s.axis; d < x.size(); ++d) len *= x[d];
        cuda::layer_norm(in0, y, where(st.inputs[1]), s.has_bias ? where(st.inputs[2]) : nullptr,
                         numel(x) / std::max<int64_t>(len, 1), len, s.eps, dtype, stream);
        break;
      }
      case K::Concat: {
        int64_t outer = 1;
        for (int64_t d = 0; d < s.axis; ++d) outer *= out[d];
        outer = std::max<int64_t>(outer, 1);
        const int64_t row = numel(out) / outer;
        int64_t off = 0;
        for (size_t i = 0; i < st.inputs.size(); ++i) {
          const int64_t n_in = numel(in_shapes[k][i]);
          const int64_t chunk = n_in / outer;
          // A constant input (no batch) joins every image of a batched one; reuse its rows.
          const int64_t in_outer = n_in / std::max<int64_t>(chunk, 1);
          cuda::concat_part(where(st.inputs[i]), y, outer, chunk, in_outer, row, off, dtype, stream);
          off += chunk;
        }
        break;
      }
      case K::Gemm:
        run_gemm(k, stream);
        break;
      case K::MatMul:
        run_matmul(k);
        break;
      case K::Softmax: {
        int64_t outer = 1, len = 1, inner = 1;
        for (int64_t d = 0; d < s.axis; ++d) outer *= out[d];
        if (s.softmax_flat) {
          len = numel(out) / std::max<int64_t>(outer, 1);
        } else {
          len = out[s.axis];
          for (size_t d = s.axis + 1; d < out.size(); ++d) inner *= out[d];
        }
        cuda::softmax(in0, y, outer, len, inner, dtype, stream);
        break;
      }
      case K::ReduceMean: {
        Strided kept, red;
        int64_t step = 1;
        int64_t in_st[cuda::kMaxRank] = {};
        for (size_t d = x.size(); d-- > 0;) { in_st[d] = step; step *= x[d]; }
        for (size_t d = 0; d < x.size(); ++d) {
          Strided& t = s.reduced[d] ? red : kept;
          t.dims[t.rank] = x[d];
          t.a[t.rank] = in_st[d];
          ++t.rank;
        }
        cuda::reduce_mean(in0, y, kept, red, dtype, stream);
        break;
      }
    }
  }
};

// ---------------------------------------------------------------- executor ---------
struct CudaExecutor::Handles {
  std::optional<cuda::CudnnHandle> cudnn;
  std::optional<cuda::CublasHandle> cublas;
};

CudaExecutor::CudaExecutor(Model model, int device, Allocator& device_allocator, CudaOptions options)
    : model_(std::move(model)), device_(device), allocator_(device_allocator), options_(options),
      handles_(std::make_unique<Handles>()) {}

CudaExecutor::~CudaExecutor() {
  release();
  if (!handles_->cudnn) return;
  int previous = 0;
  const bool known = cudaGetDevice(&previous) == cudaSuccess;
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(device_));
  handles_.reset();
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(previous));
}

size_t CudaExecutor::overhead_bytes() const { return handles_ready_ ? 0 : options_.handle_overhead_estimate; }

namespace {
size_t free_device_bytes() {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) (void)cudaGetLastError();
  return free;
}
}  // namespace

void CudaExecutor::create_handles(bool with_cublas) {
  const size_t before = free_device_bytes();
  if (!handles_->cudnn) handles_->cudnn.emplace();
  if (with_cublas && !handles_->cublas) {
    handles_->cublas.emplace();
    // fp32 GEMMs stay fp32 (no TF32); fp16 ones use tensor cores with fp32 accumulation.
    IMGPIPE_CUBLAS_CHECK(cublasSetMathMode(*handles_->cublas, CUBLAS_DEFAULT_MATH));
  }
  const size_t after = free_device_bytes();
  handle_bytes_ += before > after ? before - after : 0;
  handles_ready_ = true;
}

void CudaExecutor::release() noexcept {
  if (!state_) return;
  int previous = 0;
  const bool known = cudaGetDevice(&previous) == cudaSuccess;
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(device_));
  state_.reset();  // cudaFree/cudaFreeHost wait for work in flight
  if (known && previous != device_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(previous));
}

bool CudaExecutor::prepared() const { return state_ != nullptr; }
int CudaExecutor::batch() const { return state_ ? state_->batch : 0; }
Precision CudaExecutor::precision() const { return precision_; }
const MemoryPlan& CudaExecutor::memory_plan() const {
  static const MemoryPlan none{};
  return state_ ? state_->layout.plan : none;
}

MemoryPlan CudaExecutor::plan(int batch, Precision p) const {
  return cuda::cuda_plan(*model_.graph(), batch, p, options_);
}

void CudaExecutor::set_precision(Precision p) {
  const bool was_prepared = prepared();
  const int b = batch();
  precision_ = p;
  if (was_prepared && state_->precision != p) prepare(b, p);
}

void CudaExecutor::prepare(int batch, Precision p) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  release();  // free the old weights and arena before asking for new ones
  precision_ = p;
  const Graph& g = *model_.graph();
  auto s = std::make_unique<Prepared>();
  s->device = device_;
  s->batch = batch;
  s->precision = p;
  s->dtype = p == Precision::FP16 ? DType::F16 : DType::F32;
  s->graph = resolve(g, batch);
  const ResolvedGraph one = resolve(g, 1);
  s->layout = cuda::make_cuda_layout(s->graph, one, batch, g.opset, p, options_);
  if (s->layout.unit0[s->graph.output] != 1 && batch > 1)
    throw UnsupportedModel("output '" + g.output_name + "' does not scale with the batch (" +
                           to_string(s->graph.values[s->graph.output].shape) + " at batch " + std::to_string(batch) +
                           "); was the model exported with a fixed batch?");
  for (const Step& st : s->graph.steps) {
    s->in_shapes.emplace_back(st.inputs.size());
    s->out_shapes.emplace_back();
  }

  cuda::DeviceGuard guard(device_);
  const MemoryPlan plan = s->layout.plan;  // a copy: used after s is gone
  try {
    // The handles first, once per executor: what they take is measured then, and a device
    // too full for them is out of memory like a refused cudaMalloc (CHECK_CREATE).
    create_handles(s->layout.cublas_bytes > 0);
    s->cudnn = &*handles_->cudnn;
    s->done.emplace(cudaEventDisableTiming | cudaEventBlockingSync);
    if (s->layout.cublas_bytes) s->cublas = &*handles_->cublas;
    s->weights = Buffer(allocator_, plan.weight_bytes);
    s->arena = Buffer(allocator_, plan.arena_bytes);
    s->workspace = Buffer(allocator_, plan.workspace_bytes);
    s->h_out = kernels::PinnedBuffer(static_cast<size_t>(model_.output_size() * batch) * sizeof(float));
    if (top_k() > 0) {
      s->h_top = kernels::PinnedBuffer(static_cast<size_t>(top_k()) * batch * sizeof(int32_t));
      s->top.reserve(static_cast<size_t>(top_k()) * batch);
    }

    // Weights: fp16 converted on the host with the CPU backend's rounding, so both
    // backends hold bit-identical weights; no fp32 copy is kept on the device.
    std::vector<uint16_t> half;
    for (size_t v = 0; v < s->graph.values.size(); ++v) {
      const Value& val = s->graph.values[v];
      if (!val.weight) continue;
      const std::vector<float>& f = val.constant->f;
      if (p == Precision::FP16) {
        half.resize(f.size());
        for (size_t i = 0; i < f.size(); ++i) half[i] = float_to_half(f[i]);
        IMGPIPE_CUDA_CHECK(cudaMemcpy(s->where(static_cast<int>(v)), half.data(), half.size() * 2, cudaMemcpyHostToDevice));
      } else {
        IMGPIPE_CUDA_CHECK(cudaMemcpy(s->where(static_cast<int>(v)), f.data(), f.size() * 4, cudaMemcpyHostToDevice));
      }
    }

    s->conv.resize(s->graph.steps.size());
    for (size_t k = 0; k < s->graph.steps.size(); ++k)
      if (s->layout.steps[k].kind == CudaStep::Kind::Conv) s->prepare_conv(k);
  } catch (const kernels::CudaOutOfMemory&) {
    // cuDNN/cuBLAS handles and descriptors or pinned staging: the same signal to the
    // governor as a refused device allocation.
    s.reset();
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) (void)cudaGetLastError();
    throw OutOfMemory(plan.total(), free);
  }
  state_ = std::move(s);
}

void CudaExecutor::enqueue(const void* d_input, bool input_fp16, int batch_n, cudaStream_t stream) {
  if (!state_) throw std::logic_error("CudaExecutor::run before prepare()");
  Prepared& s = *state_;
  if (batch_n < 1 || batch_n > s.batch)
    throw std::invalid_argument("batch_n " + std::to_string(batch_n) + " outside 1.." + std::to_string(s.batch));
  if (batch_n < s.batch && !s.layout.separable)
    throw std::invalid_argument("this model mixes images across the batch; run full batches of " +
                                std::to_string(s.batch));
  s.bind(stream);
  s.input = nullptr;
  const DType in_type = input_fp16 ? DType::F16 : DType::F32;
  if (d_input && in_type == s.dtype)
    s.input = d_input;  // read in place: no device-to-device copy into the arena
  else if (d_input)
    cuda::convert(d_input, in_type, s.where(s.graph.input), s.dtype, model_.input_size() * batch_n, stream);
  for (size_t k = 0; k < s.graph.steps.size(); ++k) s.run_step(k, batch_n, stream);
}

void CudaExecutor::run_device(const void* d_input, bool input_fp16, int batch_n, float* h_output, cudaStream_t stream) {
  if (!d_input) throw std::invalid_argument("CudaExecutor::run_device: null input");
  cuda::DeviceGuard guard(device_);
  enqueue(d_input, input_fp16, batch_n, stream);
  download(batch_n, h_output, stream);
}

void CudaExecutor::download(int batch_n, float* h_output, cudaStream_t stream) {
  Prepared& s = *state_;
  const int64_t out_n = model_.output_size() * batch_n;
  const void* out = s.where(s.graph.output);
  if (s.dtype == DType::F16) {  // widen on the device, through the scratch
    cuda::convert(out, DType::F16, s.scratch(), DType::F32, out_n, stream);
    out = s.scratch();
  }
  const int k = top_k();
  if (k > 0) {  // rank on the device; only the k best of each image come back
    const int64_t classes = model_.output_size();
    const int32_t* order = cuda::sort_rows(static_cast<const float*>(out), batch_n, classes,
                                           s.scratch() + s.layout.sort_offset, stream);
    IMGPIPE_CUDA_CHECK(cudaMemcpy2DAsync(s.h_top.get(), static_cast<size_t>(k) * 4, order, static_cast<size_t>(classes) * 4,
                                         static_cast<size_t>(k) * 4, static_cast<size_t>(batch_n), cudaMemcpyDeviceToHost,
                                         stream));
  }
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.h_out.get(), out, static_cast<size_t>(out_n) * 4, cudaMemcpyDeviceToHost, stream));
  s.done->record(stream);
  s.done->synchronize();
  std::memcpy(h_output, s.h_out.get(), static_cast<size_t>(out_n) * 4);
  if (k > 0) {
    const auto* h_top = static_cast<const int32_t*>(s.h_top.get());
    s.top.assign(h_top, h_top + static_cast<size_t>(k) * batch_n);  // within the capacity reserved at prepare
  }
}

const std::vector<int32_t>& CudaExecutor::top_classes() const {
  static const std::vector<int32_t> none;
  return state_ ? state_->top : none;
}

int CudaExecutor::top_k() const {
  return static_cast<int>(std::min<int64_t>(std::max(options_.top_k, 0), model_.output_size()));
}

void CudaExecutor::run_device_to_device(const void* d_input, bool input_fp16, int batch_n, float* d_output,
                                        cudaStream_t stream) {
  if (!d_input) throw std::invalid_argument("CudaExecutor::run_device_to_device: null input");
  cuda::DeviceGuard guard(device_);
  enqueue(d_input, input_fp16, batch_n, stream);
  Prepared& s = *state_;
  cuda::convert(s.where(s.graph.output), s.dtype, d_output, DType::F32, model_.output_size() * batch_n, stream);
}

void CudaExecutor::run(const float* h_input, int batch_n, float* h_output, cudaStream_t stream) {
  if (!state_) throw std::logic_error("CudaExecutor::run before prepare()");
  cuda::DeviceGuard guard(device_);
  Prepared& s = *state_;
  if (batch_n < 1 || batch_n > s.batch)
    throw std::invalid_argument("batch_n " + std::to_string(batch_n) + " outside 1.." + std::to_string(s.batch));
  const int64_t in_n = model_.input_size() * batch_n;
  // Pinned staging only for this path (the pipeline hands device tensors to run_device).
  const size_t h_in_bytes = static_cast<size_t>(model_.input_size() * s.batch) * sizeof(float);
  if (s.h_in.size() < h_in_bytes) s.h_in = kernels::PinnedBuffer(h_in_bytes);
  std::memcpy(s.h_in.get(), h_input, static_cast<size_t>(in_n) * 4);
  s.input = nullptr;  // the arena's input slot, not a previous run_device's tensor
  // fp32 storage: straight into the arena; fp16: through the scratch and a conversion.
  void* d_staging = s.dtype == DType::F32 ? static_cast<void*>(s.where(s.graph.input)) : s.scratch();
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_staging, s.h_in.get(), static_cast<size_t>(in_n) * 4, cudaMemcpyHostToDevice, stream));
  if (s.dtype == DType::F16) cuda::convert(d_staging, DType::F32, s.where(s.graph.input), DType::F16, in_n, stream);
  enqueue(nullptr, false, batch_n, stream);
  download(batch_n, h_output, stream);
}

}  // namespace imgpipe::infer
