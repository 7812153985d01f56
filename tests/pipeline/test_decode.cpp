#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <filesystem>

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
