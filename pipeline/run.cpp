#include "run.h"

#include <sys/resource.h>

#include <csignal>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "byte_queue.h"
#include "cuda_preprocess.h"
#include "decode.h"
#include "device_query.h"
#include "governor.h"
#include "host_memory.h"
#include "model_stage.h"
#include "output_dir.h"
#include "placement.h"
#include "preprocess.h"
#include "progress.h"
#include "shard_writer.h"
#include "sinks.h"
#include "source.h"
#include "stop_signals.h"

using json = nlohmann::json;

namespace imgpipe {
const char* version();

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

class Log {
 public:
  Log(FILE* out, bool quiet) : out_(out), quiet_(quiet) {}
  void info(const char* fmt, ...) const {
    if (quiet_) return;
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
  }
  /// Shown even with --quiet.
  void notice(const char* fmt, ...) const {
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
  }
  void warn(const char* fmt, ...) const {
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", fmt, ap);
    va_end(ap);
  }
  void error(const char* fmt, ...) const {
    va_list ap;
    va_start(ap, fmt);
    emit("error: ", fmt, ap);
    va_end(ap);
  }

 private:
  void emit(const char* level, const char* fmt, va_list ap) const {
    std::fprintf(out_, "imgpipe: %s", level);
    std::vfprintf(out_, fmt, ap);
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  FILE* out_;
  bool quiet_;
};

/// One input on its way from the decode threads to the writer.
struct Item {
  size_t pos = 0;            ///< position in this process's input list
  std::string error;         ///< non-empty: skipped, and why
  std::vector<uint8_t> tensor;  ///< the preprocessed image (CPU path)
  cv::Mat pixels;               ///< the decoded image (CUDA path: preprocessed on the GPU)
  kernels::ImageDesc desc;      ///< its placement in the output (CUDA path)
};

struct StageTimes {
  std::atomic<int64_t> decode_ns{0}, preprocess_ns{0};
};


/// This process's peak resident memory: VmHWM, which starts anew at exec; ru_maxrss keeps
/// the parent's when it was larger (imgpipe started from a Python kernel holding PyTorch).
int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;
}


class Job {
 public:
  Job(const Config& cfg, const RunOptions& opt, FILE* log)
      : cfg_(cfg), opt_(opt), log_(log, opt.quiet), params_(preprocess_params(cfg.preprocess)), dir_(cfg) {}

  int run() {
    const auto t0 = Clock::now();
    try {
      inputs_ = list_inputs(cfg_.input);
    } catch (const std::exception& e) {
      log_.error("%s", e.what());
      return kExitConfig;
    }
    list_s_ = seconds_since(t0);
    if (int rc = select_device(); rc != kExitOk) return rc;
    check_host_budget();
    batch_size_ = cfg_.batch.size ? cfg_.batch.size : cfg_.batch.max;
    if (!cfg_.model.path.empty()) {
      try {
        model_ = std::make_unique<ModelStage>(cfg_, params_, gpu_ ? cfg_.device_index : -1,
                                              [this](const std::string& line) { log_.info("%s", line.c_str()); },
                                              int64_t(std::min<size_t>(inputs_.size(), size_t(cfg_.output.images_per_shard))));
      } catch (const ConfigError& e) {
        log_.error("%s", e.what());
        return kExitConfig;
      }
    }
    threads_ = cfg_.decode.threads ? cfg_.decode.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const size_t per_shard = size_t(cfg_.output.images_per_shard);
    shards_ = (inputs_.size() + per_shard - 1) / per_shard;

    if (opt_.dry_run) return dry_run();
    if (model_) {  // the initial plan: when nothing fits, stop before touching any file
      try {
        model_->start();
      } catch (const GovernorStop& e) {
        log_.error("out of memory: %s", e.what());
        return kExitOutOfMemory;
      }
    }
    try {
      std::string error;
      if (int rc = dir_.open(inputs_, error); rc != kExitOk) {
        log_.error("%s", error.c_str());
        return rc;
      }
    } catch (const std::exception& e) {
      log_.error("output.dir '%s': %s", cfg_.output.dir.c_str(), e.what());
      return kExitRuntime;
    }
    if (inputs_.empty()) {
      std::string exts;
      for (const auto& e : cfg_.input.extensions) exts += (exts.empty() ? "" : ", ") + e;
      warnings_.push_back("no images found in " + cfg_.input.path + " (extensions: " + exts + ")");
      log_.warn("%s", warnings_.back().c_str());
    }

    std::vector<size_t> work;  // positions still to do, in input order
    for (size_t pos = 0; pos < inputs_.size(); ++pos)
      if (!dir_.complete(pos / per_shard)) work.push_back(pos);
    resumed_ = inputs_.size() - work.size();
    int rc = kExitOk;
    if (!work.empty())
      log_.info("%zu images in %s (%zu shard%s of up to %zu); %zu to do%s; device %s (%s); %d decode threads",
                inputs_.size(), cfg_.input.path.c_str(), shards_, shards_ == 1 ? "" : "s", per_shard, work.size(),
                resumed_ ? (", " + std::to_string(resumed_) + " already done").c_str() : "", device_.c_str(),
                device_reason_.c_str(), threads_);
    else if (!inputs_.empty())
      log_.info("nothing to do: all %zu images already in %s", inputs_.size(), cfg_.output.dir.c_str());
    try {
      if (!work.empty()) rc = process(work);
      if (rc == kExitOk) merge_predictions();
    } catch (const GovernorStop& e) {
      log_.error("out of memory: %s (completed shards are kept; rerun with a larger memory.device_budget to resume)",
                 e.what());
      rc = kExitOutOfMemory;
    } catch (const std::exception& e) {
      log_.error("%s", e.what());
      rc = kExitRuntime;
    }
    wall_s_ = seconds_since(t0);
    stopped_by_ = rc == kExitInterrupt || rc == kExitTerminate || rc == kExitHangup ? stop_.signal() : 0;
    try {
      write_report(rc);
    } catch (const std::exception& e) {
      log_.error("cannot write report: %s", e.what());
      if (rc == kExitOk) rc = kExitRuntime;
    }
    if (stopped_by_) {
      log_.notice("interrupted after %zu images; rerun the same command to resume", dir_.images() - resumed_);
      return rc;
    }
    log_.info("%zu written, %zu skipped, %zu resumed in %.2fs (%.1f images/s); output in %s", written_,
              skipped_, resumed_, wall_s_, wall_s_ > 0 ? double(written_ + skipped_) / wall_s_ : 0.0,
              cfg_.output.dir.c_str());
    return rc;
  }

 private:
  // device: auto takes CUDA when a device and a working driver exist, else the CPU, and
  // says why; device: cuda without a usable GPU, or with a model in a build that cannot
  // run it there, is an error before any work.
  int select_device() {
    if (cfg_.device == DeviceKind::Cpu) {
      device_ = "cpu", device_reason_ = "device: cpu requested";
      return kExitOk;
    }
    // A model must never run on the CPU when the GPU was asked for.
    const std::string missing = ModelStage::gpu_backend_missing();
    if (cfg_.device == DeviceKind::Cuda && !cfg_.model.path.empty() && !missing.empty()) {
      log_.error("device: cuda:%d requested with a model, but %s (or set device: cpu)", cfg_.device_index,
                 missing.c_str());
      return kExitConfig;
    }
    const kernels::CudaProbe probe = kernels::probe_cuda();
    if (probe.device_count > cfg_.device_index) {
      gpu_ = true;
      // Before any work creates the context: host waits sleep instead of spinning a core.
      if (!kernels::use_blocking_sync(cfg_.device_index)) log_.info("CUDA blocking sync unavailable; host waits spin");
      device_ = "cuda:" + std::to_string(cfg_.device_index);
      device_reason_ = std::to_string(probe.device_count) + " CUDA device(s) found";
      return kExitOk;
    }
    const std::string why = probe.device_count == 0
                                ? probe.reason
                                : "only " + std::to_string(probe.device_count) + " CUDA device(s) present";
    if (cfg_.device == DeviceKind::Cuda) {
      log_.error("device: cuda:%d requested, but no usable GPU: %s", cfg_.device_index, why.c_str());
      return kExitConfig;
    }
    device_ = "cpu", device_reason_ = "no usable GPU: " + why;
    return kExitOk;
  }

  // A scheduler's memory limit (a cgroup) is the host memory there is: the decode queue
  // and pinned staging (memory.host_budget) get at most an eighth of what is available.
  void check_host_budget() {
    const HostMemory host = read_host_memory();
    log_.info("host memory: %s", host.describe().c_str());
    host_budget_ = usable_host_budget(cfg_.memory.host_budget, host);
    if (host_budget_ < cfg_.memory.host_budget)
      log_.warn("memory.host_budget %s is more than an eighth of the host memory available (%s); using %s",
                format_bytes(cfg_.memory.host_budget).c_str(), format_bytes(host.available).c_str(),
                format_bytes(host_budget_).c_str());
  }

  int dry_run() {
    std::printf("# resolved configuration\n%s\n", to_yaml(cfg_).c_str());
    std::printf("# plan\n");
    std::printf("inputs: %zu\nshards: %zu of up to %d images\n", inputs_.size(), shards_, cfg_.output.images_per_shard);
    std::printf("output_per_image: %dx%dx%d %s (%zu bytes)\n", params_.out_channels, params_.out_h, params_.out_w,
                npy_descr(params_.dtype), kernels::output_image_bytes(params_));
    // One batch: with a model, the memory plan's choice (below), not batch.max.
    const std::string plan = model_ ? model_->describe_plan() : "";
    const int batch = batch_size();  // after describe_plan(), which makes the choice
    std::printf("device: %s (%s)\n", device_.c_str(), device_reason_.c_str());
    if (batch > 0) std::printf("batch: %d%s\n", batch, model_ ? " (the memory plan's choice)" : "");
    else std::printf("batch: none fits the memory budget (the run would stop with exit code 4)\n");
    std::printf("decode_threads: %d\nhost_budget: %s\n%s", threads_, format_bytes(host_budget_).c_str(), plan.c_str());
    return kExitOk;
  }

  void decode_worker(const std::vector<size_t>& work, std::atomic<size_t>& next, OrderedByteQueue<Item>& queue) {
    Decoder decoder(params_.src_channels == 1, {cfg_.decode.max_file_bytes, cfg_.decode.max_pixels},
                    cfg_.decode.exif_orientation);
    // Without decode.jpeg_downscale every JPEG is decoded at full size, as PIL does. With it,
    // as PIL's draft('RGB', (crop, crop)): the decode may be smaller than the resize as long
    // as it still covers the crop.
    NeededSize needed;
    if (cfg_.decode.jpeg_downscale)
      needed = [this](int w, int h) {
        const PreprocessConfig& p = cfg_.preprocess;
        const auto d = place_image(p, w, h);
        if (!p.crop_width) return std::make_pair(d.resized_w, d.resized_h);
        return std::make_pair(std::min(d.resized_w, p.crop_width), std::min(d.resized_h, p.crop_height));
      };
    const size_t out_bytes = kernels::output_image_bytes(params_);
    for (size_t seq; (seq = next.fetch_add(1)) < work.size();) {
      Item item;
      item.pos = work[seq];
      // What this image holds while it is decoded and preprocessed (the file, its pixels,
      // on the CPU its tensor) counts against the budget before it is allocated, so the
      // decode threads never hold more than the budget beside the queue.
      size_t reserved = 0;
      const Reserve reserve = [&](size_t bytes) {
        if (reserved == 0 && !gpu_) bytes += out_bytes;
        if (!queue.reserve(seq, bytes)) return false;
        reserved += bytes;
        return true;
      };
      Decoded d;
      auto t = Clock::now();
      if (!decoder.decode(inputs_[item.pos], needed, d, item.error, reserve)) {
        times_.decode_ns += (Clock::now() - t).count();
        if (!queue.push(seq, std::move(item), 0, reserved)) return;
        continue;
      }
      times_.decode_ns += (Clock::now() - t).count();
      if (d.more_pages && !multi_page_logged_.exchange(true))
        log_.info("%s is a multi-page TIFF: imgpipe uses its first page (said once per run)", inputs_[item.pos].c_str());
      kernels::ImageDesc desc = place_image(cfg_.preprocess, d.orig_width, d.orig_height);
      if (gpu_) {  // preprocessing happens on the GPU, batch by batch
        const size_t bytes = d.pixels.total() * d.pixels.elemSize();
        item.pixels = std::move(d.pixels);
        item.desc = desc;
        if (!queue.push(seq, std::move(item), bytes, reserved)) return;
        continue;
      }
      t = Clock::now();
      desc.width = d.pixels.cols;
      desc.height = d.pixels.rows;
      desc.pitch = int32_t(d.pixels.step);
      item.tensor.resize(out_bytes);
      kernels::preprocess_cpu(d.pixels.data, &desc, 1, params_, item.tensor.data());
      times_.preprocess_ns += (Clock::now() - t).count();
      d.pixels.release();  // before push: only the tensor stays counted against the budget
      if (!queue.push(seq, std::move(item), out_bytes, reserved)) return;
    }
  }

  // Images per batch: the governor's choice with a model; on the GPU the configured size;
  // on the CPU without a model there is nothing to batch for, so each image is written as
  // it comes and no batch is held outside the host budget.
  // The host budget covers the decode queue and, on the GPU, the pinned staging of the two
  // batches in flight (decoded images, as planned by staging_bytes_per_image, and tensors).
  int64_t queue_budget() {
    if (!gpu_) return host_budget_;
    const int64_t per_image = int64_t(staging_bytes_per_image(params_));
    const int64_t staging = CudaPreprocessor::kSlots * int64_t(cfg_.batch.size ? cfg_.batch.size : cfg_.batch.max) * per_image;
    const int64_t floor = host_budget_ / 4;
    if (host_budget_ - staging < floor)
      log_.warn("pinned staging for batch.max %d (about %s) leaves less than a quarter of memory.host_budget "
                "(%s) for the decode queue; the queue gets %s",
                cfg_.batch.size ? cfg_.batch.size : cfg_.batch.max, format_bytes(staging).c_str(),
                format_bytes(host_budget_).c_str(), format_bytes(floor).c_str());
    return std::max(floor, host_budget_ - staging);
  }

  int batch_size() const { return model_ ? model_->batch() : gpu_ ? batch_size_ : 1; }

  // After a complete run: all of this part's shards' predictions in one file, in input
  // order. A part cannot know whether the other parts are done, so nothing spans parts.
  void merge_predictions() {
    if (!model_ || !model_->writes_predictions()) return;
    const char* ext = cfg_.output.predictions == PredictionFormat::Csv ? "csv" : "jsonl";
    AtomicFile all(dir_.file(std::string("predictions.") + ext));
    all.write(model_->prediction_header());
    for (size_t s = 0; s < shards_; ++s) {
      std::ifstream in(dir_.shard_file("predictions", s, ext));
      std::string line;
      if (!model_->prediction_header().empty()) std::getline(in, line);  // the shard's header
      while (std::getline(in, line)) all.write(line + "\n");
    }
    all.commit();
  }

  int process(const std::vector<size_t>& work) {
    if (gpu_) cuda_ = std::make_unique<CudaPreprocessor>(cfg_.device_index, params_);
    if (cuda_ && model_) model_->set_staging_bytes([this] { return int64_t(cuda_->device_bytes()); });
    OrderedByteQueue<Item> queue(static_cast<size_t>(queue_budget()));
    std::atomic<size_t> next{0};
    std::atomic<bool> worker_failed{false};
    std::string worker_error;
    std::mutex worker_error_mu;
    std::vector<std::thread> workers;
    const int nthreads = int(std::min<size_t>(size_t(threads_), std::max<size_t>(1, work.size())));
    for (int i = 0; i < nthreads; ++i)
      workers.emplace_back([&] {
        try {
          decode_worker(work, next, queue);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(worker_error_mu);
          worker_error = e.what();
          worker_failed = true;
          queue.close();
        }
      });
    struct Joiner {  // stop and join the workers however this function is left
      OrderedByteQueue<Item>& q;
      std::vector<std::thread>& ws;
      StopSignals& stop;
      ~Joiner() {
        stop.on_stop({});
        q.close();
        for (auto& w : ws) w.join();
      }
    } joiner{queue, workers, stop_};
    // A signal closes the queue: the decode threads stop at their next push, and the loop
    // below at its next pop, dropping the open shard (its .partial files are removed).
    stop_.on_stop([&queue] { queue.close(); });

    Progress progress(opt_.quiet ? ProgressMode::Off : cfg_.progress, work.size());
    const size_t per_shard = size_t(cfg_.output.images_per_shard);
    ShardWriter shard(dir_, cfg_, params_, model_.get(), inputs_);
    std::vector<Item> batch;
    size_t done = 0;
    // Test hooks: IMGPIPE_TEST_KILL_AFTER=N kills the process (SIGKILL, no clean-up) after
    // N images, so tests can check that a rerun resumes to byte-identical outputs;
    // IMGPIPE_TEST_DELAY_MS=M waits M ms after each image, so tests can act during a run.
    const char* kill_env = std::getenv("IMGPIPE_TEST_KILL_AFTER");
    const size_t kill_after = kill_env ? size_t(std::strtoull(kill_env, nullptr, 10)) : SIZE_MAX;
    const char* delay_env = std::getenv("IMGPIPE_TEST_DELAY_MS");
    const auto delay = std::chrono::milliseconds(delay_env ? std::strtoll(delay_env, nullptr, 10) : 0);
    for (size_t seq = 0; seq < work.size() && !stop_.signal(); ++seq) {
      auto item = queue.pop();
      if (!item) break;
      const size_t s = item->pos / per_shard;
      if (s != shard.id()) {
        flush(batch, shard);
        if (shard.is_open()) close_shard(shard);
        shard.open(s);
      }
      ++done;
      if (!item->error.empty()) {
        const std::string& path = inputs_[item->pos];
        if (cfg_.decode.on_error == OnError::Fail) {
          log_.error("stopping: %s could not be decoded (%s) and decode.on_error is fail (completed shards kept; "
                     "fix or remove the file and rerun to resume)",
                     path.c_str(), item->error.c_str());
          progress.finish(done, skipped_);
          return kExitBadImage;  // the open shard is dropped: its .partial files are removed
        }
        ++skipped_;
        shard.add_skipped(item->pos, item->error);
        if (skipped_ <= 50) log_.warn("skipped %s: %s", path.c_str(), item->error.c_str());
        if (skipped_ == 50) log_.warn("further skipped images are listed in report.json only");
      } else {
        shard.add_image(item->pos);
        batch.push_back(std::move(*item));
        if (int(batch.size()) >= batch_size()) flush(batch, shard);
      }
      progress.update(done, skipped_);
      if (done == kill_after) std::raise(SIGKILL);
      if (delay.count()) std::this_thread::sleep_for(delay);
    }
    if (stop_.signal()) {  // the open shard and its batches in flight are dropped
      progress.finish(done, skipped_);
      return stop_.signal() == SIGINT ? kExitInterrupt : stop_.signal() == SIGTERM ? kExitTerminate : kExitHangup;
    }
    if (worker_failed) throw std::runtime_error("decode thread failed: " + worker_error);
    flush(batch, shard);
    if (shard.is_open()) close_shard(shard);
    queue_peak_ = queue.peak_bytes();
    progress.finish(done, skipped_);
    return kExitOk;
  }

  // Hands the batch on; the batch never spans two shards. On the CPU it is finished now;
  // on the GPU it is enqueued, and the oldest batch finishes once both slots are busy.
  void flush(std::vector<Item>& batch, ShardWriter& shard) {
    if (batch.empty()) return;
    batches_++;
    std::vector<size_t> positions;
    for (const auto& item : batch) positions.push_back(item.pos);
    if (gpu_) {
      std::vector<cv::Mat> images;
      std::vector<kernels::ImageDesc> descs;
      for (auto& item : batch) {
        images.push_back(std::move(item.pixels));
        descs.push_back(item.desc);
      }
      if (cuda_->in_flight() == CudaPreprocessor::kSlots) collect_one(shard);
      const auto t = Clock::now();
      // The tensor comes back to the host only to be written, or for a model on the CPU.
      cuda_->submit(images, std::move(descs), shard.writes_tensors() || (model_ && !model_->on_gpu()));
      preprocess_s_ += seconds_since(t);
      in_flight_.push_back(std::move(positions));
    } else if (model_) {
      const size_t row = kernels::output_image_bytes(params_);
      host_batch_.resize(row * batch.size());
      for (size_t i = 0; i < batch.size(); ++i) std::memcpy(host_batch_.data() + i * row, batch[i].tensor.data(), row);
      finish_batch(host_batch_.data(), nullptr, positions, shard);
    } else {  // tensors only: no need to gather the rows first
      const auto t = Clock::now();
      for (const auto& item : batch) shard.append_tensors(item.tensor.data(), 1);
      write_s_ += seconds_since(t);
    }
    written_ += batch.size();
    if (!model_) timeline_.add({0, int64_t(written_), batch_size(), {}});  // with a model the governor samples
    batch.clear();
  }

  // Waits for the oldest GPU batch and finishes it.
  void collect_one(ShardWriter& shard) {
    const auto t = Clock::now();
    const CudaPreprocessor::Batch b = cuda_->collect();
    preprocess_s_ += seconds_since(t);
    finish_batch(b.h_tensor, b.d_tensor, in_flight_.front(), shard);
    in_flight_.pop_front();
  }

  // A preprocessed batch (rows in input order, on the host and/or the device): tensors,
  // model, predictions.
  void finish_batch(const void* h_tensor, const void* d_tensor, const std::vector<size_t>& positions,
                    ShardWriter& shard) {
    const int n = int(positions.size());
    if (model_) {
      model_->run(h_tensor, d_tensor, n, model_out_);
      const auto t = Clock::now();
      shard.append_outputs(model_out_.data(), positions);
      write_s_ += seconds_since(t);
    }
    const auto t = Clock::now();
    if (h_tensor) shard.append_tensors(h_tensor, n);
    write_s_ += seconds_since(t);
  }

  void close_shard(ShardWriter& shard) {
    while (gpu_ && cuda_->in_flight() > 0) collect_one(shard);
    const auto t = Clock::now();
    shard.close();
    write_s_ += seconds_since(t);
  }

  // The report describes the folder (this part's complete shards, of this and of earlier
  // sessions), so a resumed run's equals a clean run's; "session" is this run alone.
  void write_report(int rc) {
    if (!cfg_.output.report) return;
    json skipped = json::array();
    for (const Skip& s : dir_.skipped()) {
      json entry = {{"path", s.path}, {"reason", s.reason}};
      if (!is_utf8(s.path)) entry["path_b64"] = base64(s.path);
      skipped.push_back(entry);
    }
    const double processed = double(written_ + skipped_);
    json memory = {{"peak_rss_bytes", peak_rss_bytes()},
                   {"host_budget_bytes", host_budget_},
                   {"queue_peak_bytes", queue_peak_}};
    if (gpu_ && cuda_) {
      // Device memory this run allocated itself (the CUDA context and library handles come on top).
      const int64_t model_peak = model_ && model_->on_gpu() ? model_->peak_allocated_bytes() : 0;
      memory["device_peak_bytes"] = int64_t(cuda_->device_bytes()) + model_peak;
      memory["pinned_staging_bytes"] = cuda_->pinned_bytes();
    }
    json report = {
        {"tool", "imgpipe"},
        {"version", version()},
        {"exit_code", rc},
        {"interrupted", stopped_by_ ? json(signal_name(stopped_by_)) : json(false)},
        {"warnings", warnings_},
        {"device", device_},
        {"device_reason", device_reason_},
        {"counts",
         {{"inputs", inputs_.size()},
          {"read", dir_.images()},
          {"written", dir_.written()},
          {"skipped", dir_.skipped().size()}}},
        {"session",
         {{"resumed", resumed_}, {"read", written_ + skipped_}, {"written", written_}, {"skipped", skipped_}}},
        {"skipped", skipped},
        {"timing_s",
         {{"list", list_s_},
          {"decode_thread_total", double(times_.decode_ns.load()) * 1e-9},
          {"preprocess_thread_total", double(times_.preprocess_ns.load()) * 1e-9},
          {"gpu_preprocess_wait", preprocess_s_},
          {"inference", model_ ? model_->inference_seconds() : 0.0},
          {"write", write_s_},
          {"wall", wall_s_}}},
        {"images_per_s", wall_s_ > 0 ? processed / wall_s_ : 0.0},
        {"memory", memory},
        {"batch", {{"size", batch_size()}, {"batches", batches_}}},
        {"model", model_ ? model_->report() : json(nullptr)},
        {"timeline", model_ ? model_->timeline().to_json() : timeline_.to_json()},
        {"decode_threads", threads_},
        {"output", {{"dir", cfg_.output.dir}, {"shards", shards_}}},
        {"config", to_yaml(cfg_)},
    };
    AtomicFile f(dir_.file("report.json"));
    f.write(report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    f.commit();
  }

  StopSignals stop_;
  const Config& cfg_;
  RunOptions opt_;
  Log log_;
  std::atomic<bool> multi_page_logged_{false};
  kernels::PreprocessParams params_;
  OutputDir dir_;
  std::vector<std::string> inputs_, warnings_;
  StageTimes times_;
  std::string device_, device_reason_;
  bool gpu_ = false;
  std::unique_ptr<CudaPreprocessor> cuda_;
  std::deque<std::vector<size_t>> in_flight_;  // input positions of the GPU batches in flight
  std::unique_ptr<ModelStage> model_;
  std::vector<uint8_t> host_batch_;
  std::vector<float> model_out_;
  Timeline timeline_;  // images written over time, for a run without a model
  int64_t host_budget_ = 0;  // memory.host_budget, capped by the host memory available
  int batch_size_ = 1, threads_ = 1, stopped_by_ = 0;  // stopped_by_: the signal that stopped the run
  size_t shards_ = 0, resumed_ = 0, written_ = 0, skipped_ = 0, batches_ = 0, queue_peak_ = 0;
  double list_s_ = 0, write_s_ = 0, wall_s_ = 0, preprocess_s_ = 0;
};

}  // namespace

int run(const Config& cfg, const RunOptions& opt, FILE* log) {
  try {
    return Job(cfg, opt, log).run();
  } catch (const std::exception& e) {
    std::fprintf(log, "imgpipe: error: %s\n", e.what());
    return kExitRuntime;
  }
}

}  // namespace imgpipe
