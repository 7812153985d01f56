// The output folder as users abuse it: two runs into one folder, shards sharing a folder,
// inputs changed between a run and its resume, odd file names, signals, run-level messages.
// Real processes, real files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "cli_util.h"
#include "sinks.h"
#include "test_util.h"

using namespace imgpipe;
using namespace imgpipe::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void make_images(const fs::path& dir, int first, int n) {
  fs::create_directories(dir);
  for (int i = first; i < first + n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "img%04d.jpg", i);
    cv::imwrite((dir / name).string(), test::random_image(40, 30, unsigned(i)));
  }
}

// imgpipe started in the background, its output going to a file.
struct Child {
  pid_t pid = -1;
  std::string log;
  int wait() {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string output() const { return test::read_file(log); }
};

Child spawn(const std::string& args, const std::string& env, const std::string& log) {
  const std::string cmd = "exec env " + env + " " + IMGPIPE_BINARY + " " + args + " >" + log + " 2>&1";
  Child c{fork(), log};
  if (c.pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return c;
}

bool wait_for(const std::string& path, double seconds = 30) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string base_args(const fs::path& in) {
  return "--config " + kSource + "/configs/sample.yaml --set input.path=" + in.string() +
         " --set output.mode=resume --set decode.threads=2 --set progress=lines";
}

bool has_partial(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".partial") return true;
  return false;
}

}  // namespace

TEST(OutputDir, SecondRunIntoABusyFolderExitsTwoAndTheFirstCompletesIntact) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 24);
  const std::string args = base_args(tmp.path() / "in") + " --set output.images_per_shard=4";
  ASSERT_EQ(run_imgpipe("-q " + args + " --set output.dir=" + (tmp / "solo")).code, 0);

  Child first = spawn(args + " --set output.dir=" + (tmp / "busy"), "IMGPIPE_TEST_DELAY_MS=150", tmp / "first.log");
  ASSERT_TRUE(wait_for(tmp / "busy/index-00000.csv")) << first.output();
  // The same command, and one that asks to overwrite: both refused, nothing touched.
  for (const std::string extra : {"", " --set output.mode=overwrite"}) {
    const auto second = run_imgpipe(args + " --set output.dir=" + (tmp / "busy") + extra);
    EXPECT_EQ(second.code, 2) << second.output;
    EXPECT_NE(second.output.find("is in use by pid " + std::to_string(first.pid)), std::string::npos)
        << second.output;
  }
  ASSERT_EQ(first.wait(), 0) << first.output();
  EXPECT_EQ(outputs(tmp.path() / "busy"), outputs(tmp.path() / "solo"));
  EXPECT_EQ(load_json(tmp / "busy/report.json")["counts"]["written"], 24);
  EXPECT_FALSE(has_partial(tmp.path() / "busy"));
  // Once the first run is gone, the folder is free again (kill -9 leaves no stale lock either).
  Child killed = spawn(args + " --set output.dir=" + (tmp / "killed"), "IMGPIPE_TEST_KILL_AFTER=5", tmp / "k.log");
  EXPECT_EQ(killed.wait(), 128 + 9);
  EXPECT_EQ(run_imgpipe("-q " + args + " --set output.dir=" + (tmp / "killed")).code, 0);
}

TEST(OutputDir, ThreeShardProcessesShareOneFolderEachImageOnce) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 25);
  const std::string args = base_args(tmp.path() / "in") + " --set output.images_per_shard=3 --set output.dir=" +
                           (tmp / "out") + " --set input.shard.count=3";
  std::vector<Child> parts;
  for (int i = 0; i < 3; ++i)
    parts.push_back(spawn(args + " --set input.shard.index=" + std::to_string(i), "IMGPIPE_TEST_DELAY_MS=20",
                          tmp / ("part" + std::to_string(i) + ".log")));
  for (auto& p : parts) EXPECT_EQ(p.wait(), 0) << p.output();

  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(tmp.path() / "in")) all.push_back(e.path().string());
  std::sort(all.begin(), all.end());
  std::map<std::string, int> seen;
  for (int i = 0; i < 3; ++i) {
    const std::string part = "part" + std::to_string(i) + "-";
    std::vector<std::string> rows;  // this part's index rows, shard after shard
    for (int s = 0; fs::exists(tmp / ("out/" + part + "index-0000" + std::to_string(s) + ".csv")); ++s) {
      const auto csv = parse_csv(test::read_file(tmp / ("out/" + part + "index-0000" + std::to_string(s) + ".csv")));
      for (size_t r = 1; r < csv.size(); ++r) rows.push_back(csv[r][1]);
    }
    std::vector<std::string> striding;  // part i takes inputs i, i+3, i+6, ...
    for (size_t k = size_t(i); k < all.size(); k += 3) striding.push_back(all[k]);
    EXPECT_EQ(rows, striding) << part;
    for (const auto& r : rows) ++seen[r];
    const json report = load_json(tmp / ("out/" + part + "report.json"));
    EXPECT_EQ(report["counts"]["written"], striding.size());
    EXPECT_TRUE(fs::exists(tmp / ("out/" + part + "manifest.json")));
    EXPECT_TRUE(fs::exists(tmp / ("out/" + part + "predictions.csv")));
  }
  EXPECT_EQ(seen.size(), all.size());
  for (const auto& [path, n] : seen) EXPECT_EQ(n, 1) << path;
  EXPECT_FALSE(fs::exists(tmp / "out/predictions.csv"));  // no part can know that the others are done
  EXPECT_FALSE(fs::exists(tmp / "out/report.json"));

  // Overwriting part 1 replaces part 1's files only.
  const auto before0 = outputs(tmp.path() / "out", "part0-"), before2 = outputs(tmp.path() / "out", "part2-");
  const auto again = run_imgpipe(args + " --set input.shard.index=1 --set output.mode=overwrite");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(outputs(tmp.path() / "out", "part0-"), before0);
  EXPECT_EQ(outputs(tmp.path() / "out", "part2-"), before2);
  EXPECT_EQ(load_json(tmp / "out/part1-report.json")["counts"]["written"], 8);
}

TEST(OutputDir, ResumeRefusesAChangedInputListOfTheSameLength) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 12);
  const std::string args = "-q " + base_args(tmp.path() / "in") + " --set output.images_per_shard=4";
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "a")).code, 0);
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "b")).code, 0);
  const auto manifest = test::read_file(tmp / "a/manifest.json");

  // One file replaced by another: same count, a different list.
  fs::remove(tmp / "in/img0005.jpg");
  cv::imwrite(tmp / "in/img0005b.jpg", test::random_image(40, 30, 99));
  auto r = run_imgpipe(args + " --set output.dir=" + (tmp / "a"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("different input list: input 5 is now '" + (tmp / "in/img0005b.jpg") + "', was '" +
                          (tmp / "in/img0005.jpg") + "'"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(test::read_file(tmp / "a/manifest.json"), manifest);
  EXPECT_FALSE(fs::exists(tmp / "a/index-00001.csv.partial"));

  // The same names, one file's content changed.
  fs::rename(tmp / "in/img0005b.jpg", tmp / "in/img0005.jpg");
  r = run_imgpipe(args + " --set output.dir=" + (tmp / "b"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("inputs 4..7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("replaced or modified"), std::string::npos) << r.output;
  // One file more.
  make_images(tmp.path() / "in", 12, 1);
  r = run_imgpipe(args + " --set output.dir=" + (tmp / "b"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("13 inputs now, 12 when it was written (1 added)"), std::string::npos) << r.output;
}

TEST(OutputDir, NonUtf8NamesAreKeptExactlyInCsvAndLosslesslyInJson) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 2);
  const std::string good = tmp / "in/a\xff" "b.jpg", bad = tmp / "in/\xfe.jpg";
  fs::rename(tmp / "in/img0001.jpg", good);
  test::write_file(bad, "not an image");
  for (const std::string format : {"csv", "jsonl"}) {
    const std::string out = tmp / format;
    const std::string args = "-q " + base_args(tmp.path() / "in") + " --set output.predictions=" + format +
                             " --set output.dir=" + out;
    for (int rerun = 0; rerun < 2; ++rerun) {  // a rerun (resume) reads it all back
      const auto r = run_imgpipe(args);
      ASSERT_EQ(r.code, 0) << r.output;
    }
    const std::string index = test::read_file(out + "/index-00000.csv");
    EXPECT_NE(index.find("," + bad + ","), std::string::npos) << index;
    EXPECT_NE(index.find("," + good + ",\n"), std::string::npos) << index;
    const json report = load_json(out + "/report.json");
    EXPECT_EQ(report["counts"]["skipped"], 1);
    EXPECT_EQ(report["skipped"][0]["path_b64"], base64(bad));
    const std::string predictions = test::read_file(out + "/predictions." + format);
    if (format == "csv") {
      EXPECT_NE(predictions.find("\n" + good + ","), std::string::npos) << predictions;
    } else {
      const json line = json::parse(predictions.substr(0, predictions.find('\n')));  // a\xffb sorts first
      EXPECT_EQ(line["path_b64"], base64(good)) << predictions;
      EXPECT_EQ(line["path"], tmp / "in/a\xef\xbf\xbd" "b.jpg");
      EXPECT_FALSE(json::parse(predictions.substr(predictions.find('\n') + 1)).contains("path_b64"));
    }
  }
}

TEST(OutputDir, ResumedRunReportsTheWholeFolderLikeACleanRun) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 30);
  test::write_file(tmp / "in/img0002.jpg", "broken");
  test::write_file(tmp / "in/img0025.jpg", "broken too");
  const std::string args = "-q " + base_args(tmp.path() / "in") + " --set output.images_per_shard=7";
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "clean")).code, 0);
  EXPECT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "resumed"), "IMGPIPE_TEST_KILL_AFTER=17").code, 128 + 9);
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "resumed")).code, 0);
  const json clean = load_json(tmp / "clean/report.json"), resumed = load_json(tmp / "resumed/report.json");
  EXPECT_EQ(resumed["counts"], clean["counts"]);
  EXPECT_EQ(resumed["skipped"], clean["skipped"]);
  EXPECT_EQ(clean["counts"]["skipped"], 2);
  EXPECT_EQ(clean["counts"]["written"], 28);
  EXPECT_EQ(resumed["session"]["resumed"], 14);
  EXPECT_EQ(resumed["session"]["skipped"], 1);
}

TEST(OutputDir, SignalsStopCleanlyWithTheirExitCodeAndResumeExactly) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 40);
  const std::string args = base_args(tmp.path() / "in") + " --set output.images_per_shard=5";
  ASSERT_EQ(run_imgpipe("-q " + args + " --set output.dir=" + (tmp / "clean")).code, 0);
  for (const auto& [sig, code] : std::vector<std::pair<int, int>>{{SIGINT, 130}, {SIGTERM, 143}, {SIGHUP, 129}}) {
    const std::string out = tmp / ("out" + std::to_string(sig));
    Child run = spawn(args + " --set output.dir=" + out, "IMGPIPE_TEST_DELAY_MS=40", out + ".log");
    ASSERT_TRUE(wait_for(out + "/index-00001.csv")) << run.output();
    kill(run.pid, sig);
    EXPECT_EQ(run.wait(), code) << run.output();
    EXPECT_NE(run.output().find("imgpipe: interrupted after "), std::string::npos) << run.output();
    EXPECT_NE(run.output().find(" images; rerun the same command to resume"), std::string::npos) << run.output();
    EXPECT_FALSE(has_partial(out));
    EXPECT_FALSE(fs::exists(out + "/index-00007.csv"));
    const json report = load_json(out + "/report.json");
    EXPECT_EQ(report["exit_code"], code);
    EXPECT_EQ(report["interrupted"], sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
    // Every shard on disk is whole: its tensors hold as many rows as its index says.
    for (size_t s = 0; fs::exists(out + "/index-0000" + std::to_string(s) + ".csv"); ++s) {
      std::string descr;
      std::vector<int64_t> shape;
      size_t offset = 0;
      ASSERT_TRUE(read_npy_header(out + "/tensors-0000" + std::to_string(s) + ".npy", descr, shape, offset));
      EXPECT_EQ(shape[0], 5);
    }
    const auto resumed = run_imgpipe("-q " + args + " --set output.dir=" + out);
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    EXPECT_EQ(outputs(out), outputs(tmp.path() / "clean"));
  }
}

TEST(OutputDir, SecondCtrlCExitsAtOnce) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 6);
  const std::string out = tmp / "out";
  Child run = spawn(base_args(tmp.path() / "in") + " --set output.dir=" + out, "IMGPIPE_TEST_DELAY_MS=3000",
                    tmp / "log");
  ASSERT_TRUE(wait_for(out + "/manifest.json")) << run.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside the first image's 3 s
  kill(run.pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t = std::chrono::steady_clock::now();
  kill(run.pid, SIGINT);
  EXPECT_EQ(run.wait(), 130) << run.output();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(), 1.5);
  EXPECT_NE(run.output().find("SIGINT again: exiting at once"), std::string::npos) << run.output();
}

TEST(OutputDir, RunLevelMessagesAreRightForTheCase) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 0, 3);
  const std::string args = base_args(tmp.path() / "in") + " --set output.dir=" + (tmp / "out");
  auto r = run_imgpipe(args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("3 images in " + (tmp / "in") + " (1 shard of up to 4)"), std::string::npos) << r.output;
  r = run_imgpipe(args);  // all already done
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("nothing to do: all 3 images already in " + (tmp / "out")), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("0/0"), std::string::npos) << r.output;

  fs::create_directories(tmp.path() / "empty");
  r = run_imgpipe(base_args(tmp.path() / "empty") + " --set output.dir=" + (tmp / "out-empty"));
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string warning = "no images found in " + (tmp / "empty") + " (extensions: jpg, jpeg, png, bmp, tif, tiff, webp)";
  EXPECT_NE(r.output.find("imgpipe: warning: " + warning), std::string::npos) << r.output;
  EXPECT_EQ(load_json(tmp / "out-empty/report.json")["warnings"][0], warning);
}

// Exit 1 (a runtime I/O failure) keeps the shards already complete, and a rerun resumes to
// the files a clean run writes: here shard 1's index cannot be put in place, a directory
// having taken its name during the run.
TEST(OutputDir, AnIoFailureExitsOneKeepsCompletedShardsAndAResumeCompletes) {
  test::TempDir tmp;
  make_images(tmp / "in", 0, 8);  // two shards of 4
  const std::string args = base_args(tmp / "in") + " --set model.path= --set output.dir=";
  ASSERT_EQ(run_imgpipe(args + (tmp / "clean")).code, 0);
  Child c = spawn(args + (tmp / "out"), "IMGPIPE_TEST_DELAY_MS=250", tmp / "log");
  ASSERT_TRUE(wait_for(tmp / "out/index-00000.csv"));
  fs::create_directories(tmp / "out/index-00001.csv/blocker");
  EXPECT_EQ(c.wait(), 1) << c.output();
  EXPECT_NE(c.output().find("index-00001.csv"), std::string::npos) << c.output();
  EXPECT_TRUE(fs::exists(tmp / "out/tensors-00000.npy"));
  EXPECT_FALSE(has_partial(tmp / "out"));
  fs::remove_all(tmp / "out/index-00001.csv");
  const auto r = run_imgpipe(args + (tmp / "out"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("4 resumed"), std::string::npos) << r.output;
  for (const char* kind : {"tensors", "index"})
    EXPECT_EQ(outputs(tmp / "out", kind), outputs(tmp / "clean", kind)) << kind;
}
