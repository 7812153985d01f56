#pragma once
// Whether CUDA can run here, and how much device memory is free. Usable in CPU-only
// builds: probe_cuda() then reports "built without CUDA".
#include <cstddef>
#include <string>

namespace imgpipe::kernels {

/// Result of probing for CUDA devices: device_count 0 comes with a readable reason.
struct CudaProbe {
  int device_count = 0;
  std::string reason;  ///< empty when devices were found
};

/// Counts usable CUDA devices; never throws. Reasons for 0: "built without CUDA", the
/// runtime's message for an insufficient driver or no device, or any other error's message.
CudaProbe probe_cuda();

#if defined(IMGPIPE_HAVE_CUDA)
/// Device memory in bytes.
struct DeviceMemInfo {
  size_t free = 0, total = 0;
};

/// Free and total memory of `device` (cudaMemGetInfo); the calling thread's current device
/// is left unchanged. Throws CudaError.
DeviceMemInfo device_mem_info(int device);
#endif

/// Makes `device` current and asks that host waits on it (stream and event synchronisation,
/// synchronous copies) block the thread instead of spinning a CPU core
/// (cudaDeviceScheduleBlockingSync). Returns false when the runtime refuses (or without
/// CUDA); never throws.
bool use_blocking_sync(int device) noexcept;

}  // namespace imgpipe::kernels
