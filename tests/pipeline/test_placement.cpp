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
