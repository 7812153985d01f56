// Own kernels of the CUDA inference backend. Each op: a static __global__ *_kernel templated
// on the storage type (float or __half; arithmetic always in float), then its launcher.
// The float operations follow the CPU ops (ops_cpu.cpp) so results stay close to them.
// Reductions (pooling, Softmax, ReduceMean, LayerNormalization) are CUB block reductions.
#include <cuda_fp16.h>

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "cuda_ops.h"

namespace imgpipe::infer::cuda {
namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/// Grid for a grid-stride loop over n elements.
unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

#define IMGPIPE_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)
/// The same with an index of type I (uint32_t or int64_t; see dispatch_index).
#define IMGPIPE_GRID_STRIDE_AS(I, i, n) \
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < I(n); i += I(gridDim.x) * blockDim.x)

/// Calls f(I{}) with the narrowest index type for kernels whose every index is below n:
/// 32-bit division and modulo cost several times less than 64-bit ones on the GPU. Below
/// 2^31, so that i + grid stride cannot wrap a uint32_t.
template <class F>
void dispatch_index(int64_t n, F&& f) {
  if (n <= INT32_MAX) f(uint32_t{});
  else f(int64_t{});
}

/// Calls f(T*) with the storage type of t.
template <class F>
void dispatch(DType t, F&& f) {
  if (t == DType::F16) f(static_cast<__half*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

// ---------------------------------------------------------------- convert ----------
template <class S, class D>
__global__ void convert_kernel(const S* x, D* y, int64_t n) {
  IMGPIPE_GRID_STRIDE(i, n) st(y, i, ld(x, i));
}

// ---------------------------------------------------------------- unary ------------
template <class T>
__global__ void unary_kernel(UnaryKind kind, float alpha, float beta, float lo, float hi, const T* x, T* y,
                             int64_t n) {
  IMGPIPE_GRID_STRIDE(i, n) {
    const float v = ld(x, i);
    float r = v;
    switch (kind) {
      case UnaryKind::Relu: r = v > 0.f ? v : 0.f; break;
      case UnaryKind::LeakyRelu: r = v >= 0.f ? v : alpha * v; break;
      case UnaryKind::Clip: r = v < lo ? lo : v; r = hi < r ? hi : r; break;
      case UnaryKind::Sigmoid: r = 1.f / (1.f + expf(-v)); break;
      case UnaryKind::HardSigmoid: r = fminf(1.f, fmaxf(0.f, alpha * v + beta)); break;
      case UnaryKind::HardSwish: r = v * fminf(1.f, fmaxf(0.f, v / 6.f + 0.5f)); break;
      case UnaryKind::Tanh: r = tanhf(v); break;
      case UnaryKind::Sqrt: r = sqrtf(v); break;
      case UnaryKind::Erf: r = erff(v); break;
      case UnaryKind::Neg: r = -v; break;
      case UnaryKind::Not: r = v == 0.f ? 1.f : 0.f; break;
    }
    st(y, i, r);
  }
}

__device__ __forceinline__ float activate(float v, ActKind kind, float lo, float hi) {
  if (kind == ActKind::Relu) return v > 0.f ? v : 0.f;
  if (kind == ActKind::Clip) {
    v = v < lo ? lo : v;
    return hi < v ? hi : v;
  }
  return v;
}

template <class T, class I>
__global__ void bias_activation_kernel(T* y, const T* bias, I total, I c, I inner, ActKind kind, float lo, float hi) {
  IMGPIPE_GRID_STRIDE_AS(I, i, total) {
    float v = ld(y, i);
    if (bias) v += ld(bias, (i / inner) % c);
    st(y, i, activate(v, kind, lo, hi));
  }
}

template <class T, class I>
__global__ void batch_norm_kernel(const T* x, T* y, const T* gamma, const T* beta, const T* mean, const T* var,
                                  float eps, I total, I c, I inner) {
  IMGPIPE_GRID_STRIDE_AS(I, i, total) {
    const I ch = (i / inner) % c;
    const float scale = ld(gamma, ch) / sqrtf(ld(var, ch) + eps);
    const float shift = ld(beta, ch) - ld(mean, ch) * scale;
    st(y, i, ld(x, i) * scale + shift);
  }
}

// ---------------------------------------------------------------- strided ----------
__device__ __forceinline__ float combine(BinaryKind kind, float a, float b, float c) {
  switch (kind) {
    case BinaryKind::Add: return a + b;
    case BinaryKind::Sub: return a - b;
    case BinaryKind::Mul: return a * b;
    case BinaryKind::Div: return a / b;
    case BinaryKind::Pow: return b == 2.f ? a * a : powf(a, b);
    case BinaryKind::Equal: return a == b ? 1.f : 0.f;
    case BinaryKind::Mod: {
      const float r = fmodf(a, b);
      return r != 0.f && (r < 0.f) != (b < 0.f) ? r + b : r;
    }
    case BinaryKind::FMod: return fmodf(a, b);
    default: return a != 0.f ? b : c;  // Where
  }
}

// Broadcast inputs are no larger than the output: every offset is below n. c is read only
// by Where.
template <class T, class I>
__global__ void elementwise_kernel(BinaryKind kind, const T* a, const T* b, const T* c, T* y, Strided s, I n) {
  IMGPIPE_GRID_STRIDE_AS(I, i, n) {
    I rem = i, oa = 0, ob = 0, oc = 0;
    for (int k = s.rank - 1; k >= 0; --k) {
      const I idx = rem % I(s.dims[k]);
      rem /= I(s.dims[k]);
      oa += idx * I(s.a[k]);
      ob += idx * I(s.b[k]);
      oc += idx * I(s.c[k]);
    }
    st(y, i, combine(kind, ld(a, oa), ld(b, ob), c ? ld(c, oc) : 0.f));
  }
}

template <class T>
__global__ void same_shape_elementwise_kernel(BinaryKind kind, const T* a, const T* b, const T* c, T* y, int64_t n) {
  IMGPIPE_GRID_STRIDE(i, n) st(y, i, combine(kind, ld(a, i), ld(b, i), c ? ld(c, i) : 0.f));
}

// Every offset is below the larger of n and the input's reach (see reach()); with a 32-bit
// I, negative strides wrap and come back, as the final offset is in range.
template <class T, class I>
__global__ void strided_copy_kernel(const T* x, T* y, Strided s, I n) {
  IMGPIPE_GRID_STRIDE_AS(I, i, n) {
    I rem = i, off = I(s.a_base);
    for (int k = s.rank - 1; k >= 0; --k) {
      off += (rem % I(s.dims[k])) * I(s.a[k]);
      rem /= I(s.dims[k]);
    }
    y[i] = x[off];
  }
}

// The input is no larger than the output: every offset is below n.
template <class T, class I>
__global__ void pad_kernel(PadMode mode, float value, const T* x, T* y, PadShape s, I n) {
  IMGPIPE_GRID_STRIDE_AS(I, i, n) {
    I rem = i, off = 0, step = 1;
    bool outside = false;
    for (int d = s.rank - 1; d >= 0; --d) {
      const int64_t len = s.in[d];
      int64_t p = int64_t(rem % I(s.out[d])) - s.begin[d];
      rem /= I(s.out[d]);
      if (p < 0 || p >= len) {
        if (mode == PadMode::Reflect) p = p < 0 ? -p : 2 * (len - 1) - p;
        else if (mode == PadMode::Edge) p = p < 0 ? 0 : len - 1;
        else outside = true;
      }
      off += I(p) * step;
      step *= I(len);
    }
    st(y, i, outside ? value : ld(x, off));
  }
}

// ---------------------------------------------------------------- pooling ----------
template <class T>
__global__ void pool2d_kernel(bool is_max, const T* x, T* y, int64_t nc, int64_t h, int64_t w, Window wy, Window wx,
                              bool include_pad) {
  const int64_t oh = wy.out, ow = wx.out;
  IMGPIPE_GRID_STRIDE(i, nc * oh * ow) {
    const int64_t ox = i % ow, oy = (i / ow) % oh, q = i / (ow * oh);
    const T* xq = x + q * h * w;
    const int64_t y0 = oy * wy.stride - wy.pad_begin, x0 = ox * wx.stride - wx.pad_begin;
    if (is_max) {
      float m = -INFINITY;
      for (int64_t a = 0; a < wy.k; ++a) {
        const int64_t iy = y0 + a * wy.dil;
        if (iy < 0 || iy >= h) continue;
        for (int64_t b = 0; b < wx.k; ++b) {
          const int64_t ix = x0 + b * wx.dil;
          if (ix >= 0 && ix < w) m = fmaxf(m, ld(xq, iy * w + ix));
        }
      }
      st(y, i, m);
    } else {
      const int64_t y1 = min(y0 + wy.k, h + wy.pad_end), x1 = min(x0 + wx.k, w + wx.pad_end);
      const int64_t ya = max(y0, int64_t(0)), xa = max(x0, int64_t(0));
      const int64_t yb = min(y1, h), xb = min(x1, w);
      float sum = 0.f;
      for (int64_t iy = ya; iy < yb; ++iy)
        for (int64_t ix = xa; ix < xb; ++ix) sum += ld(xq, iy * w + ix);
      const int64_t count = include_pad ? (y1 - y0) * (x1 - x0) : (yb - ya) * (xb - xa);
      st(y, i, count > 0 ? sum / static_cast<float>(count) : 0.f);
    }
  }
}

using BlockReduce = cub::BlockReduce<float, kBlock>;

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/// The block's reduction of v (BlockReduce's Sum or Reduce), handed to every thread. The
/// block must be kBlock threads; tmp and out may be reused as soon as it returns.
template <class F>
__device__ float block_all(F reduce, BlockReduce::TempStorage& tmp, float& out) {
  const float r = reduce(BlockReduce(tmp));
  if (threadIdx.x == 0) out = r;
  __syncthreads();
  const float v = out;
  __syncthreads();
  return v;
}

__device__ float block_sum(float v, BlockReduce::TempStorage& tmp, float& out) {
  return block_all([&](BlockReduce r) { return r.Sum(v); }, tmp, out);
}

__device__ float block_max(float v, BlockReduce::TempStorage& tmp, float& out) {
  return block_all([&](BlockReduce r) { return r.Reduce(v, MaxOp{}); }, tmp, out);
}

/// One block per plane.
template <class T>
__global__ void global_avg_pool_kernel(const T* x, T* y, int64_t nc, int64_t inner) {
  __shared__ BlockReduce::TempStorage tmp;
  __shared__ float total;
  for (int64_t q = blockIdx.x; q < nc; q += gridDim.x) {
    const T* xq = x + q * inner;
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) s += ld(xq, i);
    s = block_sum(s, tmp, total);
    if (threadIdx.x == 0) st(y, q, s / static_cast<float>(inner));
  }
}

/// One block per (outer, inner) row of length len, stride inner.
template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t outer, int64_t len, int64_t inner) {
  __shared__ BlockReduce::TempStorage tmp;
  __shared__ float total;
  for (int64_t r = blockIdx.x; r < outer * inner; r += gridDim.x) {
    const int64_t o = r / inner, in = r % inner;
    const T* xr = x + o * len * inner + in;
    T* yr = y + o * len * inner + in;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, ld(xr, j * inner));
    m = block_max(m, tmp, total);
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += expf(ld(xr, j * inner) - m);
    s = block_sum(s, tmp, total);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) st(yr, j * inner, expf(ld(xr, j * inner) - m) / s);
  }
}

/// One block per row: the mean, then the variance around it (two passes, as the CPU op).
template <class T>
__global__ void layer_norm_kernel(const T* x, T* y, const T* scale, const T* bias, int64_t rows, int64_t len,
                                  float eps) {
  __shared__ BlockReduce::TempStorage tmp;
  __shared__ float total;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * len;
    T* yr = y + r * len;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += ld(xr, j);
    const float mean = block_sum(s, tmp, total) / static_cast<float>(len);
    float v = 0.f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
      const float d = ld(xr, j) - mean;
      v += d * d;
    }
    const float inv = 1.f / sqrtf(block_sum(v, tmp, total) / static_cast<float>(len) + eps);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x)
      st(yr, j, (ld(xr, j) - mean) * inv * ld(scale, j) + (bias ? ld(bias, j) : 0.f));
  }
}

template <class T>
__global__ void concat_kernel(const T* src, T* dst, int64_t outer, int64_t chunk, int64_t in_outer, int64_t row,
                              int64_t off) {
  IMGPIPE_GRID_STRIDE(i, outer * chunk) {
    const int64_t o = i / chunk, e = i % chunk;
    dst[o * row + off + e] = src[(o % in_outer) * chunk + e];
  }
}

/// One block per output element: `kept` locates its first input, `red` walks its reduction.
template <class T>
__global__ void reduce_mean_kernel(const T* x, T* y, Strided kept, Strided red, int64_t n_out, int64_t count) {
  __shared__ BlockReduce::TempStorage tmp;
  __shared__ float total;
  for (int64_t i = blockIdx.x; i < n_out; i += gridDim.x) {
    int64_t rem = i, base = 0;
    for (int k = kept.rank - 1; k >= 0; --k) {
      base += (rem % kept.dims[k]) * kept.a[k];
      rem /= kept.dims[k];
    }
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      int64_t r2 = j, off = base;
      for (int k = red.rank - 1; k >= 0; --k) {
        off += (r2 % red.dims[k]) * red.a[k];
        r2 /= red.dims[k];
      }
      s += ld(x, off);
    }
    s = block_sum(s, tmp, total);
    if (threadIdx.x == 0) st(y, i, s / static_cast<float>(count > 0 ? count : 1));
  }
}

/// values[i] = i % cols (each row's column indices); offsets[r] = r * cols for r <= rows.
__global__ void sort_rows_init_kernel(int32_t* values, int32_t* offsets, int32_t rows, int32_t cols) {
  IMGPIPE_GRID_STRIDE(i, int64_t(rows) * cols) values[i] = int32_t(i % cols);
  IMGPIPE_GRID_STRIDE(r, rows + 1) offsets[r] = int32_t(r * cols);
}

int64_t volume(const Strided& s) {
  int64_t n = 1;
  for (int k = 0; k < s.rank; ++k) n *= s.dims[k];
  return n;
}

/// One past the largest input offset a strided copy reads (its index type must hold it).
int64_t reach(const Strided& s) {
  int64_t r = s.a_base;
  for (int k = 0; k < s.rank; ++k) r += (s.dims[k] - 1) * std::abs(s.a[k]);
  return r + 1;
}

/// Grid of one block per row, for the block reductions.
unsigned rows_grid(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535 * 8)); }

}  // namespace

void convert(const void* d_src, DType src, void* d_dst, DType dst, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if (src == dst) {
    IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_dst, d_src, static_cast<size_t>(n) * (src == DType::F16 ? 2 : 4),
                                       cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (src == DType::F32)
    convert_kernel<<<grid_for(n), kBlock, 0, stream>>>(static_cast<const float*>(d_src), static_cast<__half*>(d_dst), n);
  else
    convert_kernel<<<grid_for(n), kBlock, 0, stream>>>(static_cast<const __half*>(d_src), static_cast<float*>(d_dst), n);
  IMGPIPE_CHECK_LAUNCH();
}

void unary(UnaryKind kind, float alpha, float beta, float lo, float hi, const void* d_x, void* d_y,
           int64_t n, DType t, cudaStream_t stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    unary_kernel<<<grid_for(n), kBlock, 0, stream>>>(kind, alpha, beta, lo, hi, static_cast<const T*>(d_x),
                                                     static_cast<T*>(d_y), n);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void bias_activation(void* d_y, const void* d_bias, int64_t n, int64_t c, int64_t inner, ActKind act, float lo, float hi,
                     DType t, cudaStream_t stream) {
  const int64_t total = n * c * inner;
  if (total <= 0 || (!d_bias && act == ActKind::None)) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_index(total, [&](auto i) {
      using I = decltype(i);
      bias_activation_kernel<<<grid_for(total), kBlock, 0, stream>>>(
          static_cast<T*>(d_y), static_cast<const T*>(d_bias), I(total), I(c), I(inner), act, lo, hi);
    });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void batch_norm(const void* d_x, void* d_y, const void* d_gamma, const void* d_beta, const void* d_mean,
                const void* d_var, float eps, int64_t n, int64_t c, int64_t inner, DType t, cudaStream_t stream) {
  const int64_t total = n * c * inner;
  if (total <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_index(total, [&](auto i) {
      using I = decltype(i);
      batch_norm_kernel<<<grid_for(total), kBlock, 0, stream>>>(
          static_cast<const T*>(d_x), static_cast<T*>(d_y), static_cast<const T*>(d_gamma),
          static_cast<const T*>(d_beta), static_cast<const T*>(d_mean), static_cast<const T*>(d_var), eps, I(total),
          I(c), I(inner));
    });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void elementwise(BinaryKind kind, const void* d_a, const void* d_b, const void* d_c, void* d_y, const Strided& s,
                 DType t, cudaStream_t stream) {
  const int64_t n = volume(s);
  if (n <= 0) return;
  // Same shapes, all contiguous: no index arithmetic.
  const bool where = kind == BinaryKind::Where;
  bool plain = true;
  for (int64_t k = s.rank - 1, step = 1; k >= 0; step *= s.dims[k], --k)
    plain = plain && (s.dims[k] == 1 || (s.a[k] == step && s.b[k] == step && (!where || s.c[k] == step)));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* a = static_cast<const T*>(d_a);
    const T* b = static_cast<const T*>(d_b);
    const T* c = where ? static_cast<const T*>(d_c) : nullptr;
    if (plain)
      same_shape_elementwise_kernel<<<grid_for(n), kBlock, 0, stream>>>(kind, a, b, c, static_cast<T*>(d_y), n);
    else
      dispatch_index(n, [&](auto i) {
        elementwise_kernel<<<grid_for(n), kBlock, 0, stream>>>(kind, a, b, c, static_cast<T*>(d_y), s, decltype(i)(n));
      });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void strided_copy(const void* d_x, void* d_y, const Strided& s, DType t, cudaStream_t stream) {
  const int64_t n = volume(s);
  if (n <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_index(std::max(n, reach(s)), [&](auto i) {
      strided_copy_kernel<<<grid_for(n), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), s,
                                                              decltype(i)(n));
    });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void pad(PadMode mode, float value, const void* d_x, void* d_y, const PadShape& s, DType t, cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < s.rank; ++d) n *= s.out[d];
  if (n <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_index(n, [&](auto i) {
      pad_kernel<<<grid_for(n), kBlock, 0, stream>>>(mode, value, static_cast<const T*>(d_x), static_cast<T*>(d_y), s,
                                                     decltype(i)(n));
    });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void layer_norm(const void* d_x, void* d_y, const void* d_scale, const void* d_bias, int64_t rows, int64_t len,
                float eps, DType t, cudaStream_t stream) {
  if (rows <= 0 || len <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    layer_norm_kernel<<<rows_grid(rows), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y),
                                                              static_cast<const T*>(d_scale),
                                                              static_cast<const T*>(d_bias), rows, len, eps);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void pool2d(bool max, const void* d_x, void* d_y, int64_t nc, int64_t h, int64_t w, const Window& wy, const Window& wx,
            bool count_include_pad, DType t, cudaStream_t stream) {
  const int64_t n = nc * wy.out * wx.out;
  if (n <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    pool2d_kernel<<<grid_for(n), kBlock, 0, stream>>>(max, static_cast<const T*>(d_x), static_cast<T*>(d_y), nc, h, w,
                                                      wy, wx, count_include_pad);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void global_avg_pool(const void* d_x, void* d_y, int64_t nc, int64_t inner, DType t, cudaStream_t stream) {
  if (nc <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    global_avg_pool_kernel<<<rows_grid(nc), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), nc, inner);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void concat_part(const void* d_src, void* d_dst, int64_t outer, int64_t chunk, int64_t in_outer, int64_t row,
                 int64_t off, DType t, cudaStream_t stream) {
  if (outer * chunk <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    concat_kernel<<<grid_for(outer * chunk), kBlock, 0, stream>>>(static_cast<const T*>(d_src), static_cast<T*>(d_dst),
                                                                  outer, chunk, std::max<int64_t>(in_outer, 1), row, off);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void softmax(const void* d_x, void* d_y, int64_t outer, int64_t len, int64_t inner, DType t, cudaStream_t stream) {
  const int64_t rows = outer * inner;
  if (rows <= 0 || len <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    softmax_kernel<<<rows_grid(rows), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), outer, len, inner);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void reduce_mean(const void* d_x, void* d_y, const Strided& kept, const Strided& red, DType t, cudaStream_t stream) {
  const int64_t n_out = volume(kept), count = volume(red);
  if (n_out <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    reduce_mean_kernel<<<rows_grid(n_out), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), kept,
                                                               red, n_out, count);
  });
  IMGPIPE_CHECK_LAUNCH();
}

namespace {
/// The parts of sort_rows()'s scratch: two key buffers, two index buffers, the row offsets,
/// then CUB's temporary storage.
struct SortScratch {
  float* keys[2];
  int32_t* values[2];
  int32_t* offsets;
  void* cub;
  size_t bytes;
};

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

SortScratch carve(void* d_scratch, int64_t rows, int64_t cols) {
  const size_t plane = align256(static_cast<size_t>(rows * cols) * 4);
  char* p = static_cast<char*>(d_scratch);
  SortScratch s{};
  for (int k = 0; k < 2; ++k) s.keys[k] = reinterpret_cast<float*>(p + k * plane);
  for (int k = 0; k < 2; ++k) s.values[k] = reinterpret_cast<int32_t*>(p + (2 + k) * plane);
  s.offsets = reinterpret_cast<int32_t*>(p + 4 * plane);
  s.cub = p + 4 * plane + align256(static_cast<size_t>(rows + 1) * 4);
  s.bytes = 4 * plane + align256(static_cast<size_t>(rows + 1) * 4) + kSortCubReserve;
  return s;
}
}  // namespace

size_t sort_rows_scratch_bytes(int64_t rows, int64_t cols) { return carve(nullptr, rows, cols).bytes; }

const int32_t* sort_rows(const float* d_scores, int64_t rows, int64_t cols, void* d_scratch, cudaStream_t stream) {
  if (rows * cols > INT32_MAX - 1) throw std::invalid_argument("sort_rows: more than 2^31 scores");
  const SortScratch s = carve(d_scratch, rows, cols);
  const int n = static_cast<int>(rows * cols), segments = static_cast<int>(rows);
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.keys[0], d_scores, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToDevice, stream));
  sort_rows_init_kernel<<<grid_for(n), kBlock, 0, stream>>>(s.values[0], s.offsets, segments, static_cast<int32_t>(cols));
  IMGPIPE_CHECK_LAUNCH();
  // Radix sort is stable: equal scores keep their column order, as the host ranking does.
  cub::DoubleBuffer<float> keys(s.keys[0], s.keys[1]);
  cub::DoubleBuffer<int32_t> values(s.values[0], s.values[1]);
  size_t temp = 0;
  IMGPIPE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, temp, keys, values, n, segments,
                                                                        s.offsets, s.offsets + 1, 0, 32, stream));
  if (temp > kSortCubReserve)
    throw std::logic_error("CUB's segmented sort asks for " + std::to_string(temp) + " bytes of temporary storage; " +
                           std::to_string(kSortCubReserve) + " are planned");
  IMGPIPE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(s.cub, temp, keys, values, n, segments,
                                                                        s.offsets, s.offsets + 1, 0, 32, stream));
  return values.Current();
}

}  // namespace imgpipe::infer::cuda
