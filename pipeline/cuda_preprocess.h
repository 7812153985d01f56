#pragma once
// The GPU preprocessing stage: decoded images -> pinned staging -> device -> fused kernel,
// double-buffered so the upload and kernel of one batch overlap the host work on the
// previous one. The batch tensor stays on the device for inference; it is copied back
// only when asked (tensors written to disk). CUDA builds only.
#if defined(IMGPIPE_HAVE_CUDA)
#include <opencv2/core.hpp>
#if defined(IMGPIPE_HAVE_OPENCV_CUDA)
#include <opencv2/core/cuda.hpp>
#endif

#include <array>
#include <vector>

#include "cuda_resources.h"
#include "preprocess.h"

namespace imgpipe {

class CudaPreprocessor {
 public:
  /// Batches in flight at once (one per slot of staging buffers and stream).
  static constexpr int kSlots = 2;

  /// Uses `device` (made current on the calling thread).
  CudaPreprocessor(int device, const kernels::PreprocessParams& params);

  /// Enqueues one batch: copies the images into the pinned staging of a free slot, uploads
  /// them and their descriptors on the slot's stream, launches the fused kernel, and (with
  /// `download`) copies the tensor back into pinned host memory. descs[i] gives the
  /// placement of images[i] (offset and pitch are filled in here). Requires a free slot:
  /// call collect() first when in_flight() == kSlots.
  /// The source staging (pinned and device) holds source_bytes_per_image() per image of the
  /// batch, what the governor and the host budget plan for; larger images go through it in
  /// chunks (one image larger than that alone gets a buffer of its size). When that much
  /// memory cannot be had, the staging is halved until it can (down to the largest image).
  void submit(const std::vector<cv::Mat>& images, std::vector<kernels::ImageDesc> descs, bool download);

  struct Batch {
    int n = 0;
    const void* d_tensor = nullptr;  ///< valid until this slot is submitted to again
    const void* h_tensor = nullptr;  ///< pinned host copy, when submitted with download
  };
  /// Waits for the oldest batch in flight and returns it. Throws CudaError on failure.
  Batch collect();
  int in_flight() const { return in_flight_; }

  /// Host and device bytes held now (staging grows to the largest batch seen).
  size_t device_bytes() const;
  size_t pinned_bytes() const;

 private:
  struct Slot {
    kernels::Stream stream;
    kernels::Event done, staged;
    kernels::PinnedBuffer h_src, h_descs, h_out;
    kernels::DeviceBuffer d_src, d_descs, d_out;
    int n = 0;
    bool download = false;
  };
  kernels::PreprocessParams params_;
  int device_;
  std::array<Slot, kSlots> slots_;
  int next_ = 0, oldest_ = 0, in_flight_ = 0;
};

#if defined(IMGPIPE_HAVE_OPENCV_CUDA)
/// For callers holding images on the GPU already (an OpenCV built with CUDA; Debian's is
/// not): preprocesses `images` (CV_8UC3 BGR or CV_8UC1 GpuMats, any pitch) into `out`, one
/// row of output_image_bytes(params) bytes per image, with the fused kernel and no copy
/// through the host. placement[i] gives resized size and offsets (place_image); the source
/// fields are filled in here. Enqueued on `stream`.
void preprocess_gpumats(const std::vector<cv::cuda::GpuMat>& images, std::vector<kernels::ImageDesc> placement,
                        const kernels::PreprocessParams& params, cv::cuda::GpuMat& out, cudaStream_t stream);
#endif

}  // namespace imgpipe
#else
#include <opencv2/core.hpp>

#include <stdexcept>
#include <vector>

#include "preprocess.h"

namespace imgpipe {

/// A build without CUDA: the run never selects the GPU, so this is never constructed.
class CudaPreprocessor {
 public:
  static constexpr int kSlots = 2;
  struct Batch {
    int n = 0;
    const void* d_tensor = nullptr;
    const void* h_tensor = nullptr;
  };
  CudaPreprocessor(int, const kernels::PreprocessParams&) { throw std::logic_error("built without CUDA"); }
  void submit(const std::vector<cv::Mat>&, std::vector<kernels::ImageDesc>, bool) {}
  Batch collect() { return {}; }
  int in_flight() const { return 0; }
  size_t device_bytes() const { return 0; }
  size_t pinned_bytes() const { return 0; }
};

}  // namespace imgpipe
#endif  // IMGPIPE_HAVE_CUDA

#include <vector>

namespace imgpipe {

/// Decoded source bytes the GPU staging plans per image: 4x the output area of 8-bit
/// pixels in 3 channels (JPEGs come DCT-downscaled to within that).
inline size_t source_bytes_per_image(const kernels::PreprocessParams& p) {
  return 4 * size_t(p.out_w) * size_t(p.out_h) * 3;
}
/// Bytes one slot of GPU staging plans per image: the source and the output tensor (device,
/// and pinned when the tensor is copied back).
inline size_t staging_bytes_per_image(const kernels::PreprocessParams& p) {
  return source_bytes_per_image(p) + kernels::output_image_bytes(p);
}

/// Source staging for a batch of images of `bytes` each: what the plan gives the batch
/// (source_bytes_per_image each), less when they need less, never less than the largest.
size_t source_staging_bytes(const std::vector<size_t>& bytes, const kernels::PreprocessParams& p);

/// Splits images of `bytes` each, in order, into runs that fit `capacity` bytes together (an
/// image larger than that runs alone): the first index of each run, then bytes.size().
std::vector<int> staging_chunks(const std::vector<size_t>& bytes, size_t capacity);

}  // namespace imgpipe
