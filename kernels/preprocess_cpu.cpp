#include "preprocess.h"

#include <stdexcept>

namespace imgpipe::kernels {

size_t output_image_bytes(const PreprocessParams& p) {
  const size_t elem = p.dtype == DType::F32 ? 4 : p.dtype == DType::F16 ? 2 : 1;
  return size_t(p.out_channels) * size_t(p.out_h) * size_t(p.out_w) * elem;
}

void preprocess_cpu(const uint8_t*, const ImageDesc*, int, const PreprocessParams&, void*) {
  throw std::logic_error("preprocess_cpu: not implemented yet");
}

}  // namespace imgpipe::kernels
