#pragma once
// The loaded model: nodes and constant tensors, independent of the batch size.
// Shapes are resolved per batch by resolve() (shape inference plus constant folding).
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace imgpipe::infer {

using Shape = std::vector<int64_t>;

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
std::string to_string(const Shape& s);

/// Thrown at load for an op, dtype or attribute this engine does not support.
class UnsupportedModel : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What an op's own layout of a weight is (Op::pack()); each op defines its own kind.
struct PackedLayout {
  virtual ~PackedLayout() = default;
};

/// A constant tensor: an initializer, a Constant node, or a folded shape computation.
struct Constant {
  enum class Type { Float, Int64 } type = Type::Float;
  Shape shape;
  std::vector<float> f;    ///< data when type == Float
  std::vector<int64_t> i;  ///< data when type == Int64
  /// Set when f holds the weight in the layout of the one op that reads it (packed at
  /// load for the CPU, see pack_cpu_weights()) instead of as `shape` says.
  std::shared_ptr<const PackedLayout> packed;
  int64_t size() const { return numel(shape); }
  /// Elements held: size(), or more in a packed layout with padding.
  size_t stored() const { return type == Type::Float ? f.size() : i.size(); }
  double at(int64_t k) const { return type == Type::Float ? f[k] : static_cast<double>(i[k]); }
  /// Element k as an integer, exact for every int64 (at() is not beyond 2^53: INT64_MAX,
  /// the "to the end" of exported Slices, would overflow on the way back).
  int64_t int_at(int64_t k) const { return type == Type::Int64 ? i[k] : static_cast<int64_t>(f[k]); }
};

/// Activation fused into a Conv at load (Relu, Clip/Relu6), or by fuse_silu() (Swish: x * sigmoid(x)).
struct FusedActivation {
  enum class Kind { None, Relu, Clip, Swish } kind = Kind::None;
  float min = 0.f, max = 0.f;
};

struct Node {
  std::string name, op_type;
  std::vector<std::string> inputs, outputs;  ///< "" = optional input left out
  std::map<std::string, onnx::AttributeProto> attrs;
  FusedActivation fused;
};

struct Graph {
  int opset = 0;
  std::string input_name, output_name;
  Shape input_shape;  ///< per image, without the batch dimension
  int64_t fixed_batch = -1;  ///< batch dimension of the model's input, -1 when symbolic
  std::vector<Node> nodes;   ///< topological order
  std::map<std::string, std::shared_ptr<const Constant>> constants;
};

/// Reads an .onnx file (any size; external data relative to its folder). The initializers'
/// raw bytes go from the file straight into the constants (one copy of the weights), and
/// the parsed protobuf is freed before returning.
Graph load_graph(const std::string& path, const std::string& input_name = "");
/// Builds a graph from a parsed model; external data files are looked up in base_dir.
Graph graph_from_proto(const onnx::ModelProto& model, const std::string& base_dir,
                       const std::string& input_name = "");

// Attribute helpers (defaults when absent).
int64_t attr_int(const Node& n, const std::string& key, int64_t def);
float attr_float(const Node& n, const std::string& key, float def);
std::string attr_string(const Node& n, const std::string& key, const std::string& def);
std::vector<int64_t> attr_ints(const Node& n, const std::string& key,
                               const std::vector<int64_t>& def = {});
bool has_attr(const Node& n, const std::string& key);
/// Converts a TensorProto (raw or typed fields, or external data) to a Constant.
Constant constant_from_tensor(const onnx::TensorProto& t, const std::string& base_dir);

}  // namespace imgpipe::infer
