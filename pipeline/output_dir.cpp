#include "output_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "run.h"
#include "sinks.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace imgpipe {
const char* version();

namespace {

/// What must be equal between a run and the run it resumes, besides the input list:
/// everything that changes what is written where. Threads, progress, budgets and the
/// device do not.
std::string config_fingerprint(const Config& c) {
  Config f = c;
  f.decode = DecodeConfig{};  // but the keys that change the pixels stay
  f.decode.jpeg_downscale = c.decode.jpeg_downscale;
  f.decode.exif_orientation = c.decode.exif_orientation;
  f.device = DeviceKind::Auto;
  f.device_index = 0;
  f.precision = PrecisionMode::Auto;
  f.batch = BatchConfig{};
  f.memory = MemoryConfig{};
  f.output.mode = OutputMode::Resume;
  f.output.report = true;
  f.progress = ProgressMode::Auto;
  f.input.path = fs::absolute(c.input.path).lexically_normal().string();
  f.output.dir.clear();
  const std::string yaml = to_yaml(f);
  return is_utf8(yaml) ? yaml : "base64 of a config that is not UTF-8: " + base64(yaml);  // JSON holds only UTF-8
}

/// One hash per shard over its inputs' paths, sizes and modification times (FNV-1a).
std::vector<std::string> input_hashes(const std::vector<std::string>& inputs, size_t per_shard) {
  std::vector<std::string> hashes;
  for (size_t first = 0; first < inputs.size(); first += per_shard) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void* p, size_t n) {
      for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
    };
    for (size_t pos = first; pos < std::min(inputs.size(), first + per_shard); ++pos) {
      struct stat st {};
      int64_t meta[3] = {-1, 0, 0};
      if (::stat(inputs[pos].c_str(), &st) == 0) meta[0] = st.st_size, meta[1] = st.st_mtim.tv_sec, meta[2] = st.st_mtim.tv_nsec;
      mix(inputs[pos].c_str(), inputs[pos].size() + 1);
      mix(meta, sizeof meta);
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    hashes.push_back(hex);
  }
  return hashes;
}

/// The first line where two texts differ, as "`new`, was `old`".
std::string first_difference(const std::string& now, const std::string& was) {
  std::istringstream a(now), b(was);
  std::string la, lb;
  while (true) {
    const bool ha = bool(std::getline(a, la)), hb = bool(std::getline(b, lb));
    if (!ha && !hb) return "";
    if (!ha) la.clear();
    if (!hb) lb.clear();
    if (la != lb) {
      auto trim = [](const std::string& s) { return s.substr(std::min(s.size(), s.find_first_not_of(' '))); };
      return "`" + trim(la) + "`, was `" + trim(lb) + "`";
    }
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

OutputDir::OutputDir(const Config& cfg)
    : cfg_(cfg), prefix_(cfg.input.shard_count > 1 ? "part" + std::to_string(cfg.input.shard_index) + "-" : "") {}

OutputDir::~OutputDir() {
  if (lock_fd_ < 0) return;
  // The pid is there only while the lock is held (a clean folder's bytes do not depend on it).
  (void)!::ftruncate(lock_fd_, 0);
  ::close(lock_fd_);
}

std::string OutputDir::file(const std::string& name) const { return (fs::path(cfg_.output.dir) / (prefix_ + name)).string(); }

std::string OutputDir::shard_file(const char* kind, size_t shard, const char* ext) const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%05zu.%s", kind, shard, ext);
  return file(buf);
}

int lock_file(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot open the lock file '" + path + "': " + std::strerror(errno);
    return -1;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const std::string pid = read_text(path);
    error = "in use by " + (pid.empty() ? "another process" : "pid " + pid.substr(0, pid.find('\n'))) + " (lock file " +
            path + ")";
    ::close(fd);
    return -1;
  }
  return fd;
}

bool OutputDir::lock(std::string& error) {
  const std::string path = file("imgpipe.lock");
  lock_fd_ = lock_file(path, error);
  if (lock_fd_ < 0) {
    if (error.rfind("in use", 0) == 0)
      error = "output.dir '" + cfg_.output.dir + "'" +
              (prefix_.empty() ? "" : " (part " + std::to_string(cfg_.input.shard_index) + ")") + " is " + error;
    return false;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    error = "cannot write the lock file '" + path + "': " + std::strerror(errno);
    return false;
  }
  return true;
}

int OutputDir::open(const std::vector<std::string>& inputs, std::string& error) {
  const fs::path dir(cfg_.output.dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    error = "cannot create output.dir '" + cfg_.output.dir + "': " + ec.message();
    return kExitConfig;
  }
  if (!lock(error)) return kExitConfig;

  const size_t per_shard = size_t(cfg_.output.images_per_shard);
  const std::string config = config_fingerprint(cfg_);
  const std::vector<std::string> hashes = input_hashes(inputs, per_shard);
  const fs::path manifest = file("manifest.json");
  if (cfg_.output.mode == OutputMode::Resume && fs::exists(manifest)) {
    const json m = json::parse(read_text(manifest), nullptr, false);
    const std::string where = "output.dir '" + cfg_.output.dir + "' holds the output of a run with ";
    const std::string how = "; use --set output.mode=overwrite to replace it, or choose another output.dir";
    if (m.is_discarded() || !m.contains("config") || m["config"] != config) {
      const std::string diff = m.is_object() && m.contains("config") && m["config"].is_string()
                                   ? " (first difference: " + first_difference(config, m["config"]) + ")"
                                   : "";
      error = where + "a different configuration" + diff + how;
      return kExitConfig;
    }
    if (m.value("input_hashes", std::vector<std::string>{}) != hashes || m.value("inputs", size_t(0)) != inputs.size()) {
      error = where + "a different input list: " +
              changed_inputs(m.value("input_hashes", std::vector<std::string>{}), inputs, m.value("inputs", size_t(0))) +
              how;
      return kExitConfig;
    }
  }
  // Leftovers of a killed run are never trusted; with overwrite, nothing of this part is.
  // The lock file stays: removing it would let a second process lock a new one.
  static const std::regex ours(R"((tensors|outputs|index|predictions)(-\d{5})?\.(npy|csv|jsonl)(\.partial)?|)"
                               R"((report|manifest)\.json(\.partial)?)");
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix_.size(), prefix_) != 0 || !std::regex_match(name.substr(prefix_.size()), ours)) continue;
    const bool partial = name.size() > 8 && name.compare(name.size() - 8, 8, ".partial") == 0;
    if (partial || cfg_.output.mode == OutputMode::Overwrite) fs::remove(e.path());
  }
  if (!fs::exists(manifest)) {
    AtomicFile f(manifest.string());
    const json m = {{"tool", "imgpipe"}, {"version", version()}, {"config", config},
                    {"inputs", inputs.size()}, {"input_hashes", hashes}};
    f.write(m.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    f.commit();
  }
  for (size_t s = 0; s * per_shard < inputs.size(); ++s)
    if (fs::exists(shard_file("index", s, "csv"))) read_shard(s);
  return kExitOk;
}

// Names what changed: the count, else the first input whose path differs from the one a
// complete shard's index recorded, else the shard whose files changed size or time.
std::string OutputDir::changed_inputs(const std::vector<std::string>& old_hashes, const std::vector<std::string>& inputs,
                                      size_t old_count) const {
  if (old_count != inputs.size())
    return std::to_string(inputs.size()) + " inputs now, " + std::to_string(old_count) + " when it was written (" +
           std::to_string(inputs.size() > old_count ? inputs.size() - old_count : old_count - inputs.size()) +
           (inputs.size() > old_count ? " added)" : " removed)");
  const size_t per_shard = size_t(cfg_.output.images_per_shard);
  const std::vector<std::string> hashes = input_hashes(inputs, per_shard);
  size_t s = 0;
  while (s < hashes.size() && s < old_hashes.size() && hashes[s] == old_hashes[s]) ++s;
  const size_t first = s * per_shard, last = std::min(inputs.size(), first + per_shard) - 1;
  const auto rows = parse_csv(read_text(shard_file("index", s, "csv")));
  for (size_t i = 1; i < rows.size() && first + i - 1 <= last; ++i)
    if (rows[i].size() == 3 && rows[i][1] != inputs[first + i - 1])
      return "input " + std::to_string(first + i - 1) + " is now '" + inputs[first + i - 1] + "', was '" + rows[i][1] + "'";
  return "inputs " + std::to_string(first) + ".." + std::to_string(last) + " ('" + inputs[first] + "' to '" +
         inputs[last] + "') were replaced or modified (name, size or modification time)";
}

void OutputDir::read_shard(size_t shard) {
  const auto rows = parse_csv(read_text(shard_file("index", shard, "csv")));
  const size_t first = shard * size_t(cfg_.output.images_per_shard);
  std::vector<Skip> skipped;
  size_t written = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].size() != 3) continue;
    if (!rows[i][0].empty()) ++written;
    else skipped.push_back({first + i - 1, rows[i][1], rows[i][2]});
  }
  add_shard(shard, rows.empty() ? 0 : rows.size() - 1, written, std::move(skipped));
}

void OutputDir::add_shard(size_t shard, size_t images, size_t written, std::vector<Skip> skipped) {
  complete_.insert(shard);
  images_ += images;
  written_ += written;
  for (auto& s : skipped) skipped_.push_back(std::move(s));
}

std::vector<Skip> OutputDir::skipped() const {
  std::vector<Skip> s = skipped_;
  std::sort(s.begin(), s.end(), [](const Skip& a, const Skip& b) { return a.pos < b.pos; });
  return s;
}

}  // namespace imgpipe
