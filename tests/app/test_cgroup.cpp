// A scheduler's memory limit is the limit: ResNet-50 (its shapes, seeded weights) on the
// CPU inside a real 450 MiB memory cgroup, as Slurm --mem or a Kubernetes limit gives a task.
// Needs root and a writable cgroup (v1 or v2); skips with the reason elsewhere.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cli_util.h"
#include "model_builder.h"
#include "test_util.h"

using namespace imgpipe;
using namespace imgpipe::infer::test;
namespace fs = std::filesystem;
using S = std::vector<int64_t>;

namespace {

std::string conv_bn(ModelBuilder& b, const std::string& in, const std::string& name, int64_t cin, int64_t cout,
                    int64_t k, int64_t stride, bool relu) {
  const float a = 1.f / std::sqrt(float(cin * k * k));  // keeps activations in range through 50 layers
  auto& c = b.node("Conv", {in, b.random(name + ".w", {cout, cin, k, k}, -a, a)}, {name + ".c"});
  attr(c, "kernel_shape", S{k, k});
  attr(c, "strides", S{stride, stride});
  attr(c, "pads", S{k / 2, k / 2, k / 2, k / 2});
  b.node("BatchNormalization", {name + ".c", b.random(name + ".g", {cout}, 0.5f, 1.f), b.random(name + ".be", {cout}),
                                b.random(name + ".mu", {cout}, -0.1f, 0.1f), b.random(name + ".var", {cout}, 0.5f, 2.f)},
         {name + ".bn"});
  if (!relu) return name + ".bn";
  b.node("Relu", {name + ".bn"}, {name + ".r"});
  return name + ".r";
}

/// torchvision's ResNet-50: 25.6 M parameters (102 MB in fp32), 224x224 in, 1000 out.
ModelBuilder resnet50() {
  ModelBuilder b(13);
  b.input("images", {-1, 3, 224, 224}).output("logits");
  std::string x = conv_bn(b, "images", "stem", 3, 64, 7, 2, true);
  auto& mp = b.node("MaxPool", {x}, {"pool"});
  attr(mp, "kernel_shape", S{3, 3});
  attr(mp, "strides", S{2, 2});
  attr(mp, "pads", S{1, 1, 1, 1});
  x = "pool";
  int64_t cin = 64;
  const int blocks[4] = {3, 4, 6, 3};
  for (int layer = 0; layer < 4; ++layer) {
    const int64_t width = 64 << layer, cout = width * 4;
    for (int i = 0; i < blocks[layer]; ++i) {
      const std::string n = "l" + std::to_string(layer) + "." + std::to_string(i);
      const int64_t stride = layer > 0 && i == 0 ? 2 : 1;
      std::string y = conv_bn(b, x, n + ".a", cin, width, 1, 1, true);
      y = conv_bn(b, y, n + ".b", width, width, 3, stride, true);
      y = conv_bn(b, y, n + ".c", width, cout, 1, 1, false);
      const std::string shortcut = i == 0 ? conv_bn(b, x, n + ".p", cin, cout, 1, stride, false) : x;
      b.node("Add", {y, shortcut}, {n + ".add"});
      b.node("Relu", {n + ".add"}, {n + ".out"});
      x = n + ".out";
      cin = cout;
    }
  }
  b.node("GlobalAveragePool", {x}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  attr(b.node("Gemm", {"flat", b.random("fc.w", {1000, 2048}, -0.02f, 0.02f), b.random("fc.b", {1000})}, {"logits"}),
       "transB", int64_t{1});
  return b;
}

/// A fresh memory cgroup with a limit, removed on destruction; `error` says why there is none.
struct MemoryCgroup {
  fs::path dir;
  std::string kind, error;
  explicit MemoryCgroup(int64_t limit) {
    if (::geteuid() != 0) {
      error = "not root: creating a memory cgroup needs root";
      return;
    }
    const std::string name = "imgpipe-test-" + std::to_string(::getpid());
    std::string file;
    if (fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
      dir = fs::path("/sys/fs/cgroup/memory") / name, kind = "v1", file = "memory.limit_in_bytes";
    } else if (test::read_file("/sys/fs/cgroup/cgroup.subtree_control").find("memory") != std::string::npos) {
      dir = fs::path("/sys/fs/cgroup") / name, kind = "v2", file = "memory.max";
    } else {
      error = "no writable memory cgroup (neither v1's memory controller nor v2's memory in subtree_control)";
      return;
    }
    std::error_code ec;
    if (!fs::create_directory(dir, ec)) {
      error = "cannot create " + dir.string() + ": " + (ec ? ec.message() : "exists");
      dir.clear();
      return;
    }
    std::ofstream(dir / file) << limit;
    if (std::to_string(limit) != test::read_file((dir / file).string()).substr(0, std::to_string(limit).size()))
      error = "cannot set " + (dir / file).string();
  }
  ~MemoryCgroup() {
    std::error_code ec;
    if (!dir.empty()) fs::remove(dir, ec);  // empty by then: the process in it has exited
  }
};

TEST(Cgroup, ResNet50OnTheCpuIn450MiBCompletesEveryImage) {
  MemoryCgroup cg(450LL << 20);
  if (!cg.error.empty()) GTEST_SKIP() << cg.error;
  test::TempDir tmp;
  resnet50().save(tmp / "resnet50.onnx");
  const int n = 40;  // more than one automatic CPU batch (32)
  fs::create_directories(tmp.path() / "images");
  for (int i = 0; i < n; ++i)
    cv::imwrite(tmp / ("images/img" + std::to_string(100 + i) + ".jpg"), test::random_image(320, 240, unsigned(i)));
  test::write_file(tmp / "c.yaml", "input: {path: " + (tmp / "images") + "}\nmodel: {path: " + (tmp / "resnet50.onnx") +
                                       ", output: logits}\ndevice: cpu\noutput: {dir: " + (tmp / "out") + "}\n");
  // 97: the shell could not move itself into the cgroup (e.g. v2's no-internal-process rule).
  const auto r = test::run_cmd("sh -c 'echo $$ > " + (cg.dir / "cgroup.procs").string() + " || exit 97; exec " +
                               test::kBinary + " --config " + (tmp / "c.yaml") + "'");
  if (r.code == 97) GTEST_SKIP() << "cannot move a process into " << cg.dir << ": " << r.output;
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("host memory: cgroup " + cg.kind), std::string::npos) << r.output;
  const auto report = nlohmann::json::parse(test::read_file(tmp / "out/report.json"));
  EXPECT_EQ(report["counts"]["written"], n) << r.output;
  EXPECT_EQ(report["counts"]["skipped"], 0);
}

// The plan is the truth: a run's peak resident memory is the model's plan (its weights, read
// in place, plus the largest batch's arena and workspace) plus the host budget plus a
// constant for the process itself (libraries, threads, the decoders' buffers), README's
// "Memory" section: 128 MiB (44-55 MiB of it the process before any work, more on newer
// distributions; the rest the OpenMP team's and oneDNN's per-thread state, its JIT-generated
// kernels and the decoders'). Debian 13 used up to 113 MiB of it. Before, the parsed protobuf and a second copy of the weights
// came on top (ResNet-50: about 145 MiB more).
TEST(Memory, PeakResidentMemoryIsThePlanPlusTheHostBudgetPlusAConstant) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan freed memory waits in its quarantine: resident memory is not the program's";
#endif
  test::TempDir tmp;
  resnet50().save(tmp / "resnet50.onnx");
  fs::create_directories(tmp.path() / "images");
  for (int i = 0; i < 24; ++i)
    cv::imwrite(tmp / ("images/img" + std::to_string(100 + i) + ".jpg"), test::random_image(320, 240, unsigned(i)));
  for (const char* precision : {"fp32", "fp16"})
    for (int batch : {1, 8}) {
      const std::string out = tmp / ("out-" + std::string(precision) + std::to_string(batch));
      test::write_file(tmp / "c.yaml", "input: {path: " + (tmp / "images") + "}\nmodel: {path: " + (tmp / "resnet50.onnx") +
                                           ", output: logits}\ndevice: cpu\nprecision: " + precision +
                                           "\nbatch: {size: " + std::to_string(batch) +
                                           "}\nmemory: {host_budget: 16MiB}\noutput: {dir: " + out + "}\n");
      const auto r = test::run_cmd(test::kBinary + " -q --config " + (tmp / "c.yaml"));
      ASSERT_EQ(r.code, 0) << r.output;
      const auto report = nlohmann::json::parse(test::read_file(out + "/report.json"));
      const int64_t weights = report["model"]["memory"]["weight_bytes"], batch_bytes = report["model"]["memory"]["peak_allocated_bytes"];
      const int64_t rss = report["memory"]["peak_rss_bytes"];
      EXPECT_GT(weights, int64_t(97) << 20);  // 25.6 M parameters, fp32, once
      EXPECT_LE(rss, weights + batch_bytes + (int64_t(16 + 128) << 20))
          << precision << " batch " << batch << ": weights " << (weights >> 20) << " MiB, batch " << (batch_bytes >> 20)
          << " MiB, peak RSS " << (rss >> 20) << " MiB";
    }
}

}  // namespace
