// preprocess_cuda against preprocess_cpu (the oracle), RAII resources and the out-of-memory
// error on a real device. Without a GPU every test skips with the reason; with
// IMGPIPE_REQUIRE_GPU=1 a missing GPU is a failure instead.
//
// Tolerance: float outputs within 1/255 (absolute, in output units) of the CPU result, U8
// outputs within 1 level, U8 with Nearest exactly. Both sides run the same float operations
// (shared preprocess_filter.h, no FMA contraction), so in practice they agree bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <ostream>
#include <string>
#include <tuple>

#include "cuda_check.h"
#include "cuda_resources.h"
#include "device_query.h"
#include "preprocess.h"
#include "test_util.h"

namespace imgpipe::kernels {
// Readable parameters in test output.
void PrintTo(DType v, std::ostream* os) {
  static const char* const names[] = {"F32", "F16", "U8"};
  *os << names[int(v)];
}
void PrintTo(Layout v, std::ostream* os) { *os << (v == Layout::NCHW ? "NCHW" : "NHWC"); }
void PrintTo(Interp v, std::ostream* os) {
  static const char* const names[] = {"Nearest", "Bilinear", "Area"};
  *os << names[int(v)];
}
}  // namespace imgpipe::kernels

namespace imgpipe::kernels::test {
namespace {

void require_gpu() {
  const CudaProbe probe = probe_cuda();
  if (probe.device_count > 0) return;
  const char* require = std::getenv("IMGPIPE_REQUIRE_GPU");
  if (require && std::string(require) == "1")
    FAIL() << "IMGPIPE_REQUIRE_GPU=1 but no usable GPU: " << probe.reason;
  GTEST_SKIP() << "no usable GPU: " << probe.reason;
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override { require_gpu(); }
};

std::vector<uint8_t> run_gpu(const Batch& b, const PreprocessParams& p) {
  Stream stream;
  DeviceBuffer d_src(b.src.size()), d_descs(b.descs.size() * sizeof(ImageDesc));
  DeviceBuffer d_out(output_image_bytes(p) * b.n());
  IMGPIPE_CUDA_CHECK(
      cudaMemcpyAsync(d_src.get(), b.src.data(), b.src.size(), cudaMemcpyHostToDevice, stream));
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_descs.get(), b.descs.data(), d_descs.size(),
                                     cudaMemcpyHostToDevice, stream));
  IMGPIPE_CUDA_CHECK(cudaMemsetAsync(d_out.get(), 0xcd, d_out.size(), stream));
  preprocess_cuda(d_src.as<uint8_t>(), d_descs.as<ImageDesc>(), b.n(), p, d_out.get(), stream);
  std::vector<uint8_t> out(d_out.size());
  IMGPIPE_CUDA_CHECK(
      cudaMemcpyAsync(out.data(), d_out.get(), out.size(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  return out;
}

using Combo = std::tuple<DType, Layout, Interp>;

class PreprocessGpu : public ::testing::TestWithParam<Combo> {
 protected:
  void SetUp() override { require_gpu(); }

  PreprocessParams params(int32_t out_w, int32_t out_h, int32_t src_c, int32_t out_c,
                          bool rgb) const {
    PreprocessParams p;
    std::tie(p.dtype, p.layout, p.interp) = GetParam();
    p.out_w = out_w;
    p.out_h = out_h;
    p.src_channels = src_c;
    p.out_channels = out_c;
    p.out_rgb = rgb;
    p.pad = 114.f;
    p.scale = 1.f / 255.f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; ++c) p.mean[c] = mean[c], p.std[c] = stdv[c];
    return p;
  }

  void expect_match(const Batch& b, const PreprocessParams& p, const char* what) {
    const auto cpu = run_cpu(b, p), gpu = run_gpu(b, p);
    const bool exact = p.dtype == DType::U8 && p.interp == Interp::Nearest;
    const float tol = exact ? 0.f : p.dtype == DType::U8 ? 1.f : 1.f / 255.f;
    float worst = 0.f;
    for (int i = 0; i < b.n(); ++i) {
      const auto c = decode_nchw(cpu.data(), i, p), g = decode_nchw(gpu.data(), i, p);
      for (size_t k = 0; k < c.size(); ++k) {
        const float diff = std::fabs(c[k] - g[k]);
        worst = std::max(worst, diff);
        ASSERT_LE(diff, tol) << what << ": image " << i << " element " << k << " cpu " << c[k]
                             << " gpu " << g[k];
      }
    }
    RecordProperty(what, std::to_string(worst));
  }
};

TEST_P(PreprocessGpu, MatchesCpuOnRandomImagesAndEdgeSizes) {
  struct ChannelCase {
    int32_t src_c, out_c;
    bool rgb;
  };
  for (const ChannelCase cc :
       {ChannelCase{3, 3, true}, {3, 3, false}, {3, 1, true}, {1, 3, true}, {1, 1, true}}) {
    {  // batch of one: the classify recipe, 640x480 -> 341x256, center crop 224
      Batch b;
      b.add(random_image(640, 480, cc.src_c, 1), 341, 256, -58, -16);
      expect_match(b, params(224, 224, cc.src_c, cc.out_c, cc.rgb), "single");
    }
    {  // mixed sizes in one batch, output not a multiple of the block
      Batch b;
      b.add(random_image(1, 1, cc.src_c, 2), 33, 17);            // 1x1 source
      b.add(random_image(37, 23, cc.src_c, 3), 19, 11, 7, 3);    // odd, letterbox
      b.add(random_image(1000, 1, cc.src_c, 4), 7, 3, 13, 7);    // extreme aspect
      b.add(random_image(1, 1000, cc.src_c, 5), 3, 17, 0, 0);    // the other way
      b.add(random_image(9, 7, cc.src_c, 6), 80, 40, -20, -10);  // upscale + crop
      b.add(random_image(125, 50, cc.src_c, 7), 50, 20, -9, 0);  // 5:2 box edges
      b.add(random_image(4, 4, cc.src_c, 8), 0, 4);              // empty: all pad
      expect_match(b, params(33, 17, cc.src_c, cc.out_c, cc.rgb), "mixed");
    }
  }
}

std::string combo_name(const ::testing::TestParamInfo<Combo>& info) {
  return ::testing::PrintToString(std::get<0>(info.param)) + "_" +
         ::testing::PrintToString(std::get<1>(info.param)) + "_" +
         ::testing::PrintToString(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllCombos, PreprocessGpu,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F16, DType::U8),
                                            ::testing::Values(Layout::NCHW, Layout::NHWC),
                                            ::testing::Values(Interp::Nearest, Interp::Bilinear,
                                                              Interp::Area)),
                         combo_name);

TEST_F(GpuTest, AllocatingMoreThanTheDeviceHasThrowsOutOfMemory) {
  const DeviceMemInfo mem = device_mem_info(0);
  ASSERT_GT(mem.total, 0u);
  EXPECT_THROW(DeviceBuffer(mem.total + (size_t(1) << 30)), CudaOutOfMemory);
  // The failure is cleared: the next allocation and launch work and report no error.
  Batch b;
  b.add(random_image(8, 8, 3, 9), 4, 4);
  PreprocessParams p;
  p.out_w = p.out_h = 4;
  p.dtype = DType::U8;
  p.interp = Interp::Nearest;  // exact by contract
  EXPECT_EQ(run_gpu(b, p), run_cpu(b, p));
}

TEST_F(GpuTest, BuffersMoveOwnershipAndStreamsOrderWork) {
  DeviceBuffer a(1024);
  ASSERT_NE(a.get(), nullptr);
  void* raw = a.get();
  DeviceBuffer moved(std::move(a));
  EXPECT_EQ(moved.get(), raw);
  EXPECT_EQ(moved.size(), 1024u);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.get(), nullptr);

  PinnedBuffer h(1024);
  std::memset(h.get(), 7, h.size());
  Stream s;
  Event start(cudaEventDefault), done(cudaEventDefault);
  start.record(s);
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(moved.get(), h.get(), 1024, cudaMemcpyHostToDevice, s));
  // Clear the host copy through the stream (cudaMemsetAsync takes device memory only), so
  // the last copy is what puts the 7s back.
  DeviceBuffer zeros(1024);
  IMGPIPE_CUDA_CHECK(cudaMemsetAsync(zeros.get(), 0, 1024, s));
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(h.get(), zeros.get(), 1024, cudaMemcpyDeviceToHost, s));
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(h.get(), moved.get(), 1024, cudaMemcpyDeviceToHost, s));
  done.record(s);
  done.synchronize();
  EXPECT_TRUE(done.ready());
  EXPECT_GE(Event::elapsed_ms(start, done), 0.f);
  for (size_t i = 0; i < 1024; ++i) ASSERT_EQ(h.as<uint8_t>()[i], 7);
  const DeviceMemInfo mem = device_mem_info(0);
  EXPECT_LE(mem.free, mem.total);
}

}  // namespace
}  // namespace imgpipe::kernels::test
