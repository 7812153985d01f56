// The imgpipe binary end to end: exit codes, files, report counts, resume.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "cli_util.h"
#include "sinks.h"
#include "test_util.h"

using namespace imgpipe;
using namespace imgpipe::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void make_images(const fs::path& dir, int n, int w, int h) {
  fs::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "img%04d.jpg", i);
    cv::imwrite((dir / name).string(), test::random_image(w, h, unsigned(i)));
  }
}

}  // namespace

TEST(Cli, SampleJobWritesTensorsIndexAndReport) {
  test::TempDir out;
  const auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                         "/data/sample --set output.dir=" + out.path().string() + " --set progress=lines");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("corrupt_truncated.jpg"), std::string::npos) << r.output;

  const json report = load_json(out / "report.json");
  EXPECT_EQ(report["counts"]["inputs"], 7);
  EXPECT_EQ(report["counts"]["written"], 6);
  EXPECT_EQ(report["counts"]["skipped"], 1);
  EXPECT_NE(report["skipped"][0]["path"].get<std::string>().find("corrupt_truncated.jpg"), std::string::npos);
  EXPECT_NE(report["skipped"][0]["reason"].get<std::string>().find("corrupt JPEG"), std::string::npos);
  EXPECT_GT(report["memory"]["peak_rss_bytes"].get<int64_t>(), 0);

  // Shard 0: blue_stripes.bmp, corrupt_truncated.jpg (skipped), green_square.png, nested/black_disc.jpg
  const std::string index = test::read_file(out / "index-00000.csv");
  EXPECT_EQ(index.substr(0, 15), "row,path,error\n");
  EXPECT_NE(index.find("0," + kSource + "/data/sample/blue_stripes.bmp,\n"), std::string::npos) << index;
  EXPECT_NE(index.find(",corrupt JPEG"), std::string::npos) << index;
  EXPECT_NE(index.find("2," + kSource + "/data/sample/nested/black_disc.jpg,\n"), std::string::npos) << index;

  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(out / "tensors-00000.npy", descr, shape, offset));
  EXPECT_EQ(descr, "<f4");
  EXPECT_EQ(shape, (std::vector<int64_t>{3, 3, 56, 56}));
  // Row 0 is the blue image: in RGB order, the normalized blue plane is far above red.
  const std::string bytes = test::read_file(out / "tensors-00000.npy");
  const float* t = reinterpret_cast<const float*>(bytes.data() + offset);
  double red = 0, blue = 0;
  for (int i = 0; i < 56 * 56; ++i) red += t[i], blue += t[2 * 56 * 56 + i];
  EXPECT_GT(blue / (56 * 56), 1.0);
  EXPECT_LT(red / (56 * 56), -1.0);
  ASSERT_TRUE(read_npy_header(out / "tensors-00001.npy", descr, shape, offset));
  EXPECT_EQ(shape[0], 3);
  for (const auto& e : fs::directory_iterator(out.path())) EXPECT_NE(e.path().extension(), ".partial") << e.path();
}

TEST(Cli, NumpyLoadsTheTensors) {
  if (run_cmd("python3 -c 'import numpy'").code != 0) {
    if (env_or("IMGPIPE_REQUIRE_NUMPY", "0") == "1") FAIL() << "IMGPIPE_REQUIRE_NUMPY=1 but python3 has no numpy";
    GTEST_SKIP() << "python3 with numpy not available";
  }
  test::TempDir out;
  ASSERT_EQ(run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                    "/data/sample --set output.dir=" + out.path().string() + " --set preprocess.dtype=float16")
                .code,
            0);
  const auto r = run_cmd("python3 -c \"import numpy as n; a=n.load('" + (out / "tensors-00001.npy") +
                         "'); print(a.dtype, a.shape)\"");
  EXPECT_EQ(r.output, "float16 (3, 3, 56, 56)\n");
}

TEST(Cli, OnErrorFailStopsWithItsExitCode) {
  test::TempDir out;
  const auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                         "/data/sample --set output.dir=" + out.path().string() + " --set decode.on_error=fail");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("corrupt_truncated.jpg"), std::string::npos);
  EXPECT_EQ(r.output.find("warning: skipped"), std::string::npos) << r.output;  // it stops, not skips
  EXPECT_FALSE(fs::exists(out / "index-00000.csv"));  // the shard with the bad image is not complete
  for (const auto& e : fs::directory_iterator(out.path())) EXPECT_NE(e.path().extension(), ".partial") << e.path();
}

TEST(Cli, ConfigErrorsExitTwoBeforeAnyWork) {
  test::TempDir out;
  auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set batch.max=zero --set output.dir=" +
                   out.path().string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("'batch.max' (from --set): expected an integer"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_empty(out.path()));
  r = run_imgpipe("--config /nonexistent.yaml");
  EXPECT_EQ(r.code, 2);
  r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set input.path=/nonexistent --set output.dir=" +
              out.path().string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent"), std::string::npos);
  r = run_imgpipe("--bogus-flag");
  EXPECT_EQ(r.code, 2);
}

TEST(Cli, DryRunPrintsThePlanAndWritesNothing) {
  test::TempDir out;
  const auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --dry-run --set input.path=" + kSource +
                         "/data/sample --set output.dir=" + (out / "o"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("inputs: 7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shorter_side: 64"), std::string::npos) << r.output;
  // One batch in the plan, the one the run will use: 4, the most a shard holds here
  // (output.images_per_shard), not batch.max (64) nor the CPU's cap (32).
  EXPECT_NE(r.output.find("\nbatch: 4 (the memory plan's choice)\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("choice: {precision: fp32, batch: 4}"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("\nbatch: 64"), std::string::npos) << r.output;
  // Tensors only on the CPU: one image at a time, as the run and its report say.
  const auto t = run_imgpipe("--config " + kSource + "/configs/sample.yaml --dry-run --set model.path= --set device=cpu");
  EXPECT_NE(t.output.find("\nbatch: 1\n"), std::string::npos) << t.output;
  EXPECT_FALSE(fs::exists(out / "o"));
  EXPECT_NE(run_imgpipe("--version").output.find("imgpipe 0."), std::string::npos);
  EXPECT_EQ(run_imgpipe("--help").code, 0);
}

TEST(Cli, ResumeAfterKillGivesByteIdenticalOutputs) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 30, 48, 40);
  const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + (tmp / "in") +
                           " --set output.images_per_shard=7 --set output.mode=resume --set decode.threads=2";
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "clean")).code, 0);

  const auto killed = run_imgpipe(args + " --set output.dir=" + (tmp / "resumed"), "IMGPIPE_TEST_KILL_AFTER=17");
  EXPECT_EQ(killed.code, 128 + 9) << killed.output;
  EXPECT_TRUE(fs::exists(tmp / "resumed/index-00001.csv"));   // shards 0, 1 (inputs 0..13) done
  EXPECT_FALSE(fs::exists(tmp / "resumed/index-00002.csv"));  // shard 2 was half written
  EXPECT_FALSE(fs::exists(tmp / "resumed/report.json"));

  const auto resumed = run_imgpipe(args + " --set output.dir=" + (tmp / "resumed"));
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(load_json(tmp / "resumed/report.json")["session"]["resumed"], 14);
  EXPECT_EQ(load_json(tmp / "resumed/report.json")["session"]["written"], 16);
  EXPECT_EQ(outputs(tmp.path() / "clean"), outputs(tmp.path() / "resumed"));

  // A different preprocessing must not be mixed into the same folder.
  const auto changed = run_imgpipe(args + " --set output.dir=" + (tmp / "resumed") + " --set preprocess.normalize.scale=1");
  EXPECT_EQ(changed.code, 2);
  EXPECT_NE(changed.output.find("different configuration"), std::string::npos) << changed.output;
}

TEST(Cli, QueueStaysWithinTheHostBudget) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 120, 320, 240);
  // float32 224x224x3 = 602,112 bytes per queued image; 16 MiB holds 27 of them.
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + (tmp / "in") +
                         " --set output.dir=" + (tmp / "out") +
                         " --set preprocess.resize.shorter_side=256 --set preprocess.crop.center=224"
                         " --set memory.host_budget=16MiB --set output.tensors=false --set decode.threads=2 --set model.path=");
  ASSERT_EQ(r.code, 0) << r.output;
  const json report = load_json(tmp / "out/report.json");
  EXPECT_EQ(report["counts"]["written"], 120);
  const int64_t peak = report["memory"]["queue_peak_bytes"].get<int64_t>();
  EXPECT_LE(peak, (16 << 20) + 602112);
  // The queue counts the decode workers' tensors (and what they reserve before decoding):
  // at least one whole image.
  EXPECT_GE(peak, 602112);

  // The same with a writer slower than the decoders (3 ms per image), judged by resident
  // memory, not by the queue's own counter: the 120 tensors (69 MiB) must not pile up.
  auto peak_rss = [&](const std::string& in, const std::string& out, int images) {
    const auto rr = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + in +
                                    " --set output.dir=" + out +
                                    " --set preprocess.resize.shorter_side=256 --set preprocess.crop.center=224"
                                    " --set memory.host_budget=16MiB --set decode.threads=2 --set model.path=",
                                "IMGPIPE_TEST_DELAY_MS=3");
    EXPECT_EQ(rr.code, 0) << rr.output;
    const json rep = load_json(out + "/report.json");
    EXPECT_EQ(rep["counts"]["written"], images);
    return rep["memory"]["peak_rss_bytes"].get<int64_t>();
  };
  make_images(tmp.path() / "one", 1, 320, 240);
  const int64_t base = peak_rss(tmp / "one", tmp / "out-one", 1);
  const int64_t slow = peak_rss(tmp / "in", tmp / "out-slow", 120);
  EXPECT_LT(slow - base, int64_t(16 + 24) << 20) << "base " << base << ", peak " << slow;
}

TEST(Cli, DeviceCudaWithoutGpuIsAClearErrorAndAutoFallsBack) {
  if (kernels::probe_cuda().device_count > 0) GTEST_SKIP() << "a GPU is present: the fallback is not exercised";
  test::TempDir out;
  const std::string args = "--config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                           "/data/sample --set output.dir=" + out.path().string();
  const auto r = run_imgpipe(args + " --device cuda --set model.path=");  // with a model: the test below
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("no usable GPU"), std::string::npos) << r.output;
  ASSERT_EQ(run_imgpipe(args + " --device auto -q").code, 0);
  const json report = load_json(out / "report.json");
  EXPECT_EQ(report["device"], "cpu");
  EXPECT_NE(report["device_reason"].get<std::string>().find("no usable GPU"), std::string::npos);
}

// device: cuda with a model never runs the model on the CPU: a build that cannot run models on
// the GPU (built without nvcc, or without cuDNN) says what is missing, exit 2, before any work.
TEST(Cli, DeviceCudaWithAModelNeverRunsItOnTheCpu) {
#if defined(IMGPIPE_TEST_CUDA_INFERENCE)
  if (kernels::probe_cuda().device_count > 0) GTEST_SKIP() << "a GPU and the CUDA inference backend: the model runs there";
  const std::vector<std::string> expected = {"no usable GPU"};
#elif defined(IMGPIPE_HAVE_CUDA)
  const std::vector<std::string> expected = {"built without cuDNN", "libcudnn9-dev-cuda-12"};
#else
  const std::vector<std::string> expected = {"built without CUDA (no nvcc"};
#endif
  test::TempDir out;
  const auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set output.dir=" + out.path().string() + " --device cuda");
  EXPECT_EQ(r.code, 2) << r.output;
  for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << e << " in " << r.output;
  EXPECT_TRUE(fs::is_empty(out.path()));
}

TEST(Cli, SampleModelNamesTheDominantColour) {
  test::TempDir out;
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set model.path=" + kSource + "/data/sample/model.onnx --set model.labels=" +
                             kSource + "/data/sample/labels.txt --set output.dir=" + out.path().string());
  ASSERT_EQ(r.code, 0) << r.output;
  std::istringstream csv(test::read_file(out / "predictions.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "path,label_1,score_1,label_2,score_2");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    // data/sample/<colour>_<shape>.<ext>: the first label is the colour in the name.
    const std::string name = fs::path(line.substr(0, line.find(','))).filename().string();
    const std::string colour = name.substr(0, name.find('_'));
    const std::string label = line.substr(line.find(',') + 1, colour.size() + 1);
    EXPECT_EQ(label, colour + ",") << line;
    EXPECT_GT(std::stod(line.substr(line.find(',', line.find(',') + 1) + 1)), 0.9) << line;
  }
  EXPECT_EQ(rows, 6);
  const json report = load_json(out / "report.json");
  EXPECT_EQ(report["model"]["output_size"], 6);
  EXPECT_EQ(report["model"]["precision"], "fp32");
  EXPECT_EQ(report["model"]["governor"]["events"][0]["kind"], "plan");
}

TEST(Cli, GovernorShrinksUnderInjectedFailuresWithIdenticalOutputs) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 24, 40, 30);
  const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + (tmp / "in") +
                           " --set model.path=" + kSource + "/data/sample/model.onnx --set model.labels=" + kSource +
                           "/data/sample/labels.txt --set batch.max=4 --set output.images_per_shard=10"
                           " --set output.predictions=jsonl --set model.output=logits";
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "clean")).code, 0);
  const auto r = run_imgpipe(args + " --set output.dir=" + (tmp / "pressed"), "IMGPIPE_FAULT_INJECT='fail_batch=2,5'");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(outputs(tmp.path() / "clean"), outputs(tmp.path() / "pressed"));
  const json gov = load_json(tmp / "pressed/report.json")["model"]["governor"];
  EXPECT_EQ(gov["shrinks"], 2);
  EXPECT_EQ(gov["images_retried"], 4 + 2);  // batch 2 had 4 images; batch 5 (now of 2) had 2
  EXPECT_EQ(gov["events"][1]["batch_before"], 4);
  EXPECT_EQ(gov["events"][1]["batch_after"], 2);
  EXPECT_TRUE(fs::exists(tmp / "pressed/outputs-00002.npy"));
  EXPECT_TRUE(fs::exists(tmp / "pressed/predictions.jsonl"));
}

TEST(Cli, OutOfMemoryStopKeepsCompletedShardsAndResumesExactly) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 24, 40, 30);
  const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + (tmp / "in") +
                           " --set model.path=" + kSource + "/data/sample/model.onnx --set model.labels=" + kSource +
                           "/data/sample/labels.txt --set batch.max=4 --set output.images_per_shard=8";
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "clean")).code, 0);
  // From batch 5 (the first of shard 2) the budget is too small for anything.
  const auto stopped = run_imgpipe(args + " --set output.dir=" + (tmp / "resumed"), "IMGPIPE_FAULT_INJECT=budget_at=5:1KiB");
  EXPECT_EQ(stopped.code, 4) << stopped.output;
  EXPECT_NE(stopped.output.find("batch 1 at fp16 needs"), std::string::npos) << stopped.output;
  EXPECT_TRUE(fs::exists(tmp / "resumed/predictions-00001.csv"));
  EXPECT_FALSE(fs::exists(tmp / "resumed/index-00002.csv"));
  EXPECT_FALSE(fs::exists(tmp / "resumed/predictions.csv"));
  const auto resumed = run_imgpipe(args + " --set output.dir=" + (tmp / "resumed"));
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(outputs(tmp.path() / "clean"), outputs(tmp.path() / "resumed"));
}

TEST(Cli, ModelThatDoesNotMatchThePreprocessingIsAConfigError) {
  test::TempDir out;
  const auto r = run_imgpipe("--config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set preprocess.crop.center=64 --set output.dir=" + out.path().string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("takes 3x56x56"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_empty(out.path()));
}

namespace {

// The sample config on `in`, tensors only, into `out`.
std::string job(const std::string& in, const std::string& out) {
  return "-q --config " + kSource + "/configs/sample.yaml --set model.path= --set input.path=" + in +
         " --set output.dir=" + out;
}

/// Peak resident memory of a tensors-only job over `in` (`images` written), from its report.
int64_t peak_rss(const std::string& in, const std::string& out, const std::string& args, int images) {
  const auto r = run_imgpipe(job(in, out) + args);
  EXPECT_EQ(r.code, 0) << r.output;
  const json report = load_json(out + "/report.json");
  EXPECT_EQ(report["counts"]["written"], images);
  return report["memory"]["peak_rss_bytes"].get<int64_t>();
}

}  // namespace

TEST(Cli, OneBadJpegHeaderLosesNoGoodImage) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 1000, 32, 24);
  // Sorted first, so every good file comes after it on the same decode thread.
  std::vector<uchar> jpg;
  cv::imencode(".jpg", test::random_image(32, 24, 3), jpg);
  std::string bad(jpg.begin(), jpg.end());
  const size_t sof = bad.find("\xFF\xC0");
  bad[sof + 2] = bad[sof + 3] = 0;  // SOF length 0: "Bogus marker length"
  test::write_file(tmp / "in/000_bad.jpg", bad);
  for (const char* threads : {"1", "2"}) {
    const std::string out = tmp / ("out" + std::string(threads));
    const auto r = run_imgpipe(job(tmp / "in", out) + " --set decode.threads=" + threads);
    ASSERT_EQ(r.code, 0) << r.output;
    const json report = load_json(out + "/report.json");
    EXPECT_EQ(report["counts"]["written"], 1000) << threads << " thread(s)";
    ASSERT_EQ(report["counts"]["skipped"], 1) << threads << " thread(s)";
    EXPECT_EQ(report["skipped"][0]["path"], tmp / "in/000_bad.jpg");
    EXPECT_NE(report["skipped"][0]["reason"].get<std::string>().find("Bogus marker length"), std::string::npos);
  }
}

TEST(Cli, HugeAndUnsupportedFilesAreSkippedWithOneCleanLineEach) {
  test::TempDir tmp;
  fs::create_directories(tmp.path() / "in");
  cv::imwrite(tmp / "in/good.png", test::random_image(64, 48, 1));
  { std::ofstream f(tmp / "in/huge.png"); }
  fs::resize_file(tmp / "in/huge.png", uintmax_t(100) << 30);  // 100 GiB, sparse
  const std::string png = test::read_file(tmp / "in/good.png");
  test::write_file(tmp / "in/truncated.png", png.substr(0, png.size() / 2));
  test::write_file(tmp / "in/anim.png", std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00;", 13));
  const std::string out = tmp / "out";
  const auto r = run_imgpipe(job(tmp / "in", out) + " --set decode.threads=1");
  ASSERT_EQ(r.code, 0) << r.output;
  const json report = load_json(out + "/report.json");
  EXPECT_EQ(report["counts"]["written"], 1);
  std::map<std::string, std::string> reasons;
  for (const auto& s : report["skipped"]) reasons[fs::path(s["path"].get<std::string>()).filename()] = s["reason"];
  EXPECT_EQ(reasons["huge.png"], "file too large (107374182400 bytes, limit 268435456; raise decode.max_file_bytes)");
  EXPECT_EQ(reasons["anim.png"], "unsupported format: GIF (convert its first frame to PNG, e.g. ImageMagick: convert 'in.gif[0]' out.png)");
  EXPECT_EQ(reasons["truncated.png"], "not a decodable image (corrupt, truncated or unsupported format)");
  // stderr holds imgpipe's own lines only: no libpng or OpenCV text, no reason split over lines.
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) EXPECT_EQ(line.rfind("imgpipe: ", 0), 0u) << line;
  EXPECT_NE(test::read_file(out + "/index-00000.csv").find("huge.png,\"file too large ("), std::string::npos);
}

// A multi-page TIFF gives its first page, and the log says so once per run, not per file.
TEST(Cli, MultiPageTiffUsesPageOneAndSaysSoOncePerRun) {
  test::TempDir tmp;
  fs::create_directories(tmp.path() / "in");
  const cv::Mat one = test::random_image(64, 48, 1), two = test::random_image(64, 48, 2);
  ASSERT_TRUE(cv::imwritemulti(tmp / "in/a.tif", std::vector<cv::Mat>{one, two}));
  ASSERT_TRUE(cv::imwritemulti(tmp / "in/b.tif", std::vector<cv::Mat>{two, one}));
  cv::imwrite(tmp / "in/c.png", one);
  const std::string out = tmp / "out";
  const auto r = run_imgpipe(job(tmp / "in", out).substr(3) + " --set decode.threads=1 --set progress=off");
  ASSERT_EQ(r.code, 0) << r.output;
  size_t said = 0;
  for (size_t at = 0; (at = r.output.find("multi-page TIFF", at)) != std::string::npos; ++at) ++said;
  EXPECT_EQ(said, 1u) << r.output;
  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(out + "/tensors-00000.npy", descr, shape, offset));
  ASSERT_EQ(shape, (std::vector<int64_t>{3, 3, 56, 56}));
  const std::string bytes = test::read_file(out + "/tensors-00000.npy");
  const size_t n = 3 * 56 * 56 * sizeof(float);
  auto row = [&](int i) { return bytes.substr(offset + i * n, n); };
  EXPECT_EQ(row(0), row(2));  // a.tif's page 1 is c.png
  EXPECT_NE(row(1), row(2));  // b.tif's page 1 is the other picture
}

// The decode keys that change the pixels are part of what a resume must match: a folder
// written upright is not completed with images as stored, nor DCT-scaled with full-size.
TEST(Cli, ResumeRefusesAnotherOrientationOrJpegScaling) {
  test::TempDir tmp;
  make_images(tmp.path() / "in", 3, 32, 24);
  const std::string out = tmp / "out";
  ASSERT_EQ(run_imgpipe(job(tmp / "in", out)).code, 0);
  for (const char* key : {"decode.exif_orientation=true", "decode.jpeg_downscale=true"}) {
    const auto r = run_imgpipe(job(tmp / "in", out) + " --set output.mode=resume --set " + key);
    EXPECT_EQ(r.code, 2) << key << "\n" << r.output;
  }
  EXPECT_EQ(run_imgpipe(job(tmp / "in", out) + " --set output.mode=resume --set decode.threads=1").code, 0);
}

TEST(Cli, DecodedImagesCountAgainstTheHostBudgetBeforeDecoding) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan freed memory waits in its quarantine: resident memory is not the program's";
#endif
  test::TempDir tmp;
  fs::create_directories(tmp.path() / "in");
  fs::create_directories(tmp.path() / "one");
  // 16 BMPs of 1600x1600: 7.3 MiB on disk and 7.3 MiB decoded each; 8 decode threads. Were
  // each thread to read and decode before asking the budget, 8 of them would be held at once.
  const cv::Mat img = test::random_image(1600, 1600, 5);
  for (int i = 0; i < 16; ++i) cv::imwrite(tmp / ("in/" + std::to_string(100 + i) + ".bmp"), img);
  cv::imwrite(tmp / "one/small.bmp", test::random_image(16, 16, 5));
  const std::string args = " --set decode.threads=8 --set memory.host_budget=16MiB";
  const int64_t base = peak_rss(tmp / "one", tmp / "out1", args, 1);  // the process itself
  const int64_t peak = peak_rss(tmp / "in", tmp / "out", args, 16);
  // At most the budget, plus the one image let in over it (the one the writer waits for:
  // 14.6 MiB of file and pixels), plus slack for the resize buffers.
  EXPECT_LT(peak - base, int64_t(16 + 15 + 8) << 20) << "base " << base << ", peak " << peak;
}

// Four shards of predictions merged into predictions.csv in the order of the input listing
// (sorted paths, the corrupt file skipped), not in the order the shards happen to be read.
TEST(Cli, MergedPredictionsFollowTheInputListingAcrossShards) {
  test::TempDir out;
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set output.images_per_shard=2 --set output.dir=" + out.path().string());
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_TRUE(fs::exists(out / "predictions-00003.csv"));
  std::istringstream csv(test::read_file(out / "predictions.csv"));
  std::vector<std::string> paths;
  std::string line;
  std::getline(csv, line);  // header
  while (std::getline(csv, line)) paths.push_back(line.substr(0, line.find(',')));
  const std::string d = kSource + "/data/sample/";
  EXPECT_EQ(paths, (std::vector<std::string>{d + "blue_stripes.bmp", d + "green_square.png", d + "nested/black_disc.jpg",
                                             d + "red_disc.jpg", d + "white_square.webp", d + "yellow_disc.tiff"}));
}

// NHWC tensors: the .npy header says (rows, height, width, channels), here with width != height,
// as numpy reads it where numpy is installed (required with IMGPIPE_REQUIRE_NUMPY=1).
TEST(Cli, NhwcTensorsHaveRowsHeightWidthChannels) {
  test::TempDir out;
  ASSERT_EQ(run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                        "/data/sample --set model.path= --set preprocess.layout=nhwc --set preprocess.crop.center=[40,56]" +
                        " --set output.dir=" + out.path().string())
                .code,
            0);
  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(out / "tensors-00001.npy", descr, shape, offset));
  EXPECT_EQ(shape, (std::vector<int64_t>{3, 56, 40, 3}));
  if (run_cmd("python3 -c 'import numpy'").code != 0) {
    if (env_or("IMGPIPE_REQUIRE_NUMPY", "0") == "1") FAIL() << "IMGPIPE_REQUIRE_NUMPY=1 but python3 has no numpy";
    GTEST_SKIP() << "python3 with numpy not available";
  }
  const auto r = run_cmd("python3 -c \"import numpy as n; print(n.load('" + (out / "tensors-00001.npy") + "').shape)\"");
  EXPECT_EQ(r.output, "(3, 56, 40, 3)\n");
}

// README: --quiet drops progress and the summary, never warnings.
TEST(Cli, QuietStillPrintsWarnings) {
  test::TempDir out;
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set model.path= --set output.dir=" + out.path().string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: skipped " + kSource + "/data/sample/corrupt_truncated.jpg: corrupt JPEG"),
            std::string::npos)
      << r.output;
}

// README: a labels file whose length differs from the model's outputs stops before any work.
TEST(Cli, LabelsOfTheWrongLengthAreAConfigError) {
  test::TempDir out;
  test::write_file(out / "labels.txt", "red\ngreen\nblue\n");
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                             "/data/sample --set model.path=" + kSource + "/data/sample/model.onnx --set model.labels=" +
                             (out / "labels.txt") + " --set output.dir=" + (out / "o"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("'model.labels'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("has 3 labels but the model has 6 outputs"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "o/predictions.csv"));
}

// README: JSONL predictions are JSON per line, with quotes and backslashes in paths escaped.
TEST(Cli, JsonlEscapesQuotesAndBackslashesInPaths) {
  test::TempDir tmp;
  fs::create_directories(tmp / "in");
  const std::string name = tmp / "in/a \"quoted\"\\back.jpg";
  fs::copy_file(kSource + "/data/sample/red_disc.jpg", name);
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + (tmp / "in") +
                             " --set output.predictions=jsonl --set output.dir=" + (tmp / "out"));
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string text = test::read_file(tmp / "out/predictions.jsonl");
  EXPECT_NE(text.find("a \\\"quoted\\\"\\\\back.jpg\""), std::string::npos) << text;
  const json line = json::parse(text.substr(0, text.find('\n')));
  EXPECT_EQ(line["path"], name);
  EXPECT_EQ(line["top"][0]["label"], "red");
}

// README: on the CPU the automatic batch is capped at 32 (batch.max 64 in the sample config),
// and never above what a batch can hold: the inputs, a shard.
TEST(Cli, CpuCapsTheAutomaticBatchAt32) {
  test::TempDir tmp;
  make_images(tmp / "in", 40, 32, 24);
  const std::string args = "--config " + kSource + "/configs/sample.yaml --set device=cpu --set progress=off";
  auto first_batch = [&](const std::string& more, const std::string& out) {
    const auto r = run_imgpipe(args + more + " --set output.dir=" + (tmp / out));
    EXPECT_EQ(r.code, 0) << r.output;
    const json report = load_json(tmp / out + "/report.json");
    return std::make_pair(r.output, report["model"]["governor"]["events"][0]["batch_after"].get<int>());
  };
  const auto [log, batch] = first_batch(" --set output.images_per_shard=100 --set input.path=" + (tmp / "in"), "a");
  EXPECT_NE(log.find("the automatic batch is capped at 32"), std::string::npos) << log;
  EXPECT_EQ(batch, 32);
  const auto [log7, batch7] = first_batch(" --set output.images_per_shard=100 --set input.path=" + kSource + "/data/sample", "b");
  EXPECT_EQ(batch7, 7) << log7;  // 7 inputs
  EXPECT_NE(log7.find("no batch holds more than 7 images"), std::string::npos) << log7;
  EXPECT_EQ(first_batch(" --set output.images_per_shard=10 --set input.path=" + (tmp / "in"), "c").second, 10);
}

// README: model.output embedding writes the graph's raw output to outputs-*.npy; the
// predictions' scores are its softmax (computed here), applied once.
namespace {

// Runs `model` on the sample images twice, for its raw output (model.output: embedding) and
// for predictions, and checks that the CSV's two best scores are softmax(raw) computed here:
// exactly one softmax, whether or not the graph already ends in one.
void expect_scores_are_softmax_of(const std::string& model, bool graph_ends_in_softmax) {
  test::TempDir tmp;
  const std::string args = "-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                           "/data/sample --set model.path=" + model;
  ASSERT_EQ(run_imgpipe(args + " --set model.output=embedding --set output.dir=" + (tmp / "emb")).code, 0);
  ASSERT_EQ(run_imgpipe(args + " --set output.dir=" + (tmp / "prob")).code, 0);
  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(tmp / "emb/outputs-00000.npy", descr, shape, offset));
  ASSERT_EQ(shape, (std::vector<int64_t>{3, 6}));
  const std::string bytes = test::read_file(tmp / "emb/outputs-00000.npy");
  const float* emb = reinterpret_cast<const float*>(bytes.data() + offset);
  std::istringstream csv(test::read_file(tmp / "prob/predictions-00000.csv"));
  std::string line;
  std::getline(csv, line);  // path,label_1,score_1,label_2,score_2
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(std::getline(csv, line));
    std::vector<std::string> f;
    for (std::istringstream ls(line); std::getline(ls, f.emplace_back(), ',');) {}
    std::vector<double> p(emb + r * 6, emb + r * 6 + 6);
    if (graph_ends_in_softmax) {
      EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 1.0, 1e-5) << "raw output of a Softmax graph";
    } else {
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v));
      for (double& v : p) v /= sum;
    }
    std::sort(p.rbegin(), p.rend());
    EXPECT_GT(p[0], 0.5) << "a clear winner, so a second softmax would show";
    EXPECT_NEAR(std::stod(f[2]), p[0], 1e-5) << line;
    EXPECT_NEAR(std::stod(f[4]), p[1], 1e-5) << line;
  }
}

}  // namespace

TEST(Cli, PredictedScoresAreTheSoftmaxOfTheEmbedding) {
  expect_scores_are_softmax_of(kSource + "/data/sample/model.onnx", false);
}

// A graph that ends in Softmax already gives probabilities: the scores are its own output,
// never softmax(softmax(logits)) (flat, about 1/6 each here).
TEST(Cli, AGraphEndingInSoftmaxIsNotSoftmaxedTwice) {
  onnx::ModelProto m;
  {
    std::ifstream in(kSource + "/data/sample/model.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&in));
  }
  auto* g = m.mutable_graph();
  const std::string logits = g->output(0).name();
  g->mutable_output(0)->set_name("probabilities");
  auto* sm = g->add_node();
  sm->set_op_type("Softmax");
  sm->add_input(logits);
  sm->add_output("probabilities");
  auto* axis = sm->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(-1);
  test::TempDir tmp;
  const std::string path = tmp / "softmax.onnx";
  {
    std::ofstream out(path, std::ios::binary);
    ASSERT_TRUE(m.SerializeToOstream(&out));
  }
  expect_scores_are_softmax_of(path, true);
}

// By default a JPEG is decoded at full size, so its tensor is the one of its fully decoded
// pixels (here the same pixels saved losslessly as PNG), as with PIL. decode.jpeg_downscale
// is the faster choice that decodes in the DCT domain and no longer matches.
TEST(Cli, JpegDownscaleIsAChoiceAndOffByDefault) {
  test::TempDir tmp;
  fs::create_directories(tmp / "jpg");
  fs::create_directories(tmp / "png");
  cv::imwrite(tmp / "jpg/photo.jpg", test::random_image(1200, 900, 7), {cv::IMWRITE_JPEG_QUALITY, 92});
  cv::imwrite(tmp / "png/photo.png", cv::imread(tmp / "jpg/photo.jpg", cv::IMREAD_COLOR));
  auto tensor = [&](const std::string& in, const std::string& out, const std::string& extra) {
    const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set model.path= --set input.path=" + in +
                               " --set output.dir=" + out +
                               " --set preprocess.resize.shorter_side=256 --set preprocess.crop.center=224" + extra);
    EXPECT_EQ(r.code, 0) << r.output;
    std::string descr;
    std::vector<int64_t> shape;
    size_t offset = 0;
    EXPECT_TRUE(read_npy_header(out + "/tensors-00000.npy", descr, shape, offset));
    EXPECT_EQ(shape, (std::vector<int64_t>{1, 3, 224, 224}));
    const std::string bytes = test::read_file(out + "/tensors-00000.npy");
    const float* f = reinterpret_cast<const float*>(bytes.data() + offset);
    return std::vector<float>(f, f + 3 * 224 * 224);
  };
  const auto reference = tensor(tmp / "png", tmp / "out-png", "");
  auto max_diff = [&](const std::vector<float>& t) {
    float m = 0;
    for (size_t i = 0; i < t.size(); ++i) m = std::max(m, std::abs(t[i] - reference[i]));
    return m;
  };
  EXPECT_LT(max_diff(tensor(tmp / "jpg", tmp / "out-default", "")), 1e-6f);
  EXPECT_GT(max_diff(tensor(tmp / "jpg", tmp / "out-fast", " --set decode.jpeg_downscale=true")), 0.02f);
}

// Peak resident memory is the process, the host budget and one image, "whatever the number
// of images": 2,000 images peak within a few MiB of 100 (the index and report grow by bytes
// per image, not by images held).
TEST(Cli, PeakMemoryDoesNotGrowWithTheImageCount) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan freed memory waits in its quarantine: resident memory is not the program's";
#endif
  test::TempDir tmp;
  fs::create_directories(tmp / "few");
  fs::create_directories(tmp / "many");
  make_images(tmp / "few", 100, 640, 480);
  for (int i = 0; i < 2000; ++i) {  // the same 100 files under 2,000 names
    char name[32];
    std::snprintf(name, sizeof name, "img%04d.jpg", i % 100);
    fs::create_hard_link(fs::path(tmp / "few") / name, fs::path(tmp / "many") / ("x" + std::to_string(10000 + i) + ".jpg"));
  }
  const std::string args = " --set memory.host_budget=16MiB --set decode.threads=2 --set output.images_per_shard=500";
  const int64_t few = peak_rss(tmp / "few", tmp / "out-few", args, 100);
  const int64_t many = peak_rss(tmp / "many", tmp / "out-many", args, 2000);
  // 8 MiB: heap slack varies with how the decode threads interleave (4.3 MB was seen once on
  // a loaded machine); keeping one 640x480 image in 100 would already add 17 MB.
  EXPECT_LT(many - few, int64_t(8) << 20) << "100 images: " << few << " bytes, 2,000: " << many;
  EXPECT_LT(many, int64_t(55 + 16 + 40) << 20) << "the process, the budget and slack";
}

// Without a terminal (a Colab `!` cell, a log file) progress is one line every 5 seconds:
// 30 images at 0.2 s each take 6 s, so exactly one line, printed at 5 s (about 25 done).
TEST(Cli, ProgressPrintsOneLineEveryFiveSecondsWithoutATerminal) {
  test::TempDir tmp;
  make_images(tmp / "in", 30, 64, 48);
  const std::string args = "--config " + kSource + "/configs/sample.yaml --set model.path= --set input.path=" +
                           (tmp / "in") + " --set output.dir=" + (tmp / "out");
  const auto r = run_imgpipe(args, "IMGPIPE_TEST_DELAY_MS=200");
  ASSERT_EQ(r.code, 0) << r.output;
  std::vector<size_t> counts;  // images done in each intermediate line
  std::istringstream lines(r.output);
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("progress: ", 0) == 0 && l.find(" ETA ") != std::string::npos) counts.push_back(std::stoul(l.substr(10)));
  ASSERT_GE(counts.size(), 1u) << r.output;
  EXPECT_LE(counts.size(), 2u) << "a loaded machine may take past 10 s; never one line per image\n" << r.output;
  EXPECT_GE(counts[0], 15u) << r.output;  // not before 5 s: 25 images by then, less if slow to start
  EXPECT_LE(counts[0], 26u) << r.output;
  EXPECT_NE(r.output.find("progress: 30/30 images, 0 skipped"), std::string::npos) << r.output;
}

// cuBLAS costs over 200 MB resident: a run on the CPU, model included, never loads it (the
// dynamic loader's own record of every file it maps says so; libdnnl (oneDNN), which it needs,
// shows the record works).
TEST(Cli, CpuRunsNeverLoadCublas) {
  test::TempDir tmp;
  fs::create_directories(tmp / "ld");
  const auto r = run_imgpipe("-q --config " + kSource + "/configs/sample.yaml --set input.path=" + kSource +
                                 "/data/sample --set device=cpu --set output.dir=" + (tmp / "out"),
                             "LD_DEBUG=files LD_DEBUG_OUTPUT=" + (tmp / "ld/trace"));
  ASSERT_EQ(r.code, 0) << r.output;
  std::string trace;
  for (const auto& e : fs::directory_iterator(tmp / "ld")) trace += test::read_file(e.path().string());
  EXPECT_NE(trace.find("libdnnl"), std::string::npos) << "the loader's trace is empty: " << trace.size();
  EXPECT_EQ(trace.find("libcublas"), std::string::npos);
}

#if defined(IMGPIPE_TEST_GPU_SUITE)
// IMGPIPE_REQUIRE_GPU=1 (a GPU machine's CI) turns the GPU suites' skips into failures, so a
// machine whose GPU is not seen cannot pass them by skipping.
TEST(Cli, RequireGpuTurnsTheGpuSuitesSkipsIntoFailures) {
  if (kernels::probe_cuda().device_count > 0) GTEST_SKIP() << "a GPU is here: nothing would skip";
  const std::string suite = std::string(IMGPIPE_TEST_GPU_SUITE) + " --gtest_brief=1";
  const auto skipped = test::run_cmd(suite);
  EXPECT_EQ(skipped.code, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("SKIPPED"), std::string::npos) << skipped.output;
  const auto required = test::run_cmd("IMGPIPE_REQUIRE_GPU=1 " + suite);
  EXPECT_NE(required.code, 0) << required.output;
  EXPECT_NE(required.output.find("IMGPIPE_REQUIRE_GPU=1"), std::string::npos) << required.output;
}
#endif
