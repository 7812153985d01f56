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

/// numpy broadcasting of two shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t k = 0; k < r; ++k) {
    const int64_t da = k + a.size() >= r ? a[k + a.size() - r] : 1;
    const int64_t db = k + b.size() >= r ? b[k + b.size() - r] : 1;
    if (da != db && da != 1 && db != 1)
      unsupported("shapes " + to_string(a) + " and " + to_string(b) + " do not broadcast");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

SliceGeometry transpose_geometry(const Shape& x, std::vector<int64_t> perm) {
  const size_t r = x.size();
  if (perm.empty())
    for (size_t k = r; k-- > 0;) perm.push_back(static_cast<int64_t>(k));
  Shape strides(r, 1);
  for (size_t k = r; k-- > 1;) strides[k - 1] = strides[k] * x[k];
  SliceGeometry g{Shape(r, 0), Shape(r, 1), Shape(r), Shape(r)};
  for (size_t k = 0; k < r; ++k) {
    const int64_t a = norm_axis(perm[k], r);
    g.shape[k] = x[a];
    g.in_strides[k] = strides[a];
  }
  return g;
}

SliceGeometry slice_geometry(const Shape& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                             std::vector<int64_t> axes, std::vector<int64_t> steps) {
  const size_t r = x.size();
  if (axes.empty())
    for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    unsupported("Slice starts, ends, axes and steps differ in length");
  SliceGeometry g{Shape(r, 0), Shape(r, 1), x, Shape(r, 1)};
  for (size_t k = r; k-- > 1;) g.in_strides[k - 1] = g.in_strides[k] * x[k];
  for (size_t k = 0; k < axes.size(); ++k) {
    const int64_t a = norm_axis(axes[k], r), d = x[a], st = steps[k];
    if (st == 0) unsupported("Slice step 0");
    int64_t s = starts[k], e = ends[k];
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
      g.shape[a] = e > s ? (e - s + st - 1) / st : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
      g.shape[a] = s > e ? (s - e - st - 1) / -st : 0;
    }
    g.begin[a] = s;
    g.step[a] = st;
  }
  return g;
}

}  // namespace imgpipe::infer
