// preprocess_cpu against hand-computed values and a direct double-precision PIL reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "preprocess.h"
#include "preprocess_filter.h"
#include "test_util.h"

namespace imgpipe::kernels::test {
namespace {

PreprocessParams raw_params(int32_t out_w, int32_t out_h, int32_t out_c = 3,
                            Interp interp = Interp::Bilinear, int32_t src_c = 3) {
  PreprocessParams p;
  p.src_channels = src_c;
  p.out_w = out_w;
  p.out_h = out_h;
  p.out_channels = out_c;
  p.interp = interp;
  return p;  // F32, NCHW, scale 1, mean 0, std 1: outputs are the resampled 0..255 values
}

PreprocessParams imagenet_params(int32_t out_w, int32_t out_h) {
  PreprocessParams p = raw_params(out_w, out_h);
  p.scale = 1.f / 255.f;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) p.mean[c] = mean[c], p.std[c] = stdv[c];
  return p;
}

constexpr Interp kInterps[] = {Interp::Nearest, Interp::Bilinear, Interp::Area};

TEST(PreprocessCpu, IdentityResizeGivesExactNormalisedPixels) {
  const Image im = random_image(5, 4, 3, 1);
  for (Interp interp : kInterps) {
    Batch b;
    b.add(im, 5, 4);
    PreprocessParams p = imagenet_params(5, 4);
    p.interp = interp;
    const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 5; ++x) {
          const float expected = (float(im.at(x, y, 2 - c)) * p.scale - p.mean[c]) / p.std[c];
          EXPECT_EQ(v[(c * 4 + y) * 5 + x], expected) << "interp " << int(interp);
        }
  }
}

TEST(PreprocessCpu, TwoByTwoToOneAveragesWithAreaAndBilinear) {
  Image im = constant_image(2, 2, 1, 0);
  im.px = {10, 20, 30, 41};
  for (Interp interp : {Interp::Area, Interp::Bilinear}) {
    Batch b;
    b.add(im, 1, 1);
    const PreprocessParams p = raw_params(1, 1, 1, interp, 1);
    EXPECT_FLOAT_EQ(decode_nchw(run_cpu(b, p).data(), 0, p)[0], 25.25f);
  }
}

TEST(PreprocessCpu, NearestUpscalePicksFloorOfHalfPixelCentre) {
  Image im = constant_image(3, 2, 1, 0);
  im.px = {1, 2, 3, 4, 5, 6};
  Batch b;
  b.add(im, 7, 5);
  const PreprocessParams p = raw_params(7, 5, 1, Interp::Nearest, 1);
  const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
  const int sx[7] = {0, 0, 1, 1, 1, 2, 2};  // floor((x + 0.5) * 3 / 7)
  const int sy[5] = {0, 0, 1, 1, 1};        // floor((y + 0.5) * 2 / 5)
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x) EXPECT_EQ(v[y * 7 + x], float(im.at(sx[x], sy[y], 0)));
}

TEST(PreprocessCpu, LetterboxBorderIsPad) {
  const Image im = random_image(4, 4, 3, 2);
  for (DType dtype : {DType::F32, DType::U8}) {
    Batch b;
    b.add(im, 4, 2, 1, 1);  // 4x2 placed at (1, 1) of 6x4: column 0, 5 and rows 0, 3 pad
    PreprocessParams p = imagenet_params(6, 4);
    p.dtype = dtype;
    p.pad = 114.f;
    const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
    for (int c = 0; c < 3; ++c) {
      const float pad = dtype == DType::U8 ? 114.f : (114.f * p.scale - p.mean[c]) / p.std[c];
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 6; ++x) {
          const bool border = x == 0 || x == 5 || y == 0 || y == 3;
          if (border) {
            EXPECT_EQ(v[(c * 4 + y) * 6 + x], pad) << x << "," << y;
          }
        }
    }
  }
}

TEST(PreprocessCpu, CenterCropOffsetsPickTheRightPixels) {
  const Image im = random_image(7, 6, 3, 3);
  Batch b;
  b.add(im, 7, 6, -2, -1);  // crop 4x4 starting at source (2, 1)
  PreprocessParams p = raw_params(4, 4);
  p.out_rgb = false;
  const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) EXPECT_EQ(v[(c * 4 + y) * 4 + x], im.at(x + 2, y + 1, c));
}

TEST(PreprocessCpu, BgrToRgbSwapsChannels) {
  Image im = constant_image(1, 1, 3, 0);
  im.px = {10, 20, 30};  // B, G, R
  Batch b;
  b.add(im, 1, 1);
  PreprocessParams p = raw_params(1, 1);
  EXPECT_EQ(decode_nchw(run_cpu(b, p).data(), 0, p), (std::vector<float>{30, 20, 10}));
  p.out_rgb = false;
  EXPECT_EQ(decode_nchw(run_cpu(b, p).data(), 0, p), (std::vector<float>{10, 20, 30}));
}

TEST(PreprocessCpu, GrayConversionAndReplication) {
  Image bgr = constant_image(1, 1, 3, 0);
  bgr.px = {10, 20, 30};
  Batch b;
  b.add(bgr, 2, 1);
  PreprocessParams p = raw_params(2, 1, 1);
  const auto g = decode_nchw(run_cpu(b, p).data(), 0, p);
  EXPECT_NEAR(g[0], 0.299 * 30 + 0.587 * 20 + 0.114 * 10, 1e-4);
  EXPECT_EQ(g[0], g[1]);

  Image gray = constant_image(1, 1, 1, 77);
  Batch bg;
  bg.add(gray, 1, 1);
  PreprocessParams pg = raw_params(1, 1, 3);
  pg.src_channels = 1;
  EXPECT_EQ(decode_nchw(run_cpu(bg, pg).data(), 0, pg), (std::vector<float>{77, 77, 77}));
}

TEST(PreprocessCpu, NchwAndNhwcHoldTheSameValuesTransposed) {
  const Image im = random_image(37, 23, 3, 4);
  Batch b;
  b.add(im, 13, 9, 1, -1);
  PreprocessParams p = imagenet_params(14, 8);
  const auto nchw = run_cpu(b, p);
  p.layout = Layout::NHWC;
  const auto nhwc = run_cpu(b, p);
  const float* a = reinterpret_cast<const float*>(nchw.data());
  const float* h = reinterpret_cast<const float*>(nhwc.data());
  for (int c = 0; c < 3; ++c)
    for (int pix = 0; pix < 14 * 8; ++pix) EXPECT_EQ(a[c * 14 * 8 + pix], h[pix * 3 + c]);
}

// Correctly rounded half of f by search over all finite halves (independent of the kernel's
// bit-twiddling converter): nearest value, ties to the even bit pattern.
uint16_t oracle_half(float f) {
  static const std::vector<double> halves = [] {
    std::vector<double> v;
    for (uint32_t h = 0; h < 0x7c00; ++h) v.push_back(half_to_float(uint16_t(h)));
    return v;
  }();
  const double a = std::fabs(double(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a >= 65520.0) return sign | 0x7c00;
  auto it = std::lower_bound(halves.begin(), halves.end(), a);
  uint32_t hi = uint32_t(it - halves.begin());
  if (hi == 0) return sign;
  const uint32_t lo = hi - 1;
  if (hi == halves.size()) return uint16_t(sign | lo);
  const double dlo = a - halves[lo], dhi = halves[hi] - a;
  const uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return uint16_t(sign | pick);
}

TEST(PreprocessCpu, FloatToHalfRoundsToNearestEven) {
  const std::map<float, uint16_t> known = {
      {0.f, 0x0000},
      {1.f, 0x3c00},
      {-2.f, 0xc000},
      {65504.f, 0x7bff},
      {65519.f, 0x7bff},
      {65520.f, 0x7c00},
      {1e10f, 0x7c00},
      {5.9604645e-8f, 0x0001},
      {2.9802322e-8f, 0x0000},  // tie -> 0
      {1.0009766f, 0x3c01},
      {1.00048828125f, 0x3c00},  // tie between 0x3c00 and 0x3c01
      {1.00146484375f, 0x3c02},  // tie between 0x3c01 and 0x3c02
  };
  for (auto [f, h] : known) EXPECT_EQ(detail::float_to_half_bits(f), h) << f;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-70000.f, 70000.f);
  for (int i = 0; i < 20000; ++i) {
    const float f = i % 2 ? dist(rng) : dist(rng) * 1e-6f;
    ASSERT_EQ(detail::float_to_half_bits(f), oracle_half(f)) << f;
  }
}

TEST(PreprocessCpu, F16OutputIsCorrectlyRoundedF32Output) {
  const Image im = random_image(31, 17, 3, 6);
  Batch b;
  b.add(im, 20, 11, 2, 0);
  PreprocessParams p = imagenet_params(22, 11);
  p.pad = 3.f;
  const auto f32 = run_cpu(b, p);
  p.dtype = DType::F16;
  const auto f16 = run_cpu(b, p);
  const float* a = reinterpret_cast<const float*>(f32.data());
  const uint16_t* h = reinterpret_cast<const uint16_t*>(f16.data());
  for (int i = 0; i < 3 * 22 * 11; ++i) ASSERT_EQ(h[i], oracle_half(a[i])) << i;
}

// Widths that are not multiples of the SIMD width, crops and borders, values that overflow
// to inf, become half subnormals or negative, in both layouts.
TEST(PreprocessCpu, F16AndU8OutputsAreRoundedF32OutputsAcrossTheRange) {
  const Image im = random_image(53, 29, 3, 14);
  for (Layout layout : {Layout::NCHW, Layout::NHWC})
    for (float stdv : {1e-3f, 0.7f, -3.f, 2e4f, 1e7f}) {
      Batch b;
      b.add(im, 37, 23, -2, 3);
      PreprocessParams p = raw_params(35, 27);
      p.layout = layout;
      p.pad = 250.f;
      const auto raw = run_cpu(b, p);
      for (int c = 0; c < 3; ++c) p.mean[c] = 10.f * float(c) + 0.25f, p.std[c] = stdv;
      const auto f32 = run_cpu(b, p);
      p.dtype = DType::F16;
      const auto f16 = run_cpu(b, p);
      p.dtype = DType::U8;
      const auto u8 = run_cpu(b, p);
      const float* r = reinterpret_cast<const float*>(raw.data());
      const float* a = reinterpret_cast<const float*>(f32.data());
      const uint16_t* h = reinterpret_cast<const uint16_t*>(f16.data());
      for (int i = 0; i < 3 * 35 * 27; ++i) {
        ASSERT_EQ(h[i], oracle_half(a[i])) << "std " << stdv << " at " << i;
        ASSERT_EQ(u8[i], uint8_t(std::round(std::clamp(r[i], 0.f, 255.f)))) << i;
      }
    }
}

// Every CPU gives the same bits: a NaN normalisation comes out as the one quiet NaN.
TEST(PreprocessCpu, F16NanIsTheQuietNan) {
  Batch b;
  b.add(random_image(19, 5, 3, 15), 19, 5);
  PreprocessParams p = raw_params(19, 5);
  p.dtype = DType::F16;
  const uint32_t nan_bits = 0x7fffe000u;  // NaN with every payload bit that half keeps set
  std::memcpy(&p.mean[1], &nan_bits, sizeof nan_bits);
  const auto out = run_cpu(b, p);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(out.data());
  for (int i = 0; i < 19 * 5; ++i) {
    EXPECT_NE(h[i] & 0x7c00, 0x7c00) << i;  // channel 0 stays finite
    EXPECT_EQ(h[19 * 5 + i] & 0x7fff, 0x7e00) << i;
  }
}

TEST(PreprocessCpu, ToU8IsClampedRoundHalfAway) {
  for (float v : {-3.f, 0.f, 0.49999997f, 0.5f, 1.4999999f, 1.5f, 2.5f, 127.49999f, 127.5f,
                  254.49998f, 254.5f, 255.f, 300.f})
    EXPECT_EQ(detail::to_u8(v), uint8_t(std::round(std::clamp(v, 0.f, 255.f)))) << v;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> dist(-1.f, 256.f);
  for (int i = 0; i < 100000; ++i) {
    const float v = dist(rng);
    ASSERT_EQ(detail::to_u8(v), uint8_t(std::round(std::clamp(v, 0.f, 255.f)))) << v;
  }
}

TEST(PreprocessCpu, U8RoundsHalfAwayFromZero) {
  Image im = constant_image(2, 1, 1, 0);
  for (auto [a, c, expected] : {std::tuple{1, 2, 2}, {2, 3, 3}, {0, 1, 1}, {254, 255, 255}}) {
    im.px = {uint8_t(a), uint8_t(c)};
    Batch b;
    b.add(im, 1, 1);
    PreprocessParams p = raw_params(1, 1, 1, Interp::Area, 1);
    p.dtype = DType::U8;
    EXPECT_EQ(run_cpu(b, p)[0], expected) << a << "+" << c;
  }
  // Identity keeps the bytes; pad 114.5 rounds away from zero.
  const Image rnd = random_image(6, 5, 3, 7);
  Batch b;
  b.add(rnd, 6, 5, 0, 1);
  PreprocessParams p = raw_params(6, 6);
  p.dtype = DType::U8;
  p.out_rgb = false;
  p.pad = 114.5f;
  const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
  for (int c = 0; c < 3; ++c) {
    for (int x = 0; x < 6; ++x) EXPECT_EQ(v[c * 36 + x], 115.f);
    for (int y = 1; y < 6; ++y)
      for (int x = 0; x < 6; ++x) EXPECT_EQ(v[c * 36 + y * 6 + x], rnd.at(x, y - 1, c));
  }
}

TEST(PreprocessCpu, ConstantImageStaysConstant) {
  const int sizes[][4] = {{640, 480, 224, 168}, {33, 17, 100, 51}, {5, 300, 3, 7},
                          {1, 1, 9, 4},         {1000, 1, 7, 3},   {13, 13, 13, 13}};
  for (int channels : {1, 3})
    for (Interp interp : kInterps)
      for (auto& s : sizes) {
        Batch b;
        b.add(constant_image(s[0], s[1], channels, 201), s[2], s[3]);
        PreprocessParams p = raw_params(s[2], s[3]);
        p.src_channels = channels;
        p.interp = interp;
        for (float v : decode_nchw(run_cpu(b, p).data(), 0, p))
          ASSERT_NEAR(v, 201.f, 1e-4) << s[0] << "x" << s[1] << "->" << s[2] << "x" << s[3];
      }
}

TEST(PreprocessCpu, OnePixelSourceFillsTheOutput) {
  Image im = constant_image(1, 1, 3, 0);
  im.px = {1, 2, 3};
  for (Interp interp : kInterps) {
    Batch b;
    b.add(im, 5, 3);
    PreprocessParams p = raw_params(5, 3, 3, interp);
    const auto v = decode_nchw(run_cpu(b, p).data(), 0, p);
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 15; ++i) EXPECT_EQ(v[c * 15 + i], float(3 - c));
  }
}

// Odd sizes, extreme aspect ratios, up- and downscaling, crops and borders against the
// direct double-precision reference (0..255 scale; float32 tap centres differ from double
// ones by ~1e-5 pixel).
TEST(PreprocessCpu, MatchesDirectPilReference) {
  struct Case {
    int w, h, c, rw, rh, ox, oy, out_w, out_h;
  };
  const Case cases[] = {
      {1000, 1, 3, 7, 3, 0, 0, 7, 3},
      {1, 1000, 1, 3, 7, 0, 0, 3, 7},
      {17, 13, 3, 9, 7, 0, 0, 9, 7},
      {9, 7, 3, 23, 19, 0, 0, 23, 19},
      {640, 480, 3, 299, 224, -37, 0, 224, 224},
      {31, 5, 1, 11, 40, 3, -4, 17, 33},
      {3, 2, 3, 3, 2, 1, 1, 5, 4},
      {101, 77, 3, 50, 38, -1, 2, 49, 41},
      {560, 25, 3, 224, 10, 0, 0, 224, 10},  // 5:2, box edges exactly on pixel centres
      {20, 700, 3, 9, 5, 0, 0, 9, 5},        // more than 64 vertical taps
  };
  for (const Case& k : cases)
    for (Interp interp : kInterps)
      for (int out_c : {1, 3}) {
        if (k.c == 1 && out_c == 1 && interp != Interp::Bilinear) continue;
        Batch b;
        b.add(random_image(k.w, k.h, k.c, uint32_t(k.w * 31 + k.h)), k.rw, k.rh, k.ox, k.oy);
        PreprocessParams p = raw_params(k.out_w, k.out_h, out_c, interp);
        p.src_channels = k.c;
        p.pad = 17.f;
        const auto got = decode_nchw(run_cpu(b, p).data(), 0, p);
        const auto want = reference_raw(b.images[0], b.descs[0], p);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-2)  // float vs double tap positions
              << k.w << "x" << k.h << "->" << k.rw << "x" << k.rh << " interp " << int(interp)
              << " out_c " << out_c << " at " << i;
      }
}

TEST(PreprocessCpu, MixedSizeBatchWritesEachImageAtItsSlot) {
  Batch b;
  b.add(random_image(40, 30, 3, 8), 16, 12, 0, 2);
  b.add(random_image(7, 9, 3, 9), 16, 16);
  b.add(random_image(1, 1, 3, 10), 16, 16);
  PreprocessParams p = raw_params(16, 16);
  p.layout = Layout::NHWC;
  p.dtype = DType::F16;
  const auto out = run_cpu(b, p);
  for (int i = 0; i < b.n(); ++i) {
    const auto got = decode_nchw(out.data(), i, p);
    const auto want = reference_raw(b.images[i], b.descs[i], p);
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 0.13) << i << " " << k;
  }
}

TEST(PreprocessCpu, EmptySourceOrResizedSizeIsAllPad) {
  Batch b;
  b.add(random_image(4, 4, 3, 11), 0, 4);
  b.add(random_image(4, 4, 3, 11), 4, 4, 10, 0);  // placed entirely outside
  PreprocessParams p = raw_params(3, 3);
  p.pad = 9.f;
  const auto out = run_cpu(b, p);
  for (int i = 0; i < 2; ++i)
    for (float v : decode_nchw(out.data(), i, p)) EXPECT_EQ(v, 9.f);
}

TEST(PreprocessCpu, RejectsInvalidParams) {
  Batch b;
  b.add(random_image(2, 2, 3, 12), 2, 2);
  PreprocessParams p = raw_params(2, 2);
  p.out_channels = 2;
  EXPECT_THROW(run_cpu(b, p), std::invalid_argument);
  p = raw_params(0, 2);
  EXPECT_THROW(run_cpu(b, p), std::invalid_argument);
  p = raw_params(2, 2);
  p.std[1] = 0.f;
  EXPECT_THROW(run_cpu(b, p), std::invalid_argument);
}

}  // namespace
}  // namespace imgpipe::kernels::test
