#pragma once
// Own CUDA kernels of the inference engine: elementwise, broadcasting, pooling, layout and
// reduction ops on fp32 or fp16 storage (always computed in fp32). Raw device pointers,
// element counts and an explicit stream; every launcher is asynchronous on `stream` and
// throws CudaError when the launch fails. Contiguous NCHW (row-major) tensors throughout.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda_types.h"

namespace imgpipe::infer::cuda {

/// Storage type of a tensor on the device.
enum class DType { F32, F16 };

constexpr int kMaxRank = 8;

/// An index space of `rank` dims and up to two operands' element strides over it
/// (stride 0 on broadcast dims).
struct Strided {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t a[kMaxRank] = {};
  int64_t b[kMaxRank] = {};
};

/// dst[i] = src[i] converted (fp32 <-> fp16; same type copies).
void convert(const void* d_src, DType src, void* d_dst, DType dst, int64_t n, cudaStream_t stream);

/// y = f(x) elementwise for n elements (x and y may be the same).
void unary(UnaryKind kind, float alpha, float beta, float lo, float hi, const void* d_x, void* d_y,
           int64_t n, DType t, cudaStream_t stream);

/// In place on NCHW y (n images x c channels x inner): y += bias[c] (when given), then the
/// fused activation.
void bias_activation(void* d_y, const void* d_bias, int64_t n, int64_t c, int64_t inner,
                     ActKind act, float lo, float hi, DType t, cudaStream_t stream);

/// Inference BatchNormalization on NCHW: y = (x - mean) * gamma / sqrt(var + eps) + beta.
void batch_norm(const void* d_x, void* d_y, const void* d_gamma, const void* d_beta, const void* d_mean,
                const void* d_var, float eps, int64_t n, int64_t c, int64_t inner, DType t,
                cudaStream_t stream);

/// y[idx] = a[idx . s.a] op b[idx . s.b] over the index space s (numpy broadcasting).
void binary(BinaryKind kind, const void* d_a, const void* d_b, void* d_y, const Strided& s, DType t,
            cudaStream_t stream);

/// y[idx] = x[idx . s.a] over the index space s (broadcast copies, transposes).
void strided_copy(const void* d_x, void* d_y, const Strided& s, DType t, cudaStream_t stream);

/// Zero-pads NCHW planes (nc of them, h x w) into (h + top + bottom) x (w + left + right).
void pad2d(const void* d_x, void* d_y, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t bottom,
           int64_t left, int64_t right, DType t, cudaStream_t stream);

/// Max or average pooling over nc planes of h x w; the same rules as the CPU op (dilated
/// max, count_include_pad counts the window clipped to the padded extent).
void pool2d(bool max, const void* d_x, void* d_y, int64_t nc, int64_t h, int64_t w, const Window& wy,
            const Window& wx, bool count_include_pad, DType t, cudaStream_t stream);

/// y[q] = mean of x[q * inner .. (q + 1) * inner) for q < nc.
void global_avg_pool(const void* d_x, void* d_y, int64_t nc, int64_t inner, DType t, cudaStream_t stream);

/// One Concat input: for o < outer, dst[o * row + off .. + chunk) = src[(o % in_outer) * chunk ..].
void concat_part(const void* d_src, void* d_dst, int64_t outer, int64_t chunk, int64_t in_outer, int64_t row,
                 int64_t off, DType t, cudaStream_t stream);

/// Softmax along the middle axis of [outer, len, inner].
void softmax(const void* d_x, void* d_y, int64_t outer, int64_t len, int64_t inner, DType t,
             cudaStream_t stream);

/// Mean over the reduced dims: `kept` spans the output (a = input strides of kept dims),
/// `red` spans one output element's reduction (a = input strides of reduced dims).
void reduce_mean(const void* d_x, void* d_y, const Strided& kept, const Strided& red, DType t,
                 cudaStream_t stream);

}  // namespace imgpipe::infer::cuda
