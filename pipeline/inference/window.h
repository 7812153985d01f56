#pragma once
// A sliding window along one spatial axis (convolution and pooling); plain data, so the
// CUDA kernels can use it too.
#include <cstdint>

namespace imgpipe::infer {

/// Kernel size, stride, dilation, pads and output size along one axis.
struct Window {
  int64_t k = 1, stride = 1, dil = 1, pad_begin = 0, pad_end = 0, out = 0;
};

}  // namespace imgpipe::infer
