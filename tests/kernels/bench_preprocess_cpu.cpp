// Times preprocess_cpu on one core for the classify recipe: 640x480 BGR -> shorter side 256
// (341x256), center crop 224x224, ImageNet normalisation. Not a test; prints ms per image.
#include <chrono>
#include <cstdio>

#include "test_util.h"

int main() {
  using namespace imgpipe::kernels;
  test::Batch b;
  b.add(test::random_image(640, 480, 3, 1, 0), 341, 256, -(341 - 224) / 2, -(256 - 224) / 2);
  for (DType dtype : {DType::F32, DType::F16, DType::U8})
    for (Interp interp : {Interp::Bilinear, Interp::Area, Interp::Nearest}) {
      PreprocessParams p;
      p.out_w = p.out_h = 224;
      p.interp = interp;
      p.dtype = dtype;
      p.scale = 1.f / 255.f;
      std::vector<uint8_t> out(output_image_bytes(p));
      const int reps = 200;
      preprocess_cpu(b.src.data(), b.descs.data(), 1, p, out.data());
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) preprocess_cpu(b.src.data(), b.descs.data(), 1, p, out.data());
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("dtype %d interp %d: %.3f ms/image\n", int(dtype), int(interp), ms / reps);
    }
}
