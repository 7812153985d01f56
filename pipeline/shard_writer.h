#pragma once
// The shard being written: its tensor and output .npy files, its prediction lines and its
// index, all committed together by close() (the index last, so that a shard is complete
// exactly when its index exists).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model_stage.h"
#include "output_dir.h"
#include "preprocess.h"
#include "sinks.h"

namespace imgpipe {

class ShardWriter {
 public:
  /// `model` may be null (tensors only); `inputs` are this part's input paths.
  ShardWriter(OutputDir& dir, const Config& cfg, const kernels::PreprocessParams& params, const ModelStage* model,
              const std::vector<std::string>& inputs);

  /// Starts shard `id`; files are written under their .partial names until close().
  void open(size_t id);
  [[nodiscard]] bool is_open() const { return id_ != SIZE_MAX; }
  [[nodiscard]] size_t id() const { return id_; }
  /// Whether the tensors are written (output.tensors).
  [[nodiscard]] bool writes_tensors() const { return tensors_ != nullptr; }

  /// Index entries, in input order: an image whose rows follow, or a skipped one.
  void add_image(size_t pos) { entries_.push_back({pos, true, {}}); }
  void add_skipped(size_t pos, std::string reason) { entries_.push_back({pos, false, std::move(reason)}); }
  /// `n` rows of preprocessed tensors / model outputs / predictions of `positions`.
  void append_tensors(const void* rows, int64_t n);
  void append_outputs(const float* rows, const std::vector<size_t>& positions);

  /// Commits the shard's files and records it in the output folder.
  void close();

 private:
  struct Entry {
    size_t pos;
    bool written;
    std::string error;
  };
  const char* prediction_ext() const;

  OutputDir& dir_;
  const Config& cfg_;
  const kernels::PreprocessParams& params_;
  const ModelStage* model_;
  const std::vector<std::string>& inputs_;
  size_t id_ = SIZE_MAX;
  std::unique_ptr<NpyWriter> tensors_, outputs_;
  std::string predictions_;
  std::vector<Entry> entries_;
};

/// NumPy dtype string of a tensor dtype.
[[nodiscard]] const char* npy_descr(kernels::DType t);

}  // namespace imgpipe
