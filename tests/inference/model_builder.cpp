#include "model_builder.h"

#include <cmath>
#include <fstream>
#include <stdexcept>

namespace imgpipe::infer::test {

void ModelBuilder::save(const std::string& path) const {
  std::ofstream f(path, std::ios::binary);
  if (!proto_.SerializeToOstream(&f)) throw std::runtime_error("cannot write " + path);
}

onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(key);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
  return n;
}
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, float v) {
  auto* a = n.add_attribute();
  a->set_name(key);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
  return n;
}
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, const std::string& v) {
  auto* a = n.add_attribute();
  a->set_name(key);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
  return n;
}
onnx::NodeProto& attr(onnx::NodeProto& n, const std::string& key, const std::vector<int64_t>& v) {
  auto* a = n.add_attribute();
  a->set_name(key);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
  return n;
}
std::string layer_norm_pattern(ModelBuilder& b, const std::string& x, const std::string& prefix) {
  const std::string p = prefix + ".";
  attr(b.node("ReduceMean", {x}, {p + "mean"}), "axes", std::vector<int64_t>{-1});
  b.node("Sub", {x, p + "mean"}, {p + "d"});
  b.node("Pow", {p + "d", b.init(p + "two", {}, {2.f})}, {p + "d2"});
  attr(b.node("ReduceMean", {p + "d2"}, {p + "var"}), "axes", std::vector<int64_t>{-1});
  b.node("Add", {p + "var", b.init(p + "eps", {}, {1e-5f})}, {p + "ve"});
  b.node("Sqrt", {p + "ve"}, {p + "sd"});
  b.node("Div", {p + "d", p + "sd"}, {p + "out"});
  return p + "out";
}

std::string gelu_pattern(ModelBuilder& b, const std::string& x, const std::string& prefix) {
  const std::string p = prefix + ".";
  b.node("Div", {x, b.init(p + "sqrt2", {}, {1.41421356f})}, {p + "x"});
  b.node("Erf", {p + "x"}, {p + "erf"});
  b.node("Add", {p + "erf", b.init(p + "one", {}, {1.f})}, {p + "erf1"});
  b.node("Mul", {x, p + "erf1"}, {p + "twice"});
  b.node("Mul", {p + "twice", b.init(p + "half", {}, {0.5f})}, {p + "out"});
  return p + "out";
}

onnx::NodeProto& attr_tensor(onnx::NodeProto& n, const std::string& key, const onnx::TensorProto& t) {
  auto* a = n.add_attribute();
  a->set_name(key);
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = t;
  return n;
}

std::vector<float> run_model(const Model& m, const std::vector<float>& input, int items, Precision p,
                             int batch) {
  HostAllocator host;
  Executor ex(m, host);
  ex.prepare(batch > 0 ? batch : items, p);
  std::vector<float> out(static_cast<size_t>(m.output_size() * items));
  ex.run(input.data(), items, out.data());
  return out;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& v) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f << header;
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
}

std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  char magic[8];
  f.read(magic, 8);
  uint16_t len = 0;
  f.read(reinterpret_cast<char*>(&len), 2);
  std::string header(len, '\0');
  f.read(header.data(), len);
  if (header.find("'<f4'") == std::string::npos) throw std::runtime_error(path + ": not float32");
  const auto open = header.find('(', header.find("'shape'"));
  const auto close = header.find(')', open);
  std::vector<int64_t> dims;
  int64_t n = 1;
  std::string s = header.substr(open + 1, close - open - 1);
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string tok = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) {
      dims.push_back(std::stoll(tok));
      n *= dims.back();
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::vector<float> v(static_cast<size_t>(n));
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
  if (shape) *shape = dims;
  return v;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0.f;
  for (size_t k = 0; k < a.size(); ++k) m = std::max(m, std::fabs(a[k] - b[k]));
  return m;
}

}  // namespace imgpipe::infer::test
