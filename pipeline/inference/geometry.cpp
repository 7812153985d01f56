#include "geometry.h"

#include <algorithm>
#include <string>

namespace imgpipe::infer {
namespace {

[[noreturn]] void unsupported(const std::string& what) { throw UnsupportedModel(what); }

}  // namespace

int64_t norm_axis(int64_t axis, size_t rank, bool allow_end) {
  const int64_t r = static_cast<int64_t>(rank) + (allow_end ? 1 : 0);
  if (axis < -r || axis >= r) unsupported("axis " + std::to_string(axis) + " out of range");
  return axis < 0 ? axis + r : axis;
}

std::vector<Window> windows(const Node& n, const Shape& x, const Shape& kernel, bool ceil_mode) {
  const size_t sp = kernel.size();
  if (x.size() != sp + 2) unsupported("expects rank " + std::to_string(sp + 2) + " input, got " + to_string(x));
  const auto strides = attr_ints(n, "strides", Shape(sp, 1));
  const auto dils = attr_ints(n, "dilations", Shape(sp, 1));
  const auto pads = attr_ints(n, "pads", Shape(2 * sp, 0));
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  if (strides.size() != sp || dils.size() != sp || pads.size() != 2 * sp)
    unsupported("strides/dilations/pads do not match the kernel rank");
  std::vector<Window> w(sp);
  for (size_t d = 0; d < sp; ++d) {
    Window& wd = w[d];
    wd.k = kernel[d];
    wd.stride = strides[d];
    wd.dil = dils[d];
    const int64_t in = x[2 + d];
    const int64_t ext = (wd.k - 1) * wd.dil + 1;
    if (auto_pad == "NOTSET") {
      wd.pad_begin = pads[d];
      wd.pad_end = pads[sp + d];
    } else if (auto_pad == "VALID") {
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t out = (in + wd.stride - 1) / wd.stride;
      const int64_t total = std::max<int64_t>(0, (out - 1) * wd.stride + ext - in);
      wd.pad_begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      wd.pad_end = total - wd.pad_begin;
    } else {
      unsupported("auto_pad " + auto_pad);
    }
    const int64_t span = in + wd.pad_begin + wd.pad_end - ext;
    if (span < 0) unsupported("window larger than the padded input " + to_string(x));
    if (ceil_mode) {
      wd.out = (span + wd.stride - 1) / wd.stride + 1;
      if ((wd.out - 1) * wd.stride >= in + wd.pad_begin) --wd.out;  // window must start inside
    } else {
      wd.out = span / wd.stride + 1;
    }
  }
  return w;
}

void broadcast_strides(const Shape& s, const Shape& out, int64_t* strides) {
  const size_t r = out.size();
  int64_t st = 1;
  for (size_t k = r; k-- > 0;) {
    const int64_t d = k + s.size() >= r ? s[k + s.size() - r] : 1;
    strides[k] = d == 1 ? 0 : st;
    st *= d;
  }
}

}  // namespace imgpipe::infer
