#pragma once
// Resampling taps and per-pixel conversions shared by preprocess_cpu.cpp and preprocess.cu.
// Both sides run these exact float operations in the same order (and preprocess.cu is
// built with --fmad=false), so the CPU reference and the CUDA kernel agree bit for bit
// except where the device's own float->half conversion is used (also round-to-nearest-even).
#include <cstdint>
#include <cstring>

#include "preprocess.h"

#if defined(__CUDACC__)
#define IMGPIPE_HD __host__ __device__ __forceinline__
#else
#define IMGPIPE_HD inline
#endif

namespace imgpipe::kernels::detail {

/// Resampling of one axis: in_size source pixels -> out_size resized pixels (PIL semantics).
struct AxisFilter {
  float scale;            ///< source pixels per resized pixel
  float support;          ///< triangle filter half-width in source pixels
  float inv_filterscale;  ///< 1 / max(1, scale): source distance -> filter argument
  int32_t in_size, out_size;
  Interp interp;
};

IMGPIPE_HD AxisFilter make_axis_filter(int32_t in_size, int32_t out_size, Interp interp) {
  AxisFilter f;
  f.scale = float(in_size) / float(out_size);
  const float filterscale = f.scale < 1.f ? 1.f : f.scale;
  f.support = filterscale;
  f.inv_filterscale = 1.f / filterscale;
  f.in_size = in_size;
  f.out_size = out_size;
  f.interp = interp;
  return f;
}

/// Source taps [start, start + count) of resized position r, clamped to the image.
struct TapRange {
  float center;
  int64_t twice_center_num;  ///< (2r + 1) * in_size: 2 * center * out_size, exact
  int32_t start, count;
};

IMGPIPE_HD int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

IMGPIPE_HD TapRange tap_range(const AxisFilter& f, int32_t r) {
  TapRange t;
  t.center = (float(r) + 0.5f) * f.scale;
  t.twice_center_num = (2 * int64_t(r) + 1) * f.in_size;
  const int64_t out2 = 2 * int64_t(f.out_size);
  int32_t lo, hi;
  if (f.interp == Interp::Nearest) {
    // floor((r + 0.5) * in / out) in exact integer arithmetic: a float product can land
    // just below an exact integer (640 -> 299, r = 149 gives 319.99998, not 320).
    const int32_t i = int32_t(t.twice_center_num / out2);
    t.start = i < f.in_size ? i : f.in_size - 1;
    t.count = 1;
    return t;
  } else if (f.interp == Interp::Area) {
    // The box edges fall exactly on pixel centres for ratios like 5:2; decide them in
    // integers (see tap_weight) so every source pixel with weight 1 is in the range.
    const int64_t d = f.in_size > f.out_size ? f.in_size : f.out_size;
    lo = int32_t(floor_div(t.twice_center_num - d - f.out_size, out2) + 1);
    hi = int32_t(floor_div(t.twice_center_num + d - f.out_size, out2) + 1);
  } else {
    // PIL truncates (not floors) here; negative values clamp to 0 either way.
    lo = int32_t(t.center - f.support + 0.5f);
    hi = int32_t(t.center + f.support + 0.5f);
  }
  lo = lo < 0 ? 0 : (lo > f.in_size - 1 ? f.in_size - 1 : lo);
  hi = hi > f.in_size ? f.in_size : (hi < lo + 1 ? lo + 1 : hi);
  t.start = lo;
  t.count = hi - lo;
  return t;
}

/// Unnormalised weight of source pixel i for tap range t.
IMGPIPE_HD float tap_weight(const AxisFilter& f, const TapRange& t, int32_t i) {
  if (f.interp == Interp::Nearest) return 1.f;
  if (f.interp == Interp::Area) {
    // PIL box: 1 where -0.5 < (i + 0.5 - center) / max(1, scale) <= 0.5, times 2 * out.
    const int64_t d = (2 * int64_t(i) + 1) * f.out_size - t.twice_center_num;
    const int64_t edge = f.in_size > f.out_size ? f.in_size : f.out_size;
    return (d > -edge && d <= edge) ? 1.f : 0.f;
  }
  const float x = (float(i) - t.center + 0.5f) * f.inv_filterscale;
  const float a = x < 0.f ? -x : x;
  return a < 1.f ? 1.f - a : 0.f;
}

/// Sum of the unnormalised weights of a tap range (weights are divided by it, as PIL does;
/// a zero sum leaves zero weights).
IMGPIPE_HD float tap_weight_sum(const AxisFilter& f, const TapRange& t) {
  float ww = 0.f;
  for (int32_t k = 0; k < t.count; ++k) ww += tap_weight(f, t, t.start + k);
  return ww;
}

IMGPIPE_HD float normalized_tap_weight(const AxisFilter& f, const TapRange& t, float ww,
                                       int32_t k) {
  return ww != 0.f ? tap_weight(f, t, t.start + k) / ww : 0.f;
}

/// Resampled source channels s (BGR or gray) -> output channels v in output order.
IMGPIPE_HD void to_out_channels(const float* s, int32_t src_channels, int32_t out_channels,
                                bool out_rgb, float* v) {
  if (src_channels == 1) {
    for (int32_t c = 0; c < out_channels; ++c) v[c] = s[0];
  } else if (out_channels == 1) {
    v[0] = 0.299f * s[2] + 0.587f * s[1] + 0.114f * s[0];
  } else if (out_rgb) {
    v[0] = s[2];
    v[1] = s[1];
    v[2] = s[0];
  } else {
    v[0] = s[0];
    v[1] = s[1];
    v[2] = s[2];
  }
}

/// (v * scale - mean) / std: the float outputs' normalisation of one channel.
IMGPIPE_HD float normalize_value(float v, float scale, float mean, float std) {
  return (v * scale - mean) / std;
}

IMGPIPE_HD float normalize(const PreprocessParams& p, int32_t c, float v) {
  return normalize_value(v, p.scale, p.mean[c], p.std[c]);
}

/// 8-bit output: clamp to 0..255, round half away from zero.
IMGPIPE_HD uint8_t to_u8(float v) {
  v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
  // floor(v + 0.5) is exact for v in [0.5, 255]: v + 0.5 only rounds up to the next integer
  // below 0.5, where float spacing is finer than at the sum (0.49999997 + 0.5 -> 1.0).
  return v < 0.5f ? uint8_t(0) : uint8_t(int32_t(v + 0.5f));
}

/// IEEE binary16 bits of f, round to nearest even (overflow -> inf, NaN -> quiet NaN).
/// Host only: the device uses __float2half_rn, which rounds the same way.
inline uint16_t float_to_half_bits(float f) {
  // F. Giesen's float_to_half_fast3_rtne: exact as long as float adds round to nearest even.
  // All three cases are computed and one is selected, without branches, so that loops over
  // arrays vectorise.
  constexpr uint32_t kF32Inf = 255u << 23;
  constexpr uint32_t kF16Max = (127u + 16u) << 23;  // 2^16: everything above rounds to inf
  constexpr uint32_t kDenormMagicBits = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  constexpr float kDenormMagic = 0.5f;  // the float whose bits are kDenormMagicBits
  static_assert(kDenormMagicBits == 0x3f000000u, "0.5f");
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  // Below 2^-14 (half subnormal or zero): adding the magic aligns the 10 mantissa bits at
  // the bottom, rounding to nearest even.
  float abs_f;
  std::memcpy(&abs_f, &u, sizeof abs_f);
  const float aligned = abs_f + kDenormMagic;
  uint32_t sub;
  std::memcpy(&sub, &aligned, sizeof sub);
  sub -= kDenormMagicBits;
  // Normal: rebias the exponent and round the 13 dropped bits to nearest even.
  const uint32_t normal = (u + (uint32_t(15 - 127) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t special = u > kF32Inf ? 0x7e00u : 0x7c00u;
  const uint32_t o = u >= kF16Max ? special : u < (113u << 23) ? sub : normal;
  return uint16_t(o | (sign >> 16));
}

}  // namespace imgpipe::kernels::detail
