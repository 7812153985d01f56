#include "model_stage.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>

#include "sinks.h"

namespace imgpipe {
namespace {

// Host memory as the CPU backend's "device": MemAvailable and MemTotal.
MemoryReading host_memory() {
  MemoryReading m;
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") m.free = kb * 1024;
    if (key == "MemTotal:") m.total = kb * 1024;
  }
  return m;
}

std::string json_escape(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

ModelStage::ModelStage(const Config& cfg, const kernels::PreprocessParams& pre,
                       std::function<void(const std::string&)> log)
    : cfg_(cfg), pre_(pre), log_(std::move(log)) {
  infer::Model model = [&] {
    try {
      return infer::Model::load(cfg.model.path, cfg.model.input);
    } catch (const std::exception& e) {
      throw ConfigError("model.path '" + cfg.model.path + "' cannot be used: " + e.what());
    }
  }();
  const auto in = model.input_shape();
  const std::vector<int64_t> produced = {pre.out_channels, pre.out_h, pre.out_w};
  auto shape_text = [](const std::vector<int64_t>& s) {
    std::string t;
    for (auto d : s) t += (t.empty() ? "" : "x") + std::to_string(d);
    return t;
  };
  if (in != produced)
    throw ConfigError("model '" + cfg.model.path + "' takes " + shape_text(in) + " (CxHxW) per image, but preprocess " +
                      "produces " + shape_text(produced) + ": adjust preprocess.crop / resize / color");
  if (pre.layout != kernels::Layout::NCHW)
    throw ConfigError("config key 'preprocess.layout': expected nchw when a model is given (ONNX image models take NCHW)");
  if (pre.dtype == kernels::DType::U8)
    throw ConfigError("config key 'preprocess.dtype': expected float32 or float16 when a model is given");
  const int64_t out_size = model.output_size();
  if (!cfg.model.labels.empty()) {
    std::ifstream f(cfg.model.labels);
    if (!f) throw ConfigError("config key 'model.labels': cannot read '" + cfg.model.labels + "'");
    for (std::string line; std::getline(f, line);) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      labels_.push_back(line);
    }
    while (!labels_.empty() && labels_.back().empty()) labels_.pop_back();
    if (cfg.model.output != ModelOutput::Embedding && int64_t(labels_.size()) != out_size)
      throw ConfigError("config key 'model.labels': '" + cfg.model.labels + "' has " + std::to_string(labels_.size()) +
                        " labels but the model has " + std::to_string(out_size) + " outputs");
  }
  // Probabilities: apply softmax unless the graph already ends in one.
  const auto& nodes = model.graph()->nodes;
  const bool ends_in_softmax = !nodes.empty() && nodes.back().op_type == "Softmax";
  softmax_ = cfg.model.output == ModelOutput::Probabilities && !ends_in_softmax;

  host_ = std::make_unique<infer::HostAllocator>();
  budgeted_ = std::make_unique<infer::BudgetedAllocator>(*host_);
  exec_ = std::make_unique<infer::Executor>(std::move(model), *budgeted_);

  Governor::Options o;
  o.batch_min = cfg.batch.min;
  o.batch_max = cfg.batch.max;
  o.batch_fixed = cfg.batch.size;
  o.precision = cfg.precision;
  o.budget = cfg.memory.device_budget;
  o.budget_percent = cfg.memory.device_budget_percent;
  o.safety_margin = cfg.memory.safety_margin;
  o.restore_precision = cfg.memory.restore_precision;
  // The batch tensor and the model's fp32 output, per image, on the same memory.
  o.extra_bytes_per_image = int64_t(kernels::output_image_bytes(pre)) + out_size * 4;
  if (const char* f = std::getenv("IMGPIPE_FAULT_INJECT")) {
    try {
      o.faults = FaultPlan::parse(f);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
  }
  governor_ = std::make_unique<Governor>(o, *exec_, *budgeted_, host_memory, log_);
}

ModelStage::~ModelStage() = default;

std::string ModelStage::describe_plan() { return governor_->describe_plan(); }
void ModelStage::start() { governor_->start(); }
int ModelStage::batch() const { return governor_->batch(); }
int64_t ModelStage::output_size() const { return exec_->model().output_size(); }

void ModelStage::run(const void* h_tensor, int n, std::vector<float>& out) {
  const int64_t in_size = exec_->model().input_size(), out_size = output_size();
  const float* input = static_cast<const float*>(h_tensor);
  if (pre_.dtype == kernels::DType::F16) {
    widened_.resize(size_t(n * in_size));
    const auto* h = static_cast<const uint16_t*>(h_tensor);
    for (size_t i = 0; i < widened_.size(); ++i) widened_[i] = infer::half_to_float(h[i]);
    input = widened_.data();
  }
  out.resize(size_t(n * out_size));
  const auto t = std::chrono::steady_clock::now();
  governor_->infer(input, n, out.data());
  infer_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  images_ += n;
  if (!softmax_) return;
  for (int i = 0; i < n; ++i) {
    float* o = out.data() + i * out_size;
    const float mx = *std::max_element(o, o + out_size);
    double sum = 0;
    for (int64_t k = 0; k < out_size; ++k) sum += (o[k] = std::exp(o[k] - mx));
    for (int64_t k = 0; k < out_size; ++k) o[k] = float(o[k] / sum);
  }
}

std::string ModelStage::prediction_header() const {
  if (cfg_.output.predictions == PredictionFormat::Jsonl) return "";
  std::string h = "path";
  const int k = int(std::min<int64_t>(cfg_.model.top_k, output_size()));
  for (int i = 1; i <= k; ++i) h += ",label_" + std::to_string(i) + ",score_" + std::to_string(i);
  return h + "\n";
}

std::string ModelStage::prediction_line(const std::string& path, const float* out) const {
  const int64_t n = output_size();
  const int k = int(std::min<int64_t>(cfg_.model.top_k, n));
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // Highest first; ties keep the lower class index, so the order is deterministic.
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return out[a] > out[b] || (out[a] == out[b] && a < b); });
  auto label = [&](int64_t c) { return labels_.empty() ? std::to_string(c) : labels_[size_t(c)]; };
  char score[32];
  std::string line;
  if (cfg_.output.predictions == PredictionFormat::Csv) {
    line = csv_field(path);
    for (int i = 0; i < k; ++i) {
      std::snprintf(score, sizeof score, "%.6g", double(out[idx[size_t(i)]]));
      line += "," + csv_field(label(idx[size_t(i)])) + "," + score;
    }
  } else {
    line = "{\"path\": " + json_escape(path) + ", \"top\": [";
    for (int i = 0; i < k; ++i) {
      std::snprintf(score, sizeof score, "%.6g", double(out[idx[size_t(i)]]));
      line += std::string(i ? ", " : "") + "{\"label\": " + json_escape(label(idx[size_t(i)])) + ", \"score\": " + score + "}";
    }
    line += "]}";
  }
  return line + "\n";
}

nlohmann::json ModelStage::report() const {
  nlohmann::json events = nlohmann::json::array();
  int shrinks = 0, grows = 0, downcasts = 0;
  for (const auto& e : governor_->events()) {
    shrinks += e.kind == "shrink";
    grows += e.kind == "grow";
    downcasts += e.kind == "downcast";
    events.push_back({{"time_s", e.time_s},
                      {"kind", e.kind},
                      {"batch_before", e.batch_before},
                      {"batch_after", e.batch_after},
                      {"precision_before", e.precision_before},
                      {"precision_after", e.precision_after},
                      {"free_bytes", e.free_bytes},
                      {"budget_bytes", e.budget_bytes},
                      {"needed_bytes", e.needed_bytes},
                      {"images_retried", e.images_retried},
                      {"reason", e.reason}});
  }
  const auto& m = exec_->model();
  return {
      {"path", cfg_.model.path},
      {"input", m.input_name()},
      {"input_shape", m.input_shape()},
      {"output", m.output_name()},
      {"output_size", m.output_size()},
      {"opset", m.opset()},
      {"backend", "cpu"},
      {"precision", infer::to_string(governor_->precision())},
      {"batch_size", governor_->batch()},
      {"inference_s", infer_s_},
      {"inference_ms_per_image", images_ ? 1e3 * infer_s_ / double(images_) : 0.0},
      {"memory",
       {{"budget_bytes", governor_->budget()}, {"peak_allocated_bytes", budgeted_->peak()}}},
      {"governor",
       {{"events", events},
        {"shrinks", shrinks},
        {"grows", grows},
        {"downcasts", downcasts},
        {"images_retried", governor_->images_retried()}}},
  };
}

}  // namespace imgpipe
