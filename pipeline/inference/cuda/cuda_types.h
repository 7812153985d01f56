#pragma once
// Plain parameter types shared by the CUDA planner (host) and the kernels (.cu). No ONNX or
// protobuf headers here, so nvcc never sees them.
#include <cstdint>

#include "window.h"

namespace imgpipe::infer::cuda {

using Window = infer::Window;  ///< sliding window along one spatial axis

enum class UnaryKind { Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh };
enum class BinaryKind { Add, Sub, Mul, Div };
/// Activation applied after a convolution's bias (Relu, or Clip to [lo, hi]).
enum class ActKind { None, Relu, Clip };

}  // namespace imgpipe::infer::cuda
