#include "cuda_plan.h"

#include <algorithm>
#include <limits>
#include <string>

#include "cuda_ops.h"
#include "geometry.h"
#include "planner.h"

namespace imgpipe::infer::cuda {
namespace {

[[noreturn]] void unsupported(const std::string& what) { throw UnsupportedModel(what); }

/// The CPU ops' window rules (explicit pads or auto_pad, ceil_mode for pooling), 2-D only.
void windows(const Node& n, const Shape& x, const Shape& kernel, bool ceil_mode, Window* w) {
  if (kernel.size() != 2 || x.size() != 4)
    unsupported("only 2-D windows (rank-4 input) are supported, got " + to_string(x));
  const std::vector<Window> both = infer::windows(n, x, kernel, ceil_mode);
  w[0] = both[0];
  w[1] = both[1];
}

float const_scalar(const ResolvedGraph& g, int v, float def, const char* what) {
  if (v < 0) return def;
  const Value& val = g.values[v];
  if (!val.constant) unsupported(std::string(what) + " must be constant");
  return static_cast<float>(val.constant->at(0));
}

std::vector<int64_t> const_ints(const ResolvedGraph& g, int v, const char* what) {
  const Value& val = g.values[v];
  if (!val.constant) unsupported(std::string(what) + " must be constant");
  std::vector<int64_t> r(val.constant->size());
  for (int64_t k = 0; k < val.constant->size(); ++k) r[k] = val.constant->int_at(k);
  return r;
}

void check_rank(const Shape& s) {
  if (s.size() > static_cast<size_t>(kMaxRank)) unsupported("rank above 8");
}

/// Row-major element strides of x.
Shape strides_of(const Shape& x) {
  Shape st(x.size());
  for (size_t d = x.size(), step = 1; d-- > 0;) {
    st[d] = static_cast<int64_t>(step);
    step *= static_cast<size_t>(x[d]);
  }
  return st;
}

/// A Slice or Transpose geometry as a strided read.
Strided strided_of(const SliceGeometry& geo) {
  check_rank(geo.shape);
  Strided s;
  s.rank = static_cast<int>(geo.shape.size());
  for (int d = 0; d < s.rank; ++d) {
    s.dims[d] = geo.shape[d];
    s.a[d] = geo.step[d] * geo.in_strides[d];
    s.a_base += geo.begin[d] * geo.in_strides[d];
  }
  return s;
}

/// Gather along `axis` of x with constant, evenly spaced indices (a scalar or a list) as a
/// strided read; anything else is unsupported.
Strided gather_strides(const Shape& x, int64_t axis, const Shape& idx_shape, std::vector<int64_t> idx,
                       const Shape& out) {
  check_rank(out);
  if (idx_shape.size() > 1 || idx.empty()) unsupported("Gather indices of rank above 1");
  for (int64_t& i : idx) {
    if (i < 0) i += x[axis];
    if (i < 0 || i >= x[axis]) unsupported("Gather index out of range");
  }
  const int64_t step = idx.size() > 1 ? idx[1] - idx[0] : 1;
  for (size_t j = 1; j < idx.size(); ++j)
    if (idx[j] - idx[j - 1] != step) unsupported("Gather indices not evenly spaced");
  const Shape xs = strides_of(x);
  Strided s;
  s.rank = static_cast<int>(out.size());
  int d = 0;
  for (int64_t k = 0; k < axis; ++k, ++d) s.a[d] = xs[k];
  if (idx_shape.size() == 1) s.a[d++] = step * xs[axis];
  for (size_t k = axis + 1; k < x.size(); ++k, ++d) s.a[d] = xs[k];
  for (d = 0; d < s.rank; ++d) s.dims[d] = out[d];
  s.a_base = idx[0] * xs[axis];
  return s;
}

}  // namespace

CudaStep describe_step(const ResolvedGraph& g, size_t k, int opset, Precision p,
                       const CudaOptions& opt) {
  const Step& st = g.steps[k];
  const Node& n = *st.node;
  const std::string& t = n.op_type;
  const size_t es = element_size(p);
  auto in_shape = [&](size_t i) -> const Shape& { return g.values.at(st.inputs.at(i)).shape; };
  auto has_input = [&](size_t i) { return st.inputs.size() > i && st.inputs[i] >= 0; };
  const Shape& out = g.values[st.output].shape;
  using K = CudaStep::Kind;
  using U = CudaStep::Unary;
  using B = CudaStep::Binary;
  CudaStep s;
  if (t == "Conv") {
    s.kind = K::Conv;
    const Shape& x = in_shape(0);
    const Shape& w = in_shape(1);
    if (x.size() != 4 || w.size() != 4) unsupported("only 2-D convolution is supported");
    s.group = attr_int(n, "group", 1);
    windows(n, x, {w[2], w[3]}, false, s.win);
    s.has_bias = has_input(2);
    s.act = n.fused;
    s.asymmetric_pad = s.win[0].pad_begin != s.win[0].pad_end || s.win[1].pad_begin != s.win[1].pad_end;
    if (s.asymmetric_pad)
      s.pad_bytes = cuda_align(static_cast<size_t>(x[0] * x[1] * (x[2] + s.win[0].pad_begin + s.win[0].pad_end) *
                                                   (x[3] + s.win[1].pad_begin + s.win[1].pad_end)) * es);
    const size_t im2col = static_cast<size_t>(x[0] * x[1] * w[2] * w[3] * out[2] * out[3]) * es;
    s.cudnn_bytes = cuda_align(std::min(opt.cudnn_workspace_cap, im2col));
  } else if (t == "BatchNormalization") {
    s.kind = K::BatchNorm;
    s.eps = attr_float(n, "epsilon", 1e-5f);
  } else if (t == "Relu" || t == "LeakyRelu" || t == "Clip" || t == "Sigmoid" || t == "HardSigmoid" ||
             t == "HardSwish" || t == "Tanh" || t == "Sqrt" || t == "Erf" || t == "Neg" || t == "Not") {
    s.kind = K::Unary;
    if (t == "Relu") s.unary = U::Relu;
    if (t == "LeakyRelu") { s.unary = U::LeakyRelu; s.alpha = attr_float(n, "alpha", 0.01f); }
    if (t == "Sigmoid") s.unary = U::Sigmoid;
    if (t == "HardSwish") s.unary = U::HardSwish;
    if (t == "Tanh") s.unary = U::Tanh;
    if (t == "Sqrt") s.unary = U::Sqrt;
    if (t == "Erf") s.unary = U::Erf;
    if (t == "Neg") s.unary = U::Neg;
    if (t == "Not") s.unary = U::Not;
    if (t == "HardSigmoid") {
      s.unary = U::HardSigmoid;
      s.alpha = attr_float(n, "alpha", 0.2f);
      s.beta = attr_float(n, "beta", 0.5f);
    }
    if (t == "Clip") {
      s.unary = U::Clip;
      s.lo = attr_float(n, "min", -std::numeric_limits<float>::infinity());
      s.hi = attr_float(n, "max", std::numeric_limits<float>::infinity());
      if (has_input(1)) s.lo = const_scalar(g, st.inputs[1], s.lo, "Clip bounds");
      if (has_input(2)) s.hi = const_scalar(g, st.inputs[2], s.hi, "Clip bounds");
    }
  } else if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div" || t == "Pow" || t == "Equal" || t == "Mod") {
    s.kind = K::Binary;
    s.binary = t == "Add" ? B::Add : t == "Sub" ? B::Sub : t == "Mul" ? B::Mul : t == "Div" ? B::Div
             : t == "Pow" ? B::Pow : t == "Equal" ? B::Equal : attr_int(n, "fmod", 0) ? B::FMod : B::Mod;
    check_rank(out);
  } else if (t == "Where") {
    s.kind = K::Where;
    check_rank(out);
  } else if (t == "Expand") {
    s.kind = K::Copy;
    check_rank(out);
    s.copy.rank = static_cast<int>(out.size());
    for (size_t d = 0; d < out.size(); ++d) s.copy.dims[d] = out[d];
    broadcast_strides(in_shape(0), out, s.copy.a);
  } else if (t == "Slice") {
    s.kind = K::Copy;
    // Opsets 11 and later (what the loader takes): starts, ends, axes and steps are inputs.
    std::vector<int64_t> axes, steps;
    if (has_input(3)) axes = const_ints(g, st.inputs[3], "Slice axes");
    if (has_input(4)) steps = const_ints(g, st.inputs[4], "Slice steps");
    s.copy = strided_of(slice_geometry(in_shape(0), const_ints(g, st.inputs.at(1), "Slice starts"),
                                       const_ints(g, st.inputs.at(2), "Slice ends"), axes, steps));
  } else if (t == "Gather") {
    s.kind = K::Copy;
    const Shape& x = in_shape(0);
    const int64_t axis = norm_axis(attr_int(n, "axis", 0), x.size());
    s.copy = gather_strides(x, axis, in_shape(1), const_ints(g, st.inputs.at(1), "Gather indices"), out);
  } else if (t == "Pad") {
    s.kind = K::Pad;
    const Shape& x = in_shape(0);
    check_rank(x);
    const std::string mode = attr_string(n, "mode", "constant");
    s.pad_mode = mode == "reflect" ? PadMode::Reflect : mode == "edge" ? PadMode::Edge : PadMode::Constant;
    const std::vector<int64_t> pads = const_ints(g, st.inputs.at(1), "Pad pads");  // an input from opset 11
    s.pad_value = const_scalar(g, has_input(2) ? st.inputs[2] : -1, 0.f, "Pad value");
    if (pads.size() != 2 * x.size()) unsupported("pads do not match the input rank");
    s.pad.rank = static_cast<int>(x.size());
    for (size_t d = 0; d < x.size(); ++d) {
      s.pad.in[d] = x[d];
      s.pad.out[d] = out[d];
      s.pad.begin[d] = pads[d];
    }
  } else if (t == "MaxPool" || t == "AveragePool") {
    s.kind = t == "MaxPool" ? K::MaxPool : K::AvgPool;
    s.ceil_mode = attr_int(n, "ceil_mode", 0) != 0;
    s.count_include_pad = attr_int(n, "count_include_pad", 0) != 0;
    windows(n, in_shape(0), attr_ints(n, "kernel_shape"), s.ceil_mode, s.win);
  } else if (t == "GlobalAveragePool") {
    s.kind = K::GlobalAvgPool;
  } else if (t == "Flatten" || t == "Reshape" || t == "Squeeze" || t == "Unsqueeze" || t == "Identity" ||
             t == "Dropout" || t == "Cast") {
    // Same bytes, new shape: the output shares its input's memory. (Cast of an activation
    // is to float only: the CPU op refuses the others at load.)
    s.kind = K::View;
  } else if (t == "Transpose") {
    s.kind = K::Copy;
    s.copy = strided_of(transpose_geometry(in_shape(0), attr_ints(n, "perm")));
  } else if (t == "Concat") {
    s.kind = K::Concat;
    s.axis = norm_axis(attr_int(n, "axis", 0), out.size());
  } else if (t == "Gemm") {
    s.kind = K::Gemm;
    s.trans_a = attr_int(n, "transA", 0) != 0;
    s.trans_b = attr_int(n, "transB", 0) != 0;
    s.alpha = attr_float(n, "alpha", 1.f);
    s.beta = attr_float(n, "beta", 1.f);
    s.has_c = has_input(2) && s.beta != 0.f;
  } else if (t == "MatMul") {
    s.kind = K::MatMul;
    check_rank(out);
  } else if (t == "Softmax") {
    s.kind = K::Softmax;
    s.axis = norm_axis(attr_int(n, "axis", opset >= 13 ? -1 : 1), out.size());
    s.softmax_flat = opset < 13;
  } else if (t == "ReduceMean") {
    s.kind = K::ReduceMean;
    const Shape& x = in_shape(0);
    check_rank(x);
    std::vector<int64_t> axes = attr_ints(n, "axes");
    if (has_input(1)) axes = const_ints(g, st.inputs[1], "axes");
    s.reduced.assign(x.size(), false);
    if (axes.empty() && attr_int(n, "noop_with_empty_axes", 0) == 0) s.reduced.assign(x.size(), true);
    for (int64_t a : axes) s.reduced[norm_axis(a, x.size())] = true;
  } else if (t == "LayerNormalization") {
    s.kind = K::LayerNorm;
    const Shape& x = in_shape(0);
    s.axis = norm_axis(attr_int(n, "axis", -1), x.size());
    s.eps = attr_float(n, "epsilon", 1e-5f);
    s.has_bias = has_input(2);
    const int64_t len = numel(Shape(x.begin() + s.axis, x.end()));
    if (numel(in_shape(1)) != len || (s.has_bias && numel(in_shape(2)) != len))
      unsupported("LayerNormalization scale or bias broadcast over the normalised block");
  } else {
    unsupported("node '" + n.name + "' (" + t + ", opset " + std::to_string(opset) +
                "): not supported by the CUDA backend");
  }
  return s;
}

CudaLayout make_cuda_layout(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch, int opset,
                            Precision p, const CudaOptions& opt) {
  CudaLayout l;
  const size_t es = element_size(p);
  const size_t nv = g.values.size();
  l.unit0 = batch_units(g, one, batch, l.separable);
  l.offset.assign(nv, 0);
  l.storage.resize(nv);
  for (size_t v = 0; v < nv; ++v) l.storage[v] = static_cast<int>(v);

  bool blas = false;
  size_t scratch = 0;
  for (size_t k = 0; k < g.steps.size(); ++k) {
    CudaStep s = describe_step(g, k, opset, p, opt);
    const Step& st = g.steps[k];
    if (s.kind == CudaStep::Kind::View) {
      if (g.values[st.inputs[0]].constant) unsupported("a view of a constant was not folded");
      l.storage[st.output] = l.storage[st.inputs[0]];
    }
    blas = blas || s.kind == CudaStep::Kind::Gemm || s.kind == CudaStep::Kind::MatMul;
    scratch = std::max(scratch, s.scratch_bytes());
    l.steps.push_back(std::move(s));
  }
  const Shape& out = g.values[g.output].shape;
  if (p == Precision::FP16) {  // host fp32 input and output are converted through scratch
    scratch = std::max(scratch, cuda_align(static_cast<size_t>(numel(g.values[g.input].shape)) * 4));
    l.sort_offset = cuda_align(static_cast<size_t>(numel(out)) * 4);
    scratch = std::max(scratch, l.sort_offset);
  }
  if (opt.top_k > 0) {  // the fp32 output ranked per image, after the fp16 one's conversion
    const int64_t rows = out.empty() ? 1 : out[0];
    scratch = std::max(scratch, l.sort_offset + sort_rows_scratch_bytes(rows, numel(out) / std::max<int64_t>(rows, 1)));
  }

  // Activations: one interval per storage owner, covering the uses of all its views.
  std::vector<int> first(nv, 0), last(nv, -1);
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    if (val.constant) continue;
    const int root = l.storage[v];
    if (root == static_cast<int>(v)) first[v] = std::max(val.def, 0);
    last[root] = std::max({last[root], val.last_use, val.def});
  }
  std::vector<Interval> acts;
  std::vector<size_t> owner;
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    const size_t bytes = cuda_align(static_cast<size_t>(numel(val.shape)) * es);
    if (val.constant) {
      if (!val.weight) continue;
      l.offset[v] = l.plan.weight_bytes;
      l.plan.weight_bytes += bytes;
    } else if (l.storage[v] == static_cast<int>(v)) {
      acts.push_back({bytes, first[v], std::max(last[v], first[v])});
      owner.push_back(v);
      l.sum_activation_bytes += bytes;
    }
  }
  std::vector<size_t> offsets;
  l.plan.arena_bytes = assign_offsets(acts, offsets);
  for (size_t k = 0; k < acts.size(); ++k) l.offset[owner[k]] = offsets[k];
  for (size_t v = 0; v < nv; ++v)
    if (!g.values[v].constant && l.storage[v] != static_cast<int>(v)) l.offset[v] = l.offset[l.storage[v]];

  l.cublas_bytes = blas ? cuda_align(opt.cublas_workspace) : 0;
  l.scratch_bytes = scratch;
  l.plan.workspace_bytes = l.cublas_bytes + l.scratch_bytes;
  return l;
}

MemoryPlan cuda_plan(const Graph& graph, int batch, Precision p, const CudaOptions& opt) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  return make_cuda_layout(resolve(graph, batch), resolve(graph, 1), batch, graph.opset, p, opt).plan;
}

}  // namespace imgpipe::infer::cuda
