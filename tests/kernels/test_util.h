#pragma once
// Helpers shared by the kernel tests: seeded images, a batch source buffer, output decoding
// and a direct (non-separable, double precision) PIL-semantics reference.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "preprocess.h"

namespace imgpipe::kernels::test {

/// One source image: channels-interleaved 8-bit pixels, rows `pitch` bytes apart.
struct Image {
  int32_t w = 0, h = 0, c = 3, pitch = 0;
  std::vector<uint8_t> px;
  uint8_t at(int32_t x, int32_t y, int32_t ch) const { return px[size_t(y) * pitch + x * c + ch]; }
};

inline Image random_image(int32_t w, int32_t h, int32_t c, uint32_t seed, int32_t extra_pitch = 3) {
  Image im{w, h, c, w * c + extra_pitch, {}};
  im.px.resize(size_t(im.pitch) * h);
  std::mt19937 rng(seed);
  for (auto& v : im.px) v = uint8_t(rng() & 0xff);
  return im;
}

inline Image constant_image(int32_t w, int32_t h, int32_t c, uint8_t value) {
  Image im{w, h, c, w * c, {}};
  im.px.assign(size_t(im.pitch) * h, value);
  return im;
}

/// Images packed into one source buffer (with a gap between them) plus their descriptors.
struct Batch {
  std::vector<uint8_t> src;
  std::vector<ImageDesc> descs;
  std::vector<Image> images;

  void add(const Image& im, int32_t resized_w, int32_t resized_h, int32_t offset_x = 0,
           int32_t offset_y = 0) {
    ImageDesc d;
    d.offset = int64_t(src.size()) + 5;
    d.width = im.w;
    d.height = im.h;
    d.pitch = im.pitch;
    d.resized_w = resized_w;
    d.resized_h = resized_h;
    d.offset_x = offset_x;
    d.offset_y = offset_y;
    src.resize(size_t(d.offset), 0xab);
    src.insert(src.end(), im.px.begin(), im.px.end());
    descs.push_back(d);
    images.push_back(im);
  }
  int n() const { return int(descs.size()); }
};

inline float half_to_float(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v;
  if (e == 0)
    v = std::ldexp(double(m), -24);
  else if (e == 31)
    v = m ? NAN : INFINITY;
  else
    v = std::ldexp(double(m | 0x400), e - 25);
  return float(s ? -v : v);
}

/// Output values of image i as floats, always in NCHW order (F16 decoded, U8 as is).
inline std::vector<float> decode_nchw(const void* out, int i, const PreprocessParams& p) {
  const size_t plane = size_t(p.out_w) * p.out_h, count = plane * p.out_channels;
  const size_t bytes = output_image_bytes(p);
  const uint8_t* base = static_cast<const uint8_t*>(out) + size_t(i) * bytes;
  std::vector<float> v(count);
  for (int c = 0; c < p.out_channels; ++c)
    for (size_t pix = 0; pix < plane; ++pix) {
      const size_t src = p.layout == Layout::NCHW ? c * plane + pix : pix * p.out_channels + c;
      float x = 0.f;
      if (p.dtype == DType::F32) {
        std::memcpy(&x, base + src * 4, 4);
      } else if (p.dtype == DType::F16) {
        uint16_t hb;
        std::memcpy(&hb, base + src * 2, 2);
        x = half_to_float(hb);
      } else {
        x = base[src];
      }
      v[c * plane + pix] = x;
    }
  return v;
}

/// Runs preprocess_cpu over a batch; returns the raw output bytes.
inline std::vector<uint8_t> run_cpu(const Batch& b, const PreprocessParams& p) {
  std::vector<uint8_t> out(output_image_bytes(p) * b.n(), 0xcd);
  preprocess_cpu(b.src.data(), b.descs.data(), b.n(), p, out.data());
  return out;
}

/// PIL ImagingResample taps of resized position r along an axis, in double precision.
inline std::vector<std::pair<int, double>> pil_taps(int in, int out, int r, Interp interp) {
  const double scale = double(in) / out;
  const double center = (r + 0.5) * scale;
  if (interp == Interp::Nearest) return {{std::min(int(std::floor(center)), in - 1), 1.0}};
  const double fs = std::max(1.0, scale);
  const double support = (interp == Interp::Area ? 0.5 : 1.0) * fs;
  const int lo = std::max(0, int(std::floor(center - support + 0.5 - 1e-9)));
  const int hi = std::min(in, int(std::floor(center + support + 0.5 + 1e-9)) + 1);
  std::vector<std::pair<int, double>> t;
  double ww = 0;
  for (int i = lo; i < hi; ++i) {
    const double x = (i + 0.5 - center) / fs;
    double w;
    if (interp == Interp::Area)
      w = (x > -0.5 + 1e-9 && x <= 0.5 + 1e-9) ? 1.0 : 0.0;  // exact edges, despite rounding
    else
      w = std::max(0.0, 1.0 - std::fabs(x));
    t.push_back({i, w});
    ww += w;
  }
  for (auto& e : t) e.second /= ww;
  return t;
}

/// Direct 2-D reference of one image in NCHW order, unnormalised 0..255 values (the dtype,
/// scale, mean and std of p are not applied; pad appears as p.pad).
inline std::vector<double> reference_raw(const Image& im, const ImageDesc& d,
                                         const PreprocessParams& p) {
  const size_t plane = size_t(p.out_w) * p.out_h;
  std::vector<double> v(plane * p.out_channels, p.pad);
  for (int y = 0; y < p.out_h; ++y)
    for (int x = 0; x < p.out_w; ++x) {
      const int rx = x - d.offset_x, ry = y - d.offset_y;
      if (rx < 0 || ry < 0 || rx >= d.resized_w || ry >= d.resized_h) continue;
      double s[3] = {0, 0, 0};
      for (auto [sy, wy] : pil_taps(im.h, d.resized_h, ry, p.interp))
        for (auto [sx, wx] : pil_taps(im.w, d.resized_w, rx, p.interp))
          for (int c = 0; c < im.c; ++c) s[c] += wy * wx * im.at(sx, sy, c);
      double o[3];
      if (im.c == 1) {
        o[0] = o[1] = o[2] = s[0];
      } else if (p.out_channels == 1) {
        o[0] = 0.299 * s[2] + 0.587 * s[1] + 0.114 * s[0];
      } else if (p.out_rgb) {
        o[0] = s[2], o[1] = s[1], o[2] = s[0];
      } else {
        o[0] = s[0], o[1] = s[1], o[2] = s[2];
      }
      for (int c = 0; c < p.out_channels; ++c) v[c * plane + size_t(y) * p.out_w + x] = o[c];
    }
  return v;
}

}  // namespace imgpipe::kernels::test
