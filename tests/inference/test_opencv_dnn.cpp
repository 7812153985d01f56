// The CPU executor against OpenCV's DNN module, a second independent ONNX implementation,
// on the files it can read (OpenCV 4.6 cannot read some PyTorch exports; our loader must).
#include <gtest/gtest.h>
#include <unistd.h>

#include <opencv2/dnn.hpp>

#include <cmath>
#include <filesystem>

#include "gpu_test_models.h"
#include "model_builder.h"

namespace imgpipe::infer::test {
namespace {

namespace fs = std::filesystem;

void compare_with_opencv(ModelBuilder b, const std::string& name, int batch) {
  const fs::path dir = fs::temp_directory_path() / ("imgpipe_dnn_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / (name + ".onnx")).string();
  // OpenCV's importer wants the output's shape in the graph (PyTorch exports carry it).
  auto* shape_proto = b.proto().mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  shape_proto->add_dim()->set_dim_param("N");
  for (int64_t d : b.model().output_shape()) shape_proto->add_dim()->set_dim_value(d);
  b.save(file);
  const Model m = Model::load(file);
  std::vector<int64_t> shape = m.input_shape();
  shape.insert(shape.begin(), batch);
  const std::vector<float> x = ModelBuilder::random_values(shape, name + ".input");
  cv::dnn::Net net;
  try {
    net = cv::dnn::readNetFromONNX(file);
  } catch (const cv::Exception& e) {
    GTEST_SKIP() << "OpenCV " << CV_VERSION << " DNN cannot read " << name << ": " << e.what();
  }
  const std::vector<int> dims(shape.begin(), shape.end());
  cv::Mat blob(int(dims.size()), dims.data(), CV_32F, const_cast<float*>(x.data()));
  net.setInput(blob);
  cv::Mat out = net.forward();
  ASSERT_EQ(size_t(out.total()), size_t(batch * m.output_size()));
  const std::vector<float> want(out.ptr<float>(), out.ptr<float>() + out.total());
  const std::vector<float> got = run_model(m, x, batch);
  float scale = 1.f;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  // Tolerance: 1e-4 relative to the largest reference magnitude, as against onnxruntime.
  EXPECT_LE(max_abs_diff(got, want), 1e-4f * scale) << name;
}

}  // namespace

TEST(OpenCvDnnOracle, ResNetStyle) { compare_with_opencv(gpu_resnet_style(), "resnet_style", 3); }
TEST(OpenCvDnnOracle, MobileNetStyle) { compare_with_opencv(gpu_mobilenet_style(), "mobilenet_style", 2); }

TEST(OpenCvDnnOracle, SampleColourModel) {
  const Model m = Model::load(IMGPIPE_SAMPLE_MODEL);
  cv::dnn::Net net = cv::dnn::readNetFromONNX(IMGPIPE_SAMPLE_MODEL);
  const std::vector<float> x = ModelBuilder::random_values({4, 3, 56, 56}, "sample.input");
  const int dims[] = {4, 3, 56, 56};
  net.setInput(cv::Mat(4, dims, CV_32F, const_cast<float*>(x.data())));
  cv::Mat out = net.forward();
  const std::vector<float> want(out.ptr<float>(), out.ptr<float>() + out.total());
  EXPECT_LE(max_abs_diff(run_model(m, x, 4), want), 1e-4f);
}

}  // namespace imgpipe::infer::test
