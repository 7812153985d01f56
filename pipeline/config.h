#pragma once
// The run's configuration: a schema in code, loaded from YAML with --set overrides, and
// validated before any work starts.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "preprocess.h"

namespace imgpipe {

/// A rejected configuration: which key, where, and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class OnError { Skip, Fail };
enum class OutputMode { Resume, Overwrite };
enum class ProgressMode { Auto, Bar, Lines, Off };
enum class DeviceKind { Auto, Cpu, Cuda };
enum class PrecisionMode { Auto, Fp32, Fp16 };
enum class PredictionFormat { Csv, Jsonl };
enum class ModelOutput { Probabilities, Logits, Embedding };

struct InputConfig {
  std::string path;  ///< a directory, or a text file with one path per line
  bool recursive = true;
  std::vector<std::string> extensions{"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"};
  int shard_index = 0, shard_count = 1;
};

struct DecodeConfig {
  int threads = 0;  ///< 0 = auto (one per hardware thread)
  OnError on_error = OnError::Skip;
  int64_t max_file_bytes = int64_t(256) << 20;  ///< larger files are skipped unread
  int64_t max_pixels = 178956970;  ///< larger images (by their header) are skipped undecoded
  bool jpeg_downscale = false;  ///< decode large JPEGs at 1/2, 1/4 or 1/8 in the DCT domain: faster, not PIL-exact
  bool exif_orientation = false;  ///< turn images upright by their EXIF orientation (PIL's exif_transpose)
};

struct PreprocessConfig {
  // Resize: shorter_side > 0, or width and height > 0, or neither (letterbox resizes itself).
  int shorter_side = 0;
  int resize_width = 0, resize_height = 0;
  kernels::Interp interp = kernels::Interp::Bilinear;
  // Crop: center crop, or letterbox to a fixed size with a pad value, or none.
  int crop_width = 0, crop_height = 0;
  int letterbox_width = 0, letterbox_height = 0;
  int pad = 114;
  enum class Color { Rgb, Bgr, Gray } color = Color::Rgb;
  float scale = 1.0f / 255.0f;
  std::vector<float> mean{0.485f, 0.456f, 0.406f};
  std::vector<float> std{0.229f, 0.224f, 0.225f};
  kernels::Layout layout = kernels::Layout::NCHW;
  kernels::DType dtype = kernels::DType::F32;
};

struct ModelConfig {
  std::string path;  ///< empty: no model, tensors only
  std::string input;  ///< input name when the graph has several
  std::string labels;
  int top_k = 5;
  ModelOutput output = ModelOutput::Probabilities;
};

struct BatchConfig {
  int size = 0;  ///< 0 = auto (chosen by the memory governor)
  int min = 1, max = 256;
};

struct MemoryConfig {
  int64_t device_budget = 0;       ///< bytes; 0 = auto
  double device_budget_percent = 0;  ///< > 0 when given as a percentage
  int64_t host_budget = int64_t(1) << 30;
  int64_t safety_margin = int64_t(256) << 20;
  bool restore_precision = false;  ///< go back to fp32 when memory allows after a downcast
};

struct OutputConfig {
  std::string dir = "out";
  PredictionFormat predictions = PredictionFormat::Csv;
  bool tensors = true;
  int images_per_shard = 1024;
  OutputMode mode = OutputMode::Resume;
  bool report = true;
};

struct Config {
  InputConfig input;
  DecodeConfig decode;
  PreprocessConfig preprocess;
  ModelConfig model;
  DeviceKind device = DeviceKind::Auto;
  int device_index = 0;
  PrecisionMode precision = PrecisionMode::Auto;
  BatchConfig batch;
  MemoryConfig memory;
  OutputConfig output;
  ProgressMode progress = ProgressMode::Auto;
  std::string source_file;  ///< the YAML file it came from (for messages)
};

/// Loads `file` (may be empty: defaults only), applies `overrides` ("a.b=value", the value
/// parsed as YAML), validates everything and resolves paths relative to the working
/// directory. Throws ConfigError naming the key, its line and what was expected.
[[nodiscard]] Config load_config(const std::string& file, const std::vector<std::string>& overrides);

/// The resolved configuration as YAML text (every key, defaults filled in).
[[nodiscard]] std::string to_yaml(const Config& c);

/// The kernel parameters that the preprocess section describes.
[[nodiscard]] kernels::PreprocessParams preprocess_params(const PreprocessConfig& p);

/// Parses "512MiB", "1GiB", "100MB", "4096" into bytes; throws std::invalid_argument.
[[nodiscard]] int64_t parse_size(const std::string& text);

/// Formats bytes for people: "1.50 GiB".
[[nodiscard]] std::string format_bytes(int64_t bytes);

}  // namespace imgpipe
