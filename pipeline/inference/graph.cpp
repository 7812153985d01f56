// Loading an ONNX model into a Graph, plus the batch-independent load-time rewrites:
// Constant nodes to constants, Identity/Dropout removal, BatchNormalization folded into
// the Conv before it, Relu/Clip fused into the Conv before it.
#include "graph.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <set>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include "precision.h"

namespace imgpipe::infer {

std::string to_string(const Shape& s) {
  std::string r = "[";
  for (size_t k = 0; k < s.size(); ++k) r += (k ? "," : "") + std::to_string(s[k]);
  return r + "]";
}

bool has_attr(const Node& n, const std::string& key) { return n.attrs.count(key) > 0; }

int64_t attr_int(const Node& n, const std::string& key, int64_t def) {
  auto it = n.attrs.find(key);
  return it == n.attrs.end() ? def : it->second.i();
}
float attr_float(const Node& n, const std::string& key, float def) {
  auto it = n.attrs.find(key);
  return it == n.attrs.end() ? def : it->second.f();
}
std::string attr_string(const Node& n, const std::string& key, const std::string& def) {
  auto it = n.attrs.find(key);
  return it == n.attrs.end() ? def : it->second.s();
}
std::vector<int64_t> attr_ints(const Node& n, const std::string& key, const std::vector<int64_t>& def) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end()) return def;
  return {it->second.ints().begin(), it->second.ints().end()};
}

namespace {

std::string node_label(const Node& n, int opset) {
  return "node '" + n.name + "' (" + n.op_type + ", opset " + std::to_string(opset) + ")";
}

/// Raw tensor bytes held in floats, so that fp32 data (nearly all of a model's) moves into
/// its Constant as it is: read once, never copied.
struct RawData {
  std::vector<float> buf;  ///< (bytes + 3) / 4 floats
  size_t bytes = 0;
  bool present = false;
  char* data() { return reinterpret_cast<char*>(buf.data()); }
  void resize(size_t n) {
    buf.resize((n + 3) / 4);
    bytes = n;
    present = true;
  }
};

RawData read_external(const onnx::TensorProto& t, const std::string& base_dir) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : t.external_data()) {
    if (kv.key() == "location") location = kv.value();
    if (kv.key() == "offset") offset = std::stoll(kv.value());
    if (kv.key() == "length") length = std::stoll(kv.value());
  }
  const std::string path = base_dir.empty() ? location : base_dir + "/" + location;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UnsupportedModel("tensor '" + t.name() + "': cannot open external data " + path);
  f.seekg(0, std::ios::end);
  const int64_t size = f.tellg();
  if (length < 0) length = size - offset;
  if (offset + length > size) throw UnsupportedModel("tensor '" + t.name() + "': external data " + path + " is too short");
  RawData data;
  data.resize(static_cast<size_t>(length));
  f.seekg(offset);
  f.read(data.data(), length);
  return data;
}

/// constant_from_tensor() with the raw bytes, when the caller read them (`taken` present),
/// moved in rather than copied.
Constant tensor_to_constant(const onnx::TensorProto& t, const std::string& base_dir, RawData* taken) {
  using TP = onnx::TensorProto;
  Constant c;
  c.shape.assign(t.dims().begin(), t.dims().end());
  const int64_t n = c.size();
  RawData external;
  if (t.data_location() == TP::EXTERNAL) {
    external = read_external(t, base_dir);
    taken = &external;
  }
  const bool taken_raw = taken && taken->present;
  const bool use_raw = taken_raw || t.has_raw_data();
  // The bytes are read where they are (no copy of what may be a 400 MB tensor).
  const std::string_view raw = taken_raw ? std::string_view(taken->data(), taken->bytes) : std::string_view(t.raw_data());
  auto raw_check = [&](size_t elem) {
    if (raw.size() != static_cast<size_t>(n) * elem)
      throw UnsupportedModel("tensor '" + t.name() + "': raw data has " + std::to_string(raw.size()) +
                             " bytes for " + std::to_string(n) + " elements");
  };
  auto typed_check = [&](int64_t have) {
    if (have != n) throw UnsupportedModel("tensor '" + t.name() + "': " + std::to_string(have) +
                                          " values for shape " + to_string(c.shape));
  };
  switch (t.data_type()) {
    case TP::FLOAT:
      c.type = Constant::Type::Float;
      if (use_raw) {
        raw_check(4);
        if (taken_raw) {
          c.f = std::move(taken->buf);  // exactly n floats (raw_check)
        } else {
          c.f.resize(n);
          std::memcpy(c.f.data(), raw.data(), raw.size());
        }
      } else {
        typed_check(t.float_data_size());
        c.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case TP::DOUBLE:
      c.type = Constant::Type::Float;
      c.f.resize(n);
      if (use_raw) {
        raw_check(8);
        for (int64_t k = 0; k < n; ++k) { double d; std::memcpy(&d, raw.data() + 8 * k, 8); c.f[k] = static_cast<float>(d); }
      } else {
        typed_check(t.double_data_size());
        for (int64_t k = 0; k < n; ++k) c.f[k] = static_cast<float>(t.double_data(k));
      }
      break;
    case TP::FLOAT16:
      c.type = Constant::Type::Float;
      c.f.resize(n);
      if (use_raw) {
        raw_check(2);
        for (int64_t k = 0; k < n; ++k) { uint16_t h; std::memcpy(&h, raw.data() + 2 * k, 2); c.f[k] = half_to_float(h); }
      } else {
        typed_check(t.int32_data_size());
        for (int64_t k = 0; k < n; ++k) c.f[k] = half_to_float(static_cast<uint16_t>(t.int32_data(k)));
      }
      break;
    case TP::INT64:
      c.type = Constant::Type::Int64;
      c.i.resize(n);
      if (use_raw) { raw_check(8); std::memcpy(c.i.data(), raw.data(), raw.size()); }
      else { typed_check(t.int64_data_size()); std::copy(t.int64_data().begin(), t.int64_data().end(), c.i.begin()); }
      break;
    case TP::INT32:
      c.type = Constant::Type::Int64;
      c.i.resize(n);
      if (use_raw) {
        raw_check(4);
        for (int64_t k = 0; k < n; ++k) { int32_t v; std::memcpy(&v, raw.data() + 4 * k, 4); c.i[k] = v; }
      } else {
        typed_check(t.int32_data_size());
        for (int64_t k = 0; k < n; ++k) c.i[k] = t.int32_data(k);
      }
      break;
    default:
      throw UnsupportedModel("tensor '" + t.name() + "': data type " +
                             onnx::TensorProto_DataType_Name(static_cast<TP::DataType>(t.data_type())) +
                             " is not supported (float, double, float16, int64, int32)");
  }
  return c;
}

}  // namespace

Constant constant_from_tensor(const onnx::TensorProto& t, const std::string& base_dir) {
  return tensor_to_constant(t, base_dir, nullptr);
}

namespace {

const std::set<std::string>& known_ops() {
  static const std::set<std::string> ops = {
      "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
      "HardSwish", "Tanh", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool",
      "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Gemm", "MatMul", "Softmax",
      "Concat", "Dropout", "Identity", "ReduceMean", "Squeeze", "Unsqueeze", "Pad", "Slice", "Gather",
      "Pow", "Sqrt", "Erf", "Neg", "Not", "Equal", "Mod", "Where", "Expand", "LayerNormalization", "Cast",
      // folded at load/resolve when their inputs are constant (shape computations)
      "Shape", "Constant", "ConstantOfShape", "Range", "ScatterND"};
  return ops;
}

std::map<std::string, int> use_counts(const Graph& g) {
  std::map<std::string, int> uses;
  for (const Node& n : g.nodes)
    for (const auto& in : n.inputs)
      if (!in.empty()) ++uses[in];
  ++uses[g.output_name];
  return uses;
}

void rename_input(Graph& g, const std::string& from, const std::string& to) {
  for (Node& n : g.nodes)
    for (auto& in : n.inputs)
      if (in == from) in = to;
}

/// Identity and Dropout (inference) pass their input through: drop them, except when
/// they produce the graph output (then they stay as a copy).
void remove_identities(Graph& g) {
  std::vector<Node> kept;
  for (Node& n : g.nodes) {
    const bool pass = n.op_type == "Identity" || n.op_type == "Dropout";
    if (pass && n.outputs[0] != g.output_name) {
      if (n.outputs.size() > 1 && !n.outputs[1].empty() && use_counts(g)[n.outputs[1]] > 0)
        throw UnsupportedModel("node '" + n.name + "' (Dropout, opset " + std::to_string(g.opset) +
                               "): the mask output is not supported");
      rename_input(g, n.outputs[0], n.inputs[0]);
      continue;
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
}

const Constant* find_const(const Graph& g, const std::string& name) {
  auto it = g.constants.find(name);
  return it == g.constants.end() ? nullptr : it->second.get();
}

/// BatchNormalization after a Conv whose output nothing else reads: scale W, shift B.
void fold_batchnorm(Graph& g) {
  auto uses = use_counts(g);
  std::map<std::string, size_t> producer;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    for (const auto& o : g.nodes[k].outputs) producer[o] = k;
  std::vector<bool> drop(g.nodes.size(), false);
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    Node& bn = g.nodes[k];
    if (bn.op_type != "BatchNormalization" || bn.inputs.size() != 5) continue;
    if (bn.outputs.size() > 1 && attr_int(bn, "training_mode", 0)) continue;
    auto it = producer.find(bn.inputs[0]);
    if (it == producer.end()) continue;
    Node& conv = g.nodes[it->second];
    if (conv.op_type != "Conv" || uses[conv.outputs[0]] != 1 || conv.fused.kind != FusedActivation::Kind::None) continue;
    const Constant* w = conv.inputs.size() > 1 ? find_const(g, conv.inputs[1]) : nullptr;
    const Constant* b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? find_const(g, conv.inputs[2]) : nullptr;
    if (!w || w->type != Constant::Type::Float || (conv.inputs.size() > 2 && !conv.inputs[2].empty() && !b)) continue;
    const Constant* p[4];
    bool ok = true;
    for (int j = 0; j < 4; ++j) {
      p[j] = find_const(g, bn.inputs[1 + j]);
      ok = ok && p[j] && p[j]->type == Constant::Type::Float;
    }
    const int64_t m = w->shape.empty() ? 0 : w->shape[0];
    for (int j = 0; ok && j < 4; ++j) ok = p[j]->size() == m;
    if (!ok || m == 0) continue;
    const float eps = attr_float(bn, "epsilon", 1e-5f);
    auto nw = std::make_shared<Constant>(*w);
    auto nb = std::make_shared<Constant>();
    nb->shape = {m};
    nb->f.assign(m, 0.f);
    const int64_t per = w->size() / m;
    for (int64_t c = 0; c < m; ++c) {
      const float scale = p[0]->f[c] / std::sqrt(p[3]->f[c] + eps);
      for (int64_t e = 0; e < per; ++e) nw->f[c * per + e] *= scale;
      nb->f[c] = ((b ? b->f[c] : 0.f) - p[2]->f[c]) * scale + p[1]->f[c];
    }
    const std::string wn = conv.name + "/bn_folded_W", bnm = conv.name + "/bn_folded_B";
    if (uses[conv.inputs[1]] == 1) g.constants.erase(conv.inputs[1]);  // freed now, not at the end
    g.constants[wn] = nw;
    g.constants[bnm] = nb;
    conv.inputs.resize(3);
    conv.inputs[1] = wn;
    conv.inputs[2] = bnm;
    conv.outputs = {bn.outputs[0]};
    drop[k] = true;
  }
  std::vector<Node> kept;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (!drop[k]) kept.push_back(std::move(g.nodes[k]));
  g.nodes = std::move(kept);
}

/// Frees the constants no node reads any more (a Conv's weights once BatchNormalization was
/// folded into a copy of them), so the weights are held once.
void drop_unused_constants(Graph& g) {
  std::set<std::string> read = {g.output_name};
  for (const Node& n : g.nodes) read.insert(n.inputs.begin(), n.inputs.end());
  for (auto it = g.constants.begin(); it != g.constants.end();)
    it = read.count(it->first) ? std::next(it) : g.constants.erase(it);
}

/// Relu or Clip right after a Conv whose output nothing else reads: run inside the Conv.
void fuse_activations(Graph& g) {
  auto uses = use_counts(g);
  std::map<std::string, size_t> producer;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    for (const auto& o : g.nodes[k].outputs) producer[o] = k;
  std::vector<bool> drop(g.nodes.size(), false);
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    Node& act = g.nodes[k];
    if (act.op_type != "Relu" && act.op_type != "Clip") continue;
    auto it = producer.find(act.inputs[0]);
    if (it == producer.end()) continue;
    Node& conv = g.nodes[it->second];
    if (conv.op_type != "Conv" || uses[conv.outputs[0]] != 1 || conv.fused.kind != FusedActivation::Kind::None) continue;
    FusedActivation f;
    if (act.op_type == "Relu") {
      f.kind = FusedActivation::Kind::Relu;
    } else {
      f.kind = FusedActivation::Kind::Clip;
      f.min = attr_float(act, "min", -INFINITY);
      f.max = attr_float(act, "max", INFINITY);
      bool ok = true;
      for (size_t j = 1; j < act.inputs.size() && j < 3; ++j) {
        if (act.inputs[j].empty()) continue;
        const Constant* c = find_const(g, act.inputs[j]);
        if (!c || c->size() != 1) { ok = false; break; }
        (j == 1 ? f.min : f.max) = static_cast<float>(c->at(0));
      }
      if (!ok) continue;
    }
    conv.fused = f;
    conv.outputs = {act.outputs[0]};
    drop[k] = true;
  }
  std::vector<Node> kept;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (!drop[k]) kept.push_back(std::move(g.nodes[k]));
  g.nodes = std::move(kept);
}

/// Constant nodes become constants.
void extract_constants(Graph& g, const std::string& base_dir) {
  std::vector<Node> kept;
  for (Node& n : g.nodes) {
    if (n.op_type != "Constant") { kept.push_back(std::move(n)); continue; }
    auto c = std::make_shared<Constant>();
    if (has_attr(n, "value")) {
      *c = constant_from_tensor(n.attrs.at("value").t(), base_dir);
    } else if (has_attr(n, "value_float")) {
      c->f = {attr_float(n, "value_float", 0.f)};
    } else if (has_attr(n, "value_floats")) {
      const auto& a = n.attrs.at("value_floats");
      c->f.assign(a.floats().begin(), a.floats().end());
      c->shape = {static_cast<int64_t>(c->f.size())};
    } else if (has_attr(n, "value_int")) {
      c->type = Constant::Type::Int64;
      c->i = {attr_int(n, "value_int", 0)};
    } else if (has_attr(n, "value_ints")) {
      c->type = Constant::Type::Int64;
      c->i = attr_ints(n, "value_ints");
      c->shape = {static_cast<int64_t>(c->i.size())};
    } else {
      throw UnsupportedModel("Constant value attribute kind is not supported");
    }
    g.constants[n.outputs[0]] = c;
  }
  g.nodes = std::move(kept);
}

/// The graph of `model`, whose initializer k has its raw data in raw[k] when raw has an
/// entry for it (parse_model), else in the proto. Consumes both: each initializer is freed
/// as soon as its Constant exists, so the weights are never held twice.
Graph build_graph(onnx::ModelProto& model, std::vector<RawData>& raw, const std::string& base_dir,
                  const std::string& input_name) {
  Graph g;
  for (const auto& op : model.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = static_cast<int>(op.version());
  if (g.opset < 11 || g.opset > 17)
    throw UnsupportedModel("opset " + std::to_string(g.opset) + " is not supported (11 to 17)");
  onnx::GraphProto& gp = *model.mutable_graph();

  while (!gp.initializer().empty()) {
    // ReleaseLast hands the tensor over (RemoveLast would keep its buffers for reuse).
    const size_t k = static_cast<size_t>(gp.initializer_size()) - 1;
    const std::unique_ptr<onnx::TensorProto> t(gp.mutable_initializer()->ReleaseLast());
    RawData taken = k < raw.size() ? std::move(raw[k]) : RawData();
    raw.resize(std::min(raw.size(), k));
    try {
      g.constants[t->name()] = std::make_shared<Constant>(tensor_to_constant(*t, base_dir, &taken));
    } catch (const UnsupportedModel& e) {
      std::string who;
      for (const auto& n : gp.node())
        for (const auto& in : n.input())
          if (in == t->name() && who.empty())
            who = "node '" + n.name() + "' (" + n.op_type() + ", opset " + std::to_string(g.opset) + "): ";
      throw UnsupportedModel(who + e.what());
    }
  }

  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& vi : gp.input())
    if (!g.constants.count(vi.name())) inputs.push_back(&vi);
  const onnx::ValueInfoProto* in = nullptr;
  if (!input_name.empty()) {
    for (auto* vi : inputs)
      if (vi->name() == input_name) in = vi;
    if (!in) throw UnsupportedModel("the model has no input named '" + input_name + "'");
    if (inputs.size() > 1)
      throw UnsupportedModel("the model has " + std::to_string(inputs.size()) +
                             " inputs that are not initializers; only one is supported");
  } else {
    if (inputs.size() != 1) {
      std::string names;
      for (auto* vi : inputs) names += (names.empty() ? "" : ", ") + vi->name();
      throw UnsupportedModel("the model has " + std::to_string(inputs.size()) +
                             " inputs (" + names + "); exactly one non-initializer input is supported");
    }
    in = inputs[0];
  }
  g.input_name = in->name();
  const auto& tt = in->type().tensor_type();
  if (tt.elem_type() != onnx::TensorProto::FLOAT)
    throw UnsupportedModel("input '" + g.input_name + "' must be float32");
  const auto& dims = tt.shape().dim();
  if (dims.size() < 1) throw UnsupportedModel("input '" + g.input_name + "' has no batch dimension");
  g.fixed_batch = dims[0].has_dim_value() ? dims[0].dim_value() : -1;
  for (int k = 1; k < dims.size(); ++k) {
    if (!dims[k].has_dim_value() || dims[k].dim_value() <= 0)
      throw UnsupportedModel("input '" + g.input_name + "' dimension " + std::to_string(k) +
                             " must be fixed (only the batch may be symbolic)");
    g.input_shape.push_back(dims[k].dim_value());
  }
  if (gp.output_size() < 1) throw UnsupportedModel("the model has no output");
  g.output_name = gp.output(0).name();

  std::string unknown;  // every node no op handles, named at once
  int unknown_count = 0;
  for (auto& np : *gp.mutable_node()) {
    Node n;
    n.name = np.name();
    n.op_type = np.op_type();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (auto& a : *np.mutable_attribute()) n.attrs[a.name()].Swap(&a);  // a Constant's tensor is not copied
    const std::string label = node_label(n, g.opset);
    if (!np.domain().empty() && np.domain() != "ai.onnx")
      throw UnsupportedModel(label + ": domain '" + np.domain() + "' is not supported");
    if (!known_ops().count(n.op_type)) unknown += (unknown_count++ ? "; " : "") + label + ": unsupported op";
    g.nodes.push_back(std::move(n));
  }
  if (unknown_count > 1) throw UnsupportedModel(std::to_string(unknown_count) + " unsupported nodes: " + unknown);
  if (unknown_count) throw UnsupportedModel(unknown);
  for (auto& n : g.nodes) {
    if (n.op_type != "Constant") continue;
    try {
      Graph one;
      one.nodes.push_back(n);
      extract_constants(one, base_dir);
    } catch (const UnsupportedModel& e) {
      throw UnsupportedModel(node_label(n, g.opset) + ": " + e.what());
    }
  }
  extract_constants(g, base_dir);
  remove_identities(g);
  fold_batchnorm(g);
  fuse_activations(g);
  drop_unused_constants(g);
  return g;
}

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

/// Copies one field, whose tag was just read, unchanged from `in` to `out`.
bool copy_field(CodedInputStream& in, uint32_t tag, CodedOutputStream& out) {
  out.WriteTag(tag);
  switch (tag & 7) {
    case 0: { uint64_t v; if (!in.ReadVarint64(&v)) return false; out.WriteVarint64(v); return true; }
    case 1: { uint64_t v; if (!in.ReadLittleEndian64(&v)) return false; out.WriteLittleEndian64(v); return true; }
    case 5: { uint32_t v; if (!in.ReadLittleEndian32(&v)) return false; out.WriteLittleEndian32(v); return true; }
    case 2: {
      uint32_t n;
      std::string bytes;
      if (!in.ReadVarint32(&n) || !in.ReadString(&bytes, static_cast<int>(n))) return false;
      out.WriteVarint32(n);
      out.WriteString(bytes);
      return true;
    }
    default: return false;  // groups: not in ONNX
  }
}

/// Reads one message's fields up to the end of `in` (or its limit): each occurrence of the
/// length-delimited `field` goes to take(in, length), which must read exactly its bytes;
/// the other fields are copied unchanged, serialized, to `rest`. `end`: the stream's size.
template <class Take>
bool split_message(CodedInputStream& in, int64_t end, uint32_t field, std::string& rest, Take&& take) {
  google::protobuf::io::StringOutputStream stream(&rest);
  CodedOutputStream out(&stream);
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    if (tag >> 3 == field && (tag & 7) == 2) {
      uint32_t length;
      // a length past the end of the file is refused before anything is allocated for it
      if (!in.ReadVarint32(&length) || length > end - in.CurrentPosition()) return false;
      const auto limit = in.PushLimit(static_cast<int>(length));
      const bool ok = take(in, length) && in.BytesUntilLimit() == 0;
      in.PopLimit(limit);
      if (!ok) return false;
    } else if (!copy_field(in, tag, out)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage() && !out.HadError();
}

/// Parses an ONNX file as ModelProto::ParseFromCodedStream would, except that the raw data
/// of the graph's initializers is read straight into raw[k] (initializer k), not into the
/// proto: protobuf would hold each weight in a string (grown to twice its size while read)
/// that the graph then copies, about three times the weights at once.
bool parse_model(int fd, onnx::ModelProto& model, std::vector<RawData>& raw) {
  constexpr uint32_t kModelGraph = 7, kGraphInitializer = 5, kTensorRawData = 9;  // onnx.proto field numbers
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  const int64_t end = S_ISREG(st.st_mode) ? st.st_size : INT_MAX;  // a pipe: protobuf's own limit
  google::protobuf::io::FileInputStream file(fd);
  CodedInputStream in(&file);
  in.SetTotalBytesLimit(INT_MAX);  // models above the old 64 MB default must parse
  std::string model_rest, graph_rest;
  std::vector<std::string> tensors;  // the initializers without their raw data
  const bool ok = split_message(in, end, kModelGraph, model_rest, [&](CodedInputStream& graph, uint32_t) {
    return split_message(graph, end, kGraphInitializer, graph_rest, [&](CodedInputStream& tensor, uint32_t) {
      tensors.emplace_back();
      raw.emplace_back();
      return split_message(tensor, end, kTensorRawData, tensors.back(), [&](CodedInputStream& data, uint32_t n) {
        raw.back().resize(n);
        return data.ReadRaw(raw.back().data(), static_cast<int>(n));
      });
    });
  });
  if (!ok || !model.ParseFromString(model_rest) || !model.mutable_graph()->ParseFromString(graph_rest)) return false;
  for (const std::string& t : tensors)
    if (!model.mutable_graph()->add_initializer()->ParseFromString(t)) return false;
  return true;
}

}  // namespace

Graph graph_from_proto(const onnx::ModelProto& model, const std::string& base_dir,
                       const std::string& input_name) {
  onnx::ModelProto copy = model;
  std::vector<RawData> none;
  return build_graph(copy, none, base_dir, input_name);
}

Graph load_graph(const std::string& path, const std::string& input_name) {
  Graph g;
  {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw std::runtime_error("cannot open model " + path);
    onnx::ModelProto model;
    std::vector<RawData> raw;
    const bool ok = parse_model(fd, model, raw);
    ::close(fd);
    if (!ok) throw std::runtime_error("cannot parse model " + path + " (not an ONNX protobuf?)");
    const auto slash = path.find_last_of('/');
    g = build_graph(model, raw, slash == std::string::npos ? "." : path.substr(0, slash), input_name);
  }  // the protobuf is freed here, before the executor allocates anything
#if defined(__GLIBC__)
  malloc_trim(0);  // and its pages given back now, not when the heap top happens to be free
#endif
  return g;
}

}  // namespace imgpipe::infer
