#include "cuda_preprocess.h"

#include <algorithm>

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
  std::vector<size_t> bytes(images.size());
  for (int i = 0; i < n; ++i) bytes[size_t(i)] = images[size_t(i)].total() * images[size_t(i)].elemSize();
  const size_t largest = *std::max_element(bytes.begin(), bytes.end());
  const size_t desc_bytes = sizeof(kernels::ImageDesc) * size_t(n);
  const size_t image_out = kernels::output_image_bytes(params_);
  ensure(s.h_descs, desc_bytes);
  ensure(s.d_descs, desc_bytes);
  ensure(s.d_out, image_out * size_t(n));
  if (download) ensure(s.h_out, image_out * size_t(n));
  // Source staging as planned, halved while memory is short, never below one image.
  size_t cap = source_staging_bytes(bytes, params_);
  for (;;) {
    try {
      ensure(s.h_src, cap);
      ensure(s.d_src, cap);
      break;
    } catch (const kernels::CudaOutOfMemory&) {
      s.h_src.reset();
      s.d_src.reset();
      if (cap == largest) throw;
      cap = std::max(largest, cap / 2);
    }
  }
  // Chunks of consecutive images that fit the staging; offsets are from the chunk's start.
  const std::vector<int> chunk_start = staging_chunks(bytes, cap);
  for (size_t c = 0; c + 1 < chunk_start.size(); ++c) {
    size_t offset = 0;
    for (int i = chunk_start[c]; i < chunk_start[c + 1]; ++i) {
      const cv::Mat& img = images[size_t(i)];
      descs[size_t(i)].offset = int64_t(offset);
      descs[size_t(i)].width = img.cols;
      descs[size_t(i)].height = img.rows;
      descs[size_t(i)].pitch = int32_t(size_t(img.cols) * img.elemSize());
      offset += bytes[size_t(i)];
    }
  }
  std::memcpy(s.h_descs.get(), descs.data(), desc_bytes);
  IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.d_descs.get(), s.h_descs.get(), desc_bytes, cudaMemcpyHostToDevice, s.stream));
  auto* h_src = s.h_src.as<uint8_t>();
  for (size_t c = 0; c + 1 < chunk_start.size(); ++c) {
    const int first = chunk_start[c], last = chunk_start[c + 1];
    if (c > 0) s.staged.synchronize();  // the previous chunk's upload has left the pinned buffer
    // Pack the chunk's images back to back, each row tight.
    size_t used = 0;
    for (int i = first; i < last; ++i) {
      const cv::Mat& img = images[size_t(i)];
      const size_t row = size_t(img.cols) * img.elemSize();
      for (int y = 0; y < img.rows; ++y) std::memcpy(h_src + used + size_t(y) * row, img.ptr(y), row);
      used += bytes[size_t(i)];
    }
    IMGPIPE_CUDA_CHECK(cudaMemcpyAsync(s.d_src.get(), h_src, used, cudaMemcpyHostToDevice, s.stream));
    s.staged.record(s.stream);
    kernels::preprocess_cuda(s.d_src.as<uint8_t>(), s.d_descs.as<kernels::ImageDesc>() + first, last - first, params_,
                             s.d_out.as<uint8_t>() + size_t(first) * image_out, s.stream);
  }
  if (download)
    IMGPIPE_CUDA_CHECK(
        cudaMemcpyAsync(s.h_out.get(), s.d_out.get(), image_out * size_t(n), cudaMemcpyDeviceToHost, s.stream));
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

namespace imgpipe {

size_t source_staging_bytes(const std::vector<size_t>& bytes, const kernels::PreprocessParams& p) {
  size_t total = 0, largest = 0;
  for (size_t b : bytes) {
    total += b;
    largest = std::max(largest, b);
  }
  return std::max(largest, std::min(total, bytes.size() * source_bytes_per_image(p)));
}

std::vector<int> staging_chunks(const std::vector<size_t>& bytes, size_t capacity) {
  std::vector<int> start{0};
  size_t used = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (used > 0 && used + bytes[i] > capacity) {
      start.push_back(int(i));
      used = 0;
    }
    used += bytes[i];
  }
  start.push_back(int(bytes.size()));
  return start;
}

}  // namespace imgpipe
