#include "shard_writer.h"

namespace imgpipe {

const char* npy_descr(kernels::DType t) {
  return t == kernels::DType::F32 ? "<f4" : t == kernels::DType::F16 ? "<f2" : "|u1";
}

ShardWriter::ShardWriter(OutputDir& dir, const Config& cfg, const kernels::PreprocessParams& params,
                         const ModelStage* model, const std::vector<std::string>& inputs)
    : dir_(dir), cfg_(cfg), params_(params), model_(model), inputs_(inputs) {}

const char* ShardWriter::prediction_ext() const {
  return cfg_.output.predictions == PredictionFormat::Csv ? "csv" : "jsonl";
}

void ShardWriter::open(size_t id) {
  id_ = id;
  entries_.clear();
  predictions_.clear();
  outputs_.reset();
  tensors_.reset();
  if (model_ && model_->writes_outputs())
    outputs_ = std::make_unique<NpyWriter>(dir_.shard_file("outputs", id, "npy"), "<f4",
                                           std::vector<int64_t>{model_->output_size()});
  if (cfg_.output.tensors) {
    std::vector<int64_t> row = params_.layout == kernels::Layout::NCHW
                                   ? std::vector<int64_t>{params_.out_channels, params_.out_h, params_.out_w}
                                   : std::vector<int64_t>{params_.out_h, params_.out_w, params_.out_channels};
    tensors_ = std::make_unique<NpyWriter>(dir_.shard_file("tensors", id, "npy"), npy_descr(params_.dtype), row);
  }
}

void ShardWriter::append_tensors(const void* rows, int64_t n) {
  if (tensors_) tensors_->append(rows, n);
}

void ShardWriter::append_outputs(const float* rows, const std::vector<size_t>& positions) {
  const int64_t n = int64_t(positions.size());
  if (outputs_) outputs_->append(rows, n);
  if (model_->writes_predictions())
    for (int64_t i = 0; i < n; ++i)
      predictions_ += model_->prediction_line(inputs_[positions[size_t(i)]], rows + i * model_->output_size(),
                                              model_->gpu_top(i));
}

void ShardWriter::close() {
  if (tensors_) tensors_->finish();
  if (outputs_) outputs_->finish();
  if (model_ && model_->writes_predictions()) {
    AtomicFile pred(dir_.shard_file("predictions", id_, prediction_ext()));
    pred.write(model_->prediction_header() + predictions_);
    pred.commit();
  }
  AtomicFile index(dir_.shard_file("index", id_, "csv"));
  std::string text = "row,path,error\n";
  size_t row = 0;
  std::vector<Skip> skipped;
  for (const auto& e : entries_) {
    text += (e.written ? std::to_string(row++) : std::string()) + "," + csv_field(inputs_[e.pos]) + "," +
            csv_field(e.error) + "\n";
    if (!e.written) skipped.push_back({e.pos, inputs_[e.pos], e.error});
  }
  index.write(text);
  index.commit();
  dir_.add_shard(id_, entries_.size(), row, std::move(skipped));
  id_ = SIZE_MAX;
  tensors_.reset();
  outputs_.reset();
}

}  // namespace imgpipe
