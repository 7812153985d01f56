// CPU implementations of the supported ONNX ops (fp32 arithmetic).
// Conv runs on oneDNN (onednn.h) where it has an optimized kernel, else as im2col + GEMM
// (1x1 stride-1 without im2col), depthwise by direct loops. GEMMs are oneDNN's sgemm;
// oneDNN's OpenMP threads also run parallel_for (parallel.h) and the elementwise loops.
// An image's results never depend on the batch it runs in: every convolution and GEMM
// call has the same shape whatever the batch (one image, or a fixed tile of rows).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "geometry.h"
#include "onednn.h"
#include "ops.h"
#include "parallel.h"

namespace imgpipe::infer {
namespace {

[[noreturn]] void unsupported(const std::string& what) { throw UnsupportedModel(what); }

/// parallel_for over n items of about `cost` floats of memory traffic each: ranges of at
/// least 16K floats, so small loops stay on the calling thread.
void parallel_items(int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_for(n, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(cost, 1)), fn);
}

void copy_floats(float* dst, const float* src, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// ---------------------------------------------------------------- elementwise -------
class UnaryOp : public Op {
 public:
  enum class Kind { Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Sqrt, Erf, Neg, Not, Copy };
  UnaryOp(Kind kind, const Node& n, int opset) : kind_(kind), opset_(opset) {
    if (kind == Kind::LeakyRelu) alpha_ = attr_float(n, "alpha", 0.01f);
    if (kind == Kind::HardSigmoid) {
      alpha_ = attr_float(n, "alpha", 0.2f);
      beta_ = attr_float(n, "beta", 0.5f);
    }
    if (kind == Kind::Clip) {
      lo_ = attr_float(n, "min", -std::numeric_limits<float>::infinity());
      hi_ = attr_float(n, "max", std::numeric_limits<float>::infinity());
    }
  }
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (kind_ == Kind::Clip) {  // opset >= 11: bounds as optional constant inputs
      for (size_t k = 1; k < in.size() && k < 3; ++k) {
        if (in[k].shape.empty() && !in[k].constant) continue;  // left out
        if (!in[k].constant) unsupported("Clip bounds must be constant");
        (k == 1 ? lo_ : hi_) = static_cast<float>(in[k].constant->at(0));
      }
    }
    return in[0].shape;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const float* x = a.in[0];
    float* y = a.out;
    const int64_t n = numel(*a.out_shape);
    const float lo = lo_, hi = hi_, alpha = alpha_, beta = beta_;
    switch (kind_) {
      case Kind::Relu:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
      case Kind::LeakyRelu:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] >= 0.f ? x[i] : alpha * x[i];
        break;
      case Kind::Clip:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], lo), hi);
        break;
      case Kind::Sigmoid:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
        break;
      case Kind::HardSigmoid:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = std::min(1.f, std::max(0.f, alpha * x[i] + beta));
        break;
      case Kind::HardSwish:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i)
          y[i] = x[i] * std::min(1.f, std::max(0.f, x[i] / 6.f + 0.5f));
        break;
      case Kind::Tanh:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
        break;
      case Kind::Sqrt:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = std::sqrt(x[i]);
        break;
      case Kind::Erf:
#pragma omp parallel for
        for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
        break;
      case Kind::Neg:
        for (int64_t i = 0; i < n; ++i) y[i] = -x[i];
        break;
      case Kind::Not:
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] == 0.f ? 1.f : 0.f;
        break;
      case Kind::Copy:
        copy_floats(y, x, n);
        break;
    }
    (void)opset_;
  }

 private:
  Kind kind_;
  int opset_;
  float alpha_ = 0.f, beta_ = 0.f;
  float lo_ = -std::numeric_limits<float>::infinity();
  float hi_ = std::numeric_limits<float>::infinity();
};

class BinaryOp : public Op {
 public:
  enum class Kind { Add, Sub, Mul, Div, Pow, Equal, Mod };
  explicit BinaryOp(Kind kind, bool fmod = false) : kind_(kind), fmod_(fmod) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() != 2) unsupported("expects 2 inputs");
    const Shape out = broadcast_shapes(in[0].shape, in[1].shape);
    // Channels-last when each input is the output's shape or constant over H and W (a
    // squeeze-and-excitation scale [N,C,1,1], a per-channel bias, a scalar): then the inner
    // loop stays contiguous in either layout.
    channels_last_ok_ = out.size() == 4;
    for (const ValueInfo& v : in) {
      const Shape& s = v.shape;
      const bool flat_hw = numel(s) == 1 || (s.size() >= 2 && s[s.size() - 1] == 1 && s[s.size() - 2] == 1);
      channels_last_ok_ = channels_last_ok_ && (s == out || (s.size() <= 4 && flat_hw));
    }
    nhwc_in_[0] = nhwc_in_[1] = nhwc_out_ = false;
    return out;
  }
  bool takes_channels_last() const override { return channels_last_ok_; }
  void set_channels_last(const std::vector<bool>& inputs, bool output) override {
    nhwc_in_[0] = inputs.at(0);
    nhwc_in_[1] = inputs.at(1);
    nhwc_out_ = output;
  }
  void run(const OpArgs& a) const override {
    const Shape& out = *a.out_shape;
    const Shape& sa = a.in_shapes[0];
    const Shape& sb = a.in_shapes[1];
    const float* pa = a.in[0];
    const float* pb = a.in[1];
    float* y = a.out;
    const int64_t n = numel(out);
    if (sa == sb && nhwc_in_[0] == nhwc_out_ && nhwc_in_[1] == nhwc_out_) {
      parallel_items(n, 1, [&](int64_t i0, int64_t i1) { apply(pa + i0, 1, pb + i0, 1, y + i0, i1 - i0); });
      return;
    }
    const size_t r = out.size();
    if (r > 8) unsupported("rank above 8");
    // Walk the output in its memory order: dims[] and each input's strides in that order.
    int64_t dims[8], st_a[8], st_b[8];
    strides_in(sa, nhwc_in_[0], out, st_a);
    strides_in(sb, nhwc_in_[1], out, st_b);
    std::copy(out.begin(), out.end(), dims);
    if (nhwc_out_)  // N, C, H, W -> N, H, W, C
      for (int64_t* v : {dims, st_a, st_b}) std::rotate(v + 1, v + 2, v + 4);
    const int64_t inner = r ? dims[r - 1] : 1;
    const int64_t outer = inner ? n / inner : 0;
    parallel_items(outer, inner, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        int64_t rem = o, off_a = 0, off_b = 0;
        for (size_t k = r - 1; k-- > 0;) {
          const int64_t idx = rem % dims[k];
          rem /= dims[k];
          off_a += idx * st_a[k];
          off_b += idx * st_b[k];
        }
        apply(pa + off_a, st_a[r - 1], pb + off_b, st_b[r - 1], y + o * inner, inner);
      }
    });
  }

 private:
  void apply(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) const {
    switch (kind_) {
      case Kind::Add: for (int64_t i = 0; i < n; ++i) y[i] = a[i * sa] + b[i * sb]; break;
      case Kind::Sub: for (int64_t i = 0; i < n; ++i) y[i] = a[i * sa] - b[i * sb]; break;
      case Kind::Mul: for (int64_t i = 0; i < n; ++i) y[i] = a[i * sa] * b[i * sb]; break;
      case Kind::Div: for (int64_t i = 0; i < n; ++i) y[i] = a[i * sa] / b[i * sb]; break;
      case Kind::Pow:
        for (int64_t i = 0; i < n; ++i) {
          const float e = b[i * sb];
          y[i] = e == 2.f ? a[i * sa] * a[i * sa] : std::pow(a[i * sa], e);
        }
        break;
      case Kind::Equal: for (int64_t i = 0; i < n; ++i) y[i] = a[i * sa] == b[i * sb] ? 1.f : 0.f; break;
      case Kind::Mod:
        for (int64_t i = 0; i < n; ++i) {  // fmod = 0: the sign of the divisor, as Python's %
          const float d = b[i * sb];
          float r = std::fmod(a[i * sa], d);
          if (!fmod_ && r != 0.f && (r < 0.f) != (d < 0.f)) r += d;
          y[i] = r;
        }
        break;
    }
  }
  /// Strides of an input of shape s over the output's logical (NCHW) dims, 0 where it is
  /// broadcast; an NHWC input (4-D, the output's rank) is stored N, H, W, C.
  static void strides_in(const Shape& s, bool nhwc, const Shape& out, int64_t* st) {
    if (!nhwc) return broadcast_strides(s, out, st);
    const int64_t logical[4] = {s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]};
    for (int k = 0; k < 4; ++k) st[k] = s[k] == out[k] ? logical[k] : 0;
  }
  Kind kind_;
  bool fmod_;
  bool channels_last_ok_ = false, nhwc_in_[2] = {false, false}, nhwc_out_ = false;
};

void apply_activation(float* y, int64_t n, const FusedActivation& act) {
  if (act.kind == FusedActivation::Kind::Relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.f ? y[i] : 0.f;
  } else if (act.kind == FusedActivation::Kind::Clip) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], act.min), act.max);
  } else if (act.kind == FusedActivation::Kind::Swish) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] / (1.f + std::exp(-y[i]));
  }
}


// ---------------------------------------------------------------- Conv -------------
/// Multiply-adds per image from which a Conv runs on oneDNN's convolution: below it the
/// fixed cost of its call and per-thread scratchpad outweigh the work, and im2col + GEMM
/// is as fast.
constexpr int64_t kOnednnMinMacs = int64_t{1} << 18;

class ConvOp : public Op {
 public:
  explicit ConvOp(const Node& n) : node_(n), group_(attr_int(n, "group", 1)), act_(n.fused) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() < 2) unsupported("expects X and W");
    const Shape& x = in[0].shape;
    const Shape& w = in[1].shape;
    if (x.size() != 4 || w.size() != 4) unsupported("only 2-D convolution (rank-4 X and W) is supported");
    const Shape kernel = attr_ints(node_, "kernel_shape", {w[2], w[3]});
    if (kernel != Shape{w[2], w[3]}) unsupported("kernel_shape does not match W");
    c_ = x[1];
    m_ = w[0];
    if (group_ <= 0 || c_ % group_ || m_ % group_ || w[1] != c_ / group_)
      unsupported("channels " + std::to_string(c_) + ", W " + to_string(w) + " and group " +
                  std::to_string(group_) + " do not match");
    has_bias_ = in.size() > 2 && !in[2].shape.empty();
    if (has_bias_ && numel(in[2].shape) != m_) unsupported("bias size does not match");
    win_ = windows(node_, x, kernel, false);
    depthwise_ = group_ == c_ && w[1] == 1 && group_ > 1;
    pointwise_ = kernel == Shape{1, 1} && win_[0].stride == 1 && win_[1].stride == 1 &&
                 win_[0].pad_begin == 0 && win_[0].pad_end == 0 && win_[1].pad_begin == 0 &&
                 win_[1].pad_end == 0;
    const int64_t k = (c_ / group_) * kernel[0] * kernel[1], p = win_[0].out * win_[1].out;
    ws_ = depthwise_ || pointwise_ ? 0 : static_cast<size_t>(k * p);  // columns of one image
    dnnl_params_.batch = x[0];
    dnnl_params_.c = c_;
    dnnl_params_.h = x[2];
    dnnl_params_.w = x[3];
    dnnl_params_.m = m_;
    dnnl_params_.oh = win_[0].out;
    dnnl_params_.ow = win_[1].out;
    dnnl_params_.group = group_;
    dnnl_params_.kh = kernel[0];
    dnnl_params_.kw = kernel[1];
    for (int d = 0; d < 2; ++d) {
      dnnl_params_.stride[d] = win_[d].stride;
      dnnl_params_.dilation[d] = win_[d].dil;
      dnnl_params_.pad_begin[d] = win_[d].pad_begin;
      dnnl_params_.pad_end[d] = win_[d].pad_end;
    }
    dnnl_params_.bias = has_bias_;
    // oneDNN packs the weights once at prepare, so they must be constants
    use_dnnl_ = in[1].constant && (!has_bias_ || in[2].constant) && m_ * p * k >= kOnednnMinMacs;
    prepacked_ = in[1].constant ? in[1].constant->packed : nullptr;
    weight_floats_ = static_cast<size_t>(numel(w));
    make_dnnl();
    return {x[0], m_, win_[0].out, win_[1].out};
  }
  size_t workspace_floats() const override { return dnnl_ ? dnnl_->workspace_floats() : ws_; }
  bool fuse_residual(const FusedActivation& act) override {
    if (residual_ || act_.kind != FusedActivation::Kind::None) return false;
    return refuse_if_off_onednn([&] {
      residual_ = true;
      act_ = act;
    });
  }
  bool fuse_activation(const FusedActivation& act) override {
    if (act_.kind != FusedActivation::Kind::None) return false;
    return refuse_if_off_onednn([&] { act_ = act; });
  }
  bool takes_channels_last() const override { return dnnl_ != nullptr; }
  /// The residual, image by image read before the output is written, when it is in the
  /// output's layout (the direct depthwise loops add it last: not those).
  int in_place_input() const override {
    if (!residual_) return -1;
    if (dnnl_) return dnnl_params_.residual_nhwc == dnnl_params_.dst_nhwc ? 3 : -1;
    return depthwise_ ? -1 : 3;
  }
  void set_channels_last(const std::vector<bool>& inputs, bool output) override {
    dnnl_params_.src_nhwc = inputs.at(0);
    dnnl_params_.residual_nhwc = residual_ && inputs.at(3);
    dnnl_params_.dst_nhwc = output;
    make_dnnl();
    if (!dnnl_) throw std::logic_error("Conv: oneDNN refused NHWC layouts it took before");
  }
  /// oneDNN's layout of the weights, packed at prepare unless they were at load (in this
  /// very layout). Weights packed at load that the im2col path must read go back to OIHW.
  size_t packed_floats(size_t i) const override {
    if (i != 1 || (!dnnl_ && !prepacked_) || (dnnl_ && prepacked_ && dnnl_->reads(*prepacked_))) return 0;
    return dnnl_ ? dnnl_->packed_weight_floats() : weight_floats_;
  }
  void pack(size_t i, const float* src, const PackedLayout* from, float* dst) const override {
    if (i != 1) return;
    if (dnnl_) dnnl_->pack_weights(src, from, dst);
    else if (from) unpack_weights(*from, src, dst);
  }
  std::shared_ptr<const PackedLayout> packed_layout(size_t i) const override {
    return dnnl_ && i == 1 ? dnnl_->weights_layout() : nullptr;
  }

  void run(const OpArgs& a) const override {
    const Shape& xs = a.in_shapes[0];
    const int64_t batch = xs[0], h = xs[2], wd = xs[3];
    const float* x = a.in[0];
    const float* w = a.in[1];
    const float* bias = has_bias_ ? a.in[2] : nullptr;
    const float* res = residual_ ? a.in[3] : nullptr;
    float* y = a.out;
    if (dnnl_) {
      dnnl_->run(x, w, bias, res, y, batch, a.workspace);
      return;
    }
    if (depthwise_) {
      run_depthwise(x, w, bias, res, y, batch, h, wd);
      return;
    }
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t g = 0; g < group_; ++g) gemm_one(x, w, bias, res, y, b, g, h, wd, a.workspace);
  }

 private:
  /// The oneDNN convolution for the current epilogue and layouts, if it has a kernel.
  void make_dnnl() {
    dnnl_params_.residual = residual_;
    dnnl_params_.act = act_;
    dnnl_ = use_dnnl_ ? OnednnConv::create(dnnl_params_) : nullptr;
  }
  /// Applies a fusion unless it takes the Conv off oneDNN (an epilogue it has no kernel
  /// for): then the Conv stays as it was and the fusion is refused.
  template <class Change>
  bool refuse_if_off_onednn(Change change) {
    const bool residual = residual_;
    const FusedActivation act = act_;
    const bool had = dnnl_ != nullptr;
    change();
    make_dnnl();
    if (dnnl_ || !had) return true;
    residual_ = residual;
    act_ = act;
    make_dnnl();
    return false;
  }

  /// One image, one group: the GEMM writes y directly. The bias (plus the residual) is
  /// put in y first and the GEMM accumulates onto it (beta 1), which costs what
  /// a beta-0 clearing pass would and saves a pass over the output.
  void gemm_one(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t b,
                int64_t g, int64_t h, int64_t wd, float* ws) const {
    const int64_t p = win_[0].out * win_[1].out, cg = c_ / group_, mg = m_ / group_;
    const int64_t k = cg * win_[0].k * win_[1].k;
    const float* xg = x + (b * c_ + g * cg) * h * wd;
    const float* col = xg;
    if (!pointwise_) {
      parallel_items(cg, win_[0].k * win_[1].k * p,
                     [&](int64_t c0, int64_t c1) { im2col(xg, c0, c1, h, wd, ws, p); });
      col = ws;
    }
    float* yg = y + (b * m_ + g * mg) * p;
    if (res || bias) {
      const float* rg = res ? res + (b * m_ + g * mg) * p : nullptr;
      parallel_items(mg, p, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
          const float b0 = bias ? bias[g * mg + m] : 0.f;
          float* row = yg + m * p;
          if (rg)
            for (int64_t i = 0; i < p; ++i) row[i] = rg[m * p + i] + b0;
          else
            std::fill(row, row + p, b0);
        }
      });
    }
    sgemm(false, false, mg, p, k, 1.f, w + g * mg * k, k, col, p, bias || res ? 1.f : 0.f, yg, p);
    if (act_.kind != FusedActivation::Kind::None)
      parallel_items(mg, p, [&](int64_t m0, int64_t m1) { apply_activation(yg + m0 * p, (m1 - m0) * p, act_); });
  }

  /// Columns of one image for channels [c0, c1): row (c, i, j) holds the input under
  /// kernel tap (i, j) of channel c for every output pixel; rows are ld floats apart.
  void im2col(const float* x, int64_t c0, int64_t c1, int64_t h, int64_t w, float* col, int64_t ld) const {
    const Window &wy = win_[0], &wx = win_[1];
    const int64_t oh = wy.out, ow = wx.out;
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t i = 0; i < wy.k; ++i) {
        for (int64_t j = 0; j < wx.k; ++j) {
          float* dst = col + ((c * wy.k + i) * wx.k + j) * ld;
          // output columns [lo, hi) read inside the row; the rest is padding
          const int64_t off = j * wx.dil - wx.pad_begin;
          const int64_t lo = std::min(ow, off >= 0 ? 0 : (-off + wx.stride - 1) / wx.stride);
          const int64_t hi = std::max(lo, std::min(ow, off >= w ? 0 : (w - 1 - off) / wx.stride + 1));
          for (int64_t oy = 0; oy < oh; ++oy) {
            const int64_t iy = oy * wy.stride - wy.pad_begin + i * wy.dil;
            float* d = dst + oy * ow;
            if (iy < 0 || iy >= h) {
              std::fill(d, d + ow, 0.f);
              continue;
            }
            const float* row = x + (c * h + iy) * w;
            std::fill(d, d + lo, 0.f);
            if (wx.stride == 1) {
              if (hi > lo) std::memcpy(d + lo, row + lo + off, static_cast<size_t>(hi - lo) * sizeof(float));
            } else {
              for (int64_t ox = lo; ox < hi; ++ox) d[ox] = row[ox * wx.stride + off];
            }
            std::fill(d + hi, d + ow, 0.f);
          }
        }
      }
    }
  }

  void run_depthwise(const float* x, const float* w, const float* bias, const float* res, float* y,
                     int64_t batch, int64_t h, int64_t wd) const {
    const Window &wy = win_[0], &wx = win_[1];
    const int64_t oh = wy.out, ow = wx.out, mult = m_ / c_;
    parallel_items(batch * m_, h * wd + oh * ow, [&](int64_t q0, int64_t q1) {
      for (int64_t bm = q0; bm < q1; ++bm) {
        const int64_t b = bm / m_, m = bm % m_, c = m / mult;
        const float* xc = x + (b * c_ + c) * h * wd;
        const float* wm = w + m * wy.k * wx.k;
        float* ym = y + bm * oh * ow;
        const float b0 = bias ? bias[m] : 0.f;
        for (int64_t oy = 0; oy < oh; ++oy) {
          for (int64_t ox = 0; ox < ow; ++ox) {
            float s = b0;
            for (int64_t i = 0; i < wy.k; ++i) {
              const int64_t iy = oy * wy.stride - wy.pad_begin + i * wy.dil;
              if (iy < 0 || iy >= h) continue;
              for (int64_t j = 0; j < wx.k; ++j) {
                const int64_t ix = ox * wx.stride - wx.pad_begin + j * wx.dil;
                if (ix >= 0 && ix < wd) s += xc[iy * wd + ix] * wm[i * wx.k + j];
              }
            }
            ym[oy * ow + ox] = s;
          }
        }
        if (res)
          for (int64_t i = 0; i < oh * ow; ++i) ym[i] += res[bm * oh * ow + i];
        apply_activation(ym, oh * ow, act_);
      }
    });
  }

  Node node_;
  int64_t group_;
  FusedActivation act_;
  int64_t c_ = 0, m_ = 0;
  bool has_bias_ = false, depthwise_ = false, pointwise_ = false;
  bool residual_ = false;  ///< input 3 is added before the activation (fuse_residual)
  std::vector<Window> win_;
  size_t ws_ = 0;
  bool use_dnnl_ = false;
  ConvParams dnnl_params_;
  std::unique_ptr<OnednnConv> dnnl_;  ///< null: im2col + GEMM or direct depthwise loops
  std::shared_ptr<const PackedLayout> prepacked_;  ///< the weights' layout when packed at load
  size_t weight_floats_ = 0;
};

// ---------------------------------------------------------------- BatchNorm --------
class BatchNormOp : public Op {
 public:
  explicit BatchNormOp(const Node& n) : eps_(attr_float(n, "epsilon", 1e-5f)) {
    if (attr_int(n, "training_mode", 0) != 0) unsupported("training_mode=1");
  }
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() != 5) unsupported("expects 5 inputs");
    if (in[0].shape.size() < 2) unsupported("input rank below 2");
    for (size_t k = 1; k < 5; ++k)
      if (numel(in[k].shape) != in[0].shape[1]) unsupported("parameter size does not match channels");
    return in[0].shape;
  }
  void run(const OpArgs& a) const override {
    const Shape& s = a.in_shapes[0];
    const int64_t batch = s[0], c = s[1], inner = numel(s) / std::max<int64_t>(1, batch * c);
    const float *x = a.in[0], *gamma = a.in[1], *beta = a.in[2], *mean = a.in[3], *var = a.in[4];
    const float eps = eps_;
#pragma omp parallel for
    for (int64_t bc = 0; bc < batch * c; ++bc) {
      const int64_t ch = bc % c;
      const float scale = gamma[ch] / std::sqrt(var[ch] + eps);
      const float shift = beta[ch] - mean[ch] * scale;
      const float* xi = x + bc * inner;
      float* yi = a.out + bc * inner;
      for (int64_t i = 0; i < inner; ++i) yi[i] = xi[i] * scale + shift;
    }
  }

 private:
  float eps_;
};

// ---------------------------------------------------------------- pooling ----------
class PoolOp : public Op {
 public:
  PoolOp(const Node& n, bool max) : node_(n), max_(max) {
    if (!has_attr(n, "kernel_shape")) unsupported("kernel_shape is required");
    kernel_ = attr_ints(n, "kernel_shape");
    ceil_ = attr_int(n, "ceil_mode", 0) != 0;
    include_pad_ = attr_int(n, "count_include_pad", 0) != 0;
    if (attr_int(n, "storage_order", 0) != 0) unsupported("storage_order=1");
    if (kernel_.size() != 2) unsupported("only 2-D pooling is supported");
    if (!max && has_attr(n, "dilations") && attr_ints(n, "dilations") != Shape{1, 1})
      unsupported("AveragePool dilations");
  }
  Shape setup(const std::vector<ValueInfo>& in) override {
    win_ = windows(node_, in[0].shape, kernel_, ceil_);
    const Shape& x = in[0].shape;
    nhwc_in_ = nhwc_out_ = false;
    return {x[0], x[1], win_[0].out, win_[1].out};
  }
  bool takes_channels_last() const override { return true; }
  void set_channels_last(const std::vector<bool>& inputs, bool output) override {
    nhwc_in_ = inputs.at(0);
    nhwc_out_ = output;
  }
  void run(const OpArgs& a) const override {
    if (nhwc_in_ || nhwc_out_) return run_nhwc(a);
    const Shape& s = a.in_shapes[0];
    const int64_t nc = s[0] * s[1], h = s[2], w = s[3];
    const Window &wy = win_[0], &wx = win_[1];
    const int64_t oh = wy.out, ow = wx.out;
    parallel_items(nc, h * w + oh * ow, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const float* xq = a.in[0] + q * h * w;
        float* yq = a.out + q * oh * ow;
        if (max_) {
          max_plane(xq, yq, h, w);
          continue;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t y0 = oy * wy.stride - wy.pad_begin, x0 = ox * wx.stride - wx.pad_begin;
            const int64_t y1 = std::min(y0 + wy.k, h + wy.pad_end), x1 = std::min(x0 + wx.k, w + wx.pad_end);
            const int64_t ya = std::max<int64_t>(y0, 0), xa = std::max<int64_t>(x0, 0);
            const int64_t yb = std::min(y1, h), xb = std::min(x1, w);
            float sum = 0.f;
            for (int64_t iy = ya; iy < yb; ++iy)
              for (int64_t ix = xa; ix < xb; ++ix) sum += xq[iy * w + ix];
            const int64_t count = include_pad_ ? (y1 - y0) * (x1 - x0) : (yb - ya) * (xb - xa);
            yq[oy * ow + ox] = count > 0 ? sum / static_cast<float>(count) : 0.f;
          }
        }
      }
    });
  }

 private:
  /// Either side channels-last (ResNet's stem: a Conv's NHWC output): one output pixel at a
  /// time, all channels at once. Same window order and comparisons as the planes.
  void run_nhwc(const OpArgs& a) const {
    const Shape& s = a.in_shapes[0];
    const int64_t n = s[0], c = s[1], h = s[2], w = s[3];
    const Window &wy = win_[0], &wx = win_[1];
    const int64_t oh = wy.out, ow = wx.out;
    // Element (image, channel, y, x) of each side in its layout.
    const int64_t xs_c = nhwc_in_ ? 1 : h * w, xs_p = nhwc_in_ ? c : 1;
    const int64_t ys_c = nhwc_out_ ? 1 : oh * ow, ys_p = nhwc_out_ ? c : 1;
    parallel_items(n * oh, ow * c * wy.k * wx.k, [&](int64_t r0, int64_t r1) {
      std::vector<float> acc(static_cast<size_t>(c));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t img = r / oh, oy = r % oh, y0 = oy * wy.stride - wy.pad_begin;
        const float* xi = a.in[0] + img * c * h * w;
        float* yi = a.out + img * c * oh * ow;
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t x0 = ox * wx.stride - wx.pad_begin;
          std::fill(acc.begin(), acc.end(), max_ ? -std::numeric_limits<float>::infinity() : 0.f);
          int64_t count = 0;
          for (int64_t i = 0; i < wy.k; ++i) {
            const int64_t iy = y0 + i * wy.dil;
            if (iy < 0 || iy >= h) continue;
            for (int64_t j = 0; j < wx.k; ++j) {
              const int64_t ix = x0 + j * wx.dil;
              if (ix < 0 || ix >= w) continue;
              const float* px = xi + (iy * w + ix) * xs_p;
              if (max_)
                for (int64_t k = 0; k < c; ++k) acc[k] = std::max(acc[k], px[k * xs_c]);
              else
                for (int64_t k = 0; k < c; ++k) acc[k] += px[k * xs_c];
              ++count;
            }
          }
          if (!max_) {  // count_include_pad counts the padded window, as the planes do
            const int64_t y1 = std::min(y0 + wy.k, h + wy.pad_end), x1 = std::min(x0 + wx.k, w + wx.pad_end);
            if (include_pad_) count = (y1 - y0) * (x1 - x0);
            for (int64_t k = 0; k < c; ++k) acc[k] = count > 0 ? acc[k] / static_cast<float>(count) : 0.f;
          }
          float* py = yi + (oy * ow + ox) * ys_p;
          for (int64_t k = 0; k < c; ++k) py[k * ys_c] = acc[k];
        }
      }
    });
  }

  /// Max pooling of one plane; columns whose window lies inside the row (most of them)
  /// skip the bounds checks. Same comparisons in the same order as the checked loop.
  void max_plane(const float* xq, float* yq, int64_t h, int64_t w) const {
    const Window &wy = win_[0], &wx = win_[1];
    const int64_t oh = wy.out, ow = wx.out, sx = wx.stride, dx = wx.dil, kx = wx.k;
    const int64_t lo = std::min(ow, (wx.pad_begin + sx - 1) / sx);
    const int64_t last = w - 1 - (kx - 1) * dx + wx.pad_begin;  // largest ox * sx inside
    const int64_t hi = last < 0 ? lo : std::max(lo, std::min(ow, last / sx + 1));
    for (int64_t oy = 0; oy < oh; ++oy) {
      const int64_t y0 = oy * wy.stride - wy.pad_begin;
      auto checked = [&](int64_t ox) {
        const int64_t x0 = ox * sx - wx.pad_begin;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < wy.k; ++i) {
          const int64_t iy = y0 + i * wy.dil;
          if (iy < 0 || iy >= h) continue;
          for (int64_t j = 0; j < kx; ++j) {
            const int64_t ix = x0 + j * dx;
            if (ix >= 0 && ix < w) m = std::max(m, xq[iy * w + ix]);
          }
        }
        return m;
      };
      float* yrow = yq + oy * ow;
      for (int64_t ox = 0; ox < lo; ++ox) yrow[ox] = checked(ox);
      for (int64_t ox = lo; ox < hi; ++ox) {
        const int64_t x0 = ox * sx - wx.pad_begin;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < wy.k; ++i) {
          const int64_t iy = y0 + i * wy.dil;
          if (iy < 0 || iy >= h) continue;
          const float* r = xq + iy * w + x0;
          for (int64_t j = 0; j < kx; ++j) m = std::max(m, r[j * dx]);
        }
        yrow[ox] = m;
      }
      for (int64_t ox = hi; ox < ow; ++ox) yrow[ox] = checked(ox);
    }
  }

  Node node_;
  bool max_, ceil_ = false, include_pad_ = false, nhwc_in_ = false, nhwc_out_ = false;
  Shape kernel_;
  std::vector<Window> win_;
};

class GlobalAveragePoolOp : public Op {
 public:
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in[0].shape.size() < 3) unsupported("input rank below 3");
    Shape out = in[0].shape;
    std::fill(out.begin() + 2, out.end(), 1);
    nhwc_ = false;
    return out;
  }
  /// The output, [N,C,1,1], is the same in both layouts.
  bool takes_channels_last() const override { return true; }
  void set_channels_last(const std::vector<bool>& inputs, bool) override { nhwc_ = inputs.at(0); }
  void run(const OpArgs& a) const override {
    const Shape& s = a.in_shapes[0];
    const int64_t nc = s[0] * s[1], inner = numel(s) / std::max<int64_t>(nc, 1);
    if (nhwc_) {  // per image and block of channels: pixel by pixel, each channel its own sum
      constexpr int64_t kBlock = 64;
      const int64_t c = s[1], blocks = (c + kBlock - 1) / kBlock;
      parallel_items(s[0] * blocks, inner * kBlock, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t img = q / blocks, c0 = q % blocks * kBlock, cn = std::min(kBlock, c - c0);
          const float* x = a.in[0] + img * inner * c + c0;
          double sum[kBlock] = {};
          for (int64_t i = 0; i < inner; ++i)
            for (int64_t j = 0; j < cn; ++j) sum[j] += x[i * c + j];
          for (int64_t j = 0; j < cn; ++j) a.out[img * c + c0 + j] = static_cast<float>(sum[j] / static_cast<double>(inner));
        }
      });
      return;
    }
    parallel_items(nc, inner, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const float* x = a.in[0] + q * inner;
        double sum[4] = {0, 0, 0, 0};  // four chains: the adds overlap instead of waiting on one another
        int64_t i = 0;
        for (; i + 4 <= inner; i += 4)
          for (int j = 0; j < 4; ++j) sum[j] += x[i + j];
        for (; i < inner; ++i) sum[0] += x[i];
        a.out[q] = static_cast<float>((sum[0] + sum[1] + sum[2] + sum[3]) / static_cast<double>(inner));
      }
    });
  }

 private:
  bool nhwc_ = false;
};

// ---------------------------------------------------------------- shape ops --------
/// Flatten, Reshape, Squeeze, Unsqueeze on activations: a copy with a new shape.
class ReshapeLikeOp : public Op {
 public:
  ReshapeLikeOp(const Node& n, int opset) : node_(n), opset_(opset) {}
  Shape setup(const std::vector<ValueInfo>& in) override;
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override { copy_floats(a.out, a.in[0], numel(*a.out_shape)); }

 private:
  Node node_;
  int opset_;
};

std::vector<int64_t> const_ints(const ValueInfo& v, const char* what) {
  if (!v.constant) unsupported(std::string(what) + " must be constant (from an initializer or a foldable shape computation)");
  std::vector<int64_t> r(v.constant->size());
  for (int64_t k = 0; k < v.constant->size(); ++k) r[k] = v.constant->int_at(k);
  return r;
}

}  // namespace

/// Shape rules shared with constant folding.
Shape reshape_shape(const Shape& in, const std::vector<int64_t>& target, bool allowzero) {
  Shape out(target.size());
  int64_t known = 1, infer_at = -1;
  for (size_t k = 0; k < target.size(); ++k) {
    int64_t d = target[k];
    if (d == 0 && !allowzero) {
      if (k >= in.size()) unsupported("Reshape 0 beyond the input rank");
      d = in[k];
    }
    if (d == -1) {
      if (infer_at >= 0) unsupported("Reshape with two -1");
      infer_at = static_cast<int64_t>(k);
      continue;
    }
    out[k] = d;
    known *= d;
  }
  if (infer_at >= 0) {
    if (known == 0 || numel(in) % known) unsupported("Reshape cannot infer -1 for " + to_string(in));
    out[infer_at] = numel(in) / known;
  }
  if (numel(out) != numel(in))
    unsupported("Reshape from " + to_string(in) + " to " + to_string(out) + " changes the element count");
  return out;
}

Shape squeeze_shape(const Shape& in, std::vector<int64_t> axes) {
  for (auto& a : axes) a = norm_axis(a, in.size());
  Shape out;
  for (size_t k = 0; k < in.size(); ++k) {
    const bool listed = std::find(axes.begin(), axes.end(), static_cast<int64_t>(k)) != axes.end();
    if (axes.empty() ? in[k] == 1 : listed) {
      if (in[k] != 1) unsupported("Squeeze of a dimension that is not 1");
      continue;
    }
    out.push_back(in[k]);
  }
  return out;
}

Shape unsqueeze_shape(const Shape& in, std::vector<int64_t> axes) {
  const size_t r = in.size() + axes.size();
  for (auto& a : axes) a = norm_axis(a, r);
  Shape out;
  size_t src = 0;
  for (size_t k = 0; k < r; ++k) {
    if (std::find(axes.begin(), axes.end(), static_cast<int64_t>(k)) != axes.end())
      out.push_back(1);
    else
      out.push_back(in[src++]);
  }
  return out;
}

namespace {

Shape ReshapeLikeOp::setup(const std::vector<ValueInfo>& in) {
  const Shape& x = in[0].shape;
  const std::string& op = node_.op_type;
  if (op == "Flatten") {
    const int64_t axis = norm_axis(attr_int(node_, "axis", 1), x.size(), true);
    int64_t outer = 1;
    for (int64_t k = 0; k < axis; ++k) outer *= x[k];
    return {outer, numel(x) / std::max<int64_t>(outer, 1)};
  }
  if (op == "Reshape") {
    if (in.size() < 2) unsupported("Reshape needs a shape input");
    return reshape_shape(x, const_ints(in[1], "Reshape shape"), attr_int(node_, "allowzero", 0) != 0);
  }
  std::vector<int64_t> axes;
  if (opset_ >= 13 && in.size() > 1) axes = const_ints(in[1], "axes");
  else axes = attr_ints(node_, "axes");
  if (op == "Squeeze") return squeeze_shape(x, axes);
  return unsqueeze_shape(x, axes);
}

class TransposeOp : public Op {
 public:
  explicit TransposeOp(const Node& n) : perm_(attr_ints(n, "perm")) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape& x = in[0].shape;
    if (!perm_.empty() && perm_.size() != x.size()) unsupported("perm does not match the input rank");
    return transpose_geometry(x, perm_).shape;
  }
  void run(const OpArgs& a) const override {
    const SliceGeometry g = transpose_geometry(a.in_shapes[0], perm_);
    const int64_t n = numel(g.shape);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) a.out[i] = a.in[0][slice_offset(i, g)];
  }

 private:
  std::vector<int64_t> perm_;
};

class ConcatOp : public Op {
 public:
  explicit ConcatOp(const Node& n) : axis_attr_(attr_int(n, "axis", 0)) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    Shape out = in[0].shape;
    axis_ = norm_axis(axis_attr_, out.size());
    out[axis_] = 0;
    for (const auto& v : in) {
      if (v.shape.size() != out.size()) unsupported("inputs of different rank");
      for (size_t k = 0; k < out.size(); ++k)
        if (static_cast<int64_t>(k) != axis_ && v.shape[k] != in[0].shape[k]) unsupported("inputs differ off the axis");
      out[axis_] += v.shape[axis_];
    }
    return out;
  }
  void run(const OpArgs& a) const override {
    const Shape& out = *a.out_shape;
    int64_t outer = 1;
    for (int64_t k = 0; k < axis_; ++k) outer *= out[k];
    const int64_t row = numel(out) / std::max<int64_t>(outer, 1);
    int64_t off = 0;
    for (size_t i = 0; i < a.n_in; ++i) {
      const int64_t chunk = numel(a.in_shapes[i]) / std::max<int64_t>(outer, 1);
      // A constant input (no batch) joins every image of a batched one; reuse its rows.
      const int64_t in_outer = numel(a.in_shapes[i]) / std::max<int64_t>(chunk, 1);
      for (int64_t o = 0; o < outer; ++o)
        copy_floats(a.out + o * row + off, a.in[i] + (o % in_outer) * chunk, chunk);
      off += chunk;
    }
  }

 private:
  int64_t axis_attr_, axis_ = 0;
};

// ---------------------------------------------------------------- Gemm / MatMul ----
/// Rows of A per GEMM call of Gemm (and of a 2-D MatMul by a weight): every call has this
/// many (the last tile padded with zeros), so a row's result, which a GEMM's blocking and
/// threading could make depend on M, never depends on the batch.
constexpr int64_t kGemmTileRows = 16;
inline size_t gemm_tile_floats(int64_t k, int64_t n) { return static_cast<size_t>(kGemmTileRows * (k + n)); }

/// C[M,N] = alpha * op(A) * op(B) + beta * C, A [M,K] (rows lda apart; [K,M] when ta), in
/// tiles of kGemmTileRows rows through ws (gemm_tile_floats(k, n) floats). A B given
/// transposed ([N,K], as PyTorch's Linear exports its weight) is the left operand of the
/// tile's transpose, C^T = B * A^T: oneDNN's sgemm reads a transposed right operand several
/// times slower (ResNet-50's classifier, 16 rows x 2048 -> 1000: 1.5-1.9 ms against
/// 0.2 ms; VGG-11's 25088 -> 4096: 52 against 16 ms).
void gemm_tiled(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, float* ws) {
  float* at = ws;
  float* ct = ws + kGemmTileRows * k;  // the tile of C, or of C^T when tb
  for (int64_t t0 = 0; t0 < m; t0 += kGemmTileRows) {
    const int64_t rows = std::min(kGemmTileRows, m - t0);
    for (int64_t r = 0; r < kGemmTileRows; ++r)
      for (int64_t i = 0; i < k; ++i)
        at[r * k + i] = r >= rows ? 0.f : ta ? a[i * lda + t0 + r] : a[(t0 + r) * lda + i];
    if (!tb) {
      if (beta != 0.f) copy_floats(ct, c + t0 * n, rows * n);
      sgemm(false, false, kGemmTileRows, n, k, alpha, at, k, b, ldb, beta, ct, n);
      copy_floats(c + t0 * n, ct, rows * n);
      continue;
    }
    if (beta != 0.f)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) ct[j * kGemmTileRows + r] = c[(t0 + r) * n + j];
    sgemm(false, true, n, kGemmTileRows, k, alpha, b, ldb, at, k, beta, ct, kGemmTileRows);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) c[(t0 + r) * n + j] = ct[j * kGemmTileRows + r];
  }
}

class GemmOp : public Op {
 public:
  explicit GemmOp(const Node& n)
      : ta_(attr_int(n, "transA", 0) != 0), tb_(attr_int(n, "transB", 0) != 0),
        alpha_(attr_float(n, "alpha", 1.f)), beta_(attr_float(n, "beta", 1.f)) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() < 2) unsupported("expects A and B");
    const Shape &a = in[0].shape, &b = in[1].shape;
    if (a.size() != 2 || b.size() != 2) unsupported("A and B must be 2-D");
    const int64_t m = ta_ ? a[1] : a[0], k = ta_ ? a[0] : a[1];
    const int64_t kb = tb_ ? b[1] : b[0], n = tb_ ? b[0] : b[1];
    if (k != kb) unsupported("inner dimensions differ: " + to_string(a) + " x " + to_string(b));
    has_c_ = in.size() > 2 && !in[2].shape.empty();
    if (has_c_) broadcast_shapes(in[2].shape, {m, n});
    ws_ = gemm_tile_floats(k, n);
    return {m, n};
  }
  size_t workspace_floats() const override { return ws_; }
  void run(const OpArgs& a) const override {
    const Shape &sa = a.in_shapes[0], &sb = a.in_shapes[1];
    const int64_t m = (*a.out_shape)[0], n = (*a.out_shape)[1], k = ta_ ? sa[0] : sa[1];
    float beta = 0.f;
    if (has_c_ && beta_ != 0.f) {
      const Shape& sc = a.in_shapes[2];
      const Shape out{m, n};
      int64_t st[2];
      broadcast_strides(sc, out, st);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) a.out[i * n + j] = a.in[2][i * st[0] + j * st[1]];
      beta = beta_;
    }
    gemm_tiled(ta_, tb_, m, n, k, alpha_, a.in[0], sa[1], a.in[1], sb[1], beta, a.out, a.workspace);
  }

 private:
  bool ta_, tb_, has_c_ = false;
  float alpha_, beta_;
  size_t ws_ = 0;
};

class MatMulOp : public Op {
 public:
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape &a = in[0].shape, &b = in[1].shape;
    if (a.size() < 2 || b.size() < 2) unsupported("1-D MatMul operands");
    if (a.size() > 8 || b.size() > 8) unsupported("rank above 8");
    if (a[a.size() - 1] != b[b.size() - 2]) unsupported("inner dimensions differ: " + to_string(a) + " x " + to_string(b));
    Shape batch = broadcast_shapes(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
    batch.push_back(a[a.size() - 2]);
    batch.push_back(b.back());
    ws_ = a.size() == 2 && b.size() == 2 ? gemm_tile_floats(a.back(), b.back()) : 0;
    return batch;
  }
  size_t workspace_floats() const override { return ws_; }
  void run(const OpArgs& a) const override {
    const Shape &sa = a.in_shapes[0], &sb = a.in_shapes[1];
    const Shape& out = *a.out_shape;
    const int64_t k = sa.back(), n = sb.back();
    if (sa.size() == 2 && sb.size() == 2) {
      gemm_tiled(false, false, sa[0], n, k, 1.f, a.in[0], k, a.in[1], n, 0.f, a.out, a.workspace);
      return;
    }
    if (sb.size() == 2) {  // by a weight: A's dims after the first folded into M, one GEMM per index of the first
      const int64_t m = numel(sa) / sa[0] / k;
      for (int64_t i = 0; i < sa[0]; ++i)
        sgemm(false, false, m, n, k, 1.f, a.in[0] + i * m * k, k, a.in[1], n, 0.f, a.out + i * m * n, n);
      return;
    }
    const int64_t m = sa[sa.size() - 2];
    const Shape ob(out.begin(), out.end() - 2);
    const Shape ab(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
    int64_t st_a[8], st_b[8];
    broadcast_strides(ab, ob, st_a);
    broadcast_strides(bb, ob, st_b);
    const int64_t nb = numel(ob);
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, obb = 0;
      broadcast_offsets(i, ob, st_a, st_b, oa, obb);
      sgemm(false, false, m, n, k, 1.f, a.in[0] + oa * m * k, k, a.in[1] + obb * k * n, n, 0.f, a.out + i * m * n, n);
    }
  }

 private:
  size_t ws_ = 0;
};

// ---------------------------------------------------------------- Softmax / Reduce -
class SoftmaxOp : public Op {
 public:
  SoftmaxOp(const Node& n, int opset) : opset_(opset), axis_attr_(attr_int(n, "axis", opset >= 13 ? -1 : 1)) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    axis_ = norm_axis(axis_attr_, in[0].shape.size());
    return in[0].shape;
  }
  void run(const OpArgs& a) const override {
    const Shape& s = *a.out_shape;
    // opset < 13: softmax over the flattened [axis, rank) block; >= 13: over one axis.
    int64_t outer = 1, len = 1, inner = 1;
    for (int64_t k = 0; k < axis_; ++k) outer *= s[k];
    if (opset_ < 13) {
      len = numel(s) / std::max<int64_t>(outer, 1);
    } else {
      len = s[axis_];
      for (size_t k = axis_ + 1; k < s.size(); ++k) inner *= s[k];
    }
#pragma omp parallel for
    for (int64_t oi = 0; oi < outer * inner; ++oi) {
      const int64_t o = oi / inner, i = oi % inner;
      const float* x = a.in[0] + o * len * inner + i;
      float* y = a.out + o * len * inner + i;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < len; ++j) mx = std::max(mx, x[j * inner]);
      float sum = 0.f;
      for (int64_t j = 0; j < len; ++j) sum += (y[j * inner] = std::exp(x[j * inner] - mx));
      for (int64_t j = 0; j < len; ++j) y[j * inner] /= sum;
    }
  }

 private:
  int opset_;
  int64_t axis_attr_, axis_ = 0;
};

class ReduceMeanOp : public Op {
 public:
  explicit ReduceMeanOp(const Node& n)
      : axes_attr_(attr_ints(n, "axes")), keep_(attr_int(n, "keepdims", 1) != 0),
        noop_empty_(attr_int(n, "noop_with_empty_axes", 0) != 0) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape& x = in[0].shape;
    if (x.size() > 8) unsupported("rank above 8");
    std::vector<int64_t> axes = axes_attr_;
    if (in.size() > 1 && (in[1].constant || !in[1].shape.empty())) axes = const_ints(in[1], "axes");
    reduced_.assign(x.size(), false);
    if (axes.empty() && !noop_empty_) reduced_.assign(x.size(), true);
    for (int64_t ax : axes) reduced_[norm_axis(ax, x.size())] = true;
    Shape out;
    for (size_t k = 0; k < x.size(); ++k) {
      if (!reduced_[k]) out.push_back(x[k]);
      else if (keep_) out.push_back(1);
    }
    return out;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const Shape& x = a.in_shapes[0];
    const size_t r = x.size();
    int64_t ost[8];  // output stride per input dim, 0 where reduced
    int64_t s = 1, count = 1;
    for (size_t k = r; k-- > 0;) {
      if (reduced_[k]) { ost[k] = 0; count *= x[k]; }
      else { ost[k] = s; s *= x[k]; }
    }
    const int64_t n_out = numel(*a.out_shape), n = numel(x);
    std::fill(a.out, a.out + n_out, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, off = 0;
      for (size_t k = r; k-- > 0;) {
        off += (rem % x[k]) * ost[k];
        rem /= x[k];
      }
      a.out[off] += a.in[0][i];
    }
    const float inv = 1.f / static_cast<float>(std::max<int64_t>(count, 1));
    for (int64_t i = 0; i < n_out; ++i) a.out[i] *= inv;
  }

 private:
  std::vector<int64_t> axes_attr_;
  bool keep_, noop_empty_;
  std::vector<bool> reduced_;
};


// ---------------------------------------------------------------- indexing ---------
/// y[i] = x[offset of i through broadcast strides st]: Expand and Where's operands.
inline int64_t broadcast_offset(int64_t i, const Shape& out, const int64_t* st) {
  int64_t off = 0;
  for (size_t d = out.size(); d-- > 0;) {
    off += (i % out[d]) * st[d];
    i /= out[d];
  }
  return off;
}

class ExpandOp : public Op {
 public:
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() != 2) unsupported("expects input and shape");
    const Shape out = broadcast_shapes(in[0].shape, const_ints(in[1], "Expand shape"));
    if (out.size() > 8) unsupported("rank above 8");
    return out;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const Shape& out = *a.out_shape;
    int64_t st[8];
    broadcast_strides(a.in_shapes[0], out, st);
    const int64_t n = numel(out);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) a.out[i] = a.in[0][broadcast_offset(i, out, st)];
  }
};

class WhereOp : public Op {
 public:
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (in.size() != 3) unsupported("expects condition, X and Y");
    const Shape out = broadcast_shapes(broadcast_shapes(in[0].shape, in[1].shape), in[2].shape);
    if (out.size() > 8) unsupported("rank above 8");
    return out;
  }
  void run(const OpArgs& a) const override {
    const Shape& out = *a.out_shape;
    int64_t st[3][8];
    for (int k = 0; k < 3; ++k) broadcast_strides(a.in_shapes[k], out, st[k]);
    const int64_t n = numel(out);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i)
      a.out[i] = a.in[0][broadcast_offset(i, out, st[0])] != 0.f ? a.in[1][broadcast_offset(i, out, st[1])]
                                                                 : a.in[2][broadcast_offset(i, out, st[2])];
  }
};

/// Slice of an activation; starts, ends, axes and steps are constant.
class SliceOp : public Op {
 public:
  explicit SliceOp(const Node& n, int opset) : node_(n), opset_(opset) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    if (opset_ < 10) {
      starts_ = attr_ints(node_, "starts");
      ends_ = attr_ints(node_, "ends");
      axes_ = attr_ints(node_, "axes");
    } else {
      if (in.size() < 3) unsupported("expects data, starts and ends");
      starts_ = const_ints(in[1], "Slice starts");
      ends_ = const_ints(in[2], "Slice ends");
      if (in.size() > 3 && (in[3].constant || !in[3].shape.empty())) axes_ = const_ints(in[3], "Slice axes");
      if (in.size() > 4 && (in[4].constant || !in[4].shape.empty())) steps_ = const_ints(in[4], "Slice steps");
    }
    const SliceGeometry g = slice_geometry(in[0].shape, starts_, ends_, axes_, steps_);
    if (!g.shape.empty() && (g.begin[0] != 0 || g.step[0] != 1 || g.shape[0] != in[0].shape[0]))
      unsupported("Slice along the batch axis");
    if (g.shape.size() > 8) unsupported("rank above 8");
    return g.shape;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const SliceGeometry g = slice_geometry(a.in_shapes[0], starts_, ends_, axes_, steps_);
    const int64_t n = numel(g.shape);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) a.out[i] = a.in[0][slice_offset(i, g)];
  }

 private:
  Node node_;
  int opset_;
  std::vector<int64_t> starts_, ends_, axes_, steps_;
};

/// Gather of an activation with constant indices. Along dim 0 it either picks within a
/// tensor whose batch is elsewhere (ViT's q, k, v) or mixes images, which batch_units()
/// sees, so that such a model runs whole batches.
class GatherOp : public Op {
 public:
  explicit GatherOp(const Node& n) : axis_attr_(attr_int(n, "axis", 0)) {}
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape& x = in[0].shape;
    axis_ = norm_axis(axis_attr_, x.size());
    idx_ = const_ints(in[1], "Gather indices");
    for (int64_t& g : idx_) {
      if (g < 0) g += x[axis_];
      if (g < 0 || g >= x[axis_]) unsupported("Gather index out of range");
    }
    Shape out(x.begin(), x.begin() + axis_);
    out.insert(out.end(), in[1].shape.begin(), in[1].shape.end());
    out.insert(out.end(), x.begin() + axis_ + 1, x.end());
    return out;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const Shape& x = a.in_shapes[0];
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < axis_; ++k) outer *= x[k];
    for (size_t k = axis_ + 1; k < x.size(); ++k) inner *= x[k];
    const int64_t len = x[axis_], m = static_cast<int64_t>(idx_.size());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        copy_floats(a.out + (o * m + j) * inner, a.in[0] + (o * len + idx_[j]) * inner, inner);
  }

 private:
  int64_t axis_attr_, axis_ = 0;
  std::vector<int64_t> idx_;
};

/// Pad (constant, reflect, edge) of the non-batch axes; pads from the attribute (opset < 11)
/// or a constant input, the constant value from an optional constant input.
class PadOp : public Op {
 public:
  PadOp(const Node& n, int opset) : node_(n), opset_(opset), mode_(attr_string(n, "mode", "constant")) {
    if (mode_ != "constant" && mode_ != "reflect" && mode_ != "edge") unsupported("Pad mode " + mode_);
  }
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape& x = in[0].shape;
    const size_t r = x.size();
    std::vector<int64_t> pads;
    if (opset_ < 11) {
      pads = attr_ints(node_, "pads");
      value_ = attr_float(node_, "value", 0.f);
    } else {
      if (in.size() < 2) unsupported("Pad needs pads");
      pads = const_ints(in[1], "Pad pads");
      if (in.size() > 2 && (in[2].constant || !in[2].shape.empty())) {
        if (!in[2].constant) unsupported("Pad constant_value must be constant");
        value_ = static_cast<float>(in[2].constant->at(0));
      }
      if (in.size() > 3 && (in[3].constant || !in[3].shape.empty())) unsupported("Pad axes input");
    }
    if (pads.size() != 2 * r || r > 8) unsupported("pads do not match the input rank");
    begin_.assign(pads.begin(), pads.begin() + r);
    Shape out = x;
    for (size_t k = 0; k < r; ++k) {
      if (pads[k] < 0 || pads[k + r] < 0) unsupported("negative pads");
      if (k == 0 && (pads[0] || pads[r])) unsupported("Pad of the batch axis");
      if (mode_ == "reflect" && (pads[k] >= x[k] || pads[k + r] >= x[k])) unsupported("reflect pad not below the size");
      if (mode_ == "edge" && x[k] == 0 && (pads[k] || pads[k + r])) unsupported("edge pad of an empty axis");
      out[k] += pads[k] + pads[k + r];
    }
    return out;
  }
  bool data_input(size_t i) const override { return i == 0; }
  void run(const OpArgs& a) const override {
    const Shape& x = a.in_shapes[0];
    const Shape& out = *a.out_shape;
    const size_t r = x.size();
    int64_t xs[8];
    for (size_t k = r, s = 1; k-- > 0;) { xs[k] = static_cast<int64_t>(s); s *= x[k]; }
    const int64_t n = numel(out);
    const bool reflect = mode_ == "reflect", edge = mode_ == "edge";
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, off = 0;
      bool outside = false;
      for (size_t d = r; d-- > 0;) {
        int64_t p = rem % out[d] - begin_[d];
        rem /= out[d];
        if (p < 0 || p >= x[d]) {
          if (reflect) p = p < 0 ? -p : 2 * (x[d] - 1) - p;
          else if (edge) p = p < 0 ? 0 : x[d] - 1;
          else outside = true;
        }
        off += p * xs[d];
      }
      a.out[i] = outside ? value_ : a.in[0][off];
    }
  }

 private:
  Node node_;
  int opset_;
  std::string mode_;
  std::vector<int64_t> begin_;
  float value_ = 0.f;
};

// ---------------------------------------------------------------- normalization ----
/// LayerNormalization (opset 17): over the axes from `axis` on, then scale and bias
/// (broadcast over the normalised block). Only output 0 (Mean and InvStdDev are not kept).
class LayerNormOp : public Op {
 public:
  explicit LayerNormOp(const Node& n) : axis_attr_(attr_int(n, "axis", -1)), eps_(attr_float(n, "epsilon", 1e-5f)) {
    if (attr_int(n, "stash_type", 1) != 1) unsupported("stash_type other than float");
  }
  Shape setup(const std::vector<ValueInfo>& in) override {
    const Shape& x = in[0].shape;
    axis_ = norm_axis(axis_attr_, x.size());
    if (axis_ == 0) unsupported("LayerNormalization over the batch axis");
    const Shape block(x.begin() + axis_, x.end());
    for (size_t k = 1; k < in.size() && k < 3; ++k)
      if (!in[k].shape.empty() || in[k].constant)
        if (broadcast_shapes(in[k].shape, block) != block) unsupported("scale or bias does not broadcast to the block");
    has_bias_ = in.size() > 2 && (!in[2].shape.empty() || in[2].constant);
    return x;
  }
  void run(const OpArgs& a) const override {
    const Shape& x = a.in_shapes[0];
    const Shape block(x.begin() + axis_, x.end());
    const int64_t len = numel(block), rows = numel(x) / std::max<int64_t>(len, 1);
    // scale and bias are usually whole blocks; broadcast ones are expanded per element
    int64_t ss[8], bs[8];
    if (block.size() > 8) unsupported("rank above 8");
    broadcast_strides(a.in_shapes[1], block, ss);
    if (has_bias_) broadcast_strides(a.in_shapes[2], block, bs);
    const float* scale = a.in[1];
    const float* bias = has_bias_ ? a.in[2] : nullptr;
    const bool whole_s = numel(a.in_shapes[1]) == len, whole_b = !has_bias_ || numel(a.in_shapes[2]) == len;
#pragma omp parallel for
    for (int64_t row = 0; row < rows; ++row) {
      const float* xr = a.in[0] + row * len;
      float* y = a.out + row * len;
      double mean = 0.;
      for (int64_t j = 0; j < len; ++j) mean += xr[j];
      mean /= static_cast<double>(len);
      double var = 0.;
      for (int64_t j = 0; j < len; ++j) var += (xr[j] - mean) * (xr[j] - mean);
      const auto inv = static_cast<float>(1. / std::sqrt(var / static_cast<double>(len) + eps_));
      const auto m = static_cast<float>(mean);
      for (int64_t j = 0; j < len; ++j) {
        const float s = scale[whole_s ? j : broadcast_offset(j, block, ss)];
        const float b = bias ? bias[whole_b ? j : broadcast_offset(j, block, bs)] : 0.f;
        y[j] = (xr[j] - m) * inv * s + b;
      }
    }
  }

 private:
  int64_t axis_attr_, axis_ = 0;
  float eps_;
  bool has_bias_ = false;
};

}  // namespace

std::unique_ptr<Op> make_op(const Node& n, int opset) {
  const std::string& t = n.op_type;
  using U = UnaryOp::Kind;
  using B = BinaryOp::Kind;
  if (t == "Conv") return std::make_unique<ConvOp>(n);
  if (t == "BatchNormalization") return std::make_unique<BatchNormOp>(n);
  if (t == "Relu") return std::make_unique<UnaryOp>(U::Relu, n, opset);
  if (t == "LeakyRelu") return std::make_unique<UnaryOp>(U::LeakyRelu, n, opset);
  if (t == "Clip") return std::make_unique<UnaryOp>(U::Clip, n, opset);
  if (t == "Sigmoid") return std::make_unique<UnaryOp>(U::Sigmoid, n, opset);
  if (t == "HardSigmoid") return std::make_unique<UnaryOp>(U::HardSigmoid, n, opset);
  if (t == "HardSwish") return std::make_unique<UnaryOp>(U::HardSwish, n, opset);
  if (t == "Tanh") return std::make_unique<UnaryOp>(U::Tanh, n, opset);
  if (t == "Sqrt") return std::make_unique<UnaryOp>(U::Sqrt, n, opset);
  if (t == "Erf") return std::make_unique<UnaryOp>(U::Erf, n, opset);
  if (t == "Neg") return std::make_unique<UnaryOp>(U::Neg, n, opset);
  if (t == "Not") return std::make_unique<UnaryOp>(U::Not, n, opset);
  if (t == "Identity" || t == "Dropout") return std::make_unique<UnaryOp>(U::Copy, n, opset);
  if (t == "Cast") {
    const int64_t to = attr_int(n, "to", 0);
    if (to != onnx::TensorProto::FLOAT) unsupported("Cast of an activation to data type " + std::to_string(to));
    return std::make_unique<UnaryOp>(U::Copy, n, opset);
  }
  if (t == "Add") return std::make_unique<BinaryOp>(B::Add);
  if (t == "Sub") return std::make_unique<BinaryOp>(B::Sub);
  if (t == "Mul") return std::make_unique<BinaryOp>(B::Mul);
  if (t == "Div") return std::make_unique<BinaryOp>(B::Div);
  if (t == "Pow") return std::make_unique<BinaryOp>(B::Pow);
  if (t == "Equal") return std::make_unique<BinaryOp>(B::Equal);
  if (t == "Mod") return std::make_unique<BinaryOp>(B::Mod, attr_int(n, "fmod", 0) != 0);
  if (t == "Where") return std::make_unique<WhereOp>();
  if (t == "Expand") return std::make_unique<ExpandOp>();
  if (t == "Slice") return std::make_unique<SliceOp>(n, opset);
  if (t == "Gather") return std::make_unique<GatherOp>(n);
  if (t == "Pad") return std::make_unique<PadOp>(n, opset);
  if (t == "LayerNormalization") return std::make_unique<LayerNormOp>(n);
  if (t == "MaxPool") return std::make_unique<PoolOp>(n, true);
  if (t == "AveragePool") return std::make_unique<PoolOp>(n, false);
  if (t == "GlobalAveragePool") return std::make_unique<GlobalAveragePoolOp>();
  if (t == "Flatten" || t == "Reshape" || t == "Squeeze" || t == "Unsqueeze")
    return std::make_unique<ReshapeLikeOp>(n, opset);
  if (t == "Transpose") return std::make_unique<TransposeOp>(n);
  if (t == "Concat") return std::make_unique<ConcatOp>(n);
  if (t == "Gemm") return std::make_unique<GemmOp>(n);
  if (t == "MatMul") return std::make_unique<MatMulOp>();
  if (t == "Softmax") return std::make_unique<SoftmaxOp>(n, opset);
  if (t == "ReduceMean") return std::make_unique<ReduceMeanOp>(n);
  unsupported("unsupported op");
}

}  // namespace imgpipe::infer
