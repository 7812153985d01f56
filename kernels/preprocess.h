#pragma once
// Fused preprocessing: decoded 8-bit images of different sizes -> one batch tensor.
// Declares the CPU reference and the CUDA version with the same arguments; the CPU
// reference is the oracle the CUDA kernel is tested against, and the no-GPU fallback.
#include <cstddef>
#include <cstdint>

#if defined(IMGPIPE_HAVE_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace imgpipe::kernels {

enum class Interp : int32_t {
  Nearest,   ///< nearest neighbour, src = floor((dst + 0.5) * scale)
  Bilinear,  ///< triangle filter, half-pixel centres; support widens with the downscale
             ///< factor (antialiased, as PIL / torchvision antialias=True)
  Area,      ///< box filter over the source footprint (as PIL BOX / OpenCV INTER_AREA)
};
enum class Layout : int32_t { NCHW, NHWC };
enum class DType : int32_t { F32, F16, U8 };

/// Where one decoded image lives in the source buffer and where it lands in the output.
/// The image is resized to resized_w x resized_h and placed with its top-left corner at
/// (offset_x, offset_y) of the out_w x out_h output; negative offsets crop (center crop),
/// positive ones leave a border filled with the pad value (letterbox).
struct ImageDesc {
  int64_t offset = 0;             ///< byte offset of the first pixel in the source buffer
  int32_t width = 0, height = 0;  ///< source size in pixels
  int32_t pitch = 0;              ///< bytes from one source row to the next
  int32_t resized_w = 0, resized_h = 0;
  int32_t offset_x = 0, offset_y = 0;
};

/// What every image of a batch is turned into.
struct PreprocessParams {
  int32_t src_channels = 3;  ///< 1 (gray) or 3 (BGR, as decoders produce)
  int32_t out_channels = 3;  ///< 1 or 3
  bool out_rgb = true;       ///< with 3 channels: RGB order (true) or BGR (false)
  int32_t out_w = 0, out_h = 0;
  Interp interp = Interp::Bilinear;
  float pad = 0.f;  ///< 8-bit value of pixels outside the resized image
  /// float outputs: out = (pixel * scale - mean[c]) / std[c], c in output channel order.
  /// uint8 output: the resampled pixel rounded and clamped to 0..255; scale/mean/std unused.
  float scale = 1.f;
  float mean[3] = {0.f, 0.f, 0.f};
  float std[3] = {1.f, 1.f, 1.f};
  Layout layout = Layout::NCHW;
  DType dtype = DType::F32;
};

/// Bytes of one output image (out_channels * out_h * out_w * dtype size).
[[nodiscard]] size_t output_image_bytes(const PreprocessParams& p);

/// Throws std::invalid_argument naming the field when p cannot be processed (channels not
/// 1 or 3, empty output, zero std with a float dtype). Both entry points call it.
void validate_params(const PreprocessParams& p);

/// CPU reference. h_src: source pixels; descs: n entries; h_out: n * output_image_bytes(p)
/// bytes, image i at i * output_image_bytes(p). Float16 is stored as IEEE binary16. An image
/// whose source or resized size is empty comes out as all pad. Single-threaded.
void preprocess_cpu(const uint8_t* h_src, const ImageDesc* descs, int n, const PreprocessParams& p,
                    void* h_out);

#if defined(IMGPIPE_HAVE_CUDA)
/// CUDA version of preprocess_cpu: same arguments, all in device memory (d_descs too),
/// enqueued on `stream` without synchronising. It runs the CPU reference's float operations
/// in the same order; test_kernels_gpu holds it to within 1/255 (float outputs, output
/// units) or 1 level (U8) of preprocess_cpu, and exactly for U8 with Nearest.
/// Throws std::invalid_argument for bad params, CudaError if the launch fails.
void preprocess_cuda(const uint8_t* d_src, const ImageDesc* d_descs, int n,
                     const PreprocessParams& p, void* d_out, cudaStream_t stream);
#endif

}  // namespace imgpipe::kernels
