#include "decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <malloc.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

// OpenCV's PNG codec creates its libpng reader without error or warning handlers, so
// libpng prints each of them to stderr itself ("libpng error: ..."). This definition, being
// in the executable, takes precedence for OpenCV over libpng's own (ELF interposition) and
// gives the reader quiet handlers: an error still unwinds to OpenCV (longjmp) and comes back
// to imgpipe as the file's skip reason, which is where the user reads it.
namespace {
[[noreturn]] void png_quiet_error(png_structp png, png_const_charp) { png_longjmp(png, 1); }
void png_quiet_warning(png_structp, png_const_charp) {}
}  // namespace
extern "C" png_structp png_create_read_struct(png_const_charp version, png_voidp error_ptr, png_error_ptr error_fn,
                                              png_error_ptr warn_fn) {
  return png_create_read_struct_2(version, error_ptr, error_fn ? error_fn : png_quiet_error,
                                  warn_fn ? warn_fn : png_quiet_warning, nullptr, nullptr, nullptr);
}

namespace imgpipe {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

/// What the first bytes of a file say, before any decoding.
struct FileHeader {
  enum class Format { Unknown, Jpeg, Png, Bmp, WebP, Tiff, Gif } format = Format::Unknown;
  int64_t width = 0, height = 0;  ///< 0 when the header does not say (left to the codec)
  bool animated = false;
  bool more_pages = false;  ///< a TIFF with a second IFD (page)
  size_t unassociated_alpha_at = 0;  ///< a TIFF's ExtraSamples = 2: where that 2 is in the file
};

namespace {
using Header = FileHeader;

uint32_t le(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t be(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Width and height from the first IFD of a (classic) TIFF.
void tiff_size(const unsigned char* d, size_t n, Header& h) {
  const bool little = d[0] == 'I';
  auto rd = [&](size_t at, int bytes) { return little ? le(d + at, bytes) : be(d + at, bytes); };
  const size_t ifd = rd(4, 4);
  if (ifd > n || n - ifd < 2) return;
  const size_t count = rd(ifd, 2);
  for (size_t i = 0; i < count && ifd + 2 + 12 * (i + 1) <= n; ++i) {
    const size_t e = ifd + 2 + 12 * i;
    const uint32_t tag = rd(e, 2), type = rd(e + 2, 2);
    const int64_t value = type == 3 ? rd(e + 8, 2) : type == 4 ? rd(e + 8, 4) : 0;
    if (tag == 256) h.width = value;
    if (tag == 257) h.height = value;
    if (tag == 338 && type == 3 && rd(e + 4, 4) == 1 && value == 2) h.unassociated_alpha_at = e + (little ? 8 : 9);
  }
  const size_t next = ifd + 2 + 12 * count;
  h.more_pages = next + 4 <= n && rd(next, 4) != 0;
}

// EXIF orientation (1..8; 1 when absent or unreadable) from a TIFF structure: a TIFF file's
// own first IFD, or the EXIF block of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk).
int tiff_orientation(const unsigned char* d, size_t n) {
  if (n >= 6 && std::memcmp(d, "Exif\0\0", 6) == 0) d += 6, n -= 6;
  if (n < 8 || !(std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) return 1;
  const bool little = d[0] == 'I';
  auto rd = [&](size_t at, int bytes) { return little ? le(d + at, bytes) : be(d + at, bytes); };
  const size_t ifd = rd(4, 4);
  if (ifd > n || n - ifd < 2) return 1;
  const size_t count = rd(ifd, 2);
  for (size_t i = 0; i < count && ifd + 2 + 12 * (i + 1) <= n; ++i) {
    const size_t e = ifd + 2 + 12 * i;
    if (rd(e, 2) == 0x0112 && rd(e + 2, 2) == 3) {
      const int o = int(rd(e + 8, 2));
      return o >= 1 && o <= 8 ? o : 1;
    }
  }
  return 1;
}

// The EXIF orientation a JPEG, PNG or WebP declares. A TIFF's Orientation tag is left to
// libtiff, for PIL and OpenCV alike: its RGBA reader (8-bit TIFF) applies it, 16-bit pixels
// come as stored, and PIL then drops the tag, so exif_transpose does nothing more.
int exif_orientation(const unsigned char* d, size_t n, Header::Format format) {
  using F = Header::Format;
  if (format == F::Jpeg) {  // markers up to the first scan
    for (size_t at = 2; at + 4 <= n && d[at] == 0xFF && d[at + 1] != 0xDA;) {
      const size_t len = be(d + at + 2, 2);
      if (d[at + 1] == 0xE1 && at + 2 + len <= n && len > 8 && std::memcmp(d + at + 4, "Exif\0\0", 6) == 0)
        return tiff_orientation(d + at + 4, len - 2);
      at += 2 + len;
    }
  } else if (format == F::Png) {
    for (size_t at = 8; at + 12 <= n;) {
      const size_t len = be(d + at, 4);
      if (len > n - at - 12) break;
      if (std::memcmp(d + at + 4, "eXIf", 4) == 0) return tiff_orientation(d + at + 8, len);
      at += 12 + len;
    }
  } else if (format == F::WebP) {
    for (size_t at = 12; at + 8 <= n;) {
      const size_t len = le(d + at + 4, 4);
      if (len > n - at - 8) break;
      if (std::memcmp(d + at, "EXIF", 4) == 0) return tiff_orientation(d + at + 8, len);
      at += 8 + len + (len & 1);
    }
  }
  return 1;
}

// Turns pixels stored with EXIF orientation `o` upright, as PIL's ImageOps.exif_transpose.
cv::Mat apply_orientation(cv::Mat img, int o) {
  cv::Mat out;
  switch (o) {
    case 2: cv::flip(img, out, 1); return out;
    case 3: cv::rotate(img, out, cv::ROTATE_180); return out;
    case 4: cv::flip(img, out, 0); return out;
    case 5: cv::transpose(img, out); return out;
    case 6: cv::rotate(img, out, cv::ROTATE_90_CLOCKWISE); return out;
    case 7: cv::transpose(img, out); cv::rotate(out, out, cv::ROTATE_180); return out;
    case 8: cv::rotate(img, out, cv::ROTATE_90_COUNTERCLOCKWISE); return out;
    default: return img;
  }
}

// What PIL's convert('RGB') (or 'L') gives from the pixels OpenCV read unchanged: alpha is
// dropped, not composited; 16-bit grey (PIL mode I;16) is clipped to 255; 16-bit colour keeps
// the high byte (PIL's RGB;16 raw modes); 32-bit or float values are clipped to 0..255.
cv::Mat to_pil_8bit(cv::Mat img, bool gray) {
  if (img.depth() == CV_16U && img.channels() > 1) {
    if (!img.isContinuous()) img = img.clone();
    cv::Mat high(img.size(), CV_MAKETYPE(CV_8U, img.channels()));
    const uint16_t* s = img.ptr<uint16_t>();
    for (size_t i = 0, n = img.total() * img.channels(); i < n; ++i) high.data[i] = uint8_t(s[i] >> 8);
    img = high;
  } else if (img.depth() != CV_8U) {
    img.convertTo(img, CV_8U);  // saturating
  }
  if (img.channels() == 2) cv::extractChannel(img, img, 0);  // grey + alpha as stored (a 16-bit TIFF)
  if (img.channels() == 4) cv::cvtColor(img, img, gray ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGRA2BGR);
  else if (img.channels() == 3 && gray) cv::cvtColor(img, img, cv::COLOR_BGR2GRAY);
  else if (img.channels() == 1 && !gray) cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
  return img;
}

Header sniff(const unsigned char* d, size_t n) {
  Header h;
  using F = Header::Format;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
    h.format = F::Jpeg;
  } else if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    h.format = F::Png;
    if (n >= 24 && std::memcmp(d + 12, "IHDR", 4) == 0) h.width = be(d + 16, 4), h.height = be(d + 20, 4);
  } else if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) {
    h.format = F::Gif;
  } else if (n >= 2 && d[0] == 'B' && d[1] == 'M') {
    h.format = F::Bmp;
    if (n >= 26 && le(d + 14, 4) == 12) {  // OS/2 core header: 16-bit sizes
      h.width = le(d + 18, 2), h.height = le(d + 20, 2);
    } else if (n >= 26) {
      h.width = std::abs(int64_t(int32_t(le(d + 18, 4))));
      h.height = std::abs(int64_t(int32_t(le(d + 22, 4))));  // negative: stored top-down
    }
  } else if (n >= 16 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0 &&
             std::memcmp(d + 12, "VP8", 3) == 0 &&
             (d[15] == ' ' || d[15] == 'L' || d[15] == 'X')) {  // another first chunk: not a WebP OpenCV reads
    h.format = F::WebP;
    if (std::memcmp(d + 12, "VP8X", 4) == 0 && n >= 30) {
      h.animated = (d[20] & 0x02) != 0;
      h.width = int64_t(le(d + 24, 3)) + 1, h.height = int64_t(le(d + 27, 3)) + 1;
    } else if (std::memcmp(d + 12, "VP8 ", 4) == 0 && n >= 30) {
      h.width = le(d + 26, 2) & 0x3fff, h.height = le(d + 28, 2) & 0x3fff;
    } else if (std::memcmp(d + 12, "VP8L", 4) == 0 && n >= 25) {
      const uint32_t bits = le(d + 21, 4);
      h.width = int64_t(bits & 0x3fff) + 1, h.height = int64_t((bits >> 14) & 0x3fff) + 1;
    }
  } else if (n >= 8 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) {
    h.format = F::Tiff;
    tiff_size(d, n, h);
  }
  return h;
}

// Library messages may span lines (OpenCV's end in '\n'); a skip reason is one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  const size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Process-wide, once, before the first decode:
// - OpenCV's own log lines (warnings from its codecs) are not imgpipe's to print: every
//   failure already comes back as a skip reason.
// - File buffers and decoded images are large and short-lived. glibc raises its mmap
//   threshold after the first such block is freed, and from then on keeps freed images in
//   each thread's heap, so resident memory grew by an image or two per decode thread
//   beyond the host budget; a fixed threshold hands every block of 1 MiB or more back to
//   the system when it is freed. Below that, up to 8 MiB free at the top of each heap stays
//   mapped (glibc's default trims at 128 KiB), so a thread decoding photos of one size reuses
//   its pages instead of faulting a fresh image in each time: page faults were 30% of W2's
//   CPU time with full-size 640x480 decodes.
void configure_process_once() {
  static const bool once = [] {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    // OpenCV 4.6's imdecode also writes a codec's exception to std::cerr before handing
    // back an empty image; imgpipe writes its own lines with stdio, never through std::cerr.
    std::cerr.rdbuf(nullptr);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    return true;
  }();
  (void)once;
}

}  // namespace

Decoder::Decoder(bool gray, DecodeLimits limits, bool exif_orientation)
    : tj_(tjInitDecompress()), gray_(gray), limits_(limits), exif_orientation_(exif_orientation) {
  configure_process_once();
}
Decoder::~Decoder() {
  if (tj_) tjDestroy(tj_);
}

bool Decoder::decode(const std::string& path, const NeededSize& needed, Decoded& out, std::string& error,
                     const Reserve& reserve) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) return error = one_line("cannot read: " + ec.message()), false;
  if (std::filesystem::is_directory(status)) return error = "is a directory, not an image file", false;
  if (!std::filesystem::is_regular_file(status)) return error = "not a regular file", false;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return error = one_line("cannot read: " + ec.message()), false;
  if (size == 0) return error = "empty file (0 bytes)", false;
  if (size > uintmax_t(limits_.max_file_bytes))
    return error = "file too large (" + std::to_string(size) + " bytes, limit " +
                   std::to_string(limits_.max_file_bytes) + "; raise decode.max_file_bytes)",
           false;
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return error = std::string("cannot open: ") + std::strerror(errno), false;
  if (reserve && !reserve(size_t(size))) return error = "stopped", false;
  // Per file, not kept: a thread that once read a large file does not hold its memory.
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  if (std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
    return error = std::string("read failed: ") + (std::ferror(f.get()) ? std::strerror(errno) : "file shrank while read"),
           false;
  return decode_bytes(bytes.data(), bytes.size(), needed, out, error, reserve);
}

bool Decoder::decode_bytes(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                           std::string& error, const Reserve& reserve) {
  const bool ok = decode_any(data, size, needed, out, error, reserve);
  if (!ok) error = one_line(error);
  return ok;
}

bool Decoder::pixels_allowed(int64_t width, int64_t height, std::string& error) const {
  // Header sizes go up to 2^32 each: divide rather than multiply, so nothing overflows.
  if (width <= 0 || height <= 0 || (width <= limits_.max_pixels && height <= limits_.max_pixels / width)) return true;
  error = "image too large (" + std::to_string(width) + "x" + std::to_string(height) + " pixels, limit " +
          std::to_string(limits_.max_pixels) + "; raise decode.max_pixels)";
  return false;
}

bool Decoder::decode_any(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                         std::string& error, const Reserve& reserve) {
  using F = Header::Format;
  if (size == 0) return error = "empty file (0 bytes)", false;
  // The content decides the codec, not the extension: a PNG named .jpg still decodes.
  const Header h = sniff(data, size);
  // One rule for every codec: the orientation is applied here or nowhere (OpenCV is asked
  // for the pixels as stored, IMREAD_UNCHANGED, which never applies it itself).
  const int orientation = exif_orientation_ ? exif_orientation(data, size, h.format) : 1;
  const bool swapped = orientation >= 5;  // a quarter turn or a transposition
  if (h.format == F::Jpeg) {
    NeededSize stored_needed;  // `needed` speaks of the upright image, TurboJPEG of the stored one
    if (needed)
      stored_needed = [&](int stored_w, int stored_h) {
        if (!swapped) return needed(stored_w, stored_h);
        const auto [nw, nh] = needed(stored_h, stored_w);
        return std::make_pair(nh, nw);
      };
    if (!decode_jpeg(data, size, stored_needed, out, error, reserve)) return false;
  } else {
    if (!decode_opencv(data, size, h, out, error, reserve)) return false;
  }
  out.pixels = apply_orientation(out.pixels, orientation);
  if (swapped) std::swap(out.orig_width, out.orig_height);
  return true;
}

bool Decoder::decode_opencv(const unsigned char* data, size_t size, const FileHeader& h, Decoded& out,
                            std::string& error, const Reserve& reserve) {
  using F = Header::Format;
  if (h.format == F::Gif)
    return error = "unsupported format: GIF (convert its first frame to PNG, e.g. ImageMagick: convert 'in.gif[0]' out.png)", false;
  if (h.animated) return error = "unsupported: animated WebP (convert one frame to PNG)", false;
  // Only the formats imgpipe names go to OpenCV: its other codecs (HDR, PNM, Sun raster...)
  // are not offered, and some of them decode through a temporary file.
  if (h.format == F::Unknown) return error = "not a decodable image (corrupt, truncated or unsupported format)", false;
  if (!pixels_allowed(h.width, h.height, error)) return false;
  if (size > size_t(INT_MAX)) return error = "file too large for OpenCV (" + std::to_string(size) + " bytes)", false;
  // OpenCV also picks its codec by content: when the named format's reader rejects a broken
  // header, it tries its others, and its DICOM reader (GDCM) aborts the whole process on some
  // inputs. DICOM's signature ("DICM" at byte 128) is the only one that can sit beside these
  // formats' own, so such a file never reaches OpenCV.
  if (size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0)
    return error = "not a decodable image (corrupt, or DICOM, which is unsupported)", false;
  // Pixels the codec will allocate; headers that give no size leave it to the codec.
  const size_t pixel_bytes = size_t(h.width * h.height) * (gray_ ? 1 : 3);
  if (reserve && pixel_bytes && !reserve(pixel_bytes)) return error = "stopped", false;
  // libtiff's RGBA reader (OpenCV's for 8-bit TIFF) premultiplies colours by an unassociated
  // alpha; declared associated, the colours come as stored, which is what PIL gives.
  std::vector<unsigned char> patched;
  if (h.unassociated_alpha_at) {
    patched.assign(data, data + size);
    patched[h.unassociated_alpha_at] = 1;
    data = patched.data();
  }
  cv::Mat img;
  try {
    // As stored (depth, alpha, no EXIF rotation); PIL's conversion rules follow.
    img = cv::imdecode(cv::_InputArray(data, int(size)), cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return error = "corrupt or unsupported image (OpenCV: " + e.err + ")", false;
  }
  if (img.empty()) return error = "not a decodable image (corrupt, truncated or unsupported format)", false;
  if (!pixels_allowed(img.cols, img.rows, error)) return false;
  out.pixels = to_pil_8bit(img, gray_);
  out.orig_width = img.cols;
  out.orig_height = img.rows;
  out.dct_denominator = 1;
  out.more_pages = h.more_pages;
  return true;
}

bool Decoder::decode_jpeg(const unsigned char* data, size_t size, const NeededSize& needed, Decoded& out,
                          std::string& error, const Reserve& reserve) {
  // A failed call leaves the TurboJPEG handle in an error state that the next file would
  // inherit (libjpeg-turbo 2.1); a fresh handle keeps each file's verdict its own.
  struct ResetOnFailure {
    void*& tj;
    bool ok = false;
    ~ResetOnFailure() {
      if (ok) return;
      if (tj) tjDestroy(tj);
      tj = tjInitDecompress();
    }
  } guard{tj_};
  if (!tj_) return error = "TurboJPEG could not be initialised", false;
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj_, data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0)
    return error = std::string("corrupt JPEG header: ") + tjGetErrorStr2(tj_), false;
  if (w <= 0 || h <= 0) return error = "corrupt JPEG: zero width or height", false;
  if (!pixels_allowed(w, h, error)) return false;
  const int channels = gray_ ? 1 : 3;
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    if (!decode_cmyk_jpeg(data, size, w, h, out, error, reserve)) return false;
    return guard.ok = true;
  }
  // DCT-domain downscaling: the largest reduction whose result is still at least the size
  // the caller says it needs.
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
  if (reserve && !reserve(size_t(sw) * size_t(sh) * channels)) return error = "stopped", false;
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
  return guard.ok = true;
}

// PIL's reading of a CMYK JPEG: the stored values are taken as Adobe-inverted (PIL's raw mode
// CMYK;I, whatever the file's Adobe marker says) and converted as PIL's CMYK -> RGB does:
// each of R, G, B = (255 - K) * (255 - C) / 255, rounded as PIL's MULDIV255.
bool Decoder::decode_cmyk_jpeg(const unsigned char* data, size_t size, int w, int h, Decoded& out,
                               std::string& error, const Reserve& reserve) {
  if (reserve && !reserve(size_t(w) * size_t(h) * (4 + (gray_ ? 1 : 3)))) return error = "stopped", false;
  cv::Mat cmyk(h, w, CV_8UC4);
  if (tjDecompress2(tj_, data, static_cast<unsigned long>(size), cmyk.data, w, int(cmyk.step), h, TJPF_CMYK,
                    TJFLAG_STOPONWARNING) != 0)
    return error = std::string("corrupt CMYK JPEG: ") + tjGetErrorStr2(tj_), false;
  auto muldiv255 = [](int a, int b) {
    const int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  cv::Mat bgr(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = cmyk.ptr<uint8_t>(y);
    uint8_t* d = bgr.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x, s += 4, d += 3) {
      const int nk = s[3];  // stored inverted: 255 - K
      for (int c = 0; c < 3; ++c) d[2 - c] = uint8_t(nk - muldiv255(255 - s[c], nk));
    }
  }
  if (gray_) cv::cvtColor(bgr, bgr, cv::COLOR_BGR2GRAY);
  out.pixels = bgr, out.orig_width = w, out.orig_height = h, out.dct_denominator = 1;
  return true;
}

}  // namespace imgpipe
