// GPU suite: the CLI with device: cuda against the CPU run on the same images.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "cli_util.h"
#include "sinks.h"
#include "test_util.h"

using namespace imgpipe;
using namespace imgpipe::test;

namespace {

std::vector<float> load_f32(const std::string& path, std::vector<int64_t>& shape) {
  std::string descr;
  size_t offset = 0;
  EXPECT_TRUE(read_npy_header(path, descr, shape, offset)) << path;
  EXPECT_EQ(descr, "<f4");
  const std::string bytes = read_file(path);
  std::vector<float> v((bytes.size() - offset) / 4);
  std::memcpy(v.data(), bytes.data() + offset, v.size() * 4);
  return v;
}

}  // namespace

TEST(CliGpu, CudaTensorsMatchTheCpuRun) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  TempDir out;
  for (const char* layout : {"nchw", "nhwc"}) {
    // Tensors only: the sample config names a model, and a model takes NCHW alone.
    const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set model.path= --set input.path=" +
                             kSource + "/data/sample --set preprocess.layout=" + layout + " --set output.dir=";
    ASSERT_EQ(run_imgpipe(args + (out / "cpu") + " --device cpu").code, 0);
    const auto r = run_imgpipe(args + (out / "gpu") + " --device cuda --set batch.max=2");
    ASSERT_EQ(r.code, 0) << r.output;
    for (const char* shard : {"tensors-00000.npy", "tensors-00001.npy"}) {
      std::vector<int64_t> cs, gs;
      const auto c = load_f32(out / (std::string("cpu/") + shard), cs);
      const auto g = load_f32(out / (std::string("gpu/") + shard), gs);
      ASSERT_EQ(cs, gs);
      ASSERT_EQ(c.size(), g.size());
      // One 8-bit level, in normalised units (std >= 0.224): 1/255/0.224.
      double worst = 0;
      for (size_t i = 0; i < c.size(); ++i) worst = std::max(worst, double(std::fabs(c[i] - g[i])));
      EXPECT_LE(worst, 1.0 / 255 / 0.224 + 1e-5) << layout << " " << shard;
    }
    EXPECT_EQ(read_file(out / "cpu/index-00000.csv"), read_file(out / "gpu/index-00000.csv"));
  }
}

TEST(CliGpu, ModelOnCudaGivesTheCpuPredictions) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  TempDir out;
  for (const char* precision : {"fp32", "fp16"}) {
    const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set precision=" + precision + " --set output.dir=";
    ASSERT_EQ(run_imgpipe(args + (out / "cpu") + " --device cpu").code, 0);
    const auto r = run_imgpipe(args + (out / "gpu") + " --device cuda --set preprocess.dtype=float16");
    ASSERT_EQ(r.code, 0) << r.output;
    // Labels identical; scores within fp16 rounding.
    std::istringstream c(read_file(out / "cpu/predictions.csv")), g(read_file(out / "gpu/predictions.csv"));
    std::string lc, lg;
    int rows = 0;
    while (std::getline(c, lc) && std::getline(g, lg)) {
      ++rows;
      EXPECT_EQ(lc.substr(0, lc.find(',', lc.find(',') + 1)), lg.substr(0, lg.find(',', lg.find(',') + 1))) << precision;
    }
    EXPECT_EQ(rows, 7);
    EXPECT_NE(read_file(out / "gpu/report.json").find("\"backend\": \"cuda:0\""), std::string::npos);
  }
}
