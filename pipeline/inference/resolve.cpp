#include "resolve.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "geometry.h"

namespace imgpipe::infer {
namespace {

[[noreturn]] void fail(const std::string& what) { throw UnsupportedModel(what); }

int64_t norm(int64_t axis, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) fail("axis " + std::to_string(axis) + " out of range");
  return axis < 0 ? axis + r : axis;
}

std::vector<int64_t> ints_of(const Constant& c) {
  std::vector<int64_t> r(c.size());
  for (int64_t k = 0; k < c.size(); ++k) r[k] = c.int_at(k);
  return r;
}

Constant make_ints(Shape shape, std::vector<int64_t> v) {
  Constant c;
  c.type = Constant::Type::Int64;
  c.shape = std::move(shape);
  c.i = std::move(v);
  return c;
}

/// Output of an index-shuffling op: element k of `out` comes from src element idx[k].
Constant take(const Constant& src, Shape shape, const std::vector<int64_t>& idx) {
  Constant c;
  c.type = src.type;
  c.shape = std::move(shape);
  if (src.type == Constant::Type::Float)
    for (int64_t k : idx) c.f.push_back(src.f[k]);
  else
    for (int64_t k : idx) c.i.push_back(src.i[k]);
  return c;
}

Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (size_t k = s.size(); k-- > 1;) st[k - 1] = st[k] * s[k];
  return st;
}

/// An int64 constant (a folded mask, an index) read as data: the same values as floats.
std::shared_ptr<const Constant> as_float(const Constant& c) {
  auto f = std::make_shared<Constant>();
  f->shape = c.shape;
  for (int64_t v : c.i) {
    if (v > (int64_t{1} << 24) || v < -(int64_t{1} << 24)) fail("int64 data value " + std::to_string(v) + " has no exact float");
    f->f.push_back(static_cast<float>(v));
  }
  return f;
}

/// Throws one UnsupportedModel naming every node no op or folding rule handles.
void check_ops(const Graph& g) {
  // ops that are folded (and Cast, whose support depends on its input)
  static const std::set<std::string> kFoldOnly = {"Shape", "ConstantOfShape", "Range", "ScatterND", "Cast"};
  std::string bad;
  int count = 0;
  for (const Node& n : g.nodes) {
    if (kFoldOnly.count(n.op_type)) continue;
    try {
      make_op(n, g.opset);
    } catch (const UnsupportedModel& e) {
      bad += std::string(count++ ? "; " : "") + "node '" + n.name + "' (" + n.op_type + ", opset " +
             std::to_string(g.opset) + "): " + e.what();
    }
  }
  if (count == 1) throw UnsupportedModel(bad);
  if (count) throw UnsupportedModel(std::to_string(count) + " unsupported nodes: " + bad);
}

/// Folds an elementwise op (numpy broadcasting) or Expand whose inputs are all constant,
/// in double precision; int64 stays int64 except where a float takes part.
bool fold_elementwise(const Node& n, const std::vector<const Value*>& in, Constant& out) {
  const std::string& t = n.op_type;
  static const std::set<std::string> kOps = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Neg",
                                             "Equal", "Not", "Mod", "Where", "Expand"};
  if (!kOps.count(t)) return false;
  std::vector<const Constant*> cs;
  for (const Value* v : in) {
    if (!v) return false;
    cs.push_back(v->constant.get());
  }
  size_t n_data = cs.size();
  Shape shape = cs[0]->shape;
  if (t == "Expand") {
    shape = broadcast_shapes(shape, ints_of(*cs.at(1)));
    n_data = 1;
  }
  for (size_t k = 1; k < n_data; ++k) shape = broadcast_shapes(shape, cs[k]->shape);
  bool any_float = false;
  for (size_t k = t == "Where" ? 1 : 0; k < n_data; ++k) any_float |= cs[k]->type == Constant::Type::Float;
  const bool is_float = any_float && t != "Equal" && t != "Not";
  const bool fmod = attr_int(n, "fmod", 0) != 0;
  if (shape.size() > 8) fail("rank above 8");
  int64_t st[3][8];
  for (size_t k = 0; k < n_data; ++k) broadcast_strides(cs[k]->shape, shape, st[k]);
  out = Constant{};
  out.type = is_float ? Constant::Type::Float : Constant::Type::Int64;
  out.shape = shape;
  double v[3] = {0, 0, 0};
  for (int64_t e = 0; e < numel(shape); ++e) {
    for (size_t k = 0; k < n_data; ++k) {
      int64_t rem = e, off = 0;
      for (size_t d = shape.size(); d-- > 0;) {
        off += (rem % shape[d]) * st[k][d];
        rem /= shape[d];
      }
      v[k] = cs[k]->at(off);
    }
    double y = v[0];
    if (t == "Add") y = v[0] + v[1];
    else if (t == "Sub") y = v[0] - v[1];
    else if (t == "Mul") y = v[0] * v[1];
    else if (t == "Div") {
      if (!is_float && v[1] == 0) fail("integer division by zero");
      y = is_float ? v[0] / v[1] : std::trunc(v[0] / v[1]);
    } else if (t == "Pow") y = std::pow(v[0], v[1]);
    else if (t == "Sqrt") y = std::sqrt(v[0]);
    else if (t == "Erf") y = std::erf(v[0]);
    else if (t == "Neg") y = -v[0];
    else if (t == "Equal") y = v[0] == v[1];
    else if (t == "Not") y = v[0] == 0;
    else if (t == "Where") y = v[0] != 0 ? v[1] : v[2];
    else if (t == "Mod") {
      if (v[1] == 0) fail("Mod by zero");
      y = std::fmod(v[0], v[1]);
      if (!fmod && y != 0 && (y < 0) != (v[1] < 0)) y += v[1];
    }
    if (is_float) out.f.push_back(static_cast<float>(y));
    else out.i.push_back(static_cast<int64_t>(y));
  }
  return true;
}

/// Folds a node whose inputs are all constant (Shape only needs its input's shape).
/// Returns false when the op is not a foldable one.
bool fold(const Node& n, int opset, const std::vector<const Value*>& in, Constant& out) {
  const std::string& t = n.op_type;
  auto c = [&](size_t k) -> const Constant& { return *in.at(k)->constant; };
  if (t == "Shape") {
    const Shape& s = in[0]->shape;
    const int64_t r = static_cast<int64_t>(s.size());
    int64_t start = attr_int(n, "start", 0), end = attr_int(n, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = std::clamp<int64_t>(start, 0, r);
    end = std::clamp<int64_t>(end, start, r);
    out = make_ints({end - start}, Shape(s.begin() + start, s.begin() + end));
    return true;
  }
  for (const Value* v : in)
    if (v && !v->constant) return false;
  if (t == "Identity") { out = c(0); return true; }
  if (t == "Cast") {
    const int64_t to = attr_int(n, "to", 0);
    const Constant& x = c(0);
    out = Constant{};
    out.shape = x.shape;
    using TP = onnx::TensorProto;
    if (to == TP::FLOAT || to == TP::DOUBLE || to == TP::FLOAT16) {
      out.type = Constant::Type::Float;
      for (int64_t k = 0; k < x.size(); ++k) out.f.push_back(static_cast<float>(x.at(k)));
    } else if (to == TP::INT64 || to == TP::INT32) {
      out.type = Constant::Type::Int64;
      for (int64_t k = 0; k < x.size(); ++k) out.i.push_back(x.int_at(k));
    } else if (to == TP::BOOL) {  // kept as 0/1 integers (Swin's attention mask)
      out.type = Constant::Type::Int64;
      for (int64_t k = 0; k < x.size(); ++k) out.i.push_back(x.at(k) != 0);
    } else {
      fail("Cast to data type " + std::to_string(to) + " is not supported");
    }
    return true;
  }
  if (t == "Gather") {
    const Constant &x = c(0), &ix = c(1);
    const int64_t axis = norm(attr_int(n, "axis", 0), x.shape.size());
    Shape shape(x.shape.begin(), x.shape.begin() + axis);
    shape.insert(shape.end(), ix.shape.begin(), ix.shape.end());
    shape.insert(shape.end(), x.shape.begin() + axis + 1, x.shape.end());
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < axis; ++k) outer *= x.shape[k];
    for (size_t k = axis + 1; k < x.shape.size(); ++k) inner *= x.shape[k];
    const int64_t len = x.shape[axis];
    std::vector<int64_t> idx;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < ix.size(); ++j) {
        int64_t g = ix.int_at(j);
        if (g < 0) g += len;
        if (g < 0 || g >= len) fail("Gather index out of range");
        for (int64_t i = 0; i < inner; ++i) idx.push_back((o * len + g) * inner + i);
      }
    out = take(x, shape, idx);
    return true;
  }
  if (t == "Unsqueeze" || t == "Squeeze" || t == "Reshape" || t == "Flatten") {
    const Constant& x = c(0);
    Shape shape;
    if (t == "Reshape") {
      shape = reshape_shape(x.shape, ints_of(c(1)), attr_int(n, "allowzero", 0) != 0);
    } else if (t == "Flatten") {
      int64_t axis = attr_int(n, "axis", 1);
      if (axis < 0) axis += static_cast<int64_t>(x.shape.size());
      int64_t outer = 1;
      for (int64_t k = 0; k < axis; ++k) outer *= x.shape[k];
      shape = {outer, x.size() / std::max<int64_t>(outer, 1)};
    } else {
      const std::vector<int64_t> axes = opset >= 13 && in.size() > 1 ? ints_of(c(1)) : attr_ints(n, "axes");
      shape = t == "Squeeze" ? squeeze_shape(x.shape, axes) : unsqueeze_shape(x.shape, axes);
    }
    out = x;
    out.shape = shape;
    return true;
  }
  if (t == "Concat") {
    const size_t r = c(0).shape.size();
    const int64_t axis = norm(attr_int(n, "axis", 0), r);
    Shape shape = c(0).shape;
    shape[axis] = 0;
    for (size_t k = 0; k < in.size(); ++k) shape[axis] += c(k).shape[axis];
    int64_t outer = 1;
    for (int64_t k = 0; k < axis; ++k) outer *= shape[k];
    out = Constant{};
    out.type = c(0).type;
    out.shape = shape;
    for (int64_t o = 0; o < outer; ++o)
      for (size_t k = 0; k < in.size(); ++k) {
        const Constant& x = c(k);
        if (x.type != out.type) fail("Concat of different data types");
        const int64_t chunk = x.size() / std::max<int64_t>(outer, 1);
        for (int64_t e = 0; e < chunk; ++e) {
          if (out.type == Constant::Type::Float) out.f.push_back(x.f[o * chunk + e]);
          else out.i.push_back(x.i[o * chunk + e]);
        }
      }
    return true;
  }
  if (t == "Slice") {
    const Constant& x = c(0);
    const SliceGeometry sg = slice_geometry(x.shape, ints_of(c(1)), ints_of(c(2)),
                                            in.size() > 3 && in[3] ? ints_of(c(3)) : std::vector<int64_t>{},
                                            in.size() > 4 && in[4] ? ints_of(c(4)) : std::vector<int64_t>{});
    std::vector<int64_t> idx(static_cast<size_t>(numel(sg.shape)));
    for (size_t k = 0; k < idx.size(); ++k) idx[k] = slice_offset(static_cast<int64_t>(k), sg);
    out = take(x, sg.shape, idx);
    return true;
  }
  if (t == "Transpose") {  // Swin's window padding transposes a small int tensor
    const Constant& x = c(0);
    const std::vector<int64_t> perm = attr_ints(n, "perm");
    if (!perm.empty() && perm.size() != x.shape.size()) fail("Transpose perm of another rank than the data");
    const SliceGeometry tg = transpose_geometry(x.shape, perm);
    std::vector<int64_t> idx(static_cast<size_t>(numel(tg.shape)));
    for (size_t k = 0; k < idx.size(); ++k) idx[k] = slice_offset(static_cast<int64_t>(k), tg);
    out = take(x, tg.shape, idx);
    return true;
  }
  if (t == "ConstantOfShape") {
    out = Constant{};
    out.shape = ints_of(c(0));
    if (has_attr(n, "value")) {
      const Constant v = constant_from_tensor(n.attrs.at("value").t(), "");
      out.type = v.type;
      if (v.type == Constant::Type::Float) out.f.assign(numel(out.shape), v.f.at(0));
      else out.i.assign(numel(out.shape), v.i.at(0));
    } else {
      out.f.assign(numel(out.shape), 0.f);
    }
    return true;
  }
  if (t == "Range") {
    const double start = c(0).at(0), limit = c(1).at(0), delta = c(2).at(0);
    if (delta == 0) fail("Range delta 0");
    const auto count = static_cast<int64_t>(std::max(0.0, std::ceil((limit - start) / delta)));
    out = Constant{};
    out.type = c(0).type;
    out.shape = {count};
    for (int64_t k = 0; k < count; ++k) {
      if (out.type == Constant::Type::Float) out.f.push_back(static_cast<float>(start + k * delta));
      else out.i.push_back(static_cast<int64_t>(start) + k * static_cast<int64_t>(delta));
    }
    return true;
  }
  if (t == "ScatterND") {
    if (attr_string(n, "reduction", "none") != "none") fail("ScatterND reduction is not supported");
    const Constant &x = c(0), &ix = c(1), &upd = c(2);
    if (ix.shape.empty() || upd.type != x.type) fail("ScatterND indices or updates do not fit the data");
    const size_t q = static_cast<size_t>(ix.shape.back());
    if (q > x.shape.size()) fail("ScatterND index longer than the data rank");
    int64_t slice = 1;
    for (size_t k = q; k < x.shape.size(); ++k) slice *= x.shape[k];
    const Shape xs = strides_of(x.shape);
    out = x;
    for (int64_t j = 0; j * static_cast<int64_t>(q) < ix.size(); ++j) {
      int64_t off = 0;
      for (size_t d = 0; d < q; ++d) {
        int64_t v = ix.int_at(j * q + d);
        if (v < 0) v += x.shape[d];
        if (v < 0 || v >= x.shape[d]) fail("ScatterND index out of range");
        off += v * xs[d];
      }
      for (int64_t e = 0; e < slice; ++e) {
        if (x.type == Constant::Type::Float) out.f[off + e] = upd.f.at(j * slice + e);
        else out.i[off + e] = upd.i.at(j * slice + e);
      }
    }
    return true;
  }
  return fold_elementwise(n, in, out);
}
}  // namespace

ResolvedGraph resolve(const Graph& g, int64_t batch) {
  check_ops(g);
  ResolvedGraph r;
  std::map<std::string, int> index;
  auto add = [&](Value v) {
    index[v.name] = static_cast<int>(r.values.size());
    r.values.push_back(std::move(v));
    return static_cast<int>(r.values.size()) - 1;
  };
  Value input;
  input.name = g.input_name;
  input.shape = g.input_shape;
  input.shape.insert(input.shape.begin(), batch);
  input.def = 0;
  r.input = add(std::move(input));

  for (const Node& n : g.nodes) {
    const std::string label = "node '" + n.name + "' (" + n.op_type + ", opset " + std::to_string(g.opset) + ")";
    try {
      std::vector<const Value*> ins;
      std::vector<int> ids;
      for (const std::string& name : n.inputs) {
        if (name.empty()) { ids.push_back(-1); continue; }
        auto it = index.find(name);
        if (it == index.end()) {
          auto c = g.constants.find(name);
          if (c == g.constants.end()) fail("input '" + name + "' is not produced by any node");
          Value v;
          v.name = name;
          v.shape = c->second->shape;
          v.constant = c->second;
          it = index.emplace(name, add(std::move(v))).first;
        }
        ids.push_back(it->second);
      }
      for (int id : ids) ins.push_back(id < 0 ? nullptr : &r.values[id]);  // after all adds
      Constant folded;
      if (fold(n, g.opset, ins, folded)) {
        Value v;
        v.name = n.outputs.at(0);
        v.shape = folded.shape;
        v.constant = std::make_shared<Constant>(std::move(folded));
        add(std::move(v));
        continue;
      }
      Step step;
      step.node = &n;
      step.op = make_op(n, g.opset);
      std::vector<ValueInfo> infos;
      for (const Value* v : ins) infos.push_back(v ? ValueInfo{v->shape, v->constant.get()} : ValueInfo{});
      const Shape out_shape = step.op->setup(infos);
      const int s = static_cast<int>(r.steps.size());
      for (size_t k = 0; k < ids.size(); ++k) {
        if (ids[k] < 0) continue;
        Value& v = r.values[ids[k]];
        if (!step.op->data_input(k)) continue;
        if (v.constant) {
          if (v.constant->type != Constant::Type::Float) v.constant = as_float(*v.constant);
          v.weight = true;
        } else {
          v.last_use = s;
        }
      }
      for (size_t k = 1; k < n.outputs.size(); ++k)
        if (!n.outputs[k].empty())
          for (const Node& m : g.nodes)
            for (const auto& in : m.inputs)
              if (in == n.outputs[k]) fail("output " + std::to_string(k) + " is not supported");
      step.inputs = ids;
      step.workspace_floats = step.op->workspace_floats();
      Value out;
      out.name = n.outputs.at(0);
      out.shape = out_shape;
      out.def = s;
      out.last_use = s;
      step.output = add(std::move(out));
      r.steps.push_back(std::move(step));
    } catch (const UnsupportedModel& e) {
      const std::string what = e.what();
      if (what.rfind("node '", 0) == 0) throw;
      throw UnsupportedModel(label + ": " + what);
    }
  }
  auto it = index.find(g.output_name);
  if (it == index.end()) throw UnsupportedModel("graph output '" + g.output_name + "' is not produced");
  r.output = it->second;
  Value& out = r.values[r.output];
  if (out.constant || r.output == r.input)
    throw UnsupportedModel("graph output '" + g.output_name + "' does not depend on the input");
  out.last_use = static_cast<int>(r.steps.size());
  return r;
}

void fuse_residual_adds(ResolvedGraph& g) {
  const size_t n_steps = g.steps.size();
  std::vector<int> producer(g.values.size(), -1), readers(g.values.size(), 0), reader(g.values.size(), -1);
  for (size_t k = 0; k < n_steps; ++k) {
    const Step& st = g.steps[k];
    producer[st.output] = static_cast<int>(k);
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      if (v < 0 || g.values[v].constant || !st.op->data_input(i)) continue;
      ++readers[v];
      reader[v] = static_cast<int>(k);
    }
  }
  ++readers[g.output];  // the caller reads it
  std::vector<bool> removed(n_steps, false);
  for (size_t j = 0; j < n_steps; ++j) {
    Step& add = g.steps[j];
    if (add.node->op_type != "Add" || add.inputs.size() != 2) continue;
    const int a = add.inputs[0], b = add.inputs[1];
    if (a < 0 || b < 0 || a == b || g.values[a].constant || g.values[b].constant) continue;
    if (g.values[a].shape != g.values[b].shape) continue;
    // the Conv must be the later of the two producers, so the residual exists when it runs
    const int conv_v = producer[a] > producer[b] ? a : b, res_v = conv_v == a ? b : a;
    const int k = producer[conv_v];
    if (k < 0 || readers[conv_v] != 1) continue;
    Step& conv = g.steps[k];
    if (conv.node->op_type != "Conv") continue;
    int out = add.output;
    int relu = -1;
    FusedActivation act;
    if (readers[out] == 1 && out != g.output && reader[out] >= 0 &&
        g.steps[reader[out]].node->op_type == "Relu") {
      relu = reader[out];
      act.kind = FusedActivation::Kind::Relu;
    }
    if (!conv.op->fuse_residual(act)) continue;
    if (relu >= 0) {
      out = g.steps[relu].output;
      removed[relu] = true;
    }
    conv.inputs.resize(3, -1);
    conv.inputs.push_back(res_v);
    conv.output = out;
    producer[out] = k;
    removed[j] = true;
  }
  std::vector<Step> kept;
  for (size_t k = 0; k < n_steps; ++k)
    if (!removed[k]) kept.push_back(std::move(g.steps[k]));
  g.steps = std::move(kept);
  recompute_liveness(g);
}

void recompute_liveness(ResolvedGraph& g) {
  for (Value& v : g.values)
    if (!v.constant) v.def = v.last_use = -1;
  g.values[g.input].def = 0;
  for (size_t k = 0; k < g.steps.size(); ++k) {
    const Step& st = g.steps[k];
    const int s = static_cast<int>(k);
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      if (v >= 0 && !g.values[v].constant && st.op->data_input(i)) g.values[v].last_use = s;
    }
    g.values[st.output].def = s;
    g.values[st.output].last_use = std::max(g.values[st.output].last_use, s);
  }
  g.values[g.input].last_use = std::max(g.values[g.input].last_use, 0);
  g.values[g.output].last_use = static_cast<int>(g.steps.size());
}

std::vector<int64_t> batch_units(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch,
                                 bool& separable) {
  separable = true;
  std::vector<int64_t> unit(g.values.size(), 0);
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& val = g.values[v];
    if (val.constant) continue;
    const Shape& a = val.shape;
    const Shape& b = one.values[v].shape;
    if (a == b && batch > 1) continue;  // does not depend on the batch
    const bool scales = a.size() == b.size() && !a.empty() && a[0] == b[0] * batch &&
                        std::equal(a.begin() + 1, a.end(), b.begin() + 1);
    if (scales) unit[v] = b[0];
    else separable = false;
  }
  // A step that reads the batch and writes something that does not depend on it (a Gather
  // or a reduction along the batch axis) mixes the images: the batch cannot be split.
  for (const Step& s : g.steps) {
    if (s.output < 0 || g.values[s.output].constant || unit[s.output]) continue;
    for (size_t i = 0; i < s.inputs.size(); ++i)
      if (s.inputs[i] >= 0 && s.op->data_input(i) && unit[s.inputs[i]]) separable = false;
  }
  return unit;
}

}  // namespace imgpipe::infer
