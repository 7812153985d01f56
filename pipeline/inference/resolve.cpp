#include "resolve.h"

#include <algorithm>
#include <map>

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
  for (int64_t k = 0; k < c.size(); ++k) r[k] = static_cast<int64_t>(c.at(k));
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
      for (int64_t k = 0; k < x.size(); ++k) out.i.push_back(static_cast<int64_t>(x.at(k)));
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
        int64_t g = static_cast<int64_t>(ix.at(j));
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
    const size_t r = x.shape.size();
    const auto starts = ints_of(c(1)), ends = ints_of(c(2));
    std::vector<int64_t> axes, steps;
    if (in.size() > 3 && in[3]) axes = ints_of(c(3));
    else for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
    if (in.size() > 4 && in[4]) steps = ints_of(c(4));
    else steps.assign(starts.size(), 1);
    Shape begin(r, 0), step(r, 1), shape = x.shape;
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t a = norm(axes[k], r), d = x.shape[a], st = steps[k];
      if (st == 0) fail("Slice step 0");
      int64_t s = starts[k], e = ends[k];
      if (s < 0) s += d;
      if (e < 0) e += d;
      if (st > 0) {
        s = std::clamp<int64_t>(s, 0, d);
        e = std::clamp<int64_t>(e, 0, d);
        shape[a] = e > s ? (e - s + st - 1) / st : 0;
      } else {
        s = std::clamp<int64_t>(s, 0, d - 1);
        e = std::clamp<int64_t>(e, -1, d - 1);
        shape[a] = s > e ? (s - e - st - 1) / -st : 0;
      }
      begin[a] = s;
      step[a] = st;
    }
    const Shape xs = strides_of(x.shape);
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < numel(shape); ++k) {
      int64_t rem = k, off = 0;
      for (size_t d = r; d-- > 0;) {
        off += (begin[d] + (rem % shape[d]) * step[d]) * xs[d];
        rem /= shape[d];
      }
      idx.push_back(off);
    }
    out = take(x, shape, idx);
    return true;
  }
  if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div") {
    const Constant &a = c(0), &b = c(1);
    if (a.type != Constant::Type::Int64 || b.type != Constant::Type::Int64) return false;  // a weight op
    if (b.size() != 1 && a.shape != b.shape) return false;
    out = a;
    for (int64_t k = 0; k < a.size(); ++k) {
      const int64_t y = b.i[b.size() == 1 ? 0 : k];
      int64_t& x = out.i[k];
      if (t == "Add") x += y;
      else if (t == "Sub") x -= y;
      else if (t == "Mul") x *= y;
      else { if (y == 0) fail("integer division by zero"); x /= y; }
    }
    return true;
  }
  return false;
}

}  // namespace

ResolvedGraph resolve(const Graph& g, int64_t batch) {
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
          if (v.constant->type != Constant::Type::Float)
            fail("int64 tensor '" + v.name + "' as a data input is not supported");
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
  return unit;
}

}  // namespace imgpipe::infer
