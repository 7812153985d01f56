// How much pinned and device staging the GPU preprocessing takes for a batch, and how a
// batch larger than that goes through it: pure arithmetic, so it runs in the cpu suite.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "cuda_preprocess.h"

using namespace imgpipe;

namespace {

kernels::PreprocessParams crop224() {
  kernels::PreprocessParams p;
  p.out_w = p.out_h = 224;
  return p;
}

}  // namespace

TEST(GpuStaging, JpegSizedBatchTakesWhatItsImagesNeed) {
  // 8 JPEGs decoded at 1/2 scale (320x240 BGR): well within the plan of 4x 224x224x3 each.
  const std::vector<size_t> images(8, size_t(320) * 240 * 3);
  EXPECT_EQ(source_staging_bytes(images, crop224()), 8u * 320 * 240 * 3);
  EXPECT_EQ(staging_chunks(images, source_staging_bytes(images, crop224())), (std::vector<int>{0, 8}));
}

TEST(GpuStaging, LargeImagesAreStagedWithinThePlanNotAllAtOnce) {
  // 64 PNGs of 1000x1000: 192 MB of pixels. The staging stays at the plan for 64 images
  // (64 x 4 x 224 x 224 x 3 = 38.5 MB), what the governor and the host budget count, and
  // the batch goes through it 12 images (36 MB) at a time.
  const std::vector<size_t> images(64, size_t(1000) * 1000 * 3);
  const size_t planned = 64 * source_bytes_per_image(crop224());
  EXPECT_EQ(planned, 64u * 4 * 224 * 224 * 3);
  EXPECT_EQ(source_staging_bytes(images, crop224()), planned);
  EXPECT_EQ(staging_chunks(images, planned), (std::vector<int>{0, 12, 24, 36, 48, 60, 64}));
  // One image larger than the plan for the whole batch (8 x 12 MP): staging of that one
  // image, each going through alone; before, the staging held all 8 (288 MB).
  const std::vector<size_t> photos(8, size_t(4000) * 3000 * 3);
  EXPECT_EQ(source_staging_bytes(photos, crop224()), photos[0]);
  EXPECT_EQ(staging_chunks(photos, photos[0]), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(GpuStaging, ChunksCoverTheBatchInOrderWithinTheCapacity) {
  EXPECT_EQ(staging_chunks({100, 100, 300, 50}, 250), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_EQ(staging_chunks({300}, 250), (std::vector<int>{0, 1}));
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> bytes(1 + rng() % 40);
    for (auto& b : bytes) b = 1 + rng() % 1000;
    const size_t cap = 1 + rng() % 3000;
    const std::vector<int> c = staging_chunks(bytes, cap);
    ASSERT_EQ(c.front(), 0);
    ASSERT_EQ(c.back(), int(bytes.size()));
    for (size_t k = 0; k + 1 < c.size(); ++k) {
      ASSERT_LT(c[k], c[k + 1]) << "an empty chunk";
      const size_t sum = std::accumulate(bytes.begin() + c[k], bytes.begin() + c[k + 1], size_t(0));
      ASSERT_TRUE(sum <= cap || c[k + 1] == c[k] + 1) << "chunk " << k << " holds " << sum << " > " << cap;
      // Greedy: the next image would not have fitted.
      if (c[k + 1] < int(bytes.size())) {
        ASSERT_GT(sum + bytes[size_t(c[k + 1])], cap);
      }
    }
  }
}
