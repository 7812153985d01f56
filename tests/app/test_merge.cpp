// `imgpipe merge DIR`: the parts of a sharded folder back together, checked against a
// single-process run of the same inputs. Real processes, real files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstring>
#include <algorithm>
#include <filesystem>
#include <map>

#include "cli_util.h"
#include "output_dir.h"
#include "sinks.h"
#include "test_util.h"

using namespace imgpipe;
using namespace imgpipe::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// 25 images and one corrupt file, so that the parts skip something.
std::string setup_inputs(const TempDir& tmp) {
  const fs::path in = tmp.path() / "in";
  fs::create_directories(in);
  for (int i = 0; i < 25; ++i)
    cv::imwrite((in / ("img" + std::to_string(100 + i) + ".jpg")).string(), random_image(40 + i, 30, unsigned(i)));
  write_file((in / "img107b.jpg").string(), "not a jpeg");
  return "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + in.string() +
         " --set output.images_per_shard=3 --set decode.threads=2";
}

std::string part_args(const std::string& base, const TempDir& tmp, int index, int count = 3) {
  return base + " --set output.dir=" + (tmp / "parts") + " --set input.shard.count=" + std::to_string(count) +
         " --set input.shard.index=" + std::to_string(index);
}

// Row `row` of a .npy file's data (format 1.0 header; rows of equal size).
std::string npy_row(const std::string& path, size_t row) {
  const std::string f = read_file(path);
  const size_t header = 10 + size_t(uint8_t(f[8])) + 256 * size_t(uint8_t(f[9]));
  const size_t rows = std::stoul(f.substr(f.find("'shape': (") + 10));
  const size_t row_bytes = (f.size() - header) / rows;
  return f.substr(header + row * row_bytes, row_bytes);
}

TEST(Merge, ThreePartsEqualOneProcessByteForByte) {
  TempDir tmp;
  const std::string base = setup_inputs(tmp);
  ASSERT_EQ(run_imgpipe(base + " --set output.dir=" + (tmp / "single")).code, 0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run_imgpipe(part_args(base, tmp, i)).code, 0);
  const auto r = run_cmd(kBinary + " merge " + (tmp / "parts"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_file(tmp / "parts/merged-predictions.csv"), read_file(tmp / "single/predictions.csv"));

  // Every image's tensor row, found through the merged index, equals the single run's.
  const auto index = parse_csv(read_file(tmp / "parts/merged-index.csv"));
  ASSERT_EQ(index.size(), 27u);  // header + 26 inputs
  EXPECT_EQ(index[0], (std::vector<std::string>{"position", "path", "part", "file", "row", "error"}));
  size_t single_row = 0, skipped = 0;
  for (size_t g = 1; g < index.size(); ++g) {
    const auto& e = index[g];
    EXPECT_EQ(e[2], std::to_string((g - 1) % 3));
    if (!e[5].empty()) {
      ++skipped;
      EXPECT_TRUE(e[3].empty());
      continue;
    }
    // The single run's shard k holds inputs 3k..3k+2 (images_per_shard 3), skipped ones without a row.
    char shard[32];
    std::snprintf(shard, sizeof shard, "%05zu", (g - 1) / 3);
    const auto single_index = parse_csv(read_file(tmp / ("single/index-" + std::string(shard) + ".csv")));
    const auto& srow = single_index[(g - 1) % 3 + 1];
    ASSERT_EQ(srow[1], e[1]);
    EXPECT_EQ(npy_row(tmp / ("parts/" + e[3]), std::stoul(e[4])),
              npy_row(tmp / ("single/tensors-" + std::string(shard) + ".npy"), std::stoul(srow[0])))
        << e[1];
    ++single_row;
  }
  EXPECT_EQ(skipped, 1u);
  EXPECT_EQ(single_row, 25u);
  const json report = json::parse(read_file(tmp / "parts/merged-report.json"));
  EXPECT_EQ(report["counts"]["inputs"], 26);
  EXPECT_EQ(report["counts"]["written"], 25);
  ASSERT_EQ(report["skipped"].size(), 1u);
  EXPECT_NE(report["skipped"][0]["path"].get<std::string>().find("img107b.jpg"), std::string::npos);
  ASSERT_EQ(report["parts"].size(), 3u);
  EXPECT_TRUE(report["parts"][2]["timing_s"].contains("wall"));
  EXPECT_TRUE(report["parts"][2]["governor"].contains("events"));
}

TEST(Merge, MissingIncompleteAndRunningPartsAreNamed) {
  TempDir tmp;
  const std::string base = setup_inputs(tmp);
  ASSERT_EQ(run_imgpipe(part_args(base, tmp, 0, 4)).code, 0);
  ASSERT_EQ(run_imgpipe(part_args(base, tmp, 2, 4)).code, 0);
  EXPECT_EQ(run_imgpipe(part_args(base, tmp, 3, 4), "IMGPIPE_TEST_KILL_AFTER=4").code, 128 + 9);
  auto r = run_cmd(kBinary + " merge " + (tmp / "parts"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("part 1 of 4 is missing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("part 3 is incomplete: 1 of 2 shards not written (part3-index-00001.csv)"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "parts/merged-index.csv"));

  // Once every part is done the merge succeeds, except while a part holds its lock.
  ASSERT_EQ(run_imgpipe(part_args(base, tmp, 1, 4)).code, 0);
  ASSERT_EQ(run_imgpipe(part_args(base, tmp, 3, 4)).code, 0);
  std::string error;
  const int fd = lock_file(tmp / "parts/part2-imgpipe.lock", error);
  ASSERT_GE(fd, 0) << error;
  r = run_cmd(kBinary + " merge " + (tmp / "parts"));
  ::close(fd);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("part 2 is in use"), std::string::npos) << r.output;
  r = run_cmd(kBinary + " merge " + (tmp / "parts"));
  EXPECT_EQ(r.code, 0) << r.output;

  // Not a sharded folder: a usage error.
  ASSERT_EQ(run_imgpipe(base + " --set output.dir=" + (tmp / "single")).code, 0);
  r = run_cmd(kBinary + " merge " + (tmp / "single"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("holds no parts"), std::string::npos) << r.output;
}

TEST(Merge, TwiceGivesTheSameBytesAndAKilledMergeLeavesNoHalfFile) {
  TempDir tmp;
  const std::string base = setup_inputs(tmp) + " --set output.predictions=jsonl";
  for (int i = 0; i < 2; ++i) ASSERT_EQ(run_imgpipe(part_args(base, tmp, i, 2)).code, 0);
  ASSERT_EQ(run_cmd(kBinary + " merge " + (tmp / "parts")).code, 0);
  std::map<std::string, std::string> first;
  for (const char* f : {"merged-predictions.jsonl", "merged-index.csv", "merged-report.json"})
    first[f] = read_file(tmp / ("parts/" + std::string(f)));
  EXPECT_EQ(std::count(first["merged-predictions.jsonl"].begin(), first["merged-predictions.jsonl"].end(), '\n'), 25);
  // A merge killed after writing a .partial: the rerun replaces it.
  write_file(tmp / "parts/merged-index.csv.partial", "half");
  ASSERT_EQ(run_cmd(kBinary + " merge " + (tmp / "parts")).code, 0);
  for (const auto& [f, bytes] : first) EXPECT_EQ(read_file(tmp / ("parts/" + f)), bytes) << f;
  for (const auto& e : fs::directory_iterator(tmp.path() / "parts"))
    EXPECT_NE(e.path().extension(), ".partial") << e.path();
}

}  // namespace
