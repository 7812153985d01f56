#include <gtest/gtest.h>

#include "config.h"
#include "test_util.h"

using namespace imgpipe;

namespace {

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  test::TempDir dir;
  const std::string file = dir / "c.yaml";
  test::write_file(file, yaml);
  try {
    (void)load_config(file, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kMinimal = "input: {path: data}\n";

}  // namespace

TEST(Config, DefaultsAreTheImageNetRecipe) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", kMinimal);
  const Config c = load_config(dir / "c.yaml", {});
  EXPECT_EQ(c.input.path, "data");
  EXPECT_EQ(c.preprocess.shorter_side, 256);
  EXPECT_EQ(c.preprocess.crop_width, 224);
  EXPECT_EQ(c.output.images_per_shard, 1024);
  EXPECT_EQ(c.memory.host_budget, int64_t(1) << 30);
  const auto p = preprocess_params(c.preprocess);
  EXPECT_EQ(p.out_w, 224);
  EXPECT_EQ(p.out_channels, 3);
  EXPECT_TRUE(p.out_rgb);
  EXPECT_FLOAT_EQ(p.mean[2], 0.406f);
}

TEST(Config, FullFileParses) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", R"(
input: {path: imgs.txt, recursive: false, extensions: [.JPG, png], shard: {index: 2, count: 4}}
decode: {threads: 3, on_error: fail}
preprocess:
  resize: {width: 320, height: 240, interpolation: area}
  crop: {letterbox: {size: [640, 480], pad: 0}}
  color: bgr
  normalize: {scale: 1, mean: 0.5, std: [2]}
  layout: nhwc
  dtype: float16
batch: {size: 8, min: 2, max: 16}
memory: {device_budget: 75%, host_budget: 64MiB, safety_margin: 0}
output: {dir: o, predictions: jsonl, tensors: false, images_per_shard: 10, mode: overwrite}
progress: lines
device: cuda:1
precision: fp16
)");
  // letterbox with a resize size is rejected; drop it through --set
  EXPECT_NE(error_of(test::read_file(dir / "c.yaml")).find("letterbox"), std::string::npos);
  const Config c = load_config(dir / "c.yaml", {"preprocess.resize={interpolation: area}"});
  EXPECT_EQ(c.input.extensions, (std::vector<std::string>{"jpg", "png"}));
  EXPECT_EQ(c.input.shard_index, 2);
  EXPECT_EQ(c.decode.on_error, OnError::Fail);
  EXPECT_EQ(c.preprocess.interp, kernels::Interp::Area);
  EXPECT_EQ(c.preprocess.letterbox_width, 640);
  EXPECT_EQ(c.preprocess.pad, 0);
  EXPECT_EQ(c.preprocess.mean, (std::vector<float>{0.5f, 0.5f, 0.5f}));
  EXPECT_EQ(c.preprocess.std, (std::vector<float>{2.f, 2.f, 2.f}));
  EXPECT_EQ(c.preprocess.dtype, kernels::DType::F16);
  EXPECT_EQ(c.memory.device_budget_percent, 75.0);
  EXPECT_EQ(c.memory.host_budget, 64 << 20);
  EXPECT_EQ(c.device, DeviceKind::Cuda);
  EXPECT_EQ(c.device_index, 1);
  EXPECT_EQ(c.output.predictions, PredictionFormat::Jsonl);
  EXPECT_FALSE(c.output.tensors);
}

TEST(Config, SetOverridesAnyKey) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", kMinimal);
  const Config c = load_config(dir / "c.yaml", {"batch.max=64", "model.path=", "preprocess.crop.center=[100, 50]",
                                                "output.dir=elsewhere"});
  EXPECT_EQ(c.batch.max, 64);
  EXPECT_EQ(c.model.path, "");
  EXPECT_EQ(c.preprocess.crop_width, 100);
  EXPECT_EQ(c.preprocess.crop_height, 50);
  EXPECT_EQ(c.output.dir, "elsewhere");
}

TEST(Config, RejectsUnknownKeyWithLineAndChoices) {
  const std::string e = error_of("input: {path: d}\nbatch:\n  size: 4\n  maximum: 8\n");
  EXPECT_NE(e.find("unknown config key 'batch.maximum'"), std::string::npos) << e;
  EXPECT_NE(e.find("line 4"), std::string::npos) << e;
  EXPECT_NE(e.find("max"), std::string::npos) << e;
  EXPECT_NE(error_of("input: {path: d}\nbogus: 1\n").find("'bogus'"), std::string::npos);
}

TEST(Config, RejectsWrongTypesAndRanges) {
  struct Case {
    std::string yaml, key, expected;
  } cases[] = {
      {"batch: {max: lots}", "batch.max", "an integer in 1..65536"},
      {"batch: {min: 0}", "batch.min", "1..65536"},
      {"batch: {min: 8, max: 4}", "batch.min", "at most batch.max"},
      {"batch: {size: 300}", "batch.size", "within batch.min..batch.max"},
      {"decode: {on_error: ignore}", "decode.on_error", "one of skip | fail"},
      {"decode: {threads: -1}", "decode.threads", "'auto'"},
      {"preprocess: {dtype: int8}", "preprocess.dtype", "float32 | float16 | uint8"},
      {"preprocess: {layout: chw, crop: {center: 4}}", "preprocess.layout", "nchw | nhwc"},
      {"preprocess: {resize: {shorter_side: 0}}", "preprocess.resize.shorter_side", "1..32768"},
      {"preprocess: {resize: {shorter_side: 64}}", "preprocess", "a fixed output size"},
      {"preprocess: {crop: {center: [1, 2, 3]}}", "preprocess.crop.center", "[width, height]"},
      {"preprocess: {normalize: {std: [1, 0, 1]}}", "preprocess.normalize.std", "positive"},
      {"preprocess: {crop: {letterbox: {size: 64, pad: 300}}}", "preprocess.crop.letterbox.pad", "0..255"},
      {"memory: {host_budget: plenty}", "memory.host_budget", "a size"},
      {"memory: {host_budget: 1KiB}", "memory.host_budget", "at least"},
      {"memory: {device_budget: 150%}", "memory.device_budget", "percentage"},
      {"output: {images_per_shard: 0}", "output.images_per_shard", "1.."},
      {"output: {tensors: maybe}", "output.tensors", "true or false"},
      {"input: {path: d, shard: {index: 4, count: 4}}", "input.shard.index", "below input.shard.count"},
      {"device: gpu", "device", "auto, cpu, cuda or cuda:N"},
      {"precision: bf16", "precision", "auto | fp32 | fp16"},
      {"progress: fancy", "progress", "auto | bar | lines | off"},
      {"model: {top_k: 0}", "model.top_k", "1..1000"},
  };
  for (const auto& c : cases) {
    const std::string yaml = c.yaml.rfind("input:", 0) == 0 ? c.yaml : std::string(kMinimal) + c.yaml + "\n";
    const std::string e = error_of(yaml);
    EXPECT_NE(e.find("'" + c.key + "'"), std::string::npos) << c.yaml << " -> " << e;
    EXPECT_NE(e.find(c.expected), std::string::npos) << c.yaml << " -> " << e;
    EXPECT_NE(e.find("line"), std::string::npos) << c.yaml << " -> " << e;
  }
}

TEST(Config, MissingInputPathAndBadYamlAreRejected) {
  EXPECT_NE(error_of("decode: {threads: 1}\n").find("'input.path'"), std::string::npos);
  EXPECT_NE(error_of("input: {path: [unclosed\n").find("not valid YAML"), std::string::npos);
  EXPECT_NE(error_of("- a\n- b\n").find("mapping"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"batch.max"}).find("key.path=value"), std::string::npos);
  const std::string e = error_of(kMinimal, {"batch.max=zero"});
  EXPECT_NE(e.find("'batch.max' (from --set)"), std::string::npos) << e;
}

TEST(Config, SizesParseAndPrint) {
  EXPECT_EQ(parse_size("512MiB"), 512 << 20);
  EXPECT_EQ(parse_size("1.5GiB"), int64_t(1.5 * (1 << 30)));
  EXPECT_EQ(parse_size("100MB"), 100000000);
  EXPECT_EQ(parse_size("4096"), 4096);
  EXPECT_THROW((void)parse_size("12 parsecs"), std::invalid_argument);
  EXPECT_THROW((void)parse_size("-5MiB"), std::invalid_argument);
  EXPECT_EQ(format_bytes(3 << 20), "3.0 MiB");
}

TEST(Config, ResolvedYamlLoadsBackToTheSameConfig) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", "input: {path: d}\npreprocess: {dtype: uint8, color: gray}\nbatch: {max: 32}\n");
  const Config a = load_config(dir / "c.yaml", {});
  test::write_file(dir / "r.yaml", to_yaml(a));
  const Config b = load_config(dir / "r.yaml", {});
  EXPECT_EQ(to_yaml(a), to_yaml(b));
  EXPECT_EQ(b.preprocess.color, PreprocessConfig::Color::Gray);
  EXPECT_EQ(b.batch.max, 32);
}

TEST(Config, DuplicateKeysAreRejectedNamingBothLines) {
  std::string e = error_of("input: {path: data}\ndecode:\n  threads: 2\n  on_error: skip\n  threads: 4\n");
  EXPECT_NE(e.find("config key 'decode.threads' is given twice (lines 3 and 5 of "), std::string::npos) << e;
  e = error_of("input: {path: data}\nbatch: {max: 8}\nprogress: off\nbatch: {max: 64}\n");
  EXPECT_NE(e.find("config key 'batch' is given twice (lines 2 and 4 of "), std::string::npos) << e;
  e = error_of("input: {path: data, recursive: true, path: other}\n");
  EXPECT_NE(e.find("config key 'input.path' is given twice (lines 1 and 1 of "), std::string::npos) << e;
}

TEST(Config, SetErrorsSayFromSetNotALineOfTheFile) {
  std::string e = error_of(kMinimal, {"decode={threads: lots}"});
  EXPECT_NE(e.find("config key 'decode.threads' (from --set): expected an integer"), std::string::npos) << e;
  e = error_of(kMinimal, {"input.shard={index: 3, count: 2}"});
  EXPECT_NE(e.find("config key 'input.shard.index' (from --set)"), std::string::npos) << e;
  e = error_of(kMinimal, {"decode={thread: 2}"});
  EXPECT_NE(e.find("unknown config key 'decode.thread' (from --set)"), std::string::npos) << e;
  EXPECT_EQ(e.find("line 1"), std::string::npos) << e;
}

TEST(Config, DecodeLimitsParseValidateAndPrint) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", std::string(kMinimal) + "decode: {max_file_bytes: 5GiB, max_pixels: 4000000000}\n");
  const Config c = load_config(dir / "c.yaml", {});
  EXPECT_EQ(c.decode.max_file_bytes, int64_t(5) << 30);  // beyond 32 bits, not truncated
  EXPECT_EQ(c.decode.max_pixels, int64_t(4000000000));
  const Config d = load_config(dir / "c.yaml", {"decode.max_file_bytes=256MiB", "decode.max_pixels=178956970"});
  EXPECT_EQ(d.decode.max_file_bytes, Config().decode.max_file_bytes);
  EXPECT_EQ(d.decode.max_pixels, Config().decode.max_pixels);
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("max_file_bytes: 5GiB"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("max_pixels: 4000000000"), std::string::npos) << yaml;
  EXPECT_NE(error_of(kMinimal, {"decode.max_file_bytes=lots"}).find("config key 'decode.max_file_bytes' (from --set): expected a size"),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"decode.max_pixels=0"}).find("config key 'decode.max_pixels' (from --set): expected an integer in 1.."),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"decode.max_pixels=99999999999999999999"}).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"decode.max_file_bytes=1e30"}).find("expected a size"), std::string::npos);
}
