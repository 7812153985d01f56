#pragma once
// A loaded ONNX model: shapes per image and the memory plan for any batch size.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory_plan.h"
#include "precision.h"

namespace onnx { class ModelProto; }

namespace imgpipe::infer {

struct Graph;

class Model {
 public:
  /// Reads an .onnx file (external data relative to its folder). input_name picks the
  /// input when several exist (the others must be initializers). Throws
  /// UnsupportedModel naming the node, op type and opset for what cannot run.
  /// With for_cpu, the weights that a CPU op keeps in its own layout are stored in it (once,
  /// see pack_cpu_weights()); such a model runs on the CPU executor only.
  static Model load(const std::string& path, const std::string& input_name = "", bool for_cpu = false);
  /// The same from a parsed model; external data files are looked up in base_dir.
  static Model from_proto(const onnx::ModelProto& proto, const std::string& base_dir = ".",
                          const std::string& input_name = "");

  const std::string& input_name() const;
  const std::string& output_name() const;
  int opset() const;
  /// Input shape of one image, without the batch dimension (e.g. {3, 224, 224}).
  std::vector<int64_t> input_shape() const { return input_shape_; }
  /// Output shape of one image, without the batch dimension (e.g. {1000}).
  std::vector<int64_t> output_shape() const { return output_shape_; }
  int64_t input_size() const;   ///< elements per image in
  int64_t output_size() const;  ///< elements per image out

  /// Bytes a batch of `batch` images needs at precision p; nothing is allocated.
  MemoryPlan plan(int batch, Precision p) const;
  /// What Executor::prepare(batch, p) allocates: the arena and workspace. The weights
  /// (plan().weight_bytes) are resident from load on, whatever the batch and precision.
  size_t bytes_needed(int batch, Precision p) const { return plan(batch, p).batch_bytes(); }
  /// Sum of all activation bytes without liveness sharing (for reports and tests).
  size_t unshared_activation_bytes(int batch, Precision p) const;

  const std::shared_ptr<const Graph>& graph() const { return graph_; }

 private:
  explicit Model(std::shared_ptr<const Graph> g);
  std::shared_ptr<const Graph> graph_;
  std::vector<int64_t> input_shape_, output_shape_;
};

}  // namespace imgpipe::infer
