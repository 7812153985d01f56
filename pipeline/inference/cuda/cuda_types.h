#pragma once
// Plain parameter types shared by the CUDA planner (host) and the kernels (.cu). No ONNX or
// protobuf headers here, so nvcc never sees them.
#include <cstdint>

#include "window.h"

namespace imgpipe::infer::cuda {

using Window = infer::Window;  ///< sliding window along one spatial axis

enum class UnaryKind { Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Sqrt, Erf, Neg, Not };
/// Elementwise ops of two operands (Mod: the divisor's sign, as Python's %; FMod: C's fmod),
/// and Where (a != 0 ? b : c) of three.
enum class BinaryKind { Add, Sub, Mul, Div, Pow, Equal, Mod, FMod, Where };
/// Activation applied after a convolution's bias (Relu, or Clip to [lo, hi]).
enum class ActKind { None, Relu, Clip };

constexpr int kMaxRank = 8;

/// An index space of `rank` dims (row-major) and up to three operands' element strides over
/// it: 0 on broadcast dims, negative for reversed slices. Operand a starts at element a_base.
struct Strided {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t a[kMaxRank] = {};
  int64_t b[kMaxRank] = {};
  int64_t c[kMaxRank] = {};
  int64_t a_base = 0;
};

/// Pad modes of ONNX Pad: a constant value, the mirror without the edge, the edge repeated.
enum class PadMode { Constant, Reflect, Edge };

/// A Pad's geometry: output dim d holds input dim d with begin[d] elements before it.
struct PadShape {
  int rank = 0;
  int64_t in[kMaxRank] = {};
  int64_t out[kMaxRank] = {};
  int64_t begin[kMaxRank] = {};
};

}  // namespace imgpipe::infer::cuda
