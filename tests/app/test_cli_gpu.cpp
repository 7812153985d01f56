// GPU suite: the CLI with device: cuda against the CPU run on the same images.
#include <gtest/gtest.h>

#include <cmath>

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
    const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set preprocess.layout=" + layout + " --set output.dir=";
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
