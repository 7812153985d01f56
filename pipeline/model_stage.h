#pragma once
// The model stage: loads the ONNX model, checks it against the preprocessing, runs
// batches through the executor under the memory governor, and formats predictions.
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "governor.h"
#include "inference/inference.h"
#include "preprocess.h"

namespace imgpipe {

class ModelStage {
 public:
  /// Loads cfg.model.path and its labels and checks that the preprocessing produces what
  /// the model takes. Throws ConfigError naming the key to fix; nothing is allocated yet.
  ModelStage(const Config& cfg, const kernels::PreprocessParams& pre, std::function<void(const std::string&)> log);
  ~ModelStage();

  /// The governor's plan table (for --dry-run).
  [[nodiscard]] std::string describe_plan();
  /// Picks the batch and precision. Throws GovernorStop when nothing fits.
  void start();
  /// The batch size the batcher should collect now (the governor may change it).
  int batch() const;

  /// Runs n images (the preprocessed batch, in the preprocessing dtype, NCHW) into
  /// `out` (n x output_size() floats, softmax applied for output: probabilities).
  void run(const void* h_tensor, int n, std::vector<float>& out);

  int64_t output_size() const;
  /// One line of the predictions file for an image (CSV or JSON Lines).
  [[nodiscard]] std::string prediction_line(const std::string& path, const float* out) const;
  /// The CSV header line; empty for JSON Lines.
  [[nodiscard]] std::string prediction_header() const;
  /// Whether predictions (top-k) are written; embeddings are written as .npy only.
  bool writes_predictions() const { return cfg_.model.output != ModelOutput::Embedding; }
  /// Whether the raw outputs are written as .npy (embedding and logits).
  bool writes_outputs() const { return cfg_.model.output != ModelOutput::Probabilities; }

  /// Model, precision, batch, timing and the governor's events for report.json.
  [[nodiscard]] nlohmann::json report() const;

 private:
  const Config& cfg_;
  kernels::PreprocessParams pre_;
  std::function<void(const std::string&)> log_;
  std::vector<std::string> labels_;
  bool softmax_ = false;
  std::unique_ptr<infer::HostAllocator> host_;
  std::unique_ptr<infer::BudgetedAllocator> budgeted_;
  std::unique_ptr<infer::Executor> exec_;
  std::unique_ptr<Governor> governor_;
  std::vector<float> widened_;  // fp16/uint8 input widened to fp32
  double infer_s_ = 0;
  int64_t images_ = 0;
};

}  // namespace imgpipe
