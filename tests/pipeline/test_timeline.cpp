#include <gtest/gtest.h>

#include "timeline.h"

using namespace imgpipe;

TEST(Timeline, ShortRunKeepsEveryBatch) {
  Timeline t;
  for (int64_t i = 1; i <= 5; ++i) t.add({0, i * 4, 4, "fp32", 1000, 800, 600});
  const auto j = t.to_json();
  EXPECT_EQ(j["stride"], 1);
  EXPECT_EQ(j["images"], nlohmann::json({4, 8, 12, 16, 20}));
  EXPECT_EQ(j["precision"].size(), 5u);
  EXPECT_EQ(j["budget_bytes"][0], 800);
}

TEST(Timeline, LongRunIsDecimatedToTheCapAndKeepsTheEnds) {
  Timeline t(100);
  for (int64_t i = 1; i <= 10001; ++i) t.add({0, i, 1, {}});
  const auto j = t.to_json();
  const auto& images = j["images"];
  ASSERT_LE(images.size(), 101u);  // the cap, plus the latest sample
  EXPECT_GE(images.size(), 50u);
  EXPECT_EQ(images.front(), 1);
  EXPECT_EQ(images.back(), 10001);
  const int64_t stride = j["stride"];
  EXPECT_EQ(stride, 128);  // 10001 samples into 100 slots: halved 7 times
  for (size_t i = 1; i + 1 < images.size(); ++i) EXPECT_EQ(images[i].get<int64_t>() - images[i - 1].get<int64_t>(), stride);
  for (size_t i = 1; i < images.size(); ++i) EXPECT_GE(j["time_s"][i].get<double>(), j["time_s"][i - 1].get<double>());
  EXPECT_FALSE(j.contains("budget_bytes"));  // no governor: no memory columns
}
