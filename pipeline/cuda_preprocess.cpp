#include "cuda_preprocess.h"

#if defined(IMGPIPE_HAVE_CUDA)
#include <cstring>
#include <stdexcept>

#include "cuda_check.h"

namespace imgpipe {
namespace {

// Sizes a buffer for `bytes` with 25% headroom, so steady state allocates nothing; a buffer
// more than twice too large is given back (staging shrinks when the batch does).
template <class Buffer>
void ensure(Buffer& b, size_t bytes) {
  if (b.size() >= bytes && b.size() <= 2 * (bytes + bytes / 4)) return;
  b.reset();  // free first: the old and new buffer need not fit together
  b = Buffer(bytes + bytes / 4);
}

}  // namespace

CudaPreprocessor::CudaPreprocessor(int device, const kernels::PreprocessParams& params)
    : params_(params), device_((IMGPIPE_CUDA_CHECK(cudaSetDevice(device)), device)) {}

void CudaPreprocessor::submit(const std::vector<cv::Mat>& images, std::vector<kernels::ImageDesc> descs,
                              bool download) {
  if (in_flight_ == kSlots) throw std::logic_error("CudaPreprocessor::submit: no free slot, collect() first");
  if (images.size() != descs.size() || images.empty())
    throw std::invalid_argument("CudaPreprocessor::submit: one placement per image, at least one image");
  IMGPIPE_CUDA_CHECK(cudaSetDevice(device_));
  Slot& s = slots_[size_t(next_)];
  const int n = int(images.size());
  // Pack the images back to back, each row tight, into the pinned staging buffer.
  size_t total = 0;
  for (const auto& img : images) total += img.total() * img.elemSize();
  ensure(s.h_src, total);
  ensure(s.d_src, total);
  size_t offset = 0;
  auto* h_src = s.h_src.as<uint8_t>();
  for (int i = 0; i < n; ++i) {
    const cv::Mat& img = images[size_t(i)];
    const size_t row = size_t(img.cols) * img.elemSize();
    for (int y = 0; y < img.rows; ++y) std::memcpy(h_src + offset + size_t(y) * row, img.ptr(y), row);
    descs[size_t(i)].offset = int64_t(offset);
    descs[size_t(i)].width = img.cols;
    descs[size_t(i)].height = img.rows;
    descs[size_t(i)].pitch = int32_t(row);
    offset += row * size_t(img.rows);
  }
  const size_t desc_bytes = sizeof(kernels::ImageDesc) * size_t(n);
  ensure(s.h_descs, desc_bytes);
  ensure(s.d_descs, desc_bytes);
  std::memcpy(s.h_descs.get(), descs.data(), desc_bytes);
  const size_t out_bytes = kernels::output_image_bytes(params_) * size_t(n);
  ensure(s.d_out, out_bytes);
  if (download) ensure(s.h_out, out_bytes);

  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.d_src.get(), s.h_src.get(), total, cudaMemcpyHostToDevice, s.stream));
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.d_descs.get(), s.h_descs.get(), desc_bytes, cudaMemcpyHostToDevice, s.stream));
  kernels::preprocess_cuda(s.d_src.as<uint8_t>(), s.d_descs.as<kernels::ImageDesc>(), n, params_, s.d_out.get(),
                           s.stream);
  if (download)
    IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.h_out.get(), s.d_out.get(), out_bytes, cudaMemcpyDeviceToHost, s.stream));
  s.done.record(s.stream);
  s.n = n;
  s.download = download;
  next_ = (next_ + 1) % kSlots;
  ++in_flight_;
}

CudaPreprocessor::Batch CudaPreprocessor::collect() {
  if (in_flight_ == 0) throw std::logic_error("CudaPreprocessor::collect: nothing in flight");
  Slot& s = slots_[size_t(oldest_)];
  s.done.synchronize();
  oldest_ = (oldest_ + 1) % kSlots;
  --in_flight_;
  return Batch{s.n, s.d_out.get(), s.download ? s.h_out.get() : nullptr};
}

size_t CudaPreprocessor::device_bytes() const {
  size_t b = 0;
  for (const auto& s : slots_) b += s.d_src.size() + s.d_descs.size() + s.d_out.size();
  return b;
}

size_t CudaPreprocessor::pinned_bytes() const {
  size_t b = 0;
  for (const auto& s : slots_) b += s.h_src.size() + s.h_descs.size() + s.h_out.size();
  return b;
}

#if defined(IMGPIPE_HAVE_OPENCV_CUDA)
void preprocess_gpumats(const std::vector<cv::cuda::GpuMat>& images, std::vector<kernels::ImageDesc> placement,
                        const kernels::PreprocessParams& params, cv::cuda::GpuMat& out, cudaStream_t stream) {
  if (images.empty() || images.size() != placement.size())
    throw std::invalid_argument("preprocess_gpumats: one placement per image, at least one image");
  // The kernel addresses every image from one base pointer: offsets are signed distances
  // in the device's flat address space.
  const auto* base = images[0].ptr<uint8_t>();
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& m = images[i];
    if (m.type() != (params.src_channels == 1 ? CV_8UC1 : CV_8UC3))
      throw std::invalid_argument("preprocess_gpumats: image " + std::to_string(i) + " is not 8-bit with " +
                                  std::to_string(params.src_channels) + " channels");
    placement[i].offset = int64_t(m.ptr<uint8_t>() - base);
    placement[i].width = m.cols;
    placement[i].height = m.rows;
    placement[i].pitch = int32_t(m.step);
  }
  const size_t desc_bytes = sizeof(kernels::ImageDesc) * placement.size();
  kernels::DeviceBuffer d_descs(desc_bytes);
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(d_descs.get(), placement.data(), desc_bytes, cudaMemcpyHostToDevice, stream));
  out.create(int(images.size()), int(kernels::output_image_bytes(params)), CV_8UC1);
  kernels::preprocess_cuda(base, d_descs.as<kernels::ImageDesc>(), int(images.size()), params, out.data, stream);
  IMGPIPE_CUDA_CHECK(cudaStreamSynchronize(stream));  // d_descs is freed on return
}
#endif

}  // namespace imgpipe
#endif  // IMGPIPE_HAVE_CUDA
