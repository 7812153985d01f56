#include "merge.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <vector>

#include "output_dir.h"
#include "run.h"
#include "sinks.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace imgpipe {
namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string shard_name(int part, const char* kind, size_t shard, const char* ext) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "part%d-%s-%05zu.%s", part, kind, shard, ext);
  return buf;
}

/// One part as its manifest, index files and report describe it.
struct Part {
  int index = 0;
  size_t inputs = 0;            ///< its manifest's input count
  std::vector<std::vector<std::string>> rows;  ///< index rows (row, path, error) in its input order
  std::vector<size_t> shard_of_row;            ///< the shard of each of those rows
  json report;                  ///< its report.json, null when absent
};

struct Locks {
  std::vector<int> fds;
  ~Locks() {
    for (int fd : fds) {
      (void)!::ftruncate(fd, 0);  // as a part leaves its lock file: empty when not held
      ::close(fd);
    }
  }
};

}  // namespace

int merge_parts(const std::string& dir_text, FILE* log) {
  auto say = [log](const char* level, const std::string& s) { std::fprintf(log, "imgpipe: %s%s\n", level, s.c_str()); };
  const fs::path dir(dir_text);
  // The parts' manifests; every part's config is the same but for its index.
  std::map<int, json> manifests;
  static const std::regex manifest_name(R"(part(\d+)-manifest\.json)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, manifest_name)) manifests[std::stoi(m[1])] = json::parse(read_text(e.path()), nullptr, false);
  }
  if (ec || manifests.empty()) {
    say("error: ", "merge: '" + dir_text + "' holds no parts (no partN-manifest.json" +
                       (ec ? ": " + ec.message() : std::string()) + "); merge is for folders written with input.shard.count > 1");
    return kExitConfig;
  }
  YAML::Node config;
  std::string common;
  for (const auto& [i, m] : manifests) {
    YAML::Node c;
    try {
      c = YAML::Load(m.at("config").get<std::string>());
    } catch (const std::exception&) {
      say("error: ", "merge: part" + std::to_string(i) + "-manifest.json cannot be read");
      return kExitRuntime;
    }
    c["input"]["shard"]["index"] = 0;
    const std::string text = YAML::Dump(c);
    if (common.empty()) common = text, config = c;
    else if (text != common) {
      say("error: ", "merge: part " + std::to_string(i) + " was written with another configuration than part " +
                         std::to_string(manifests.begin()->first));
      return kExitRuntime;
    }
  }
  const int count = config["input"]["shard"]["count"].as<int>();
  const size_t per_shard = config["output"]["images_per_shard"].as<size_t>();
  const bool jsonl = config["output"]["predictions"].as<std::string>() == "jsonl";
  const char* ext = jsonl ? "jsonl" : "csv";
  const std::string model = config["model"] && config["model"]["path"] ? config["model"]["path"].as<std::string>() : "";
  const std::string output = model.empty() ? "" : config["model"]["output"].as<std::string>();
  const bool predictions = !model.empty() && output != "embedding";
  const bool tensors = config["output"]["tensors"].as<bool>();

  // Every part's lock, so that no part runs (or starts) while its files are read.
  Locks locks;
  std::vector<std::string> problems;
  for (int i = 0; i < count; ++i) {
    std::string error;
    const int fd = lock_file((dir / ("part" + std::to_string(i) + "-imgpipe.lock")).string(), error);
    if (fd < 0) problems.push_back("part " + std::to_string(i) + " is " + error);
    else {
      locks.fds.push_back(fd);
      const std::string pid = std::to_string(::getpid()) + " (imgpipe merge)\n";
      (void)!::pwrite(fd, pid.data(), pid.size(), 0);
    }
  }
  const size_t n_parts = static_cast<size_t>(count);
  std::vector<Part> parts(n_parts);
  size_t total = 0;
  for (int i = 0; i < count; ++i) {
    Part& p = parts[size_t(i)];
    p.index = i;
    if (!manifests.count(i)) {
      problems.push_back("part " + std::to_string(i) + " of " + std::to_string(count) + " is missing (no part" +
                         std::to_string(i) + "-manifest.json): run it with input.shard.index " + std::to_string(i));
      continue;
    }
    p.inputs = manifests[i].value("inputs", size_t(0));
    total += p.inputs;
    std::vector<std::string> incomplete;
    for (size_t s = 0; s * per_shard < p.inputs; ++s) {
      const fs::path index = dir / shard_name(i, "index", s, "csv");
      if (!fs::exists(index)) {
        incomplete.push_back(index.filename().string());
        continue;
      }
      const auto rows = parse_csv(read_text(index));
      for (size_t r = 1; r < rows.size(); ++r)
        if (rows[r].size() == 3) p.rows.push_back(rows[r]), p.shard_of_row.push_back(s);
    }
    if (!incomplete.empty())
      problems.push_back("part " + std::to_string(i) + " is incomplete: " + std::to_string(incomplete.size()) + " of " +
                         std::to_string((p.inputs + per_shard - 1) / per_shard) + " shards not written (" +
                         incomplete.front() + (incomplete.size() > 1 ? ", ..." : "") + "); rerun part " +
                         std::to_string(i) + " to resume it");
    const std::string report = read_text(dir / ("part" + std::to_string(i) + "-report.json"));
    p.report = json::parse(report, nullptr, false);
    if (p.report.is_discarded()) p.report = nullptr;
  }
  // Parts take every count-th input: part i holds ceil((total - i) / count) of them.
  for (const Part& p : parts)
    if (problems.empty() && p.inputs != (total + size_t(count) - 1 - size_t(p.index)) / size_t(count))
      problems.push_back("part " + std::to_string(p.index) + " has " + std::to_string(p.inputs) +
                         " inputs, which does not fit the others' (written from another input list?)");
  if (!problems.empty()) {
    for (const auto& s : problems) say("error: ", "merge: " + s);
    return kExitRuntime;
  }

  // Input position g is part g % count's row g / count.
  const char* rows_in = tensors ? "tensors" : "outputs";
  const bool has_rows = tensors || output == "logits" || output == "embedding";
  std::string index = "position,path,part,file,row,error\n";
  std::string merged;
  std::vector<std::ifstream> pred(n_parts);
  std::vector<size_t> pred_shard(n_parts, SIZE_MAX);
  json skipped = json::array();
  size_t written = 0;
  for (size_t g = 0; g < total; ++g) {
    const int i = int(g % size_t(count));
    const size_t j = g / size_t(count), s = parts[size_t(i)].shard_of_row[j];
    const auto& row = parts[size_t(i)].rows[j];
    const bool ok = !row[0].empty();
    index += std::to_string(g) + "," + csv_field(row[1]) + "," + std::to_string(i) + "," +
             (ok && has_rows ? shard_name(i, rows_in, s, "npy") : "") + "," + row[0] + "," + csv_field(row[2]) + "\n";
    if (!ok) {
      json entry = {{"path", row[1]}, {"reason", row[2]}, {"part", i}};
      if (!is_utf8(row[1])) entry["path_b64"] = base64(row[1]);
      skipped.push_back(entry);
      continue;
    }
    ++written;
    if (!predictions) continue;
    auto& in = pred[size_t(i)];
    std::string line;
    if (pred_shard[size_t(i)] != s) {  // the next shard's file; its header is written once, at the top
      in = std::ifstream(dir / shard_name(i, "predictions", s, ext), std::ios::binary);
      pred_shard[size_t(i)] = s;
      if (!jsonl) std::getline(in, line);
      if (merged.empty()) merged = jsonl ? "" : line + "\n";
    }
    if (!std::getline(in, line)) {
      say("error: ", "merge: " + shard_name(i, "predictions", s, ext) + " has fewer rows than its index");
      return kExitRuntime;
    }
    merged += line + "\n";
  }
  if (predictions) {
    if (merged.empty() && !jsonl) {  // no image written: the header of any predictions file
      for (size_t s = 0; merged.empty() && s * per_shard < parts[0].inputs; ++s) {
        std::ifstream in(dir / shard_name(0, "predictions", s, ext));
        std::getline(in, merged);
        if (!merged.empty()) merged += "\n";
      }
    }
    AtomicFile f((dir / (std::string("merged-predictions.") + ext)).string());
    f.write(merged);
    f.commit();
  }
  AtomicFile idx((dir / "merged-index.csv").string());
  idx.write(index);
  idx.commit();

  json per_part = json::array();
  for (const Part& p : parts) {
    const json& r = p.report;
    auto get = [&r](const char* a, const char* b = nullptr) -> json {
      if (!r.is_object() || !r.contains(a)) return nullptr;
      if (!b) return r[a];
      return r[a].is_object() && r[a].contains(b) ? r[a][b] : json(nullptr);
    };
    const json m = get("model");
    per_part.push_back({{"part", p.index},
                        {"inputs", p.inputs},
                        {"counts", get("counts")},
                        {"device", get("device")},
                        {"timing_s", get("timing_s")},
                        {"images_per_s", get("images_per_s")},
                        {"batch", get("batch")},
                        {"precision", m.is_object() ? m.value("precision", json(nullptr)) : json(nullptr)},
                        {"governor", m.is_object() && m.contains("governor") ? m["governor"] : json(nullptr)}});
  }
  const json report = {{"tool", "imgpipe"},
                       {"merged_parts", count},
                       {"counts", {{"inputs", total}, {"written", written}, {"skipped", total - written}}},
                       {"skipped", skipped},
                       {"files",
                        {{"predictions", predictions ? json(std::string("merged-predictions.") + ext) : json(nullptr)},
                         {"index", "merged-index.csv"}}},
                       {"parts", per_part}};
  AtomicFile rep((dir / "merged-report.json").string());
  rep.write(report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  rep.commit();
  say("", "merged " + std::to_string(count) + " parts of " + dir_text + ": " + std::to_string(total) + " images, " +
              std::to_string(written) + " written, " + std::to_string(total - written) +
              " skipped; merged-index.csv, merged-report.json" +
              (predictions ? std::string(", merged-predictions.") + ext : std::string()));
  return kExitOk;
}

}  // namespace imgpipe
