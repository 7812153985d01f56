#pragma once
// Decoding one file into 8-bit pixels: JPEG through TurboJPEG (with DCT-domain downscaling
// when the target is much smaller), everything else through OpenCV imgcodecs.
#include <opencv2/core.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace imgpipe {

struct Decoded {
  cv::Mat pixels;           ///< CV_8UC3 (BGR) or CV_8UC1 (gray)
  int orig_width = 0;       ///< size before any DCT-domain downscaling
  int orig_height = 0;
  int dct_denominator = 1;  ///< 1, 2, 4 or 8: the JPEG was decoded at 1/denominator scale
  bool more_pages = false;  ///< a multi-page TIFF, of which page 1 was decoded
};

/// What a file may cost before it is read or decoded (checked against its size on disk
/// and the size its header gives).
struct DecodeLimits {
  int64_t max_file_bytes = int64_t(256) << 20;
  int64_t max_pixels = 178956970;  ///< PIL's MAX_IMAGE_PIXELS: 512 MiB of 3-channel pixels
};

/// Given the full image size, the smallest decoded size the preprocessing still needs.
using NeededSize = std::function<std::pair<int, int>(int width, int height)>;

/// Called with the bytes a decode is about to allocate (the file, then the pixels) before
/// it allocates them; may block (a bounded queue). Returning false abandons the decode.
using Reserve = std::function<bool(size_t bytes)>;

struct FileHeader;

/// One per thread (it owns a TurboJPEG handle). Each file is judged on its own: a bad file
/// never changes the outcome of the next one.
class Decoder {
 public:
  /// `exif_orientation`: turn images upright by their EXIF orientation (PIL's exif_transpose);
  /// otherwise pixels are taken as stored, whatever the file says (plain PIL).
  explicit Decoder(bool gray, DecodeLimits limits = {}, bool exif_orientation = false);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  /// Decodes `path`. On failure returns false and sets `error` to one line a user can act
  /// on ("empty file", "is a directory", "corrupt JPEG: ..."); never throws for bad input.
  [[nodiscard]] bool decode(const std::string& path, const NeededSize& needed, Decoded& out,
                            std::string& error, const Reserve& reserve = nullptr);

  /// The same from bytes already in memory.
  [[nodiscard]] bool decode_bytes(const unsigned char* data, size_t size, const NeededSize& needed,
                                  Decoded& out, std::string& error, const Reserve& reserve = nullptr);

 private:
  bool decode_any(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                  std::string& error, const Reserve& reserve);
  bool decode_jpeg(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                   std::string& error, const Reserve& reserve);
  bool decode_opencv(const unsigned char* data, size_t size, const FileHeader& h, Decoded& out,
                     std::string& error, const Reserve& reserve);
  bool decode_cmyk_jpeg(const unsigned char* data, size_t size, int width, int height, Decoded& out,
                        std::string& error, const Reserve& reserve);
  bool pixels_allowed(int64_t width, int64_t height, std::string& error) const;
  void* tj_ = nullptr;
  bool gray_;
  DecodeLimits limits_;
  bool exif_orientation_;
};

}  // namespace imgpipe
