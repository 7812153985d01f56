#include <gtest/gtest.h>

#include "placement.h"

using namespace imgpipe;

TEST(Placement, ShorterSideThenCenterCropMatchesTorchvision) {
  PreprocessConfig c;
  c.shorter_side = 256;
  c.crop_width = c.crop_height = 224;
  auto d = place_image(c, 640, 480);  // -> 341x256, crop left = round(117/2) = 58 (half to even)
  EXPECT_EQ(d.resized_w, 341);
  EXPECT_EQ(d.resized_h, 256);
  EXPECT_EQ(d.offset_x, -58);
  EXPECT_EQ(d.offset_y, -16);
  d = place_image(c, 480, 640);  // portrait
  EXPECT_EQ(d.resized_w, 256);
  EXPECT_EQ(d.resized_h, 341);
  EXPECT_EQ(d.offset_y, -58);
}

TEST(Placement, LetterboxKeepsAspectAndCentres) {
  PreprocessConfig c;
  c.letterbox_width = 640;
  c.letterbox_height = 640;
  const auto d = place_image(c, 1280, 720);
  EXPECT_EQ(d.resized_w, 640);
  EXPECT_EQ(d.resized_h, 360);
  EXPECT_EQ(d.offset_x, 0);
  EXPECT_EQ(d.offset_y, 140);
}

TEST(Placement, ExactResizeAndCropLargerThanImage) {
  PreprocessConfig c;
  c.resize_width = 100;
  c.resize_height = 50;
  auto d = place_image(c, 7, 3);
  EXPECT_EQ(d.resized_w, 100);
  EXPECT_EQ(d.resized_h, 50);
  EXPECT_EQ(d.offset_x, 0);
  c.crop_width = c.crop_height = 60;  // taller than the resized image: padded border
  d = place_image(c, 7, 3);
  EXPECT_EQ(d.offset_x, -20);
  EXPECT_EQ(d.offset_y, 5);
}

TEST(Placement, ExtremeAspectRatioNeverGivesZeroSize) {
  PreprocessConfig c;
  c.shorter_side = 8;
  c.crop_width = c.crop_height = 8;
  const auto d = place_image(c, 10000, 1);
  EXPECT_EQ(d.resized_h, 8);
  EXPECT_EQ(d.resized_w, 80000);
  c = PreprocessConfig{};
  c.letterbox_width = c.letterbox_height = 16;
  const auto l = place_image(c, 10000, 1);
  EXPECT_GE(l.resized_h, 1);
  EXPECT_EQ(l.resized_w, 16);
}

// Golden values from torchvision's rules, computed by hand: Resize(256) truncates the longer
// side (int(256 * long / short)), CenterCrop(224) offsets by round-half-even((size - 224) / 2).
// These sizes are where truncation and lround, or half-even and (a - b) / 2, disagree.
TEST(Placement, RoundsAsTorchvisionWhereRoundingsDiffer) {
  PreprocessConfig c;
  c.shorter_side = 256;
  c.crop_width = c.crop_height = 224;
  struct Golden {
    int w, h, resized_w, resized_h, offset_x, offset_y;
  };
  const Golden golden[] = {
      {1920, 1080, 455, 256, -116, -16},  // 455.1 -> 455; (455-224)/2 = 115.5 -> 116
      {700, 467, 383, 256, -80, -16},     // 383.7 -> 383 (lround: 384); 79.5 -> 80
      {467, 700, 256, 383, -16, -80},     // portrait of the same
      {1080, 1920, 256, 455, -16, -116},
  };
  for (const auto& g : golden) {
    const auto d = place_image(c, g.w, g.h);
    EXPECT_EQ(d.resized_w, g.resized_w) << g.w << "x" << g.h;
    EXPECT_EQ(d.resized_h, g.resized_h) << g.w << "x" << g.h;
    EXPECT_EQ(d.offset_x, g.offset_x) << g.w << "x" << g.h;
    EXPECT_EQ(d.offset_y, g.offset_y) << g.w << "x" << g.h;
  }
}
