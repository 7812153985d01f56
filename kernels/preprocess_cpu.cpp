#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "preprocess.h"
#include "preprocess_filter.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define IMGPIPE_F16C_PATH 1  // hardware float->half, chosen at run time
#endif

namespace imgpipe::kernels {

size_t output_image_bytes(const PreprocessParams& p) {
  const size_t elem = p.dtype == DType::F32 ? 4 : p.dtype == DType::F16 ? 2 : 1;
  return size_t(p.out_channels) * size_t(p.out_h) * size_t(p.out_w) * elem;
}

void validate_params(const PreprocessParams& p) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("preprocess: " + what); };
  if (p.src_channels != 1 && p.src_channels != 3)
    fail("src_channels must be 1 or 3, got " + std::to_string(p.src_channels));
  if (p.out_channels != 1 && p.out_channels != 3)
    fail("out_channels must be 1 or 3, got " + std::to_string(p.out_channels));
  if (p.out_w <= 0 || p.out_h <= 0)
    fail("output size must be positive, got " + std::to_string(p.out_w) + "x" +
         std::to_string(p.out_h));
  if (p.dtype != DType::U8) {
    for (int c = 0; c < p.out_channels; ++c)
      if (p.std[c] == 0.f) fail("std[" + std::to_string(c) + "] is 0");
  }
}

namespace {

// Four floats in one SIMD register: SSE2 or NEON (GCC and Clang lower it to scalars on
// targets without one). Its + and * round each lane like the scalar operators.
typedef float F32x4 __attribute__((vector_size(16)));
constexpr int32_t kLanes = 4;

inline F32x4 load4(const float* p) {
  F32x4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, F32x4 v) { std::memcpy(p, &v, sizeof v); }
inline F32x4 splat4(float f) { return F32x4{f, f, f, f}; }
inline int32_t round_up_lanes(int32_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Taps of the visible resized positions r0 .. r0+n-1 along one axis, normalised. Every
// position gets the same number of taps (the widest range), padded with zero weights, so the
// inner loops have a fixed trip count. All weights and pixels are >= 0, so a zero tap adds
// exactly +0: the sums are bit-identical to summing just the tap_range (as preprocess.cu does).
struct AxisTaps {
  std::vector<int32_t> start;  // first tap of each position; start + taps <= in_size
  std::vector<float> weights;  // `taps` floats per position
  int32_t taps = 1;
  int32_t first = 0, end = 0;  // union of the source ranges

  void compute(const detail::AxisFilter& f, int32_t r0, int32_t n) {
    start.resize(size_t(n));
    taps = 1;
    for (int32_t i = 0; i < n; ++i) taps = std::max(taps, detail::tap_range(f, r0 + i).count);
    weights.assign(size_t(n) * size_t(taps), 0.f);
    first = f.in_size;
    end = 0;
    for (int32_t i = 0; i < n; ++i) {
      const detail::TapRange t = detail::tap_range(f, r0 + i);
      const float ww = detail::tap_weight_sum(f, t);
      const int32_t s = std::min(t.start, f.in_size - taps);  // count <= taps <= in_size
      start[size_t(i)] = s;
      float* w = &weights[size_t(i) * size_t(taps) + size_t(t.start - s)];
      for (int32_t k = 0; k < t.count; ++k) w[k] = detail::normalized_tap_weight(f, t, ww, k);
      first = std::min(first, s);
      end = std::max(end, s + taps);
    }
  }
};

// Scratch reused across images and calls (thread_local: preprocess_cpu may run on several
// threads). Vectors only grow, so a steady stream of images allocates nothing.
struct Scratch {
  AxisTaps tx, ty;
  std::vector<F32x4> wx;   // tx.weights, each splatted to 4 lanes (3-channel horizontal pass)
  std::vector<float> src;  // one source row as floats, from column tx.first, + kLanes slack
  std::vector<float> ring; // ty.taps horizontally resampled rows, slot r % ty.taps, planar
  std::vector<float> acc;  // one vertically resampled row, planar, + the gray conversion
};

// Horizontal pass of one source row: src (floats from column tx.first) -> SC planes of the
// vw visible columns, `plane` floats apart. Per channel the same sum as preprocess.cu's.
template <int SC, int kTaps>
void horizontal_row(const float* __restrict src, const AxisTaps& tx, const F32x4* __restrict wx,
                    int32_t vw, float* __restrict out, size_t plane) {
  const int32_t taps = kTaps > 0 ? kTaps : tx.taps;
  const int32_t* start = tx.start.data();
  if constexpr (SC == 3) {
    // B, G, R and one spare lane (the next pixel's B, times the weight, discarded) per tap.
    int32_t j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= vw; j += 4) {  // 4 pixels, transposed into the 3 planes
      F32x4 a[4];
      for (int32_t q = 0; q < 4; ++q) {
        const float* s = src + size_t(start[j + q] - tx.first) * 3;
        const F32x4* w = wx + size_t(j + q) * size_t(taps);
        a[q] = splat4(0.f);
        for (int32_t k = 0; k < taps; ++k) a[q] += w[k] * load4(s + 3 * k);
      }
      const __m128 t0 = _mm_unpacklo_ps(__m128(a[0]), __m128(a[1]));  // B0 B1 G0 G1
      const __m128 t1 = _mm_unpacklo_ps(__m128(a[2]), __m128(a[3]));  // B2 B3 G2 G3
      const __m128 t2 = _mm_unpackhi_ps(__m128(a[0]), __m128(a[1]));  // R0 R1 . .
      const __m128 t3 = _mm_unpackhi_ps(__m128(a[2]), __m128(a[3]));  // R2 R3 . .
      _mm_storeu_ps(out + j, _mm_movelh_ps(t0, t1));
      _mm_storeu_ps(out + plane + size_t(j), _mm_movehl_ps(t1, t0));
      _mm_storeu_ps(out + 2 * plane + size_t(j), _mm_movelh_ps(t2, t3));
    }
#endif
    for (; j < vw; ++j) {
      const float* s = src + size_t(start[j] - tx.first) * 3;
      const F32x4* w = wx + size_t(j) * size_t(taps);
      F32x4 a = splat4(0.f);
      for (int32_t k = 0; k < taps; ++k) a += w[k] * load4(s + 3 * k);
      out[j] = a[0];
      out[plane + size_t(j)] = a[1];
      out[2 * plane + size_t(j)] = a[2];
    }
  } else {
    const float* weights = tx.weights.data();
    for (int32_t j = 0; j < vw; ++j) {
      const float* s = src + size_t(start[j] - tx.first);
      const float* w = weights + size_t(j) * size_t(taps);
      float a = 0.f;
      for (int32_t k = 0; k < taps; ++k) a += w[k] * s[k];
      out[j] = a;
    }
  }
}

// Vertical pass of one output row: the ty taps of output row i from the ring -> SC planes
// of `plane` floats (a multiple of kLanes; the lanes past vw are don't-care).
template <int SC, int kTaps>
void vertical_row(const float* ring, const AxisTaps& ty, int32_t i, size_t plane,
                  float* __restrict acc) {
  const int32_t taps = kTaps > 0 ? kTaps : ty.taps;
  constexpr int32_t kMaxRowPtrs = 64;
  const float* rows[kMaxRowPtrs];
  F32x4 w[kMaxRowPtrs];
  const float* wi = &ty.weights[size_t(i) * size_t(taps)];
  const size_t row_floats = SC * plane;
  for (int32_t k0 = 0; k0 < taps; k0 += kMaxRowPtrs) {  // one chunk unless taps > 64
    const int32_t n = std::min(kMaxRowPtrs, taps - k0);
    for (int32_t k = 0; k < n; ++k) {
      const int32_t r = ty.start[size_t(i)] + k0 + k;
      rows[k] = ring + size_t(r % ty.taps) * row_floats;
      w[k] = splat4(wi[k0 + k]);
    }
    for (size_t x = 0; x < row_floats; x += kLanes) {
      F32x4 a = k0 == 0 ? splat4(0.f) : load4(acc + x);
      for (int32_t k = 0; k < (kTaps > 0 ? kTaps : n); ++k) a += w[k] * load4(rows[k] + x);
      store4(acc + x, a);
    }
  }
}

typedef int32_t I32x4 __attribute__((vector_size(16)));
typedef uint32_t U32x4 __attribute__((vector_size(16)));
typedef uint16_t U16x4 __attribute__((vector_size(8)));

// detail::float_to_half_bits on 4 lanes (same operations, lane for lane).
inline U16x4 float_to_half_bits4(F32x4 f) {
  constexpr uint32_t kF32Inf = 255u << 23;
  constexpr uint32_t kF16Max = (127u + 16u) << 23;
  constexpr uint32_t kDenormMagicBits = ((127u - 15u) + (23u - 10u) + 1u) << 23;  // 0.5f
  U32x4 u = reinterpret_cast<U32x4>(f);
  const U32x4 sign = u & 0x80000000u;
  u ^= sign;
  const U32x4 sub = reinterpret_cast<U32x4>(reinterpret_cast<F32x4>(u) + 0.5f) - kDenormMagicBits;
  const U32x4 normal = (u + (uint32_t(15 - 127) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  // u < 2^31 now: signed compares (all SSE2 has) order it as unsigned ones would.
  const I32x4 s = reinterpret_cast<I32x4>(u);
  const U32x4 special = 0x7c00u | (reinterpret_cast<U32x4>(s > int32_t(kF32Inf)) & 0x200u);
  const U32x4 o = s >= int32_t(kF16Max) ? special : (s < int32_t(113u << 23) ? sub : normal);
  return __builtin_convertvector(o | (sign >> 16), U16x4);
}

// detail::to_u8 on 4 lanes, as int32 0..255.
inline I32x4 to_u8_4(F32x4 v) {
  v = v < 0.f ? splat4(0.f) : v;
  v = v > 255.f ? splat4(255.f) : v;
  const I32x4 r = __builtin_convertvector(v + 0.5f, I32x4);  // truncates: floor for v >= 0
  return v < 0.5f ? I32x4{} : r;
}

// 16 values 0..255 in four int32 vectors -> 16 bytes.
inline void store_u8_16(I32x4 a, I32x4 b, I32x4 c, I32x4 d, uint8_t* dst) {
#if defined(__SSE2__)
  const __m128i ab = _mm_packs_epi32(__m128i(a), __m128i(b));  // no saturation: 0..255
  const __m128i cd = _mm_packs_epi32(__m128i(c), __m128i(d));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(ab, cd));
#else
  typedef uint8_t U8x4 __attribute__((vector_size(4)));
  const U8x4 q[4] = {__builtin_convertvector(a, U8x4), __builtin_convertvector(b, U8x4),
                     __builtin_convertvector(c, U8x4), __builtin_convertvector(d, U8x4)};
  std::memcpy(dst, q, sizeof q);
#endif
}

#if defined(IMGPIPE_F16C_PATH)
// normalize_value + float_to_half_bits of n values with the F16C instruction (8 lanes); the
// same bits as the portable path: F16C also rounds to nearest even, and NaNs, whose payload
// it would keep, are replaced by the portable path's quiet NaN (sign kept).
__attribute__((target("avx,f16c"))) void normalize_to_half_f16c(const float* v, int32_t n,
                                                               float scale, float mean,
                                                               float stdv, uint16_t* dst) {
  const __m256 s = _mm256_set1_ps(scale), m = _mm256_set1_ps(mean), d = _mm256_set1_ps(stdv);
  const __m128i sign_bit = _mm_set1_epi16(int16_t(0x8000)), qnan = _mm_set1_epi16(0x7e00);
  int32_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 a = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(v + j), s), m), d);
    __m128i h = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT);
    const __m256 nan = _mm256_cmp_ps(a, a, _CMP_UNORD_Q);
    const __m128i nan16 =
        _mm_packs_epi32(_mm256_castsi256_si128(_mm256_castps_si256(nan)),
                        _mm256_extractf128_si256(_mm256_castps_si256(nan), 1));
    h = _mm_blendv_epi8(h, _mm_or_si128(_mm_and_si128(h, sign_bit), qnan), nan16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), h);
  }
  for (; j < n; ++j) dst[j] = detail::float_to_half_bits(detail::normalize_value(v[j], scale, mean, stdv));
}

bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}
#endif

// Converts n values of output channel c into dst (contiguous): float outputs normalised,
// F16 rounded to nearest even, U8 rounded and clamped. 4 lanes at a time, then the scalar
// conversions of preprocess_filter.h for the rest; both give the same bits.
template <class T>
void convert_values(const PreprocessParams& p, int32_t c, const float* __restrict v, int32_t n,
                    T* __restrict dst) {
  const float scale = p.scale, mean = p.mean[c], stdv = p.std[c];
#if defined(IMGPIPE_F16C_PATH)
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (cpu_has_f16c()) {
      normalize_to_half_f16c(v, n, scale, mean, stdv, dst);
      return;
    }
  }
#endif
  int32_t j = 0;
  if constexpr (std::is_same_v<T, uint8_t>) {
    for (; j + 4 * kLanes <= n; j += 4 * kLanes)
      store_u8_16(to_u8_4(load4(v + j)), to_u8_4(load4(v + j + 4)), to_u8_4(load4(v + j + 8)),
                  to_u8_4(load4(v + j + 12)), dst + j);
  }
  for (; j + kLanes <= n && !std::is_same_v<T, uint8_t>; j += kLanes) {
    const F32x4 a = load4(v + j);
    if constexpr (std::is_same_v<T, float>) {
      store4(dst + j, (a * scale - mean) / stdv);  // detail::normalize_value
    } else if constexpr (std::is_same_v<T, uint16_t>) {
      const U16x4 h = float_to_half_bits4((a * scale - mean) / stdv);
      std::memcpy(dst + j, &h, sizeof h);
    }
  }
  for (; j < n; ++j) {
    if constexpr (std::is_same_v<T, float>)
      dst[j] = detail::normalize_value(v[j], scale, mean, stdv);
    else if constexpr (std::is_same_v<T, uint16_t>)
      dst[j] = detail::float_to_half_bits(detail::normalize_value(v[j], scale, mean, stdv));
    else
      dst[j] = detail::to_u8(v[j]);
  }
}

// convert_values into dst[j * step] (NCHW: step 1; NHWC: step out_channels).
template <class T>
void store_values(const PreprocessParams& p, int32_t c, const float* v, int32_t n, T* dst,
                  size_t step) {
  if (step == 1) {
    convert_values(p, c, v, n, dst);
    return;
  }
  constexpr int32_t kChunk = 64;
  T tmp[kChunk];
  for (int32_t j0 = 0; j0 < n; j0 += kChunk) {
    const int32_t m = std::min(kChunk, n - j0);
    convert_values(p, c, v + j0, m, tmp);
    for (int32_t j = 0; j < m; ++j) dst[size_t(j0 + j) * step] = tmp[j];
  }
}

void store_values(const PreprocessParams& p, int32_t c, const float* v, int32_t n, void* image,
                  size_t first, size_t step) {
  switch (p.dtype) {
    case DType::F32:
      store_values(p, c, v, n, static_cast<float*>(image) + first, step);
      break;
    case DType::F16:
      store_values(p, c, v, n, static_cast<uint16_t*>(image) + first, step);
      break;
    case DType::U8:
      store_values(p, c, v, n, static_cast<uint8_t*>(image) + first, step);
      break;
  }
}

// Output row y, columns x0 .. x0+n-1 of channel c.
void store_row(const PreprocessParams& p, int32_t c, int32_t x0, int32_t y, const float* v,
               int32_t n, void* image) {
  const size_t pix = size_t(y) * size_t(p.out_w) + size_t(x0);
  if (p.layout == Layout::NCHW)
    store_values(p, c, v, n, image, size_t(c) * size_t(p.out_w) * size_t(p.out_h) + pix, 1);
  else
    store_values(p, c, v, n, image, pix * size_t(p.out_channels) + size_t(c),
                 size_t(p.out_channels));
}

void fill_pad(const PreprocessParams& p, void* image) {
  const std::vector<float> row(size_t(p.out_w), p.pad);
  for (int32_t c = 0; c < p.out_channels; ++c)
    for (int32_t y = 0; y < p.out_h; ++y) store_row(p, c, 0, y, row.data(), p.out_w, image);
}

// src[m] = float(bytes[m]) for m < n.
inline void bytes_to_floats(const uint8_t* __restrict bytes, size_t n, float* __restrict src) {
  size_t m = 0;
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (; m + 16 <= n; m += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + m));
    const __m128i lo = _mm_unpacklo_epi8(b, zero), hi = _mm_unpackhi_epi8(b, zero);
    _mm_storeu_ps(src + m, _mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, zero)));
    _mm_storeu_ps(src + m + 4, _mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, zero)));
    _mm_storeu_ps(src + m + 8, _mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, zero)));
    _mm_storeu_ps(src + m + 12, _mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, zero)));
  }
#endif
  for (; m < n; ++m) src[m] = float(bytes[m]);
}

template <int SC>
using HorizontalFn = void (*)(const float*, const AxisTaps&, const F32x4*, int32_t, float*,
                              size_t);
template <int SC>
using VerticalFn = void (*)(const float*, const AxisTaps&, int32_t, size_t, float*);

// Fixed tap counts up to 8 (downscales up to ~3.5x) get fully unrolled inner loops.
template <int SC>
HorizontalFn<SC> pick_horizontal(int32_t taps) {
  switch (taps) {
    case 1: return &horizontal_row<SC, 1>;
    case 2: return &horizontal_row<SC, 2>;
    case 3: return &horizontal_row<SC, 3>;
    case 4: return &horizontal_row<SC, 4>;
    case 5: return &horizontal_row<SC, 5>;
    case 6: return &horizontal_row<SC, 6>;
    case 7: return &horizontal_row<SC, 7>;
    case 8: return &horizontal_row<SC, 8>;
    default: return &horizontal_row<SC, 0>;
  }
}

template <int SC>
VerticalFn<SC> pick_vertical(int32_t taps) {
  switch (taps) {
    case 1: return &vertical_row<SC, 1>;
    case 2: return &vertical_row<SC, 2>;
    case 3: return &vertical_row<SC, 3>;
    case 4: return &vertical_row<SC, 4>;
    case 5: return &vertical_row<SC, 5>;
    case 6: return &vertical_row<SC, 6>;
    case 7: return &vertical_row<SC, 7>;
    case 8: return &vertical_row<SC, 8>;
    default: return &vertical_row<SC, 0>;
  }
}

template <int SC>
void resample_image(const uint8_t* h_src, const ImageDesc& d, const PreprocessParams& p,
                    Scratch& s, void* image) {
  // Visible window of the output, in output coordinates.
  const int32_t x0 = std::max(0, d.offset_x), x1 = std::min(p.out_w, d.offset_x + d.resized_w);
  const int32_t y0 = std::max(0, d.offset_y), y1 = std::min(p.out_h, d.offset_y + d.resized_h);
  const bool has_source = d.width > 0 && d.height > 0 && d.resized_w > 0 && d.resized_h > 0;
  if (!has_source || x0 >= x1 || y0 >= y1) {
    fill_pad(p, image);
    return;
  }
  if (x0 > 0 || y0 > 0 || x1 < p.out_w || y1 < p.out_h) fill_pad(p, image);

  const int32_t vw = x1 - x0;
  AxisTaps& tx = s.tx;
  AxisTaps& ty = s.ty;
  tx.compute(detail::make_axis_filter(d.width, d.resized_w, p.interp), x0 - d.offset_x, vw);
  ty.compute(detail::make_axis_filter(d.height, d.resized_h, p.interp), y0 - d.offset_y, y1 - y0);
  if (SC == 3) {
    s.wx.resize(tx.weights.size());
    for (size_t k = 0; k < tx.weights.size(); ++k) s.wx[k] = splat4(tx.weights[k]);
  }
  const size_t src_len = size_t(tx.end - tx.first) * SC;
  if (s.src.size() < src_len + kLanes) s.src.resize(src_len + kLanes, 0.f);
  const size_t plane = size_t(round_up_lanes(vw));
  const size_t row_floats = SC * plane;
  if (s.ring.size() < size_t(ty.taps) * row_floats) s.ring.resize(size_t(ty.taps) * row_floats, 0.f);
  if (s.acc.size() < row_floats + plane) s.acc.resize(row_floats + plane, 0.f);

  const HorizontalFn<SC> horizontal = pick_horizontal<SC>(tx.taps);
  const VerticalFn<SC> vertical = pick_vertical<SC>(ty.taps);
  const uint8_t* img = h_src + d.offset;
  float* src = s.src.data();
  float* ring = s.ring.data();
  float* acc = s.acc.data();
  int32_t next_row = 0;  // rows below it are in the ring or no longer needed
  for (int32_t y = y0; y < y1; ++y) {
    const int32_t i = y - y0;
    const int32_t row0 = ty.start[size_t(i)];
    next_row = std::max(next_row, row0);
    for (; next_row < row0 + ty.taps; ++next_row) {
      const uint8_t* srow = img + int64_t(next_row) * d.pitch + int64_t(tx.first) * SC;
      bytes_to_floats(srow, src_len, src);
      horizontal(src, tx, s.wx.data(), vw, ring + size_t(next_row % ty.taps) * row_floats,
                 plane);
    }
    vertical(ring, ty, i, plane, acc);

    for (int32_t c = 0; c < p.out_channels; ++c) {
      const float* v = acc;
      if (SC == 3 && p.out_channels == 1) {
        // to_out_channels' gray, on the B, G, R planes.
        const float* __restrict b = acc;
        const float* __restrict g = acc + plane;
        const float* __restrict r = acc + 2 * plane;
        float* __restrict gray = acc + 3 * plane;
        for (int32_t j = 0; j < vw; ++j) gray[j] = 0.299f * r[j] + 0.587f * g[j] + 0.114f * b[j];
        v = gray;
      } else if (SC == 3) {
        v = acc + size_t(p.out_rgb ? 2 - c : c) * plane;  // BGR source
      }
      store_row(p, c, x0, y, v, vw, image);
    }
  }
}

}  // namespace

void preprocess_cpu(const uint8_t* h_src, const ImageDesc* descs, int n, const PreprocessParams& p,
                    void* h_out) {
  validate_params(p);
  const size_t image_bytes = output_image_bytes(p);
  thread_local Scratch scratch;
  for (int i = 0; i < n; ++i) {
    void* image = static_cast<uint8_t*>(h_out) + size_t(i) * image_bytes;
    if (p.src_channels == 3)
      resample_image<3>(h_src, descs[i], p, scratch, image);
    else
      resample_image<1>(h_src, descs[i], p, scratch, image);
  }
}

}  // namespace imgpipe::kernels
