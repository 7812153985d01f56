#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <fstream>
#include <vector>

#include "decode.h"
#include "test_util.h"

using namespace imgpipe;

namespace {

double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  const cv::Scalar m = cv::mean(d);
  return (m[0] + m[1] + m[2]) / a.channels();
}

}  // namespace

TEST(Decode, EveryFormatDecodesToItsPixels) {
  test::TempDir dir;
  const cv::Mat img = test::random_image(37, 23, 7);
  for (const char* ext : {"png", "bmp", "tiff", "webp", "jpg"}) {
    const std::string path = dir / (std::string("img.") + ext);
    const std::vector<int> params = std::string(ext) == "webp" ? std::vector<int>{cv::IMWRITE_WEBP_QUALITY, 101}
                                                               : std::vector<int>{cv::IMWRITE_JPEG_QUALITY, 100};
    ASSERT_TRUE(cv::imwrite(path, img, params)) << ext;
    Decoder dec(false);
    Decoded out;
    std::string err;
    ASSERT_TRUE(dec.decode(path, nullptr, out, err)) << ext << ": " << err;
    EXPECT_EQ(out.pixels.type(), CV_8UC3);
    EXPECT_EQ(out.pixels.cols, 37);
    EXPECT_EQ(out.pixels.rows, 23);
    EXPECT_EQ(out.orig_width, 37);
    // Lossless formats are exact; JPEG (q100, 4:2:0 chroma on a sharp pattern) is close.
    EXPECT_LT(mean_abs_diff(out.pixels, img), std::string(ext) == "jpg" ? 10.0 : 1e-9) << ext;
  }
}

TEST(Decode, GrayDecodesOneChannel) {
  test::TempDir dir;
  cv::imwrite(dir / "a.jpg", test::random_image(16, 16, 1));
  cv::imwrite(dir / "a.png", test::random_image(16, 16, 1));
  Decoder dec(true);
  for (const char* f : {"a.jpg", "a.png"}) {
    Decoded out;
    std::string err;
    ASSERT_TRUE(dec.decode(dir / f, nullptr, out, err)) << err;
    EXPECT_EQ(out.pixels.type(), CV_8UC1) << f;
  }
  // The lossless PNG: each pixel is PIL's convert("L") of the BGR source, L = (299 R + 587 G +
  // 114 B) / 1000, within 1 for the fixed-point rounding.
  Decoded out;
  std::string err;
  ASSERT_TRUE(dec.decode(dir / "a.png", nullptr, out, err)) << err;
  const cv::Mat src = test::random_image(16, 16, 1);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) {
      const cv::Vec3b bgr = src.at<cv::Vec3b>(y, x);
      const double l = (299.0 * bgr[2] + 587.0 * bgr[1] + 114.0 * bgr[0]) / 1000.0;
      EXPECT_NEAR(out.pixels.at<uchar>(y, x), l, 1.0) << x << "," << y;
    }
}

TEST(Decode, ContentDecidesTheCodecNotTheExtension) {
  test::TempDir dir;
  cv::imwrite(dir / "really_png.png", test::random_image(20, 10, 3));
  std::filesystem::rename(dir / "really_png.png", dir / "named.jpg");
  Decoder dec(false);
  Decoded out;
  std::string err;
  EXPECT_TRUE(dec.decode(dir / "named.jpg", nullptr, out, err)) << err;
  EXPECT_EQ(out.pixels.cols, 20);
  EXPECT_EQ(cv::norm(out.pixels, test::random_image(20, 10, 3), cv::NORM_INF), 0);  // PNG: lossless, exact
}

TEST(Decode, BadInputsAreNamedNeverThrown) {
  test::TempDir dir;
  std::vector<uchar> jpg;
  cv::imencode(".jpg", test::random_image(64, 48, 5), jpg);
  std::vector<uchar> png;
  cv::imencode(".png", test::random_image(64, 48, 5), png);
  test::write_file(dir / "empty.jpg", "");
  test::write_file(dir / "text.jpg", "this is not an image at all\n");
  test::write_file(dir / "truncated.jpg", std::string(jpg.begin(), jpg.begin() + jpg.size() / 2));
  test::write_file(dir / "header_only.jpg", std::string(jpg.begin(), jpg.begin() + 4));
  test::write_file(dir / "truncated.png", std::string(png.begin(), png.begin() + png.size() / 2));
  std::string garbled(jpg.begin(), jpg.end());
  for (size_t i = garbled.size() / 3; i < garbled.size() - 2; i += 7) garbled[i] = char(0xFF);
  test::write_file(dir / "garbled.jpg", garbled);
  std::filesystem::create_directories(dir.path() / "dir.jpg");
  struct Case {
    const char* file;
    const char* reason;
  } cases[] = {
      {"empty.jpg", "empty file"},       {"text.jpg", "not a decodable image"},
      {"truncated.jpg", "corrupt JPEG"}, {"header_only.jpg", "corrupt JPEG"},
      {"truncated.png", "not a decodable image"}, {"garbled.jpg", "corrupt JPEG"},
      {"dir.jpg", "is a directory"},     {"missing.jpg", "cannot read"},
  };
  Decoder dec(false);
  for (const auto& c : cases) {
    Decoded out;
    std::string err;
    EXPECT_FALSE(dec.decode(dir / c.file, nullptr, out, err)) << c.file;
    EXPECT_NE(err.find(c.reason), std::string::npos) << c.file << ": " << err;
  }
}

TEST(Decode, DctDownscalingOnlyWhenTheTargetIsSmallEnough) {
  test::TempDir dir;
  cv::imwrite(dir / "big.jpg", test::random_image(640, 480, 11), {cv::IMWRITE_JPEG_QUALITY, 95});
  Decoder dec(false);
  Decoded out;
  std::string err;
  // Target 64x48: 1/8 gives 80x60, still >= the target.
  ASSERT_TRUE(dec.decode(dir / "big.jpg", [](int, int) { return std::make_pair(64, 48); }, out, err));
  EXPECT_EQ(out.dct_denominator, 8);
  EXPECT_EQ(out.pixels.cols, 80);
  EXPECT_EQ(out.orig_width, 640);
  // Target 341x256 (shorter side 256): 1/2 would give 320x240, too small: full decode.
  ASSERT_TRUE(dec.decode(dir / "big.jpg", [](int, int) { return std::make_pair(341, 256); }, out, err));
  EXPECT_EQ(out.dct_denominator, 1);
  EXPECT_EQ(out.pixels.cols, 640);
  ASSERT_TRUE(dec.decode(dir / "big.jpg", [](int, int) { return std::make_pair(300, 200); }, out, err));
  EXPECT_EQ(out.dct_denominator, 2);
}

TEST(Decode, DctDownscaledDecodeIsCloseToFullDecodeThenResize) {
  test::TempDir dir;
  cv::imwrite(dir / "big.jpg", test::random_image(640, 480, 13), {cv::IMWRITE_JPEG_QUALITY, 90});
  Decoder dec(false);
  Decoded scaled, full;
  std::string err;
  ASSERT_TRUE(dec.decode(dir / "big.jpg", [](int, int) { return std::make_pair(160, 120); }, scaled, err));
  ASSERT_EQ(scaled.dct_denominator, 4);
  ASSERT_TRUE(dec.decode(dir / "big.jpg", nullptr, full, err));
  cv::Mat a, b;
  cv::resize(scaled.pixels, a, {80, 60}, 0, 0, cv::INTER_AREA);
  cv::resize(full.pixels, b, {80, 60}, 0, 0, cv::INTER_AREA);
  // Mean difference below 1.5 levels of 255: no visible change.
  EXPECT_LT(mean_abs_diff(a, b), 1.5);
}

namespace {

// A JPEG whose SOF0 segment length is 0: TurboJPEG fails its header with "Bogus marker length".
std::string bogus_sof_jpeg() {
  std::vector<uchar> jpg;
  cv::imencode(".jpg", test::random_image(32, 24, 3), jpg);
  std::string s(jpg.begin(), jpg.end());
  const size_t sof = s.find("\xFF\xC0");
  s[sof + 2] = s[sof + 3] = 0;
  return s;
}

std::string encoded(const char* ext, const cv::Mat& img) {
  std::vector<uchar> buf;
  cv::imencode(ext, img, buf);
  return std::string(buf.begin(), buf.end());
}

// A PNG whose IHDR claims width x height (CRC fixed, so libpng reads the header).
std::string png_claiming(uint32_t width, uint32_t height) {
  std::string png = encoded(".png", test::random_image(10, 10, 2));
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = char(width >> (24 - 8 * i));
    png[20 + i] = char(height >> (24 - 8 * i));
  }
  uint32_t crc = 0xFFFFFFFFu;  // CRC-32 of the chunk type and data (bytes 12..28)
  for (size_t i = 12; i < 29; ++i) {
    crc ^= uint8_t(png[i]);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc = ~crc;
  for (int i = 0; i < 4; ++i) png[29 + i] = char(crc >> (24 - 8 * i));
  return png;
}

}  // namespace

TEST(Decode, ABadJpegHeaderDoesNotPoisonTheFilesAfterIt) {
  test::TempDir dir;
  test::write_file(dir / "bad.jpg", bogus_sof_jpeg());
  const std::string good = encoded(".jpg", test::random_image(40, 30, 9));
  test::write_file(dir / "truncated.jpg", good.substr(0, good.size() / 2));
  for (int i = 0; i < 10; ++i) test::write_file(dir / ("good" + std::to_string(i) + ".jpg"), good);
  Decoder dec(false);  // one decoder, as one decode thread has
  Decoded out;
  std::string err;
  EXPECT_FALSE(dec.decode(dir / "bad.jpg", nullptr, out, err));
  EXPECT_NE(err.find("Bogus marker length"), std::string::npos) << err;
  int decoded = 0;
  for (int i = 0; i < 10; ++i) {
    err.clear();
    decoded += dec.decode(dir / ("good" + std::to_string(i) + ".jpg"), nullptr, out, err);
    EXPECT_EQ(err, "");
  }
  EXPECT_EQ(decoded, 10);
  // A bad file's reason is its own, not the one of the bad file before it.
  ASSERT_FALSE(dec.decode(dir / "bad.jpg", nullptr, out, err));
  ASSERT_FALSE(dec.decode(dir / "truncated.jpg", nullptr, out, err));
  EXPECT_EQ(err.find("Bogus marker length"), std::string::npos) << err;
  EXPECT_NE(err.find("corrupt JPEG"), std::string::npos) << err;
}

TEST(Decode, TooLargeFilesAreSkippedUnread) {
  test::TempDir dir;
  {
    std::ofstream f(dir / "huge.png");
  }
  std::filesystem::resize_file(dir / "huge.png", uintmax_t(100) << 30);  // 100 GiB, sparse
  test::write_file(dir / "small.png", encoded(".png", test::random_image(8, 8, 1)));
  Decoder dec(false, {1000, 178956970});
  Decoded out;
  std::string err;
  size_t reserved = 0;
  const Reserve reserve = [&](size_t bytes) { return reserved += bytes, true; };
  EXPECT_FALSE(dec.decode(dir / "huge.png", nullptr, out, err, reserve));
  EXPECT_EQ(err, "file too large (107374182400 bytes, limit 1000; raise decode.max_file_bytes)");
  EXPECT_EQ(reserved, 0u);
  EXPECT_TRUE(dec.decode(dir / "small.png", nullptr, out, err, reserve)) << err;
  Decoder defaults(false);
  EXPECT_FALSE(defaults.decode(dir / "huge.png", nullptr, out, err));
  EXPECT_NE(err.find("file too large (107374182400 bytes, limit 268435456"), std::string::npos) << err;
}

// The limit is inclusive and exact: a file of exactly max_file_bytes decodes, one byte over is
// skipped.
TEST(Decode, MaxFileBytesIsExactAtTheBoundary) {
  test::TempDir dir;
  const std::string png = encoded(".png", test::random_image(8, 8, 1));
  test::write_file(dir / "small.png", png);
  Decoded out;
  std::string err;
  EXPECT_TRUE(Decoder(false, {int64_t(png.size()), 178956970}).decode(dir / "small.png", nullptr, out, err)) << err;
  EXPECT_FALSE(Decoder(false, {int64_t(png.size()) - 1, 178956970}).decode(dir / "small.png", nullptr, out, err));
  EXPECT_EQ(err, "file too large (" + std::to_string(png.size()) + " bytes, limit " + std::to_string(png.size() - 1) +
                     "; raise decode.max_file_bytes)");
}

TEST(Decode, TooManyPixelsAreSkippedBeforeDecoding) {
  const cv::Mat img = test::random_image(100, 60, 4);
  for (const char* ext : {".jpg", ".png", ".bmp", ".webp", ".tiff"}) {
    const std::string data = encoded(ext, img);
    Decoder dec(false, {int64_t(1) << 30, 5999});
    Decoded out;
    std::string err;
    std::vector<size_t> reserved;
    const Reserve reserve = [&](size_t bytes) { return reserved.push_back(bytes), true; };
    EXPECT_FALSE(dec.decode_bytes(reinterpret_cast<const uchar*>(data.data()), data.size(), nullptr, out, err, reserve));
    EXPECT_EQ(err, "image too large (100x60 pixels, limit 5999; raise decode.max_pixels)") << ext;
    EXPECT_TRUE(reserved.empty()) << ext << ": pixels reserved before the check";
    Decoder exact(false, {int64_t(1) << 30, 6000});
    EXPECT_TRUE(exact.decode_bytes(reinterpret_cast<const uchar*>(data.data()), data.size(), nullptr, out, err, reserve))
        << ext << ": " << err;
    // The pixels are counted before they are allocated.
    ASSERT_EQ(reserved.size(), 1u) << ext;
    EXPECT_EQ(reserved[0], 100u * 60u * 3u) << ext;
  }
  // A header that claims 100000x100000 is refused by its header, with the default limit.
  const std::string png = png_claiming(100000, 100000);
  Decoder dec(false);
  Decoded out;
  std::string err;
  EXPECT_FALSE(dec.decode_bytes(reinterpret_cast<const uchar*>(png.data()), png.size(), nullptr, out, err));
  EXPECT_EQ(err, "image too large (100000x100000 pixels, limit 178956970; raise decode.max_pixels)");
}

TEST(Decode, ReservesFileAndPixelBytesBeforeAllocatingThem) {
  test::TempDir dir;
  cv::imwrite(dir / "big.jpg", test::random_image(640, 480, 11));
  const auto file_bytes = size_t(std::filesystem::file_size(dir / "big.jpg"));
  Decoder dec(false);
  Decoded out;
  std::string err;
  std::vector<size_t> reserved;
  const Reserve reserve = [&](size_t bytes) { return reserved.push_back(bytes), true; };
  // Decoded at 1/8 in the DCT domain: only the 80x60 pixels are counted.
  ASSERT_TRUE(dec.decode(dir / "big.jpg", [](int, int) { return std::make_pair(64, 48); }, out, err, reserve));
  EXPECT_EQ(reserved, (std::vector<size_t>{file_bytes, 80 * 60 * 3}));
  // Refused (a closed queue): the decode stops and allocates nothing more.
  reserved.clear();
  const Reserve refuse = [&](size_t bytes) { return reserved.push_back(bytes), reserved.size() < 2; };
  Decoded none;
  EXPECT_FALSE(dec.decode(dir / "big.jpg", nullptr, none, err, refuse));
  EXPECT_TRUE(none.pixels.empty());
}

TEST(Decode, UnsupportedFormatsAndLibraryErrorsAreOneActionableLine) {
  Decoder dec(false);
  Decoded out;
  std::string err;
  auto decode = [&](const std::string& data) {
    err.clear();
    return dec.decode_bytes(reinterpret_cast<const uchar*>(data.data()), data.size(), nullptr, out, err);
  };
  EXPECT_FALSE(decode(std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00;", 13)));
  EXPECT_EQ(err, "unsupported format: GIF (convert its first frame to PNG, e.g. ImageMagick: convert 'in.gif[0]' out.png)");
  // An animated WebP: a VP8X header with the animation flag, 64x48 canvas, then its frames.
  std::string webp("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x02\x00\x00\x00\x3f\x00\x00\x2f\x00\x00", 30);
  webp += std::string("ANIM\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00", 14);
  EXPECT_FALSE(decode(webp));
  EXPECT_EQ(err, "unsupported: animated WebP (convert one frame to PNG)");
  // Beyond OpenCV's own pixel limit (2^30) with imgpipe's raised: OpenCV throws; the
  // reason is its message on one line, not its multi-line exception text.
  const std::string png = png_claiming(100000, 100000);
  Decoder raised(false, {int64_t(1) << 30, int64_t(1) << 40});
  ASSERT_FALSE(raised.decode_bytes(reinterpret_cast<const uchar*>(png.data()), png.size(), nullptr, out, err));
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  EXPECT_EQ(err.find("OpenCV(4"), std::string::npos) << err;
  EXPECT_NE(err.find("corrupt or unsupported image (OpenCV: "), std::string::npos) << err;
}

// Found by the fuzzer: a broken WebP header with "DICM" at byte 128 made OpenCV fall back to
// its DICOM reader, whose assertion aborted the whole run. Each must be a skip with a reason.
TEST(Decode, BrokenHeadersThatOpenCvWouldHandToItsDicomReaderAreSkipped) {
  using namespace std::string_literals;
  Decoder dec(false);
  for (std::string data : {"RIFF\xca\x64\x02\x00WEBPVP8\xff"s, "RIFF\xca\x64\x02\x00WEBPVP8 "s, "BM\0\0\0\0"s,
                           "II*\0\x08\0\0\0"s, "\x89PNG\r\n\x1a\n"s}) {
    data.resize(128, '\xff');
    data += "DICM\x02\x9f"s;  // and the file ends: GDCM's reader asserted on this
    Decoded out;
    std::string err;
    EXPECT_FALSE(dec.decode_bytes(reinterpret_cast<const uchar*>(data.data()), data.size(), nullptr, out, err));
    EXPECT_FALSE(err.empty());
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
}
