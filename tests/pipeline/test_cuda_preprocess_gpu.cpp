// GPU suite: the preprocessing stage (CudaPreprocessor) against the CPU reference, with
// batches whose images do not fit its staging at once, and blocking host waits.
#include <gtest/gtest.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "cuda_preprocess.h"
#include "device_query.h"
#include "gpu_guard.h"

using namespace imgpipe;

namespace {

kernels::PreprocessParams params() {
  kernels::PreprocessParams p;
  p.out_w = 32;
  p.out_h = 24;
  p.scale = 1.f / 255.f;
  return p;
}

cv::Mat random_image(int w, int h, unsigned seed) {
  cv::Mat m(h, w, CV_8UC3);
  std::mt19937 rng(seed);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w * 3; ++x) m.ptr(y)[x] = uint8_t(rng());
  return m;
}

}  // namespace

TEST(CudaPreprocessorGpu, LargeImagesGoThroughTheStagingInChunksWithTheCpuValues) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  const kernels::PreprocessParams p = params();
  // The plan is 4 x 32 x 24 x 3 = 9 KiB per image: 300x200 (176 KiB) images go one at a
  // time, the small ones several at once; odd sizes, a view with a pitch, in one batch.
  std::vector<cv::Mat> images = {random_image(300, 200, 1), random_image(17, 9, 2), random_image(31, 23, 3),
                                 random_image(301, 199, 4), random_image(1, 1, 5)};
  cv::Mat big = random_image(400, 300, 6);
  images.push_back(big(cv::Rect(50, 40, 250, 180)));  // not continuous
  std::vector<size_t> bytes;
  for (const auto& m : images) bytes.push_back(m.total() * m.elemSize());
  ASSERT_GT(staging_chunks(bytes, source_staging_bytes(bytes, p)).size(), 3u) << "the test needs several chunks";
  std::vector<kernels::ImageDesc> descs(images.size());
  for (auto& d : descs) {
    d.resized_w = p.out_w;
    d.resized_h = p.out_h;
  }
  CudaPreprocessor pre(0, p);
  for (int round = 0; round < 3; ++round) {  // both slots, reused
    pre.submit(images, descs, true);
    const CudaPreprocessor::Batch b = pre.collect();
    ASSERT_EQ(b.n, int(images.size()));
    const size_t row = kernels::output_image_bytes(p);
    for (size_t i = 0; i < images.size(); ++i) {
      kernels::ImageDesc d = descs[i];
      d.width = images[i].cols;
      d.height = images[i].rows;
      d.pitch = int32_t(images[i].step);
      std::vector<float> want(row / 4), got(row / 4);
      kernels::preprocess_cpu(images[i].data, &d, 1, p, want.data());
      std::memcpy(got.data(), static_cast<const uint8_t*>(b.h_tensor) + i * row, row);
      for (size_t k = 0; k < want.size(); ++k)
        ASSERT_NEAR(got[k], want[k], 1.f / 255.f) << "round " << round << " image " << i << " element " << k;
    }
  }
  // Each slot's source staging holds the largest image (more than the plan), not the whole
  // batch: at most 25% headroom over that, the tensors and the descriptors, per slot.
  const size_t largest = *std::max_element(bytes.begin(), bytes.end());
  const size_t rest = images.size() * (kernels::output_image_bytes(p) + sizeof(kernels::ImageDesc));
  EXPECT_LE(pre.pinned_bytes(), CudaPreprocessor::kSlots * (largest + rest) * 5 / 4);
  EXPECT_LT(largest, std::accumulate(bytes.begin(), bytes.end(), size_t(0)) / 2);
}

TEST(CudaPreprocessorGpu, HostWaitsUseBlockingSync) {
  IMGPIPE_REQUIRE_GPU_OR_SKIP();
  ASSERT_TRUE(kernels::use_blocking_sync(0));
  unsigned flags = 0;
  ASSERT_EQ(cudaGetDeviceFlags(&flags), cudaSuccess);
  EXPECT_EQ(flags & cudaDeviceScheduleMask, unsigned(cudaDeviceScheduleBlockingSync));
}
