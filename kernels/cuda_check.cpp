#include "cuda_check.h"

#include <cstdio>

namespace imgpipe::kernels::detail {

StatusInfo status_info(cudaError_t s) noexcept {
  if (s == cudaSuccess) return {true, false, "cudaSuccess", ""};
  // Clear the runtime's last error: a non-sticky failure (an allocation, a bad argument)
  // must not resurface at the next IMGPIPE_CHECK_LAUNCH() after the caller handled it.
  (void)cudaGetLastError();
  return {false, s == cudaErrorMemoryAllocation, cudaGetErrorName(s), cudaGetErrorString(s)};
}

namespace {
std::string describe(const StatusInfo& info, const char* expr, const char* file, int line) {
  std::string m = std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " + info.name;
  if (info.message && *info.message) m += std::string(" (") + info.message + ")";
  return m;
}
}  // namespace

void throw_error(const StatusInfo& info, int code, const char* expr, const char* file, int line) {
  const std::string m = describe(info, expr, file, line);
  if (info.oom) throw CudaOutOfMemory(m, file, line, code);
  throw CudaError(m, file, line, code);
}

void log_error(const StatusInfo& info, const char* expr, const char* file, int line) noexcept {
  try {
    std::fprintf(stderr, "imgpipe: CUDA error ignored: %s\n",
                 describe(info, expr, file, line).c_str());
  } catch (...) {  // std::string allocation; nothing more to do in a destructor
  }
}

}  // namespace imgpipe::kernels::detail
