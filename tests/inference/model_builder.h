#pragma once
// Builds small ONNX models in memory with ONNX's protobuf classes (seeded random
// weights, no downloads), plus helpers to run them and to exchange .npy files.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "inference.h"

namespace imgpipe::infer::test {

class ModelBuilder {
 public:
  explicit ModelBuilder(int opset = 13) {
    proto_.set_ir_version(8);
    proto_.set_producer_name("imgpipe-test");
    auto* op = proto_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
  }
  /// dims[0] < 0 makes the batch symbolic ("N").
  ModelBuilder& input(const std::string& name, const std::vector<int64_t>& dims) {
    auto* vi = proto_.mutable_graph()->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) {
      auto* dim = tt->mutable_shape()->add_dim();
      if (d < 0) dim->set_dim_param("N");
      else dim->set_dim_value(d);
    }
    return *this;
  }
  ModelBuilder& output(const std::string& name) {
    auto* vi = proto_.mutable_graph()->add_output();
    vi->set_name(name);
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    return *this;
  }
  /// Float initializer stored as raw_data (typed = float_data instead).
  std::string init(const std::string& name, const std::vector<int64_t>& shape,
                   const std::vector<float>& v, bool typed = false) {
    auto* t = proto_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    if (typed) for (float f : v) t->add_float_data(f);
    else t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    return name;
  }
  std::string init_i64(const std::string& name, const std::vector<int64_t>& shape,
                       const std::vector<int64_t>& v) {
    auto* t = proto_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : shape) t->add_dims(d);
    for (int64_t x : v) t->add_int64_data(x);
    return name;
  }
  /// Uniform random in [lo, hi), seeded from the name so every run builds the same model.
  std::string random(const std::string& name, const std::vector<int64_t>& shape, float lo = -0.5f,
                     float hi = 0.5f) {
    return init(name, shape, random_values(shape, name, lo, hi));
  }
  static std::vector<float> random_values(const std::vector<int64_t>& shape, const std::string& seed,
                                          float lo = -1.f, float hi = 1.f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>{}(seed)));
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
  }
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "") {
    auto* n = proto_.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? outputs.at(0) + "_" + op : name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return *n;
  }
  onnx::ModelProto& proto() { return proto_; }
  Model model(const std::string& input_name = "") const { return Model::from_proto(proto_, ".", input_name); }
  void save(const std::string& path) const;

 private:
  onnx::ModelProto proto_;
};

// Attribute setters; return the node for chaining.
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, int64_t v);
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, float v);
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, const std::string& v);
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, const std::vector<int64_t>& v);
onnx::NodeProto& attr_tensor(onnx::NodeProto& n, const std::string& key, const onnx::TensorProto& t);

// Patterns as PyTorch exports write them; node and tensor names start with `prefix`, and
// each returns its output's name.
/// Layer norm over the last axis, without scale and shift, below opset 17:
/// ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div.
std::string layer_norm_pattern(ModelBuilder& b, const std::string& x, const std::string& prefix);
/// GELU: x * 0.5 * (1 + erf(x / sqrt 2)).
std::string gelu_pattern(ModelBuilder& b, const std::string& x, const std::string& prefix);

/// Prepares an executor at `batch` (HostAllocator) and runs `items` images.
std::vector<float> run_model(const Model& m, const std::vector<float>& input, int items,
                             Precision p = Precision::FP32, int batch = 0);

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& v);
std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape = nullptr);

/// Largest |a - b| over equal-length vectors.
float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace imgpipe::infer::test
