// CUDA version of preprocess_cpu: one fused kernel, one thread per output pixel, computing
// the same separable PIL-style filter directly (taps and weights from preprocess_filter.h,
// so the results match the CPU reference; this file is built with --fmad=false for that).
#include <cuda_fp16.h>

#include "cuda_check.h"
#include "preprocess.h"
#include "preprocess_filter.h"

namespace imgpipe::kernels {

namespace {
constexpr int kBlockX = 32;  // consecutive x per warp: coalesced NCHW rows
constexpr int kBlockY = 8;
constexpr unsigned kMaxGridZ = 65535;
}  // namespace

// Grid: x, y over the output pixels, z over images (striding when n exceeds the grid).
template <int SC>
static __global__ void preprocess_kernel(const uint8_t* __restrict__ d_src,
                                         const ImageDesc* __restrict__ d_descs, int n,
                                         const PreprocessParams p, void* __restrict__ d_out,
                                         size_t image_bytes) {
  const int32_t x = int32_t(blockIdx.x * blockDim.x + threadIdx.x);
  const int32_t y = int32_t(blockIdx.y * blockDim.y + threadIdx.y);
  if (x >= p.out_w || y >= p.out_h) return;
  const size_t plane = size_t(p.out_w) * size_t(p.out_h);
  const size_t pix = size_t(y) * size_t(p.out_w) + size_t(x);

  for (int img = int(blockIdx.z); img < n; img += int(gridDim.z)) {
    const ImageDesc d = d_descs[img];
    const int32_t rx = x - d.offset_x, ry = y - d.offset_y;
    const bool inside = d.width > 0 && d.height > 0 && d.resized_w > 0 && d.resized_h > 0 &&
                        rx >= 0 && ry >= 0 && rx < d.resized_w && ry < d.resized_h;
    float v[3] = {p.pad, p.pad, p.pad};
    if (inside) {
      const detail::AxisFilter fx = detail::make_axis_filter(d.width, d.resized_w, p.interp);
      const detail::AxisFilter fy = detail::make_axis_filter(d.height, d.resized_h, p.interp);
      const detail::TapRange tx = detail::tap_range(fx, rx);
      const detail::TapRange ty = detail::tap_range(fy, ry);
      const float wwx = detail::tap_weight_sum(fx, tx);
      const float wwy = detail::tap_weight_sum(fy, ty);
      const uint8_t* first = d_src + d.offset + int64_t(tx.start) * SC;
      // Same summation order as the CPU: horizontal sum per source row, then vertical.
      float acc[SC] = {};
      for (int32_t ky = 0; ky < ty.count; ++ky) {
        const float wy = detail::normalized_tap_weight(fy, ty, wwy, ky);
        const uint8_t* row = first + int64_t(ty.start + ky) * d.pitch;
        float h[SC] = {};
        for (int32_t kx = 0; kx < tx.count; ++kx) {
          const float wx = detail::normalized_tap_weight(fx, tx, wwx, kx);
          for (int c = 0; c < SC; ++c) h[c] += wx * float(row[kx * SC + c]);
        }
        for (int c = 0; c < SC; ++c) acc[c] += wy * h[c];
      }
      if (SC == 1)
        v[0] = v[1] = v[2] = acc[0];  // replicate without a runtime-bounded loop (no stack)
      else
        detail::to_out_channels(acc, SC, p.out_channels, p.out_rgb, v);
    }

    uint8_t* out = static_cast<uint8_t*>(d_out) + size_t(img) * image_bytes;
#pragma unroll
    for (int32_t c = 0; c < 3; ++c) {  // unrolled: v and p.mean/p.std stay in registers
      if (c >= p.out_channels) break;
      const size_t idx = p.layout == Layout::NCHW ? size_t(c) * plane + pix
                                                  : pix * size_t(p.out_channels) + size_t(c);
      switch (p.dtype) {
        case DType::F32:
          reinterpret_cast<float*>(out)[idx] = detail::normalize(p, c, v[c]);
          break;
        case DType::F16:
          reinterpret_cast<__half*>(out)[idx] = __float2half_rn(detail::normalize(p, c, v[c]));
          break;
        case DType::U8:
          out[idx] = detail::to_u8(v[c]);
          break;
      }
    }
  }
}

static void launch_preprocess(const uint8_t* d_src, const ImageDesc* d_descs, int n,
                              const PreprocessParams& p, void* d_out, cudaStream_t stream) {
  const dim3 block(kBlockX, kBlockY);
  const dim3 grid((unsigned(p.out_w) + kBlockX - 1) / kBlockX,
                  (unsigned(p.out_h) + kBlockY - 1) / kBlockY,
                  unsigned(n) < kMaxGridZ ? unsigned(n) : kMaxGridZ);
  const size_t image_bytes = output_image_bytes(p);
  if (p.src_channels == 3)
    preprocess_kernel<3><<<grid, block, 0, stream>>>(d_src, d_descs, n, p, d_out, image_bytes);
  else
    preprocess_kernel<1><<<grid, block, 0, stream>>>(d_src, d_descs, n, p, d_out, image_bytes);
  IMGPIPE_CHECK_LAUNCH();
}

void preprocess_cuda(const uint8_t* d_src, const ImageDesc* d_descs, int n,
                     const PreprocessParams& p, void* d_out, cudaStream_t stream) {
  validate_params(p);
  if (n <= 0) return;
  launch_preprocess(d_src, d_descs, n, p, d_out, stream);
}

}  // namespace imgpipe::kernels
