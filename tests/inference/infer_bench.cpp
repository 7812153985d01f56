// infer_bench MODEL.onnx [--batch B] [--iters N] [--fp16] [--profile] [--in X.npy] [--out Y.npy]
// Loads a model, prints its plan, runs it on X.npy (or seeded random input) and reports
// images per second; --profile adds the time per op kind over the timed runs. Used to
// check real exports against onnxruntime (ort_compare.py).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "model_builder.h"
#include "parallel.h"

using namespace imgpipe::infer;

int main(int argc, char** argv) {
  imgpipe::infer::restart_with_short_openmp_spin(argv);  // as imgpipe does
  if (argc < 2) {
    std::fprintf(stderr, "usage: infer_bench MODEL.onnx [--batch B] [--iters N] [--fp16] [--profile] [--in X.npy] [--out Y.npy]\n");
    return 1;
  }
  std::string path = argv[1], in_path, out_path;
  int batch = 8, iters = 3;
  Precision p = Precision::FP32;
  bool profile = false;
  for (int k = 2; k < argc; ++k) {
    const std::string a = argv[k];
    if (a == "--batch" && k + 1 < argc) batch = std::stoi(argv[++k]);
    else if (a == "--iters" && k + 1 < argc) iters = std::stoi(argv[++k]);
    else if (a == "--fp16") p = Precision::FP16;
    else if (a == "--profile") profile = true;
    else if (a == "--in" && k + 1 < argc) in_path = argv[++k];
    else if (a == "--out" && k + 1 < argc) out_path = argv[++k];
  }
  try {
    auto t0 = std::chrono::steady_clock::now();
    const Model m = Model::load(path, "", /*for_cpu=*/true);
    auto t1 = std::chrono::steady_clock::now();
    std::vector<int64_t> shape = m.input_shape();
    shape.insert(shape.begin(), batch);
    std::vector<float> x = in_path.empty() ? test::ModelBuilder::random_values(shape, "bench", 0.f, 1.f)
                                           : test::read_npy(in_path, &shape);
    batch = static_cast<int>(shape[0]);
    const MemoryPlan plan = m.plan(batch, p);
    std::printf("model %s: opset %d, input %s per image, output %lld per image, loaded in %.2f s\n",
                path.c_str(), m.opset(), to_string(m.input_shape()).c_str(),
                static_cast<long long>(m.output_size()), std::chrono::duration<double>(t1 - t0).count());
    std::printf("plan batch %d %s: weights %.1f MB, arena %.1f MB (unshared %.1f MB), workspace %.1f MB, total %.1f MB\n",
                batch, to_string(p), plan.weight_bytes / 1e6, plan.arena_bytes / 1e6,
                m.unshared_activation_bytes(batch, p) / 1e6, plan.workspace_bytes / 1e6, plan.total() / 1e6);
    HostAllocator host;
    Executor ex(m, host);
    ex.prepare(batch, p);
    std::vector<float> y(static_cast<size_t>(m.output_size() * batch));
    ex.run(x.data(), batch, y.data());  // warm-up
    ex.enable_profiling(profile);
    auto t2 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) ex.run(x.data(), batch, y.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
    std::printf("%s batch %d: %.2f images/s (%.1f ms per batch)\n", to_string(p), batch,
                batch * iters / s, 1e3 * s / iters);
    for (const OpTiming& t : ex.op_timings())
      std::printf("  %-20s %8.1f ms per batch (%5.1f%%), %lld calls\n", t.label.c_str(), 1e3 * t.seconds / iters,
                  100 * t.seconds / s, static_cast<long long>(t.calls / iters));
    if (!out_path.empty()) test::write_npy(out_path, {batch, m.output_size()}, y);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
