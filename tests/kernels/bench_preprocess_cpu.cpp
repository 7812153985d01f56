// Times preprocess_cpu on one core for the classify recipe: 640x480 BGR -> shorter side 256
// (341x256), center crop 224x224, ImageNet normalisation. Not a test; prints ms per image
// (best and median of the repetitions: the machine may be shared).
// Usage: bench_preprocess_cpu [reps [dtype interp]], dtype f32|f16|u8, interp
// bilinear|area|nearest; reps 0 runs each case once (for callgrind: divide its count by 2).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "test_util.h"

int main(int argc, char** argv) {
  using namespace imgpipe::kernels;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
  const char* only_dtype = argc > 3 ? argv[2] : nullptr;
  const char* only_interp = argc > 3 ? argv[3] : nullptr;
  const char* dtype_names[] = {"f32", "f16", "u8"};
  const char* interp_names[] = {"nearest", "bilinear", "area"};
  test::Batch b;
  b.add(test::random_image(640, 480, 3, 1, 0), 341, 256, -(341 - 224) / 2, -(256 - 224) / 2);
  for (DType dtype : {DType::F32, DType::F16, DType::U8})
    for (Interp interp : {Interp::Bilinear, Interp::Area, Interp::Nearest}) {
      const char* dn = dtype_names[int(dtype)];
      const char* in = interp_names[int(interp)];
      if (only_dtype && (std::strcmp(only_dtype, dn) != 0 || std::strcmp(only_interp, in) != 0))
        continue;
      PreprocessParams p;
      p.out_w = p.out_h = 224;
      p.interp = interp;
      p.dtype = dtype;
      p.scale = 1.f / 255.f;
      const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
      for (int c = 0; c < 3; ++c) p.mean[c] = mean[c], p.std[c] = stdv[c];
      std::vector<uint8_t> out(output_image_bytes(p));
      preprocess_cpu(b.src.data(), b.descs.data(), 1, p, out.data());
      if (reps <= 0) {
        preprocess_cpu(b.src.data(), b.descs.data(), 1, p, out.data());
        std::printf("%s %s: ran twice\n", dn, in);
        continue;
      }
      std::vector<double> ms(size_t(reps), 0.0);
      for (int i = 0; i < reps; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        preprocess_cpu(b.src.data(), b.descs.data(), 1, p, out.data());
        ms[size_t(i)] = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - t0).count();
      }
      std::sort(ms.begin(), ms.end());
      std::printf("%-3s %-8s: best %.3f ms/image, median %.3f\n", dn, in, ms.front(),
                  ms[ms.size() / 2]);
    }
}
