#include "model_stage.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>

#include "cuda_preprocess.h"
#include "host_memory.h"
#include "sinks.h"
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
#include "cuda_executor.h"
#include "device_query.h"
#endif

namespace imgpipe {
namespace {

// Host memory as the CPU backend's "device": MemAvailable and MemTotal, under the cgroup limit.
MemoryReading host_memory() {
  const HostMemory m = read_host_memory();
  return MemoryReading{m.available, m.total};
}

constexpr int kCpuAutoBatchCap = 32;

}  // namespace

// One executor, CPU or CUDA, and its ModelRunner view for the governor.
struct ModelStage::Backend : ModelRunner {
  std::unique_ptr<infer::Executor> cpu;
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  std::unique_ptr<infer::CudaExecutor> cuda;
#endif
  template <class F>
  decltype(auto) with(F&& f) const {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
    if (cuda) return f(*cuda);
#endif
    return f(*cpu);
  }
  int64_t bytes_needed(int b, infer::Precision p) const override {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
    if (cuda) return int64_t(cuda->bytes_needed(b, p));
#endif
    return int64_t(cpu->model().bytes_needed(b, p));
  }
  void prepare(int b, infer::Precision p) override {
    with([&](auto& e) { e.prepare(b, p); });
  }
  void release() noexcept override {
    with([](auto& e) { e.release(); });
  }
  bool prepared() const override {
    return with([](auto& e) { return e.prepared(); });
  }
  int batch() const override {
    return with([](auto& e) { return e.batch(); });
  }
  infer::Precision precision() const override {
    return with([](auto& e) { return e.precision(); });
  }
  int64_t output_size() const override {
    return with([](auto& e) { return e.model().output_size(); });
  }
  int64_t overhead_bytes() const override {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
    if (cuda) return int64_t(cuda->overhead_bytes());
#endif
    return 0;
  }
};

ModelStage::ModelStage(const Config& cfg, const kernels::PreprocessParams& pre, int cuda_device,
                       std::function<void(const std::string&)> log, int64_t most_per_batch)
    : cfg_(cfg), pre_(pre), log_(std::move(log)) {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  cuda_device_ = cuda_device;
#else
  // device: auto only (device: cuda is refused before): the model falls back to the CPU.
  if (cuda_device >= 0) log_("model runs on the CPU: " + gpu_backend_missing());
#endif
  infer::Model model = [&] {
    try {
      return infer::Model::load(cfg.model.path, cfg.model.input, /*for_cpu=*/cuda_device_ < 0);
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

  model_ = std::make_unique<infer::Model>(model);
  backend_ = std::make_unique<Backend>();
  std::function<MemoryReading()> memory = host_memory;
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  if (cuda_device_ >= 0) {
    device_alloc_ = std::make_unique<infer::CudaDeviceAllocator>(cuda_device_);
    budgeted_ = std::make_unique<infer::BudgetedAllocator>(*device_alloc_);
    infer::CudaOptions opt;
    if (writes_predictions()) opt.top_k = cfg.model.top_k;  // ranked on the GPU (CUB radix sort)
    backend_->cuda = std::make_unique<infer::CudaExecutor>(std::move(model), cuda_device_, *budgeted_, opt);
    memory = [device = cuda_device_] {
      const auto m = kernels::device_mem_info(device);
      return MemoryReading{int64_t(m.free), int64_t(m.total)};
    };
  }
#endif
  if (cuda_device_ < 0) {
    device_alloc_ = std::make_unique<infer::HostAllocator>();
    budgeted_ = std::make_unique<infer::BudgetedAllocator>(*device_alloc_);
    backend_->cpu = std::make_unique<infer::Executor>(std::move(model), *budgeted_);
  }

  Governor::Options o;
  o.batch_min = cfg.batch.min;
  o.batch_max = cfg.batch.max;
  // On the CPU a batch beyond a few dozen images is no faster (the GEMMs are already large)
  // and only costs memory: ResNet-50 at batch 256 holds 3.4 GB of activations. The auto batch
  // is capped there; batch.size still sets any size.
  if (cuda_device_ < 0 && cfg.batch.size == 0 && o.batch_max > kCpuAutoBatchCap) {
    o.batch_max = std::max(cfg.batch.min, kCpuAutoBatchCap);
    log_("model runs on the CPU: the automatic batch is capped at " + std::to_string(o.batch_max) +
         " (set batch.size for another size)");
  }
  // A batch never spans shards nor holds more than the inputs: planning a larger one only
  // costs memory, and a model that runs whole batches (ViT) would compute padding.
  if (cfg.batch.size == 0 && most_per_batch > 0 && o.batch_max > most_per_batch) {
    o.batch_max = int(std::max<int64_t>(cfg.batch.min, most_per_batch));
    log_("no batch holds more than " + std::to_string(most_per_batch) +
         " images (the inputs, output.images_per_shard): the automatic batch is capped there");
  }
  o.batch_fixed = cfg.batch.size;
  o.precision = cfg.precision;
  o.budget = cfg.memory.device_budget;
  o.budget_percent = cfg.memory.device_budget_percent;
  o.safety_margin = cfg.memory.safety_margin;
  if (cuda_device_ < 0) {
    // Host memory is shared with the decode queue, which fills after the plan is made; and
    // under a tight limit (a cgroup) a GPU-sized margin would leave nothing for the model.
    const HostMemory host = read_host_memory();
    o.safety_margin = std::min(o.safety_margin, host.total / 8) + usable_host_budget(cfg.memory.host_budget, host);
  }
  o.restore_precision = cfg.memory.restore_precision;
  // Per image, besides the model's plan: the batch tensor and the fp32 output; on the GPU
  // also the preprocessing stage's slots of decoded images and tensors (device memory that
  // set_staging_bytes() then counts as this run's own).
  o.extra_bytes_per_image = int64_t(kernels::output_image_bytes(pre)) + out_size * 4;
  if (cuda_device_ >= 0) o.extra_bytes_per_image += CudaPreprocessor::kSlots * int64_t(staging_bytes_per_image(pre));
  if (const char* f = std::getenv("IMGPIPE_FAULT_INJECT")) {
    try {
      o.faults = FaultPlan::parse(f);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
  }
  governor_ = std::make_unique<Governor>(o, *backend_, *budgeted_, memory, log_);
}

ModelStage::~ModelStage() = default;

std::string ModelStage::gpu_backend_missing() {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  return "";
#elif defined(IMGPIPE_HAVE_CUDA)
  return "this imgpipe was built without cuDNN, which models on the GPU need: install it "
         "(libcudnn9-dev-cuda-12 for CUDA 12, libcudnn9-dev-cuda-13 for CUDA 13) and rerun scripts/setup.sh";
#else
  return "this imgpipe was built without CUDA (no nvcc at build time): install the CUDA toolkit and cuDNN "
         "and rerun scripts/setup.sh";
#endif
}

std::string ModelStage::describe_plan() { return governor_->describe_plan(); }
void ModelStage::start() { governor_->start(); }
int ModelStage::batch() const { return governor_->batch(); }
void ModelStage::set_staging_bytes(std::function<int64_t()> f) { governor_->set_staging_bytes(std::move(f)); }
int64_t ModelStage::output_size() const { return model_->output_size(); }

int64_t ModelStage::handle_bytes() const {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  if (backend_->cuda) return int64_t(backend_->cuda->handle_bytes());
#endif
  return 0;
}

void ModelStage::run(const void* h_tensor, const void* d_tensor, int n, std::vector<float>& out) {
  const int64_t in_size = model_->input_size(), out_size = output_size();
  out.resize(size_t(n * out_size));
  const auto t = std::chrono::steady_clock::now();
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  if (backend_->cuda && d_tensor) {  // the batch stays on the device: no copy back and forth
    const bool fp16 = pre_.dtype == kernels::DType::F16;
    const auto* d = static_cast<const uint8_t*>(d_tensor);
    governor_->infer(n, out.data(), [&](int first, int count, float* o) {
      backend_->cuda->run_device(d + int64_t(first) * in_size * (fp16 ? 2 : 4), fp16, count, o);
      keep_top(first, count);
    });
    infer_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    images_ += n;
    finish(out, n);
    return;
  }
#else
  (void)d_tensor;
#endif
  const float* input = static_cast<const float*>(h_tensor);
  if (pre_.dtype == kernels::DType::F16) {
    widened_.resize(size_t(n * in_size));
    const auto* h = static_cast<const uint16_t*>(h_tensor);
    for (size_t i = 0; i < widened_.size(); ++i) widened_[i] = infer::half_to_float(h[i]);
    input = widened_.data();
  }
  governor_->infer(n, out.data(), [&](int first, int count, float* o) {
    backend_->with([&](auto& e) { e.run(input + int64_t(first) * in_size, count, o); });
    keep_top(first, count);
  });
  infer_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  images_ += n;
  finish(out, n);
}

void ModelStage::keep_top(int first, int count) {
#if defined(IMGPIPE_HAVE_CUDA_INFERENCE)
  if (!backend_->cuda || backend_->cuda->top_k() == 0) return;
  const std::vector<int32_t>& t = backend_->cuda->top_classes();
  const size_t k = size_t(backend_->cuda->top_k());
  if (first == 0) top_.clear();
  top_.resize(size_t(first + count) * k);
  std::copy(t.begin(), t.begin() + std::ptrdiff_t(size_t(count) * k), top_.begin() + std::ptrdiff_t(size_t(first) * k));
#else
  (void)first;
  (void)count;
#endif
}

const int32_t* ModelStage::gpu_top(int64_t i) const {
  const int64_t k = std::min<int64_t>(cfg_.model.top_k, output_size());
  return top_.empty() ? nullptr : top_.data() + i * k;
}

void ModelStage::finish(std::vector<float>& out, int n) const {
  const int64_t out_size = output_size();
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

std::string ModelStage::prediction_line(const std::string& path, const float* out, const int32_t* top) const {
  const int64_t n = output_size();
  const int k = int(std::min<int64_t>(cfg_.model.top_k, n));
  std::vector<int64_t> idx(static_cast<size_t>(n));
  if (top) {
    std::copy(top, top + k, idx.begin());
  } else {
    std::iota(idx.begin(), idx.end(), 0);
    // Highest first; ties keep the lower class index, so the order is deterministic.
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t a, int64_t b) { return out[a] > out[b] || (out[a] == out[b] && a < b); });
  }
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
    // A name that is not UTF-8 also comes exactly, as base64 (see README, Output).
    line = "{\"path\": " + json_string(path) + (is_utf8(path) ? "" : ", \"path_b64\": \"" + base64(path) + "\"") +
           ", \"top\": [";
    for (int i = 0; i < k; ++i) {
      std::snprintf(score, sizeof score, "%.6g", double(out[idx[size_t(i)]]));
      line += std::string(i ? ", " : "") + "{\"label\": " + json_string(label(idx[size_t(i)])) + ", \"score\": " + score + "}";
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
  const auto& m = *model_;
  return {
      {"path", cfg_.model.path},
      {"input", m.input_name()},
      {"input_shape", m.input_shape()},
      {"output", m.output_name()},
      {"output_size", m.output_size()},
      {"opset", m.opset()},
      {"backend", cuda_device_ >= 0 ? "cuda:" + std::to_string(cuda_device_) : std::string("cpu")},
      {"precision", infer::to_string(governor_->precision())},
      {"batch_size", governor_->batch()},
      {"inference_s", infer_s_},
      {"inference_ms_per_image", images_ ? 1e3 * infer_s_ / double(images_) : 0.0},
      {"memory",
       {{"budget_bytes", governor_->budget()},
        {"peak_allocated_bytes", budgeted_->peak()},
        // On the CPU the weights are the model's constants, resident from load on and not
        // allocated per batch: weight_bytes + peak_allocated_bytes is the whole plan.
        {"weight_bytes", cuda_device_ < 0 ? int64_t(model_->plan(1, infer::Precision::FP32).weight_bytes) : int64_t(0)},
        {"handle_bytes", handle_bytes()}}},
      {"governor",
       {{"events", events},
        {"shrinks", shrinks},
        {"grows", grows},
        {"downcasts", downcasts},
        {"images_retried", governor_->images_retried()}}},
  };
}

}  // namespace imgpipe
