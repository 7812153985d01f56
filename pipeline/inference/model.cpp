#include "model.h"

#include "graph.h"
#include "planner.h"
#include "resolve.h"

namespace imgpipe::infer {

Model::Model(std::shared_ptr<const Graph> g) : graph_(std::move(g)) {
  input_shape_ = graph_->input_shape;
  // Resolving at batch 1 checks every node at load; the output's dim 0 is the batch.
  const ResolvedGraph r = resolve(*graph_, 1);
  const Shape& out = r.values[r.output].shape;
  if (out.empty() || out[0] != 1)
    throw UnsupportedModel("output '" + graph_->output_name + "' has shape " + to_string(out) +
                           " at batch 1; its first dimension must be the batch");
  output_shape_.assign(out.begin() + 1, out.end());
}

Model Model::load(const std::string& path, const std::string& input_name, bool for_cpu) {
  Graph g = load_graph(path, input_name);
  if (for_cpu) pack_cpu_weights(g);
  return Model(std::make_shared<const Graph>(std::move(g)));
}

Model Model::from_proto(const onnx::ModelProto& proto, const std::string& base_dir,
                        const std::string& input_name) {
  return Model(std::make_shared<const Graph>(graph_from_proto(proto, base_dir, input_name)));
}

const std::string& Model::input_name() const { return graph_->input_name; }
const std::string& Model::output_name() const { return graph_->output_name; }
int Model::opset() const { return graph_->opset; }
int64_t Model::input_size() const { return numel(input_shape_); }
int64_t Model::output_size() const { return numel(output_shape_); }

namespace {
/// The graph as the CPU executor runs it at `batch` (same as Executor::prepare()).
ResolvedGraph resolve_for_cpu(const Graph& g, int batch) {
  ResolvedGraph r = resolve(g, batch);
  prepare_cpu_graph(r);
  return r;
}
}  // namespace

MemoryPlan Model::plan(int batch, Precision p) const {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  return make_layout(resolve_for_cpu(*graph_, batch), resolve(*graph_, 1), batch, p).plan;
}

size_t Model::unshared_activation_bytes(int batch, Precision p) const {
  return make_layout(resolve_for_cpu(*graph_, batch), resolve(*graph_, 1), batch, p).sum_activation_bytes;
}

}  // namespace imgpipe::infer
