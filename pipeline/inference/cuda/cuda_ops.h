#pragma once
// Own CUDA kernels of the inference engine: elementwise, broadcasting, pooling, layout and
// reduction ops on fp32 or fp16 storage (always computed in fp32); the reductions are CUB
// block reductions, one block per row. Raw device pointers,
// element counts and an explicit stream; every launcher is asynchronous on `stream` and
// throws CudaError when the launch fails. Contiguous NCHW (row-major) tensors throughout.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda_types.h"

namespace imgpipe::infer::cuda {

/// Storage type of a tensor on the device.
enum class DType { F32, F16 };

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

/// y[idx] = a[idx . s.a] op b[idx . s.b] over the index space s (numpy broadcasting); for
/// BinaryKind::Where, y[idx] = a[..] != 0 ? b[..] : c[idx . s.c]. Operands no larger than y.
void elementwise(BinaryKind kind, const void* d_a, const void* d_b, const void* d_c, void* d_y, const Strided& s,
                 DType t, cudaStream_t stream);

/// y[idx] = x[s.a_base + idx . s.a] over the index space s (broadcasts, transposes, slices with
/// any steps, gathers of evenly spaced indices).
void strided_copy(const void* d_x, void* d_y, const Strided& s, DType t, cudaStream_t stream);

/// ONNX Pad of x (shape s.in) into y (shape s.out): `value`, mirrored or edge elements outside.
void pad(PadMode mode, float value, const void* d_x, void* d_y, const PadShape& s, DType t, cudaStream_t stream);

/// LayerNormalization of `rows` contiguous rows of `len`: (x - mean) / sqrt(var + eps) * scale
/// + bias (scale and bias: len elements; bias may be null). One block per row.
void layer_norm(const void* d_x, void* d_y, const void* d_scale, const void* d_bias, int64_t rows, int64_t len,
                float eps, DType t, cudaStream_t stream);

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

/// Bytes CUB's segmented radix sort may ask for as temporary storage in sort_rows(): the
/// sort runs on double buffers, so CUB's own part is small and independent of the sizes.
/// Reserved in the plan (which needs no device); sort_rows() checks CUB's answer against it.
constexpr size_t kSortCubReserve = size_t{4} << 10;

/// Device scratch sort_rows() needs for rows x cols scores (computed on the host).
size_t sort_rows_scratch_bytes(int64_t rows, int64_t cols);

/// Ranks each row of d_scores (rows x cols, fp32) by decreasing score, equal scores in
/// column order, with cub::DeviceSegmentedRadixSort through d_scratch
/// (sort_rows_scratch_bytes(rows, cols) bytes). Returns the device array (inside d_scratch)
/// of rows x cols column indices, each row's best first. Asynchronous on stream; throws
/// std::logic_error when CUB asks for more than kSortCubReserve.
const int32_t* sort_rows(const float* d_scores, int64_t rows, int64_t cols, void* d_scratch, cudaStream_t stream);

}  // namespace imgpipe::infer::cuda
