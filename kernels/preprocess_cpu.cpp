#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "preprocess.h"
#include "preprocess_filter.h"

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

// Taps of the visible resized positions r0 .. r0+n-1 along one axis, weights normalised.
struct AxisTaps {
  std::vector<int32_t> start, count;
  std::vector<float> weights;  // `stride` floats per position, the first `count` used
  int32_t stride = 0;
  int32_t first = 0, end = 0;  // union of the source ranges

  void compute(const detail::AxisFilter& f, int32_t r0, int32_t n) {
    start.resize(n);
    count.resize(n);
    stride = 1;
    first = f.in_size;
    end = 0;
    for (int32_t i = 0; i < n; ++i) {
      const detail::TapRange t = detail::tap_range(f, r0 + i);
      start[i] = t.start;
      count[i] = t.count;
      stride = std::max(stride, t.count);
      first = std::min(first, t.start);
      end = std::max(end, t.start + t.count);
    }
    weights.assign(size_t(n) * stride, 0.f);
    for (int32_t i = 0; i < n; ++i) {
      const detail::TapRange t = detail::tap_range(f, r0 + i);
      const float ww = detail::tap_weight_sum(f, t);
      float* w = &weights[size_t(i) * stride];
      for (int32_t k = 0; k < t.count; ++k) w[k] = detail::normalized_tap_weight(f, t, ww, k);
    }
  }
};

// Writes converted values into one output image of dtype/layout p.
class OutputWriter {
 public:
  OutputWriter(const PreprocessParams& p, void* image)
      : p_(p), image_(image), plane_(size_t(p.out_w) * size_t(p.out_h)) {}

  // v: n values of output channel c for pixels (x, y) .. (x + n - 1, y), 0..255 scale.
  void put_row(int32_t c, int32_t x, int32_t y, const float* v, int32_t n) const {
    const size_t pix = size_t(y) * p_.out_w + x;
    const bool nchw = p_.layout == Layout::NCHW;
    const size_t first = nchw ? c * plane_ + pix : pix * p_.out_channels + c;
    const size_t step = nchw ? 1 : p_.out_channels;
    switch (p_.dtype) {
      case DType::F32:
        if (nchw)
          store<float>(first, 1, v, n, [&](float a) { return detail::normalize(p_, c, a); });
        else
          store<float>(first, step, v, n, [&](float a) { return detail::normalize(p_, c, a); });
        break;
      case DType::F16:
        store<uint16_t>(first, step, v, n, [&](float a) {
          return detail::float_to_half_bits(detail::normalize(p_, c, a));
        });
        break;
      case DType::U8:
        store<uint8_t>(first, step, v, n, [](float a) { return detail::to_u8(a); });
        break;
    }
  }

  // Fills the whole image with the pad value.
  void fill_pad() const {
    const std::vector<float> row(size_t(p_.out_w), p_.pad);
    for (int32_t c = 0; c < p_.out_channels; ++c)
      for (int32_t y = 0; y < p_.out_h; ++y) put_row(c, 0, y, row.data(), p_.out_w);
  }

 private:
  template <class T, class F>
  void store(size_t first, size_t step, const float* v, int32_t n, F convert) const {
    T* dst = static_cast<T*>(image_) + first;
    for (int32_t j = 0; j < n; ++j) dst[size_t(j) * step] = convert(v[j]);
  }

  const PreprocessParams& p_;
  void* image_;
  size_t plane_;
};

// Scratch reused across the images of one call.
struct Scratch {
  AxisTaps tx, ty;
  std::vector<float> rows;  // horizontally resampled source rows: (ty.end - ty.first) x vw x SC
  std::vector<float> line;  // one vertically resampled output row: vw x SC
  std::vector<float> chan;  // one output channel of that row: vw
};

template <int SC>
void horizontal_pass(const uint8_t* img, int64_t pitch, const AxisTaps& tx, const AxisTaps& ty,
                     float* rows) {
  const int32_t vw = int32_t(tx.start.size());
  for (int32_t r = ty.first; r < ty.end; ++r) {
    const uint8_t* srow = img + int64_t(r) * pitch;
    float* out = rows + size_t(r - ty.first) * vw * SC;
    for (int32_t j = 0; j < vw; ++j) {
      const uint8_t* s = srow + size_t(tx.start[j]) * SC;
      const float* w = &tx.weights[size_t(j) * tx.stride];
      float acc[SC] = {};
      for (int32_t k = 0; k < tx.count[j]; ++k)
        for (int c = 0; c < SC; ++c) acc[c] += w[k] * float(s[k * SC + c]);
      for (int c = 0; c < SC; ++c) out[size_t(j) * SC + c] = acc[c];
    }
  }
}

template <int SC>
void resample_image(const uint8_t* h_src, const ImageDesc& d, const PreprocessParams& p, Scratch& s,
                    OutputWriter& out) {
  // Visible window of the output, in output coordinates.
  const int32_t x0 = std::max(0, d.offset_x), x1 = std::min(p.out_w, d.offset_x + d.resized_w);
  const int32_t y0 = std::max(0, d.offset_y), y1 = std::min(p.out_h, d.offset_y + d.resized_h);
  const bool has_source = d.width > 0 && d.height > 0 && d.resized_w > 0 && d.resized_h > 0;
  if (!has_source || x0 >= x1 || y0 >= y1) {
    out.fill_pad();
    return;
  }
  if (x0 > 0 || y0 > 0 || x1 < p.out_w || y1 < p.out_h) out.fill_pad();

  const int32_t vw = x1 - x0;
  s.tx.compute(detail::make_axis_filter(d.width, d.resized_w, p.interp), x0 - d.offset_x, vw);
  s.ty.compute(detail::make_axis_filter(d.height, d.resized_h, p.interp), y0 - d.offset_y, y1 - y0);
  s.rows.resize(size_t(s.ty.end - s.ty.first) * vw * SC);
  s.line.resize(size_t(vw) * SC);
  s.chan.resize(size_t(vw));
  horizontal_pass<SC>(h_src + d.offset, d.pitch, s.tx, s.ty, s.rows.data());

  const size_t row_len = size_t(vw) * SC;
  for (int32_t y = y0; y < y1; ++y) {
    const int32_t i = y - y0;
    const float* w = &s.ty.weights[size_t(i) * s.ty.stride];
    float* line = s.line.data();
    std::fill(line, line + row_len, 0.f);
    for (int32_t k = 0; k < s.ty.count[i]; ++k) {
      const float* row = s.rows.data() + size_t(s.ty.start[i] + k - s.ty.first) * row_len;
      const float wk = w[k];
      for (size_t m = 0; m < row_len; ++m) line[m] += wk * row[m];
    }
    float* chan = s.chan.data();
    for (int32_t c = 0; c < p.out_channels; ++c) {
      if (SC == 1) {
        out.put_row(c, x0, y, line, vw);
        continue;
      }
      if (p.out_channels == 1) {
        for (int32_t j = 0; j < vw; ++j) {
          const float* px = line + size_t(j) * SC;
          detail::to_out_channels(px, SC, 1, p.out_rgb, &chan[j]);
        }
      } else {
        const int32_t sc = p.out_rgb ? SC - 1 - c : c;  // BGR source
        for (int32_t j = 0; j < vw; ++j) chan[j] = line[size_t(j) * SC + sc];
      }
      out.put_row(c, x0, y, chan, vw);
    }
  }
}

}  // namespace

void preprocess_cpu(const uint8_t* h_src, const ImageDesc* descs, int n, const PreprocessParams& p,
                    void* h_out) {
  validate_params(p);
  const size_t image_bytes = output_image_bytes(p);
  Scratch scratch;
  for (int i = 0; i < n; ++i) {
    OutputWriter out(p, static_cast<uint8_t*>(h_out) + size_t(i) * image_bytes);
    if (p.src_channels == 3)
      resample_image<3>(h_src, descs[i], p, scratch, out);
    else
      resample_image<1>(h_src, descs[i], p, scratch, out);
  }
}

}  // namespace imgpipe::kernels
