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
  /// the model takes. Runs on CUDA device `cuda_device`, or on the CPU when it is -1.
  /// Throws ConfigError naming the key to fix; nothing is allocated yet.
  /// `most_per_batch`: no batch will hold more images (the inputs, a shard's size); the
  /// automatic batch is capped there. 0: no cap.
  ModelStage(const Config& cfg, const kernels::PreprocessParams& pre, int cuda_device,
             std::function<void(const std::string&)> log, int64_t most_per_batch = 0);
  ~ModelStage();
  /// Why this build cannot run a model on the GPU (built without CUDA or cuDNN), naming
  /// what to install; empty when it can.
  static std::string gpu_backend_missing();

  /// The governor's plan table (for --dry-run).
  [[nodiscard]] std::string describe_plan();
  /// Picks the batch and precision. Throws GovernorStop when nothing fits.
  void start();
  /// The batch size the batcher should collect now (the governor may change it).
  int batch() const;
  /// `f` gives the device bytes the GPU preprocessing holds now, which the plan counts per
  /// image: the governor counts them as this run's own, not as memory others took.
  void set_staging_bytes(std::function<int64_t()> f);

  /// Runs n images (the preprocessed batch, in the preprocessing dtype, NCHW) into
  /// `out` (n x output_size() floats, softmax applied for output: probabilities). On CUDA
  /// the batch is read from `d_tensor` when given (no copy back), else from `h_tensor`.
  void run(const void* h_tensor, const void* d_tensor, int n, std::vector<float>& out);
  /// Whether the model runs on the GPU (and so can take the batch in device memory).
  bool on_gpu() const { return cuda_device_ >= 0; }
  /// Most bytes the executor held at once (weights, arena, workspace).
  int64_t peak_allocated_bytes() const { return int64_t(budgeted_->peak()); }
  /// Device memory the cuDNN/cuBLAS handles took when created (0 on the CPU or before).
  int64_t handle_bytes() const;
  /// Seconds spent running the model (the governor's retries included).
  double inference_seconds() const { return infer_s_; }

  int64_t output_size() const;
  /// One line of the predictions file for an image (CSV or JSON Lines): its top-k classes
  /// from `top` (ranked on the GPU, see gpu_top()) or, when null, ranked here from `out`.
  [[nodiscard]] std::string prediction_line(const std::string& path, const float* out,
                                            const int32_t* top = nullptr) const;
  /// Image i of the last run()'s top-k classes when the GPU ranked them (CUDA, predictions
  /// written), else null.
  const int32_t* gpu_top(int64_t i) const;
  /// The CSV header line; empty for JSON Lines.
  [[nodiscard]] std::string prediction_header() const;
  /// Whether predictions (top-k) are written; embeddings are written as .npy only.
  bool writes_predictions() const { return cfg_.model.output != ModelOutput::Embedding; }
  /// Whether the raw outputs are written as .npy (embedding and logits).
  bool writes_outputs() const { return cfg_.model.output != ModelOutput::Probabilities; }

  /// The governor's samples, one per batch run (for report.json's timeline).
  const Timeline& timeline() const { return governor_->timeline(); }
  /// Model, precision, batch, timing and the governor's events for report.json.
  [[nodiscard]] nlohmann::json report() const;

 private:
  void finish(std::vector<float>& out, int n) const;  // softmax for output: probabilities
  void keep_top(int first, int count);  // the GPU's top-k of images first.. of this run()
  const Config& cfg_;
  kernels::PreprocessParams pre_;
  std::function<void(const std::string&)> log_;
  std::vector<std::string> labels_;
  bool softmax_ = false;
  int cuda_device_ = -1;
  std::unique_ptr<infer::Model> model_;
  std::unique_ptr<infer::Allocator> device_alloc_;  // host memory, or cudaMalloc on the GPU
  std::unique_ptr<infer::BudgetedAllocator> budgeted_;
  struct Backend;  // the executor of the chosen backend
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Governor> governor_;
  std::vector<float> widened_;  // fp16/uint8 input widened to fp32
  std::vector<int32_t> top_;    // the last run()'s top-k classes per image, ranked on the GPU
  double infer_s_ = 0;
  int64_t images_ = 0;
};

}  // namespace imgpipe
