#include "device_query.h"

#if defined(IMGPIPE_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include "cuda_check.h"
#endif

namespace imgpipe::kernels {

#if !defined(IMGPIPE_HAVE_CUDA)

CudaProbe probe_cuda() { return {0, "built without CUDA"}; }
bool use_blocking_sync(int) noexcept { return false; }

#else

CudaProbe probe_cuda() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: keep it from a later launch check
    return {0, std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")"};
  }
  if (count == 0) return {0, "no CUDA device found"};
  return {count, ""};
}

DeviceMemInfo device_mem_info(int device) {
  int previous = 0;
  IMGPIPE_CUDA_CHECK(cudaGetDevice(&previous));
  if (previous != device) IMGPIPE_CUDA_CHECK(cudaSetDevice(device));
  DeviceMemInfo info;
  const cudaError_t e = cudaMemGetInfo(&info.free, &info.total);
  if (previous != device) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(previous));
  IMGPIPE_CUDA_CHECK(e);
  return info;
}

bool use_blocking_sync(int device) noexcept {
  if (cudaSetDevice(device) == cudaSuccess && cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync) == cudaSuccess)
    return true;
  (void)cudaGetLastError();  // not sticky: keep it from a later launch check
  return false;
}

#endif

}  // namespace imgpipe::kernels
