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
#include <set>
#include <sys/mman.h>
#include <string_view>
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

std::string read_external(const onnx::TensorProto& t, const std::string& base_dir) {
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
  std::string data(static_cast<size_t>(length), '\0');
  f.seekg(offset);
  f.read(data.data(), length);
  return data;
}

}  // namespace

namespace {

/// Appends raw's floats to dst (reserved). With `spent` (raw is that string's bytes, which
/// the loader frees next), the pages already copied are given back to the kernel as it
/// goes, so the tensor is never resident twice (VGG-11's classifier matrix is 392 MiB).
void append_floats(std::string_view raw, std::vector<float>& dst, const std::string* spent) {
  constexpr size_t kChunk = size_t(16) << 20;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(raw.data()) + page - 1) & ~(page - 1);
  for (size_t done = 0; done < raw.size();) {
    const size_t n = std::min(kChunk, raw.size() - done);
    const auto* p = reinterpret_cast<const float*>(raw.data() + done);
    dst.insert(dst.end(), p, p + n / sizeof(float));
    done += n;
    const uintptr_t end = (uintptr_t(raw.data()) + done) & ~(page - 1);
    if (spent && end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }
}

}  // namespace

Constant constant_from_tensor(const onnx::TensorProto& t, const std::string& base_dir, const std::string* spent_raw) {
  using TP = onnx::TensorProto;
  Constant c;
  c.shape.assign(t.dims().begin(), t.dims().end());
  const int64_t n = c.size();
  // The bytes are read where they are (no copy of what may be a 400 MB tensor).
  std::string external_bytes;
  std::string_view raw;
  const bool external = t.data_location() == TP::EXTERNAL;
  if (external) raw = external_bytes = read_external(t, base_dir);
  else if (t.has_raw_data()) raw = t.raw_data();
  const bool use_raw = external || t.has_raw_data();
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
        c.f.reserve(n);  // pages are touched only as they are filled
        append_floats(raw, c.f, external ? nullptr : spent_raw);
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

}  // namespace

namespace {

/// Frees a tensor's data once it has been converted, so that loading holds the model's
/// bytes about once (the protobuf's, then the constants') rather than twice.
void release_data(onnx::TensorProto& t) {
  std::string().swap(*t.mutable_raw_data());
  google::protobuf::RepeatedField<float>().Swap(t.mutable_float_data());
  google::protobuf::RepeatedField<double>().Swap(t.mutable_double_data());
  google::protobuf::RepeatedField<int32_t>().Swap(t.mutable_int32_data());
  google::protobuf::RepeatedField<int64_t>().Swap(t.mutable_int64_data());
}

/// graph_from_proto; `owned` (the same model, or null) has each initializer's data freed
/// as soon as it is converted.
Graph build_graph(const onnx::ModelProto& model, onnx::ModelProto* owned, const std::string& base_dir,
                  const std::string& input_name) {
  Graph g;
  for (const auto& op : model.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = static_cast<int>(op.version());
  if (g.opset < 11 || g.opset > 17)
    throw UnsupportedModel("opset " + std::to_string(g.opset) + " is not supported (11 to 17)");
  const onnx::GraphProto& gp = model.graph();

  for (int k = 0; k < gp.initializer_size(); ++k) {
    const onnx::TensorProto& t = gp.initializer(k);
    try {
      onnx::TensorProto* mine = owned ? owned->mutable_graph()->mutable_initializer(k) : nullptr;
      g.constants[t.name()] = std::make_shared<Constant>(constant_from_tensor(t, base_dir, mine ? &mine->raw_data() : nullptr));
      if (mine) release_data(*mine);
    } catch (const UnsupportedModel& e) {
      std::string who;
      for (const auto& n : gp.node())
        for (const auto& in : n.input())
          if (in == t.name() && who.empty())
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
  for (const auto& np : gp.node()) {
    Node n;
    n.name = np.name();
    n.op_type = np.op_type();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) n.attrs[a.name()] = a;
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

}  // namespace

Graph graph_from_proto(const onnx::ModelProto& model, const std::string& base_dir,
                       const std::string& input_name) {
  return build_graph(model, nullptr, base_dir, input_name);
}

Graph load_graph(const std::string& path, const std::string& input_name) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open model " + path);
  onnx::ModelProto model;
  bool ok;
  {
    google::protobuf::io::FileInputStream file(fd);
    google::protobuf::io::CodedInputStream coded(&file);
    coded.SetTotalBytesLimit(INT_MAX);  // models above the old 64 MB default must parse
    ok = model.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  }
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot parse model " + path + " (not an ONNX protobuf?)");
  const auto slash = path.find_last_of('/');
  return build_graph(model, &model, slash == std::string::npos ? "." : path.substr(0, slash), input_name);
}

}  // namespace imgpipe::infer
