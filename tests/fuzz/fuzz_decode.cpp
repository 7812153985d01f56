// libFuzzer target: any bytes through the decoder (every codec, gray and colour, with and
// without DCT-domain scaling) give pixels of the size the header said, or a one-line reason;
// never a crash, a hang or a sanitizer report. Built with -DIMGPIPE_FUZZ=ON (clang); run by
// scripts/ci/fuzz.sh, seeded with data/sample.
#include <cstdint>
#include <cstdlib>

#include "decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Small limits keep each input cheap; the limit paths are exercised all the same.
  static imgpipe::Decoder color(false, {int64_t(16) << 20, 4 << 20}), gray(true, {int64_t(16) << 20, 4 << 20});
  const imgpipe::NeededSize quarter = [](int w, int h) { return std::make_pair(w / 4 + 1, h / 4 + 1); };
  size_t reserved = 0;
  const imgpipe::Reserve reserve = [&](size_t bytes) { return reserved += bytes, true; };
  for (int i = 0; i < 2; ++i) {
    imgpipe::Decoder& dec = size % 2 ? color : gray;
    imgpipe::Decoded out;
    std::string error;
    const bool ok = dec.decode_bytes(data, size, i ? quarter : nullptr, out, error, reserve);
    if (ok && (out.pixels.empty() || out.pixels.depth() != CV_8U || out.orig_width <= 0)) std::abort();
    if (!ok && (error.empty() || error.find('\n') != std::string::npos)) std::abort();
  }
  return 0;
}
