#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "source.h"
#include "test_util.h"

using namespace imgpipe;

namespace {

void touch(const std::string& p) {
  std::filesystem::create_directories(std::filesystem::path(p).parent_path());
  test::write_file(p, "x");
}

}  // namespace

TEST(Source, WalksSortedRecursiveAndFiltersExtensions) {
  test::TempDir dir;
  for (const char* f : {"b.jpg", "a.PNG", "c.txt", "sub/z.jpeg", "sub/deeper/y.webp", "noext"}) touch(dir / f);
  InputConfig in;
  in.path = dir.path().string();
  const auto all = list_inputs(in);
  const std::vector<std::string> expected = {dir / "a.PNG", dir / "b.jpg", dir / "sub/deeper/y.webp",
                                             dir / "sub/z.jpeg"};
  EXPECT_EQ(all, expected);
  in.recursive = false;
  EXPECT_EQ(list_inputs(in), (std::vector<std::string>{dir / "a.PNG", dir / "b.jpg"}));
}

TEST(Source, DirectoryNamedLikeAnImageIsListedSoItCanBeReportedAsSkipped) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "folder.jpg");
  InputConfig in;
  in.path = dir.path().string();
  EXPECT_EQ(list_inputs(in), std::vector<std::string>{dir / "folder.jpg"});
}

TEST(Source, ListFileKeepsOrderAndResolvesRelativePaths) {
  test::TempDir dir;
  test::write_file(dir / "list.txt", "# comment\nz.jpg\n\n/abs/a.png\r\nsub/b.bmp\n");
  InputConfig in;
  in.path = dir / "list.txt";
  EXPECT_EQ(list_inputs(in), (std::vector<std::string>{dir / "z.jpg", "/abs/a.png", dir / "sub/b.bmp"}));
}

TEST(Source, ListFileTrimsSpaceAroundEachPath) {
  test::TempDir dir;
  test::write_file(dir / "list.txt", "  a.jpg  \n\tb.png\t\r\n   # an indented comment\n  \n");
  InputConfig in;
  in.path = dir / "list.txt";
  EXPECT_EQ(list_inputs(in), (std::vector<std::string>{dir / "a.jpg", dir / "b.png"}));
}

TEST(Source, ShardsPartitionTheInputExactly) {
  test::TempDir dir;
  for (int i = 0; i < 23; ++i) touch(dir / ("img" + std::to_string(100 + i) + ".jpg"));
  InputConfig in;
  in.path = dir.path().string();
  const auto all = list_inputs(in);
  ASSERT_EQ(all.size(), 23u);
  for (int count : {1, 2, 3, 5, 23, 40}) {
    std::multiset<std::string> seen;
    for (int index = 0; index < count; ++index) {
      in.shard_index = index;
      in.shard_count = count;
      const auto mine = list_inputs(in);
      EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
      seen.insert(mine.begin(), mine.end());
    }
    EXPECT_EQ(seen, std::multiset<std::string>(all.begin(), all.end())) << "count " << count;
  }
}

// The documented striding: shard index/count takes every count-th image from index.
TEST(Source, ShardTakesEveryCountThImageFromItsIndex) {
  test::TempDir dir;
  for (int i = 0; i < 11; ++i) touch(dir / ("img" + std::to_string(100 + i) + ".jpg"));
  InputConfig in;
  in.path = dir.path().string();
  in.shard_index = 1;
  in.shard_count = 3;
  EXPECT_EQ(list_inputs(in), (std::vector<std::string>{dir / "img101.jpg", dir / "img104.jpg", dir / "img107.jpg",
                                                       dir / "img110.jpg"}));
}

TEST(Source, MissingPathIsAnError) {
  InputConfig in;
  in.path = "/nonexistent/imgpipe/input";
  EXPECT_THROW((void)list_inputs(in), std::runtime_error);
}
