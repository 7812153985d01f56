#include "decode.h"

#include <turbojpeg.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace imgpipe {
namespace {

// Decompression bombs: refuse images whose pixel buffer alone would be unreasonable.
constexpr int64_t kMaxPixels = int64_t(1) << 28;

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

Decoder::Decoder(bool gray) : tj_(tjInitDecompress()), gray_(gray) {}
Decoder::~Decoder() {
  if (tj_) tjDestroy(tj_);
}

bool Decoder::decode(const std::string& path, const NeededSize& needed, Decoded& out, std::string& error) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) return error = "cannot read: " + ec.message(), false;
  if (std::filesystem::is_directory(status)) return error = "is a directory, not an image file", false;
  if (!std::filesystem::is_regular_file(status)) return error = "not a regular file", false;
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return error = std::string("cannot open: ") + std::strerror(errno), false;
  std::fseek(f.get(), 0, SEEK_END);
  const long size = std::ftell(f.get());
  std::fseek(f.get(), 0, SEEK_SET);
  if (size <= 0) return error = "empty file (0 bytes)", false;
  buffer_.resize(size_t(size));
  if (std::fread(buffer_.data(), 1, buffer_.size(), f.get()) != buffer_.size())
    return error = std::string("read failed: ") + std::strerror(errno), false;
  return decode_bytes(reinterpret_cast<const unsigned char*>(buffer_.data()), buffer_.size(), needed, out, error);
}

bool Decoder::decode_bytes(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                           std::string& error) {
  if (size == 0) return error = "empty file (0 bytes)", false;
  // The content decides the codec, not the extension: a PNG named .jpg still decodes.
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return decode_jpeg(data, size, needed, out, error);
  cv::Mat img;
  try {
    img = cv::imdecode(cv::_InputArray(data, int(size)), gray_ ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return error = std::string("decode failed: ") + e.what(), false;
  }
  if (img.empty()) return error = "not a decodable image (corrupt, truncated or unsupported format)", false;
  if (img.depth() != CV_8U) img.convertTo(img, CV_8U);
  out.pixels = img;
  out.orig_width = img.cols;
  out.orig_height = img.rows;
  out.dct_denominator = 1;
  return true;
}

bool Decoder::decode_jpeg(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                          std::string& error) {
  if (!tj_) return error = "TurboJPEG could not be initialised", false;
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj_, data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0)
    return error = std::string("corrupt JPEG header: ") + tjGetErrorStr2(tj_), false;
  if (w <= 0 || h <= 0) return error = "corrupt JPEG: zero width or height", false;
  if (int64_t(w) * h > kMaxPixels) return error = "image too large (" + std::to_string(w) + "x" + std::to_string(h) + ")", false;
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    // TurboJPEG cannot convert CMYK to BGR; OpenCV's libjpeg path can.
    cv::Mat img = cv::imdecode(cv::_InputArray(data, int(size)), gray_ ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    if (img.empty()) return error = "corrupt CMYK JPEG", false;
    out.pixels = img, out.orig_width = w, out.orig_height = h, out.dct_denominator = 1;
    return true;
  }
  // DCT-domain downscaling: the largest reduction whose result is still at least the size
  // the resize needs, so the resize that follows only ever shrinks.
  int denom = 1;
  if (needed) {
    const auto [nw, nh] = needed(w, h);
    for (int d : {8, 4, 2}) {
      if ((w + d - 1) / d >= nw && (h + d - 1) / d >= nh) {
        denom = d;
        break;
      }
    }
  }
  const tjscalingfactor sf{1, denom};
  const int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
  cv::Mat img(sh, sw, gray_ ? CV_8UC1 : CV_8UC3);
  // A truncated or damaged stream yields a warning and a half-grey image; treat it as
  // corrupt rather than feed the model garbage.
  if (tjDecompress2(tj_, data, static_cast<unsigned long>(size), img.data, sw, int(img.step), sh,
                    gray_ ? TJPF_GRAY : TJPF_BGR, TJFLAG_STOPONWARNING) != 0)
    return error = std::string("corrupt JPEG: ") + tjGetErrorStr2(tj_), false;
  out.pixels = img;
  out.orig_width = w;
  out.orig_height = h;
  out.dct_denominator = denom;
  return true;
}

}  // namespace imgpipe
