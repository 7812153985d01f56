#include "config.h"
#include "scheduler.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace imgpipe {
namespace {

// Walks one YAML map, reads typed keys with range checks, and rejects keys it never read.
// Every error names the full key, where it came from and what was expected.
class Section {
 public:
  Section(YAML::Node node, std::string prefix, const std::set<std::string>* overridden,
          std::string file)
      : node_(std::move(node)), prefix_(std::move(prefix)), overridden_(overridden),
        file_(std::move(file)) {
    if (node_ && !node_.IsNull() && !node_.IsMap())
      fail(prefix_, node_, "a mapping of keys");
  }

  [[noreturn]] void fail(const std::string& key, const YAML::Node& at,
                         const std::string& expected) const {
    std::ostringstream os;
    os << "config key '" << key << "' " << where(key, at) << ": expected " << expected;
    if (at && at.IsScalar()) os << ", got '" << at.Scalar() << "'";
    throw ConfigError(os.str());
  }

  std::string where(const std::string& key, const YAML::Node& at) const {
    // The key itself or a section above it was set on the command line (--set a.b={c: x}).
    for (std::string k = key;; k.erase(k.rfind('.'))) {
      if (overridden_->count(k)) return "(from --set)";
      if (k.find('.') == std::string::npos) break;
    }
    if (at && at.Mark().line >= 0)
      return "(line " + std::to_string(at.Mark().line + 1) + (file_.empty() ? "" : " of " + file_) + ")";
    return "";
  }

  std::string full(const std::string& k) const { return prefix_.empty() ? k : prefix_ + "." + k; }

  YAML::Node get(const std::string& k) {
    known_.insert(k);
    const YAML::Node absent(YAML::NodeType::Undefined);
    if (!node_ || !node_.IsMap()) return absent;
    YAML::Node v = node_[k];
    return v && !v.IsNull() ? v : absent;
  }

  Section sub(const std::string& k) { return Section(get(k), full(k), overridden_, file_); }
  bool has(const std::string& k) { return bool(get(k)); }

  std::string scalar(const std::string& k, const YAML::Node& v, const char* expected) const {
    if (!v.IsScalar()) fail(full(k), v, expected);
    return v.Scalar();
  }

  void str(const std::string& k, std::string& out) {
    if (auto v = get(k)) out = scalar(k, v, "a string");
  }

  void boolean(const std::string& k, bool& out) {
    if (auto v = get(k)) {
      const std::string s = scalar(k, v, "true or false");
      if (s == "true" || s == "yes" || s == "on") out = true;
      else if (s == "false" || s == "no" || s == "off") out = false;
      else fail(full(k), v, "true or false");
    }
  }

  template <class Int>
  void integer(const std::string& k, Int& out, int64_t lo, int64_t hi, const char* autoword = nullptr,
               Int autoval = 0) {
    auto v = get(k);
    if (!v) return;
    const std::string s = scalar(k, v, "an integer");
    if (autoword && s == autoword) { out = autoval; return; }
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(s.c_str(), &end, 10);
    const std::string range = "an integer in " + std::to_string(lo) + ".." + std::to_string(hi) +
                              (autoword ? std::string(" or '") + autoword + "'" : "");
    if (s.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi) fail(full(k), v, range);
    out = Int(x);
  }

  static bool to_float(const std::string& s, float& out) {
    char* end = nullptr;
    out = std::strtof(s.c_str(), &end);
    return !s.empty() && *end == '\0' && std::isfinite(out);
  }

  void number(const std::string& k, float& out, float lo, float hi) {
    auto v = get(k);
    if (!v) return;
    float x;
    if (!to_float(scalar(k, v, "a number"), x) || x < lo || x > hi)
      fail(full(k), v, "a number in " + fmt(lo) + ".." + fmt(hi));
    out = x;
  }

  void numbers(const std::string& k, std::vector<float>& out, bool positive) {
    auto v = get(k);
    if (!v) return;
    const char* expected = positive ? "a list of 1 or 3 positive numbers" : "a list of 1 or 3 numbers";
    if (v.IsScalar()) {  // one number for every channel
      float x;
      if (!to_float(v.Scalar(), x) || (positive && x <= 0)) fail(full(k), v, expected);
      out = {x, x, x};
      return;
    }
    if (!v.IsSequence() || (v.size() != 1 && v.size() != 3)) fail(full(k), v, expected);
    out.clear();
    for (const auto& e : v) {
      float x;
      if (!e.IsScalar() || !to_float(e.Scalar(), x) || (positive && x <= 0)) fail(full(k), e, expected);
      out.push_back(x);
    }
    if (out.size() == 1) out = {out[0], out[0], out[0]};
  }

  void pair(const std::string& k, int& a, int& b, int lo, int hi) {
    auto v = get(k);
    if (!v) return;
    const std::string expected = "[width, height], integers in " + std::to_string(lo) + ".." + std::to_string(hi);
    if (v.IsScalar()) {  // a single number means a square
      int x = 0;
      integer_of(k, v, x, lo, hi, expected);
      a = b = x;
      return;
    }
    if (!v.IsSequence() || v.size() != 2) fail(full(k), v, expected);
    integer_of(k, v[0], a, lo, hi, expected);
    integer_of(k, v[1], b, lo, hi, expected);
  }

  void integer_of(const std::string& k, const YAML::Node& v, int& out, int lo, int hi,
                  const std::string& expected) const {
    if (!v.IsScalar()) fail(full(k), v, expected);
    char* end = nullptr;
    const long x = std::strtol(v.Scalar().c_str(), &end, 10);
    if (v.Scalar().empty() || *end != '\0' || x < lo || x > hi) fail(full(k), v, expected);
    out = int(x);
  }

  template <class E>
  void choice(const std::string& k, E& out, const std::vector<std::pair<const char*, E>>& choices) {
    auto v = get(k);
    if (!v) return;
    std::string list;
    for (const auto& [name, value] : choices) {
      if (v.IsScalar() && v.Scalar() == name) { out = value; return; }
      list += (list.empty() ? "" : " | ") + std::string(name);
    }
    fail(full(k), v, "one of " + list);
  }

  void size(const std::string& k, int64_t& out, int64_t lo) {
    auto v = get(k);
    if (!v) return;
    try {
      out = parse_size(scalar(k, v, "a size such as 512MiB or 2GiB"));
    } catch (const std::invalid_argument&) {
      fail(full(k), v, "a size such as 512MiB or 2GiB");
    }
    if (out < lo) fail(full(k), v, "a size of at least " + format_bytes(lo));
  }

  void strings(const std::string& k, std::vector<std::string>& out) {
    auto v = get(k);
    if (!v) return;
    if (!v.IsSequence() || v.size() == 0) fail(full(k), v, "a non-empty list of strings");
    out.clear();
    for (const auto& e : v) {
      if (!e.IsScalar() || e.Scalar().empty()) fail(full(k), e, "a non-empty list of strings");
      out.push_back(e.Scalar());
    }
  }

  /// Rejects the keys of this map that no getter asked for.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string k = kv.first.Scalar();
      if (known_.count(k)) continue;
      std::string list;
      for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
      std::ostringstream os;
      os << "unknown config key '" << full(k) << "' " << where(full(k), kv.first)
         << ": expected one of " << list;
      throw ConfigError(os.str());
    }
  }

  const YAML::Node& node() const { return node_; }

 private:
  static std::string fmt(float x) {
    std::ostringstream os;
    os << x;
    return os.str();
  }

  YAML::Node node_;
  std::string prefix_;
  const std::set<std::string>* overridden_;
  std::string file_;
  std::set<std::string> known_;
};

// yaml-cpp keeps both pairs of a repeated key and answers lookups with the first, so a
// later value would be ignored without a word: refuse the file instead.
void reject_duplicate_keys(const YAML::Node& node, const std::string& prefix, const std::string& file) {
  if (node.IsSequence())
    for (const auto& e : node) reject_duplicate_keys(e, prefix, file);
  if (!node.IsMap()) return;
  std::map<std::string, int> seen;  // key -> line
  for (const auto& kv : node) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    const std::string full = prefix.empty() ? k : prefix + "." + k;
    const int line = kv.first.Mark().line + 1;
    const auto [first, fresh] = seen.emplace(k, line);
    if (!fresh)
      throw ConfigError("config key '" + full + "' is given twice (lines " + std::to_string(first->second) + " and " +
                        std::to_string(line) + " of " + file + "); keep one");
    reject_duplicate_keys(kv.second, full, file);
  }
}

// Sets root[a][b]... = value, creating maps on the way.
void set_path(YAML::Node root, const std::string& dotted, const YAML::Node& value) {
  std::vector<std::string> parts;
  std::stringstream ss(dotted);
  for (std::string p; std::getline(ss, p, '.');) {
    if (p.empty()) throw ConfigError("--set '" + dotted + "': empty key component");
    parts.push_back(p);
  }
  if (parts.empty()) throw ConfigError("--set needs key.path=value");
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = chain.back()[parts[i]];
    if (!child.IsMap()) {
      if (child.IsDefined() && !child.IsNull())
        throw ConfigError("--set '" + dotted + "': '" + parts[i] + "' is not a section");
      child = YAML::Node(YAML::NodeType::Map);
      chain.back()[parts[i]] = child;
    }
    chain.push_back(child);
  }
  chain.back()[parts.back()] = value;
}

void read_input(Section s, InputConfig& c) {
  s.str("path", c.path);
  s.boolean("recursive", c.recursive);
  s.strings("extensions", c.extensions);
  for (auto& e : c.extensions) {
    if (!e.empty() && e[0] == '.') e.erase(0, 1);
    for (auto& ch : e) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (s.has("shard")) {
    Section sh = s.sub("shard");
    sh.integer("count", c.shard_count, 1, 1 << 20, "auto", -1);
    sh.integer("index", c.shard_index, 0, (1 << 20) - 1, "auto", -1);
    if (c.shard_index < 0 || c.shard_count < 0) resolve_scheduler_shard(c.shard_index, c.shard_count, std::getenv);
    if (c.shard_index >= c.shard_count)
      sh.fail("input.shard.index", sh.get("index"),
              "an index below input.shard.count (" + std::to_string(c.shard_count) + ")");
    sh.finish();
  }
  if (c.path.empty()) s.fail("input.path", s.get("path"), "a directory or a list file (it is required)");
  s.finish();
}

void read_preprocess(Section s, PreprocessConfig& c) {
  if (!s.has("resize") && !s.has("crop")) {  // the ImageNet recipe unless told otherwise
    c.shorter_side = 256;
    c.crop_width = c.crop_height = 224;
  }
  if (s.has("resize")) {
    Section r = s.sub("resize");
    r.integer("shorter_side", c.shorter_side, 1, 1 << 15);
    r.integer("width", c.resize_width, 1, 1 << 15);
    r.integer("height", c.resize_height, 1, 1 << 15);
    r.choice<kernels::Interp>("interpolation", c.interp,
                              {{"bilinear", kernels::Interp::Bilinear},
                               {"area", kernels::Interp::Area},
                               {"nearest", kernels::Interp::Nearest}});
    if (c.shorter_side && (c.resize_width || c.resize_height))
      r.fail("preprocess.resize", r.node(), "either shorter_side or width and height, not both");
    if (bool(c.resize_width) != bool(c.resize_height))
      r.fail("preprocess.resize", r.node(), "both width and height");
    r.finish();
  }
  if (s.has("crop")) {
    Section cr = s.sub("crop");
    cr.pair("center", c.crop_width, c.crop_height, 1, 1 << 15);
    if (cr.has("letterbox")) {
      Section lb = cr.sub("letterbox");
      lb.pair("size", c.letterbox_width, c.letterbox_height, 1, 1 << 15);
      lb.integer("pad", c.pad, 0, 255);
      if (!c.letterbox_width) lb.fail("preprocess.crop.letterbox.size", lb.get("size"), "[width, height]");
      lb.finish();
    }
    if (c.crop_width && c.letterbox_width)
      cr.fail("preprocess.crop", cr.node(), "either center or letterbox, not both");
    if (c.letterbox_width && (c.shorter_side || c.resize_width))
      cr.fail("preprocess.crop.letterbox", cr.get("letterbox"),
              "no preprocess.resize size alongside it (letterbox resizes by itself)");
    cr.finish();
  }
  s.choice<PreprocessConfig::Color>("color", c.color,
                                    {{"rgb", PreprocessConfig::Color::Rgb},
                                     {"bgr", PreprocessConfig::Color::Bgr},
                                     {"gray", PreprocessConfig::Color::Gray}});
  if (s.has("normalize")) {
    Section n = s.sub("normalize");
    n.number("scale", c.scale, -1e6f, 1e6f);
    n.numbers("mean", c.mean, false);
    n.numbers("std", c.std, true);
    n.finish();
  }
  s.choice<kernels::Layout>("layout", c.layout, {{"nchw", kernels::Layout::NCHW}, {"nhwc", kernels::Layout::NHWC}});
  s.choice<kernels::DType>("dtype", c.dtype,
                           {{"float32", kernels::DType::F32},
                            {"float16", kernels::DType::F16},
                            {"uint8", kernels::DType::U8}});
  const bool fixed = c.resize_width || c.crop_width || c.letterbox_width;
  if (!fixed)
    s.fail("preprocess", s.node(),
           "a fixed output size: resize.width/height, crop.center or crop.letterbox.size");
  s.finish();
}

void read_model(Section s, ModelConfig& c) {
  s.str("path", c.path);
  s.str("input", c.input);
  s.str("labels", c.labels);
  s.integer("top_k", c.top_k, 1, 1000);
  s.choice<ModelOutput>("output", c.output,
                        {{"probabilities", ModelOutput::Probabilities},
                         {"logits", ModelOutput::Logits},
                         {"embedding", ModelOutput::Embedding}});
  s.finish();
}

void read_memory(Section s, MemoryConfig& c) {
  if (auto v = s.get("device_budget")) {
    const std::string t = s.scalar("device_budget", v, "auto, a size or a percentage");
    if (t == "auto") {
      c.device_budget = 0;
    } else if (!t.empty() && t.back() == '%') {
      float pct;
      if (!Section::to_float(t.substr(0, t.size() - 1), pct) || pct <= 0 || pct > 100)
        s.fail("memory.device_budget", v, "a percentage in (0, 100]%");
      c.device_budget_percent = pct;
    } else {
      s.size("device_budget", c.device_budget, 1 << 10);
    }
  }
  s.size("host_budget", c.host_budget, 16 << 20);
  s.size("safety_margin", c.safety_margin, 0);
  s.boolean("restore_precision", c.restore_precision);
  s.finish();
}

}  // namespace

int64_t parse_size(const std::string& text) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw std::invalid_argument("not a size: " + text);
  }
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  static const std::map<std::string, double> units = {
      {"", 1},          {"B", 1},         {"KB", 1e3},          {"MB", 1e6},
      {"GB", 1e9},      {"KiB", 1024.0},  {"MiB", 1048576.0},   {"GiB", 1073741824.0},
      {"K", 1024.0},    {"M", 1048576.0}, {"G", 1073741824.0},  {"TiB", 1099511627776.0}};
  const auto it = units.find(unit);
  // Beyond 2^62 bytes is no size a machine has, and would overflow int64.
  if (it == units.end() || !(value >= 0) || value * it->second > 4.6e18) throw std::invalid_argument("not a size: " + text);
  return int64_t(value * it->second);
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = double(bytes);
  if (b >= 1073741824.0) std::snprintf(buf, sizeof buf, "%.2f GiB", b / 1073741824.0);
  else if (b >= 1048576.0) std::snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  return buf;
}

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  YAML::Node root;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) throw ConfigError("cannot read config file '" + file + "'");
    try {
      root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
      throw ConfigError("config file '" + file + "' is not valid YAML (line " +
                        std::to_string(e.mark.line + 1) + "): " + e.msg);
    }
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError("config file '" + file + "' must be a mapping of sections");
  reject_duplicate_keys(root, "", file);

  std::set<std::string> overridden;
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--set '" + o + "': expected key.path=value");
    const std::string key = o.substr(0, eq), text = o.substr(eq + 1);
    YAML::Node value;
    try {
      value = text.empty() ? YAML::Node(std::string()) : YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError("--set '" + o + "': value is not valid YAML: " + e.msg);
    }
    set_path(root, key, value);
    overridden.insert(key);
  }

  Config c;
  c.source_file = file;
  Section top(root, "", &overridden, file);
  read_input(top.sub("input"), c.input);
  {
    Section d = top.sub("decode");
    d.integer("threads", c.decode.threads, 1, 256, "auto", 0);
    d.choice<OnError>("on_error", c.decode.on_error, {{"skip", OnError::Skip}, {"fail", OnError::Fail}});
    d.size("max_file_bytes", c.decode.max_file_bytes, 1);
    d.integer<int64_t>("max_pixels", c.decode.max_pixels, 1, int64_t(1) << 40);
    d.boolean("jpeg_downscale", c.decode.jpeg_downscale);
    d.boolean("exif_orientation", c.decode.exif_orientation);
    d.finish();
  }
  read_preprocess(top.sub("preprocess"), c.preprocess);
  read_model(top.sub("model"), c.model);
  if (auto v = top.get("device")) {
    const std::string t = top.scalar("device", v, "auto, cpu, cuda or cuda:N");
    if (t == "auto") c.device = DeviceKind::Auto;
    else if (t == "cpu") c.device = DeviceKind::Cpu;
    else if (t == "cuda") c.device = DeviceKind::Cuda;
    else if (t.rfind("cuda:", 0) == 0 && t.size() > 5 &&
             t.find_first_not_of("0123456789", 5) == std::string::npos) {
      c.device = DeviceKind::Cuda;
      c.device_index = std::stoi(t.substr(5));
    } else {
      top.fail("device", v, "auto, cpu, cuda or cuda:N");
    }
  }
  top.choice<PrecisionMode>("precision", c.precision,
                            {{"auto", PrecisionMode::Auto}, {"fp32", PrecisionMode::Fp32}, {"fp16", PrecisionMode::Fp16}});
  {
    Section b = top.sub("batch");
    b.integer("size", c.batch.size, 1, 65536, "auto", 0);
    b.integer("min", c.batch.min, 1, 65536);
    b.integer("max", c.batch.max, 1, 65536);
    if (c.batch.min > c.batch.max)
      b.fail("batch.min", b.get("min"), "at most batch.max (" + std::to_string(c.batch.max) + ")");
    if (c.batch.size && (c.batch.size < c.batch.min || c.batch.size > c.batch.max))
      b.fail("batch.size", b.get("size"),
             "auto or a size within batch.min..batch.max (" + std::to_string(c.batch.min) + ".." +
                 std::to_string(c.batch.max) + ")");
    b.finish();
  }
  read_memory(top.sub("memory"), c.memory);
  {
    Section o = top.sub("output");
    o.str("dir", c.output.dir);
    if (c.output.dir.empty()) o.fail("output.dir", o.get("dir"), "a directory path");
    o.choice<PredictionFormat>("predictions", c.output.predictions,
                               {{"csv", PredictionFormat::Csv}, {"jsonl", PredictionFormat::Jsonl}});
    o.boolean("tensors", c.output.tensors);
    o.integer("images_per_shard", c.output.images_per_shard, 1, 1 << 24);
    o.choice<OutputMode>("mode", c.output.mode, {{"resume", OutputMode::Resume}, {"overwrite", OutputMode::Overwrite}});
    o.boolean("report", c.output.report);
    o.finish();
  }
  top.choice<ProgressMode>("progress", c.progress,
                           {{"auto", ProgressMode::Auto}, {"bar", ProgressMode::Bar},
                            {"lines", ProgressMode::Lines}, {"off", ProgressMode::Off}});
  top.finish();
  if (c.preprocess.color == PreprocessConfig::Color::Gray) {
    c.preprocess.mean.resize(1);
    c.preprocess.std.resize(1);
  }
  return c;
}

kernels::PreprocessParams preprocess_params(const PreprocessConfig& c) {
  kernels::PreprocessParams p;
  const bool gray = c.color == PreprocessConfig::Color::Gray;
  p.src_channels = gray ? 1 : 3;
  p.out_channels = gray ? 1 : 3;
  p.out_rgb = c.color == PreprocessConfig::Color::Rgb;
  if (c.letterbox_width) {
    p.out_w = c.letterbox_width, p.out_h = c.letterbox_height;
  } else if (c.crop_width) {
    p.out_w = c.crop_width, p.out_h = c.crop_height;
  } else {
    p.out_w = c.resize_width, p.out_h = c.resize_height;
  }
  p.interp = c.interp;
  p.pad = float(c.pad);
  p.scale = c.scale;
  for (int i = 0; i < p.out_channels; ++i) {
    p.mean[i] = c.mean[size_t(i) < c.mean.size() ? i : 0];
    p.std[i] = c.std[size_t(i) < c.std.size() ? i : 0];
  }
  p.layout = c.layout;
  p.dtype = c.dtype;
  return p;
}

std::string to_yaml(const Config& c) {
  auto interp = [](kernels::Interp i) {
    return i == kernels::Interp::Bilinear ? "bilinear" : i == kernels::Interp::Area ? "area" : "nearest";
  };
  YAML::Emitter e;
  e.SetFloatPrecision(7);
  auto size_text = [](int64_t b) {
    for (auto [unit, div] : {std::pair<const char*, int64_t>{"GiB", int64_t(1) << 30}, {"MiB", int64_t(1) << 20}})
      if (b >= div && b % div == 0) return std::to_string(b / div) + unit;
    return std::to_string(b);
  };
  e << YAML::BeginMap;
  e << YAML::Key << "input" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "path" << YAML::Value << c.input.path;
  e << YAML::Key << "recursive" << YAML::Value << c.input.recursive;
  e << YAML::Key << "extensions" << YAML::Value << YAML::Flow << c.input.extensions;
  e << YAML::Key << "shard" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "index"
    << YAML::Value << c.input.shard_index << YAML::Key << "count" << YAML::Value << c.input.shard_count
    << YAML::EndMap;
  e << YAML::EndMap;
  e << YAML::Key << "decode" << YAML::Value << YAML::Flow << YAML::BeginMap;
  e << YAML::Key << "threads" << YAML::Value;
  if (c.decode.threads) e << c.decode.threads; else e << "auto";
  e << YAML::Key << "on_error" << YAML::Value << (c.decode.on_error == OnError::Skip ? "skip" : "fail");
  e << YAML::Key << "max_file_bytes" << YAML::Value << size_text(c.decode.max_file_bytes);
  e << YAML::Key << "max_pixels" << YAML::Value << c.decode.max_pixels;
  e << YAML::Key << "jpeg_downscale" << YAML::Value << c.decode.jpeg_downscale;
  e << YAML::Key << "exif_orientation" << YAML::Value << c.decode.exif_orientation;
  e << YAML::EndMap;
  const auto& p = c.preprocess;
  e << YAML::Key << "preprocess" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "resize" << YAML::Value << YAML::Flow << YAML::BeginMap;
  if (p.shorter_side) e << YAML::Key << "shorter_side" << YAML::Value << p.shorter_side;
  if (p.resize_width)
    e << YAML::Key << "width" << YAML::Value << p.resize_width << YAML::Key << "height" << YAML::Value << p.resize_height;
  e << YAML::Key << "interpolation" << YAML::Value << interp(p.interp) << YAML::EndMap;
  if (p.crop_width)
    e << YAML::Key << "crop" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "center"
      << YAML::Value << std::vector<int>{p.crop_width, p.crop_height} << YAML::EndMap;
  if (p.letterbox_width)
    e << YAML::Key << "crop" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "letterbox"
      << YAML::Value << YAML::BeginMap << YAML::Key << "size" << YAML::Value
      << std::vector<int>{p.letterbox_width, p.letterbox_height} << YAML::Key << "pad" << YAML::Value
      << p.pad << YAML::EndMap << YAML::EndMap;
  e << YAML::Key << "color" << YAML::Value
    << (p.color == PreprocessConfig::Color::Rgb ? "rgb" : p.color == PreprocessConfig::Color::Bgr ? "bgr" : "gray");
  e << YAML::Key << "normalize" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "scale"
    << YAML::Value << p.scale << YAML::Key << "mean" << YAML::Value << p.mean << YAML::Key << "std"
    << YAML::Value << p.std << YAML::EndMap;
  e << YAML::Key << "layout" << YAML::Value << (p.layout == kernels::Layout::NCHW ? "nchw" : "nhwc");
  e << YAML::Key << "dtype" << YAML::Value
    << (p.dtype == kernels::DType::F32 ? "float32" : p.dtype == kernels::DType::F16 ? "float16" : "uint8");
  e << YAML::EndMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "path" << YAML::Value << c.model.path;
  e << YAML::Key << "input" << YAML::Value << c.model.input;
  e << YAML::Key << "labels" << YAML::Value << c.model.labels;
  e << YAML::Key << "top_k" << YAML::Value << c.model.top_k;
  e << YAML::Key << "output" << YAML::Value
    << (c.model.output == ModelOutput::Probabilities ? "probabilities"
        : c.model.output == ModelOutput::Logits      ? "logits"
                                                     : "embedding");
  e << YAML::EndMap;
  e << YAML::Key << "device" << YAML::Value
    << (c.device == DeviceKind::Auto  ? std::string("auto")
        : c.device == DeviceKind::Cpu ? std::string("cpu")
                                      : "cuda:" + std::to_string(c.device_index));
  e << YAML::Key << "precision" << YAML::Value
    << (c.precision == PrecisionMode::Auto ? "auto" : c.precision == PrecisionMode::Fp32 ? "fp32" : "fp16");
  e << YAML::Key << "batch" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "size" << YAML::Value;
  if (c.batch.size) e << c.batch.size; else e << "auto";
  e << YAML::Key << "min" << YAML::Value << c.batch.min << YAML::Key << "max" << YAML::Value << c.batch.max
    << YAML::EndMap;
  e << YAML::Key << "memory" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "device_budget"
    << YAML::Value;
  if (c.memory.device_budget_percent > 0) e << std::to_string(c.memory.device_budget_percent) + "%";
  else if (c.memory.device_budget) e << size_text(c.memory.device_budget);
  else e << "auto";
  e << YAML::Key << "host_budget" << YAML::Value << size_text(c.memory.host_budget) << YAML::Key
    << "safety_margin" << YAML::Value << size_text(c.memory.safety_margin) << YAML::Key << "restore_precision"
    << YAML::Value << c.memory.restore_precision << YAML::EndMap;
  e << YAML::Key << "output" << YAML::Value << YAML::Flow << YAML::BeginMap;
  e << YAML::Key << "dir" << YAML::Value << c.output.dir;
  e << YAML::Key << "predictions" << YAML::Value << (c.output.predictions == PredictionFormat::Csv ? "csv" : "jsonl");
  e << YAML::Key << "tensors" << YAML::Value << c.output.tensors;
  e << YAML::Key << "images_per_shard" << YAML::Value << c.output.images_per_shard;
  e << YAML::Key << "mode" << YAML::Value << (c.output.mode == OutputMode::Resume ? "resume" : "overwrite");
  e << YAML::Key << "report" << YAML::Value << c.output.report;
  e << YAML::EndMap;
  e << YAML::Key << "progress" << YAML::Value
    << (c.progress == ProgressMode::Auto    ? "auto"
        : c.progress == ProgressMode::Bar   ? "bar"
        : c.progress == ProgressMode::Lines ? "lines"
                                            : "off");
  e << YAML::EndMap;
  return e.c_str();
}

}  // namespace imgpipe
