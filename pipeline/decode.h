#pragma once
// Decoding one file into 8-bit pixels: JPEG through TurboJPEG (with DCT-domain downscaling
// when the target is much smaller), everything else through OpenCV imgcodecs.
#include <opencv2/core.hpp>

#include <functional>
#include <string>
#include <utility>

namespace imgpipe {

struct Decoded {
  cv::Mat pixels;           ///< CV_8UC3 (BGR) or CV_8UC1 (gray)
  int orig_width = 0;       ///< size before any DCT-domain downscaling
  int orig_height = 0;
  int dct_denominator = 1;  ///< 1, 2, 4 or 8: the JPEG was decoded at 1/denominator scale
};

/// Given the full image size, the smallest decoded size the preprocessing still needs.
using NeededSize = std::function<std::pair<int, int>(int width, int height)>;

/// One per thread (it owns a TurboJPEG handle).
class Decoder {
 public:
  explicit Decoder(bool gray);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  /// Decodes `path`. On failure returns false and sets `error` to a reason a user can act
  /// on ("empty file", "is a directory", "corrupt JPEG: ..."); never throws for bad input.
  [[nodiscard]] bool decode(const std::string& path, const NeededSize& needed, Decoded& out,
                            std::string& error);

  /// The same from bytes already in memory (`name` only used in messages).
  [[nodiscard]] bool decode_bytes(const unsigned char* data, size_t size, const NeededSize& needed,
                                  Decoded& out, std::string& error);

 private:
  bool decode_jpeg(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                   std::string& error);
  void* tj_ = nullptr;
  bool gray_;
  std::string buffer_;
};

}  // namespace imgpipe
