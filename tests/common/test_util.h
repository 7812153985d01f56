#pragma once
// Helpers shared by the test suites: temporary folders, synthetic images, file reading.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace imgpipe::test {

/// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("imgpipe-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// A seeded random BGR image with smooth structure (so JPEG keeps it recognisable).
inline cv::Mat random_image(int w, int h, unsigned seed, int channels = 3) {
  cv::Mat img(h, w, CV_8UC(channels));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 255);
  const int a = d(rng), b = d(rng), c = d(rng);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < channels; ++ch)
        img.ptr<uint8_t>(y)[x * channels + ch] =
            uint8_t((a * (ch + 1) + x * 255 / std::max(1, w) * (ch == 0) + y * 255 / std::max(1, h) * (ch == 1) +
                     (x + y) * c / std::max(1, w + h) + (b & 15) * ((x / 8 + y / 8) % 2)) % 256);
  return img;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

}  // namespace imgpipe::test
