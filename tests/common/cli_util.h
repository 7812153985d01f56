#pragma once
// Running the imgpipe binary from tests, and the GPU-suite guard.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "gpu_guard.h"
#include "test_util.h"

namespace imgpipe::test {

struct Result {
  int code;            ///< exit code, or 128 + signal
  std::string output;  ///< stdout and stderr together
};

inline Result run_cmd(const std::string& cmd) {
  Result r{-1, {}};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// The environment variable `name` when set and not empty, else `fallback`.
inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

/// The binary and source tree under test: the build's, or IMGPIPE_TEST_BINARY (a command,
/// e.g. "/tmp/b/run imgpipe" for a bundle) and IMGPIPE_TEST_SOURCE_DIR on another machine.
inline const std::string kBinary = env_or("IMGPIPE_TEST_BINARY", IMGPIPE_BINARY);
inline const std::string kSource = env_or("IMGPIPE_TEST_SOURCE_DIR", IMGPIPE_SOURCE_DIR);

/// Runs the imgpipe binary with `args`, `env` (e.g. "VAR=1") in front.
inline Result run_imgpipe(const std::string& args, const std::string& env = "") {
  return run_cmd(env + " " + kBinary + " " + args);
}

/// A JSON file (report.json, manifest.json), parsed.
inline nlohmann::json load_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

/// The files of an output dir whose name starts with `prefix`, name -> bytes, leaving out
/// the reports (`report.json`, `partN-report.json`: they hold timings).
inline std::map<std::string, std::string> outputs(const std::filesystem::path& dir, const std::string& prefix = "") {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.find("report.json") == std::string::npos) files[name] = read_file(e.path().string());
  }
  return files;
}

}  // namespace imgpipe::test
