#include "onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#endif

#include "parallel.h"

namespace imgpipe::infer {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;

// ---- The API differences between oneDNN 2 and 3, in one place. ----------------------
dnnl::convolution_forward::primitive_desc conv_primitive_desc(const dnnl::engine& eng, dnnl::prop_kind prop,
                                                              dnnl::algorithm alg, const memory::desc& src,
                                                              const memory::desc& w, const memory::desc& bias,
                                                              const memory::desc& dst, const memory::dims& strides,
                                                              const memory::dims& dilates, const memory::dims& pad_l,
                                                              const memory::dims& pad_r,
                                                              const dnnl::primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {eng, prop, alg, src, w, bias, dst, strides, dilates, pad_l, pad_r, attr};
#else
  const dnnl::convolution_forward::desc d(prop, alg, src, w, bias, dst, strides, dilates, pad_l, pad_r);
  return {d, attr, eng};
#endif
}

void append_eltwise(dnnl::post_ops& po, dnnl::algorithm alg, float alpha, float beta) {
#if DNNL_VERSION_MAJOR >= 3
  po.append_eltwise(alg, alpha, beta);
#else
  po.append_eltwise(1.f, alg, alpha, beta);
#endif
}
// -------------------------------------------------------------------------------------

/// A weight packed by OnednnConv: oneDNN's description of its layout.
struct OnednnLayout : PackedLayout {
  explicit OnednnLayout(memory::desc d) : desc(std::move(d)) {}
  memory::desc desc;
};

const dnnl::engine& cpu_engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

/// oneDNN's threads are the CPU inference's (parallel_threads(): OMP_NUM_THREADS, else
/// the cores). OpenMP's count is per calling thread, and a
/// primitive's scratchpad depends on it, so this runs before a primitive is described
/// and before it runs.
void use_inference_threads() {
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
  const int n = parallel_threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

size_t floats_of(size_t bytes) { return (bytes + 63) / 64 * 16; }  // 64-byte steps

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  use_inference_threads();
  const dnnl_status_t st =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success) throw std::runtime_error("oneDNN sgemm failed with status " + std::to_string(st));
}

/// Images per call of a batched convolution: beyond it a call is no faster (ResNet-50 at
/// batch 32 in calls of 2 to 32 images: 49-52 images/s, within the noise), and its
/// scratchpad, planned in the workspace, only grows.
constexpr int64_t kImagesPerCall = 8;

/// Winograd's F(4x4, 3x3) (oneDNN 2.x on AVX-512; oneDNN 3 has none on x86) for a 3x3,
/// stride-1 Conv without a residual, in one of two ways. Times are per call of 8 images in
/// ResNet-50, direct -> Winograd with the copies to and from its nChw16c layout:
/// - Weights pre-transformed at load (4x ONNX's), read as they are at every call, by one
///   kernel for one image and one for a call of 8: where an image has at least as many
///   output pixels as the Conv has channels. 56x56x64: 3.8 -> 2.7 ms, 28x28x128: 3.6 -> 2.3
///   ms, for +6.6 MB of weights in all.
/// - Weights kept blocked (OIhw16i16o, ONNX's size) and transformed in the scratchpad at
///   each call of 8 images (oneDNN's training kernel), where a call has at least
///   kMinTilesPerCall output tiles: 14x14x256, 3.6 -> 2.9 ms (pre-transformed: 2.5 ms, for
///   +42 MB). One image goes to the direct kernel, which reads the same blocked weights
///   nearly as fast as its own layout; Winograd with a transform per image is slower.
/// 7x7x512 stays direct: Winograd was slower either way.
/// Its scratchpad grows with the images and channels of a call, far beyond the direct
/// kernel's (VGG-11's 112x112 64 -> 128: 28 MB for one image, 173 MB for 8), so a call takes
/// as many images as keep it and the copies within kWinogradCallBytes; a Conv whose one image
/// does not fit stays direct. ResNet-50's calls of 8 take 20-28 MB.
/// Its scratchpad is at least about 7 MB, so a small Conv stays direct: Winograd takes
/// those of at least kWinogradMinMacs per image (ResNet-50's: 116 M each).
bool pretransformed_winograd_pays(const ConvParams& p) { return p.oh * p.ow >= std::max(p.c, p.m); }
constexpr int64_t kMinTilesPerCall = 128;
constexpr size_t kWinogradCallBytes = size_t{32} << 20;
constexpr int64_t kWinogradMinMacs = 50'000'000;

/// A convolution of a fixed number of images: NHWC, or nChw16c copies for Winograd. The
/// batched one and the one-image one share the packed weights and give each image the same
/// result (Models.AnImageGetsTheSameResultAloneAsInAWholeOrShortBatch).
struct Kernel {
  memory::desc src, dst;
  dnnl::convolution_forward::primitive_desc pd;
  mutable dnnl::convolution_forward prim;  // made at the first run(): describing is cheap, generating code not
  bool winograd = false;  ///< its images are copied in from the activations' layout, and out
  dnnl::reorder::primitive_desc copy_in, copy_out;
  mutable dnnl::reorder copy_in_prim, copy_out_prim;
};

struct OnednnConv::Impl {
  ConvParams p;
  memory::desc w_plain, bias, src_plain, dst_plain;
  Kernel one;
  Kernel all;  ///< `chunk` images at once, in one's weight layout; when !batched, unused
  bool batched = false;
  int64_t chunk = 1;
  // The direct one-image kernel's copies between NCHW and NHWC.
  dnnl::reorder::primitive_desc src_reorder, res_reorder, dst_reorder;
  size_t scratch = 0, src_copy = 0, dst_copy = 0;  // floats, in that order in the workspace
  mutable bool made = false;
  mutable dnnl::reorder to_nhwc_src, to_nhwc_res, to_nchw_dst;

  /// False when oneDNN has no such kernel, or only its reference one. Winograd's training
  /// kernel (`transform_each_call`) takes plain blocked weights; its inference one, its own.
  bool describe(Kernel& k, const memory::desc& weights, int64_t n, bool winograd = false,
                bool transform_each_call = false) const {
    k.winograd = winograd;
    k.src = memory::desc({n, p.c, p.h, p.w}, kF32, winograd ? Tag::nChw16c : Tag::nhwc);
    k.dst = memory::desc({n, p.m, p.oh, p.ow}, kF32, winograd ? Tag::nChw16c : Tag::nhwc);
    // The residual is put in dst first (nothing to do when the planner put the output over
    // it), and the sum post-op adds what dst holds.
    dnnl::post_ops po;
    if (p.residual) po.append_sum(1.f);
    if (p.act.kind == FusedActivation::Kind::Relu) append_eltwise(po, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    if (p.act.kind == FusedActivation::Kind::Clip)
      append_eltwise(po, dnnl::algorithm::eltwise_clip, p.act.min, p.act.max);
    if (p.act.kind == FusedActivation::Kind::Swish) append_eltwise(po, dnnl::algorithm::eltwise_swish, 1.f, 0.f);
    dnnl::primitive_attr attr = user_scratchpad();
    attr.set_post_ops(po);
    try {
      k.pd = conv_primitive_desc(
          cpu_engine(), transform_each_call ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference,
          winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct, k.src, weights,
          bias, k.dst, {p.stride[0], p.stride[1]}, {p.dilation[0] - 1, p.dilation[1] - 1},
          {p.pad_begin[0], p.pad_begin[1]}, {p.pad_end[0], p.pad_end[1]}, attr);
    } catch (const dnnl::error&) {
      return false;  // a geometry or an algorithm oneDNN does not take
    }
    return std::string(k.pd.impl_info_str()).find("ref") == std::string::npos;
  }

  /// Winograd where it pays (see pretransformed_winograd_pays). Whether it is used, and the
  /// weights' layout, must not depend on the batch: weights are packed at load for batch 1,
  /// and Winograd's own layout cannot be reordered into another. So both ways are decided
  /// on kernels for kImagesPerCall images and for one.
  bool describe_winograd(const memory::dims& w_dims) {
    if (p.group != 1 || p.kh != 3 || p.kw != 3 || p.stride[0] != 1 || p.stride[1] != 1 || p.dilation[0] != 1 ||
        p.dilation[1] != 1 || p.residual || p.m * p.c * 9 * p.oh * p.ow < kWinogradMinMacs)
      return false;
    Kernel wide;
    if (pretransformed_winograd_pays(p)) {
      // Its layout for kImagesPerCall images, which the one-image kernel must read too.
      if (!describe(wide, memory::desc(w_dims, kF32, Tag::any), kImagesPerCall, true) ||
          !describe(one, wide.pd.weights_desc(), 1, true) || !(one.pd.weights_desc() == wide.pd.weights_desc()) ||
          call_bytes(one) > kWinogradCallBytes)
        return false;
      // As many images per call as fit kWinogradCallBytes (one by one at worst); a call of
      // kImagesPerCall is the kernel already described.
      for (int64_t n = chunk; n > 1 && !batched; n /= 2) {
        if (n == kImagesPerCall) all = wide;
        batched = (n == kImagesPerCall || describe(all, wide.pd.weights_desc(), n, true)) &&
                  call_bytes(all) <= kWinogradCallBytes;
        if (batched) chunk = n;
      }
      return true;
    }
    const int64_t tiles = kImagesPerCall * ((p.oh + 3) / 4) * ((p.ow + 3) / 4);
    const memory::desc blocked(w_dims, kF32, Tag::OIhw16i16o);
    if (tiles < kMinTilesPerCall || !describe(wide, blocked, kImagesPerCall, true, true) ||
        !describe(one, blocked, 1))
      return false;
    if (chunk == kImagesPerCall && call_bytes(wide) <= kWinogradCallBytes) {
      all = wide;
      batched = true;
    } else if (chunk > 1 && p.src_nhwc && p.dst_nhwc) {
      batched = describe(all, blocked, chunk);
    }
    return true;
  }

  /// A Winograd call's workspace: its scratchpad and the nChw16c copies of its images.
  static size_t call_bytes(const Kernel& k) {
    return k.pd.scratchpad_desc().get_size() + k.src.get_size() + k.dst.get_size();
  }


  void execute(const Kernel& k, const dnnl::stream& stream, const memory& src, const memory& weights,
               const memory& bias_mem, const memory& dst, const memory& scratch) const {
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}};
    if (p.bias) args.emplace(DNNL_ARG_BIAS, bias_mem);
    k.prim.execute(stream, args);
  }
};

OnednnConv::OnednnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnConv::~OnednnConv() = default;

std::unique_ptr<OnednnConv> OnednnConv::create(const ConvParams& p) {
  use_inference_threads();
  auto s = std::make_unique<Impl>();
  s->p = p;
  const int64_t g = p.group;
  const memory::dims w_dims = g == 1 ? memory::dims{p.m, p.c, p.kh, p.kw}
                                     : memory::dims{g, p.m / g, p.c / g, p.kh, p.kw};
  s->w_plain = memory::desc(w_dims, kF32, g == 1 ? Tag::oihw : Tag::goihw);
  s->bias = p.bias ? memory::desc({p.m}, kF32, Tag::x) : memory::desc();
  s->src_plain = memory::desc({1, p.c, p.h, p.w}, kF32, Tag::nchw);
  s->dst_plain = memory::desc({1, p.m, p.oh, p.ow}, kF32, Tag::nchw);
  s->chunk = std::min<int64_t>(p.batch, kImagesPerCall);
  if (!s->describe_winograd(w_dims)) {
    s->batched = false;
    if (!s->describe(s->one, memory::desc(w_dims, kF32, Tag::any), 1)) return nullptr;
    // Whole batches at once where no layout copy is needed, with the same packed weights.
    if (s->chunk > 1 && p.src_nhwc && p.dst_nhwc && (!p.residual || p.residual_nhwc))
      s->batched = s->describe(s->all, s->one.pd.weights_desc(), s->chunk);
  }

  size_t scratch = 0, src_copy = 0, dst_copy = 0;  // bytes
  auto layout_copy = [&](const memory::desc& from, const memory::desc& to) {
    dnnl::reorder::primitive_desc r(cpu_engine(), from, cpu_engine(), to, user_scratchpad());
    scratch = std::max(scratch, r.scratchpad_desc().get_size());
    return r;
  };
  for (Kernel* k : {&s->one, &s->all}) {
    if (k == &s->all && !s->batched) continue;
    scratch = std::max(scratch, k->pd.scratchpad_desc().get_size());
    if (!k->winograd) continue;
    const int64_t n = k == &s->all ? s->chunk : 1;
    k->copy_in = layout_copy(memory::desc({n, p.c, p.h, p.w}, kF32, p.src_nhwc ? Tag::nhwc : Tag::nchw), k->src);
    k->copy_out = layout_copy(k->dst, memory::desc({n, p.m, p.oh, p.ow}, kF32, p.dst_nhwc ? Tag::nhwc : Tag::nchw));
    src_copy = std::max(src_copy, k->src.get_size());
    dst_copy = std::max(dst_copy, k->dst.get_size());
  }
  if (!s->one.winograd) {
    if (!p.src_nhwc) s->src_reorder = layout_copy(s->src_plain, s->one.src);
    if (p.residual && !p.residual_nhwc) s->res_reorder = layout_copy(s->dst_plain, s->one.dst);
    if (!p.dst_nhwc) s->dst_reorder = layout_copy(s->one.dst, s->dst_plain);
    if (!p.src_nhwc) src_copy = std::max(src_copy, s->one.src.get_size());
    if (!p.dst_nhwc) dst_copy = std::max(dst_copy, s->one.dst.get_size());
  }
  s->scratch = floats_of(scratch);
  s->src_copy = floats_of(src_copy);
  s->dst_copy = floats_of(dst_copy);

  std::unique_ptr<OnednnConv> conv(new OnednnConv(std::move(s)));
  const Impl& i = *conv->impl_;
  conv->ws_floats_ = i.scratch + i.src_copy + i.dst_copy;
  conv->packed_floats_ = floats_of(i.one.pd.weights_desc().get_size());
  return conv;
}

const char* OnednnConv::kernel() const { return impl_->one.pd.impl_info_str(); }

void unpack_weights(const PackedLayout& packed, const float* src, float* oihw) {
  const auto* l = dynamic_cast<const OnednnLayout*>(&packed);
  if (!l) throw std::logic_error("unpack_weights: weights packed by another kind of op");
#if DNNL_VERSION_MAJOR >= 3
  const memory::dims dims = l->desc.get_dims();
#else
  const memory::dims dims = l->desc.dims();
#endif
  const memory::desc plain(dims, kF32, dims.size() == 5 ? Tag::goihw : Tag::oihw);
  dnnl::stream stream(cpu_engine());
  memory from(l->desc, cpu_engine(), const_cast<float*>(src)), to(plain, cpu_engine(), oihw);
  dnnl::reorder(from, to).execute(stream, from, to);
  stream.wait();
}

std::shared_ptr<const PackedLayout> OnednnConv::weights_layout() const {
  return std::make_shared<OnednnLayout>(impl_->one.pd.weights_desc());
}

bool OnednnConv::reads(const PackedLayout& l) const {
  const auto* o = dynamic_cast<const OnednnLayout*>(&l);
  return o && o->desc == impl_->one.pd.weights_desc();
}

void OnednnConv::pack_weights(const float* src, const PackedLayout* layout, float* dst) const {
  use_inference_threads();
  const Impl& s = *impl_;
  const auto* packed = dynamic_cast<const OnednnLayout*>(layout);
  if (layout && !packed) throw std::logic_error("OnednnConv: weights packed by another kind of op");
  dnnl::stream stream(cpu_engine());
  memory from(packed ? packed->desc : s.w_plain, cpu_engine(), const_cast<float*>(src));
  memory to(s.one.pd.weights_desc(), cpu_engine(), dst);
  dnnl::reorder(from, to).execute(stream, from, to);
  stream.wait();
}

void OnednnConv::run(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t n,
                     float* ws) const {
  use_inference_threads();
  const Impl& s = *impl_;
  const ConvParams& p = s.p;
  if (!s.made) {
    for (const Kernel* k : {&s.one, &s.all}) {
      if (k == &s.all && !s.batched) continue;
      k->prim = dnnl::convolution_forward(k->pd);
      if (!k->winograd) continue;
      k->copy_in_prim = dnnl::reorder(k->copy_in);
      k->copy_out_prim = dnnl::reorder(k->copy_out);
    }
    if (!s.one.winograd && !p.src_nhwc) s.to_nhwc_src = dnnl::reorder(s.src_reorder);
    if (!s.one.winograd && p.residual && !p.residual_nhwc) s.to_nhwc_res = dnnl::reorder(s.res_reorder);
    if (!s.one.winograd && !p.dst_nhwc) s.to_nchw_dst = dnnl::reorder(s.dst_reorder);
    s.made = true;
  }
  const dnnl::engine& eng = cpu_engine();
  dnnl::stream stream(eng);
  memory scratch(memory::desc({static_cast<int64_t>(s.scratch * sizeof(float))}, memory::data_type::u8, Tag::x),
                 eng, ws);
  memory weights(s.one.pd.weights_desc(), eng, const_cast<float*>(w));
  memory bias_mem = p.bias ? memory(s.bias, eng, const_cast<float*>(bias)) : memory();
  float* src_copy = ws + s.scratch;
  float* dst_copy = src_copy + s.src_copy;
  const int64_t in_img = p.c * p.h * p.w, out_img = p.m * p.oh * p.ow;
  // A Winograd call: its images copied to nChw16c, convolved, copied back.
  auto run_copied = [&](const Kernel& k, int64_t i) {
    const memory src(k.src, eng, src_copy), dst(k.dst, eng, dst_copy);
    const memory in(k.copy_in.src_desc(), eng, const_cast<float*>(x + i * in_img));
    const memory out(k.copy_out.dst_desc(), eng, y + i * out_img);
    k.copy_in_prim.execute(stream, {{DNNL_ARG_FROM, in}, {DNNL_ARG_TO, src}, {DNNL_ARG_SCRATCHPAD, scratch}});
    s.execute(k, stream, src, weights, bias_mem, dst, scratch);
    k.copy_out_prim.execute(stream, {{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, out}, {DNNL_ARG_SCRATCHPAD, scratch}});
  };
  // Whole chunks of images in one call each (a direct one reads and writes the NHWC
  // activations as they are), the rest one by one.
  const int64_t batched = s.batched ? n / s.chunk * s.chunk : 0;
  if (batched && s.all.winograd) {
    for (int64_t i = 0; i < batched; i += s.chunk) run_copied(s.all, i);
  } else if (batched) {
    memory src_all(s.all.src, eng, nullptr), dst_all(s.all.dst, eng, nullptr);
    if (p.residual && res != y)
      std::memcpy(y, res, static_cast<size_t>(batched * out_img) * sizeof(float));
    for (int64_t i = 0; i < batched; i += s.chunk) {
      src_all.set_data_handle(const_cast<float*>(x + i * in_img));
      dst_all.set_data_handle(y + i * out_img);
      s.execute(s.all, stream, src_all, weights, bias_mem, dst_all, scratch);
    }
  }
  memory src(s.one.src, eng, src_copy), dst(s.one.dst, eng, dst_copy);
  memory src_plain(s.src_plain, eng, nullptr), dst_plain(s.dst_plain, eng, nullptr);
  for (int64_t i = batched; i < n; ++i) {
    if (s.one.winograd) {
      run_copied(s.one, i);
      continue;
    }
    float* xi = const_cast<float*>(x + i * in_img);
    if (p.src_nhwc) {
      src.set_data_handle(xi);
    } else {
      src_plain.set_data_handle(xi);
      s.to_nhwc_src.execute(stream, {{DNNL_ARG_FROM, src_plain}, {DNNL_ARG_TO, src}, {DNNL_ARG_SCRATCHPAD, scratch}});
    }
    if (p.dst_nhwc) dst.set_data_handle(y + i * out_img);
    if (p.residual) {  // into dst, where the sum post-op reads it
      float* ri = const_cast<float*>(res + i * out_img);
      if (!p.residual_nhwc) {
        dst_plain.set_data_handle(ri);
        s.to_nhwc_res.execute(stream, {{DNNL_ARG_FROM, dst_plain}, {DNNL_ARG_TO, dst}, {DNNL_ARG_SCRATCHPAD, scratch}});
      } else if (dst.get_data_handle() != ri) {
        std::memcpy(dst.get_data_handle(), ri, static_cast<size_t>(out_img) * sizeof(float));
      }
    }
    s.execute(s.one, stream, src, weights, bias_mem, dst, scratch);
    if (!p.dst_nhwc) {
      dst_plain.set_data_handle(y + i * out_img);
      s.to_nchw_dst.execute(stream, {{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, dst_plain}, {DNNL_ARG_SCRATCHPAD, scratch}});
    }
  }
  stream.wait();
}

}  // namespace imgpipe::infer
