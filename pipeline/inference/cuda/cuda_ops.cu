// Own kernels of the CUDA inference backend. Each op: a static __global__ *_kernel templated
// on the storage type (float or __half; arithmetic always in float), then its launcher.
// The float operations follow the CPU ops (ops_cpu.cpp) so results stay close to them.
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cmath>

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
// Broadcast inputs are no larger than the output: every offset is below n.
template <class T, class I>
__global__ void binary_kernel(BinaryKind kind, const T* a, const T* b, T* y, Strided s, I n) {
  IMGPIPE_GRID_STRIDE_AS(I, i, n) {
    I rem = i, oa = 0, ob = 0;
    for (int k = s.rank - 1; k >= 0; --k) {
      const I idx = rem % I(s.dims[k]);
      rem /= I(s.dims[k]);
      oa += idx * I(s.a[k]);
      ob += idx * I(s.b[k]);
    }
    const float va = ld(a, oa), vb = ld(b, ob);
    float r;
    switch (kind) {
      case BinaryKind::Add: r = va + vb; break;
      case BinaryKind::Sub: r = va - vb; break;
      case BinaryKind::Mul: r = va * vb; break;
      default: r = va / vb; break;
    }
    st(y, i, r);
  }
}

template <class T>
__global__ void same_shape_binary_kernel(BinaryKind kind, const T* a, const T* b, T* y, int64_t n) {
  IMGPIPE_GRID_STRIDE(i, n) {
    const float va = ld(a, i), vb = ld(b, i);
    float r;
    switch (kind) {
      case BinaryKind::Add: r = va + vb; break;
      case BinaryKind::Sub: r = va - vb; break;
      case BinaryKind::Mul: r = va * vb; break;
      default: r = va / vb; break;
    }
    st(y, i, r);
  }
}

// A permutation or a broadcast of a smaller tensor: every offset is below n.
template <class T, class I>
__global__ void strided_copy_kernel(const T* x, T* y, Strided s, I n) {
  IMGPIPE_GRID_STRIDE_AS(I, i, n) {
    I rem = i, off = 0;
    for (int k = s.rank - 1; k >= 0; --k) {
      off += (rem % I(s.dims[k])) * I(s.a[k]);
      rem /= I(s.dims[k]);
    }
    y[i] = x[off];
  }
}

template <class T>
__global__ void pad2d_kernel(const T* x, T* y, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left,
                             int64_t ph, int64_t pw) {
  IMGPIPE_GRID_STRIDE(i, nc * ph * pw) {
    const int64_t px = i % pw, py = (i / pw) % ph, q = i / (pw * ph);
    const int64_t iy = py - top, ix = px - left;
    y[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[(q * h + iy) * w + ix] : T(0.f);
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

/// Sum of v over the block (all threads get it); `shared` holds one float per warp.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? shared[lane] : 0.f;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float block_max(float v, float* shared) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? shared[lane] : -INFINITY;
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// One block per plane.
template <class T>
__global__ void global_avg_pool_kernel(const T* x, T* y, int64_t nc, int64_t inner) {
  __shared__ float shared[32];
  for (int64_t q = blockIdx.x; q < nc; q += gridDim.x) {
    const T* xq = x + q * inner;
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) s += ld(xq, i);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) st(y, q, s / static_cast<float>(inner));
  }
}

/// One block per (outer, inner) row of length len, stride inner.
template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t outer, int64_t len, int64_t inner) {
  __shared__ float shared[32];
  for (int64_t r = blockIdx.x; r < outer * inner; r += gridDim.x) {
    const int64_t o = r / inner, in = r % inner;
    const T* xr = x + o * len * inner + in;
    T* yr = y + o * len * inner + in;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, ld(xr, j * inner));
    m = block_max(m, shared);
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += expf(ld(xr, j * inner) - m);
    s = block_sum(s, shared);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) st(yr, j * inner, expf(ld(xr, j * inner) - m) / s);
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

template <class T>
__global__ void reduce_mean_kernel(const T* x, T* y, Strided kept, Strided red, int64_t n_out, int64_t count) {
  IMGPIPE_GRID_STRIDE(i, n_out) {
    int64_t rem = i, base = 0;
    for (int k = kept.rank - 1; k >= 0; --k) {
      base += (rem % kept.dims[k]) * kept.a[k];
      rem /= kept.dims[k];
    }
    float s = 0.f;
    for (int64_t j = 0; j < count; ++j) {
      int64_t r2 = j, off = base;
      for (int k = red.rank - 1; k >= 0; --k) {
        off += (r2 % red.dims[k]) * red.a[k];
        r2 /= red.dims[k];
      }
      s += ld(x, off);
    }
    st(y, i, s / static_cast<float>(count > 0 ? count : 1));
  }
}

int64_t volume(const Strided& s) {
  int64_t n = 1;
  for (int k = 0; k < s.rank; ++k) n *= s.dims[k];
  return n;
}

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

void binary(BinaryKind kind, const void* d_a, const void* d_b, void* d_y, const Strided& s, DType t,
            cudaStream_t stream) {
  const int64_t n = volume(s);
  if (n <= 0) return;
  // Same shapes, both contiguous: no index arithmetic.
  bool plain = true;
  for (int64_t k = s.rank - 1, step = 1; k >= 0; step *= s.dims[k], --k)
    plain = plain && (s.dims[k] == 1 || (s.a[k] == step && s.b[k] == step));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* a = static_cast<const T*>(d_a);
    const T* b = static_cast<const T*>(d_b);
    if (plain) same_shape_binary_kernel<<<grid_for(n), kBlock, 0, stream>>>(kind, a, b, static_cast<T*>(d_y), n);
    else
      dispatch_index(n, [&](auto i) {
        binary_kernel<<<grid_for(n), kBlock, 0, stream>>>(kind, a, b, static_cast<T*>(d_y), s, decltype(i)(n));
      });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void strided_copy(const void* d_x, void* d_y, const Strided& s, DType t, cudaStream_t stream) {
  const int64_t n = volume(s);
  if (n <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_index(n, [&](auto i) {
      strided_copy_kernel<<<grid_for(n), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), s,
                                                              decltype(i)(n));
    });
  });
  IMGPIPE_CHECK_LAUNCH();
}

void pad2d(const void* d_x, void* d_y, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t bottom, int64_t left,
           int64_t right, DType t, cudaStream_t stream) {
  const int64_t ph = h + top + bottom, pw = w + left + right;
  if (nc * ph * pw <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    pad2d_kernel<<<grid_for(nc * ph * pw), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), nc,
                                                                h, w, top, left, ph, pw);
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
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(nc, 65535 * 8));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    global_avg_pool_kernel<<<grid, kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), nc, inner);
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
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, 65535 * 8));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    softmax_kernel<<<grid, kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), outer, len, inner);
  });
  IMGPIPE_CHECK_LAUNCH();
}

void reduce_mean(const void* d_x, void* d_y, const Strided& kept, const Strided& red, DType t, cudaStream_t stream) {
  const int64_t n_out = volume(kept), count = volume(red);
  if (n_out <= 0) return;
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    reduce_mean_kernel<<<grid_for(n_out), kBlock, 0, stream>>>(static_cast<const T*>(d_x), static_cast<T*>(d_y), kept,
                                                               red, n_out, count);
  });
  IMGPIPE_CHECK_LAUNCH();
}

}  // namespace imgpipe::infer::cuda
