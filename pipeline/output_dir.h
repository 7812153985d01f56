#pragma once
// The output folder as one run, or one part of a sharded run, owns it: its lock, its
// manifest (what the folder was written from), resume and clean-up, and what its complete
// shards hold, so that a resumed run's report describes the whole folder.
// Everything a part writes carries its `partN-` prefix; a part never touches another's files.
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "config.h"

namespace imgpipe {

/// An input that was skipped: its position in this part's input list, path and reason.
struct Skip {
  size_t pos;
  std::string path, reason;
};

/// Opens (creating) and takes the exclusive flock of `path` without waiting: the descriptor,
/// or -1 with `error` set ("in use by pid N (lock file ...)" when another process holds it).
[[nodiscard]] int lock_file(const std::string& path, std::string& error);

class OutputDir {
 public:
  /// Touches nothing yet.
  explicit OutputDir(const Config& cfg);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  /// Creates the folder and takes this part's lock (flock, released by the kernel when the
  /// process ends however it ends); then checks the manifest against the config and
  /// `inputs`, removes this part's partial files (all of its files under output.mode
  /// overwrite), and reads back what its complete shards hold. On refusal returns
  /// kExitConfig with `error` set, having changed nothing in the folder.
  [[nodiscard]] int open(const std::vector<std::string>& inputs, std::string& error);

  /// Path of this part's file `name`: "<dir>/<partN->name".
  [[nodiscard]] std::string file(const std::string& name) const;
  /// Path of a shard's file: "<dir>/<partN->kind-00042.ext".
  [[nodiscard]] std::string shard_file(const char* kind, size_t shard, const char* ext) const;

  /// Complete shards: those whose index exists (the index is always committed last).
  [[nodiscard]] bool complete(size_t shard) const { return complete_.count(shard) != 0; }
  /// Records a shard just committed: the images it wrote and those it skipped.
  void add_shard(size_t shard, size_t images, size_t written, std::vector<Skip> skipped);

  /// Over all complete shards of this part: images, images written, and skips in input order.
  [[nodiscard]] size_t images() const { return images_; }
  [[nodiscard]] size_t written() const { return written_; }
  [[nodiscard]] std::vector<Skip> skipped() const;

 private:
  [[nodiscard]] bool lock(std::string& error);
  [[nodiscard]] std::string changed_inputs(const std::vector<std::string>& old_hashes,
                                           const std::vector<std::string>& inputs, size_t old_count) const;
  void read_shard(size_t shard);

  const Config& cfg_;
  std::string prefix_;  ///< "partN-" with input.shard.count > 1, else empty
  int lock_fd_ = -1;
  std::set<size_t> complete_;
  size_t images_ = 0, written_ = 0;
  std::vector<Skip> skipped_;
};

}  // namespace imgpipe
