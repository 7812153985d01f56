#pragma once
// Plain parameter types shared by the CUDA planner (host) and the kernels (.cu). No ONNX or
// protobuf headers here, so nvcc never sees them.
#include <cstdint>

namespace imgpipe::infer::cuda {

/// Sliding window along one spatial axis (conv and pooling).
struct Window {
  int64_t k = 1, stride = 1, dil = 1, pad_begin = 0, pad_end = 0, out = 0;
};

enum class UnaryKind { Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh };
enum class BinaryKind { Add, Sub, Mul, Div };
/// Activation applied after a convolution's bias (Relu, or Clip to [lo, hi]).
enum class ActKind { None, Relu, Clip };

}  // namespace imgpipe::infer::cuda
