#pragma once
// Error checking for CUDA runtime, cuBLAS and cuDNN calls: one macro family that throws a
// typed CudaError (CudaOutOfMemory for allocation failures, which the memory governor
// catches), a no-throw variant for destructors, and a launch check. Never exits.
// CudaError and CudaOutOfMemory exist in CPU-only builds too, so code that catches them
// (and the CPU backend's simulated allocation failures) compiles everywhere.
#include <stdexcept>
#include <string>

#if defined(IMGPIPE_HAVE_CUDA)
#include <cublas_v2.h>  // not <cublas_api.h>: CUDA 12 refuses it without CUBLASAPI
#include <cuda_runtime_api.h>
#if defined(IMGPIPE_HAVE_CUDNN)
#include <cudnn.h>
#endif
#endif

namespace imgpipe::kernels {

/// A failed CUDA/cuBLAS/cuDNN call: what() is "file:line: expr: NAME (message)".
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& message, const char* file, int line, int code)
      : std::runtime_error(message), file_(file), line_(line), code_(code) {}
  const char* file() const noexcept { return file_; }
  int line() const noexcept { return line_; }
  int code() const noexcept { return code_; }  ///< the API's status value

 private:
  const char* file_;
  int line_;
  int code_;
};

/// Device (or pinned host) memory could not be allocated: cudaErrorMemoryAllocation,
/// CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED.
class CudaOutOfMemory : public CudaError {
 public:
  using CudaError::CudaError;
};

#if defined(IMGPIPE_HAVE_CUDA)
namespace detail {

/// What one status type means: success, out of memory, its name and message.
struct StatusInfo {
  bool ok, oom;
  const char* name;
  const char* message;
};
StatusInfo status_info(cudaError_t s) noexcept;

// The cuBLAS and cuDNN overloads are inline, so that only code which checks their statuses
// links those libraries (cuBLAS alone adds over 200 MB of resident memory at load): a
// preprocessing-only run never loads them. Targets that use them link imgpipe_cuda_libs.
inline StatusInfo status_info(cublasStatus_t s) noexcept {
  return {s == CUBLAS_STATUS_SUCCESS, s == CUBLAS_STATUS_ALLOC_FAILED, cublasGetStatusName(s),
          cublasGetStatusString(s)};
}
#if defined(IMGPIPE_HAVE_CUDNN)
inline StatusInfo status_info(cudnnStatus_t s) noexcept {
#if CUDNN_MAJOR >= 9
  // cuDNN 9 splits the old CUDNN_STATUS_ALLOC_FAILED into host and device failures.
  const bool oom = s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                   s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
#else
  const bool oom = s == CUDNN_STATUS_ALLOC_FAILED;
#endif
  // cudnnGetErrorString gives the enumerator's name.
  return {s == CUDNN_STATUS_SUCCESS, oom, cudnnGetErrorString(s), ""};
}
#endif

[[noreturn]] void throw_error(const StatusInfo& info, int code, const char* expr, const char* file,
                              int line);
void log_error(const StatusInfo& info, const char* expr, const char* file, int line) noexcept;

template <class Status>
void check(Status s, const char* expr, const char* file, int line) {
  const StatusInfo info = status_info(s);
  if (!info.ok) throw_error(info, int(s), expr, file, line);
}

/// For creating cuDNN/cuBLAS handles: any failure is taken as out of memory. cudnnCreate and
/// cublasCreate report a device too full for their state and kernel modules as
/// NOT_INITIALIZED or EXECUTION_FAILED_CUDART, not as an allocation failure.
template <class Status>
void check_create(Status s, const char* expr, const char* file, int line) {
  StatusInfo info = status_info(s);
  info.oom = true;
  if (!info.ok) throw_error(info, int(s), expr, file, line);
}

template <class Status>
[[nodiscard]] bool check_nothrow(Status s, const char* expr, const char* file, int line) noexcept {
  const StatusInfo info = status_info(s);
  if (!info.ok) log_error(info, expr, file, line);
  return info.ok;
}

}  // namespace detail

/// Whether a status means memory ran out (the same classification as the check macros).
template <class Status>
[[nodiscard]] bool is_out_of_memory(Status s) noexcept {
  return detail::status_info(s).oom;
}
#endif

}  // namespace imgpipe::kernels

#if defined(IMGPIPE_HAVE_CUDA)
/// Throws CudaError (CudaOutOfMemory on allocation failure) when a cudaError_t,
/// cublasStatus_t or cudnnStatus_t expression is not success. A failed runtime call's
/// error is also cleared from cudaGetLastError(), so a later launch check does not see it.
#define IMGPIPE_CUDA_CHECK(expr) \
  ::imgpipe::kernels::detail::check((expr), #expr, __FILE__, __LINE__)
#define IMGPIPE_CUBLAS_CHECK(expr) IMGPIPE_CUDA_CHECK(expr)
#define IMGPIPE_CUDNN_CHECK(expr) IMGPIPE_CUDA_CHECK(expr)
/// For cuDNN/cuBLAS handle creation: throws CudaOutOfMemory on any failure (see check_create).
#define IMGPIPE_CUDA_CHECK_CREATE(expr) \
  ::imgpipe::kernels::detail::check_create((expr), #expr, __FILE__, __LINE__)
/// For destructors and cleanup: logs a failure to stderr and yields false instead of throwing.
#define IMGPIPE_CUDA_CHECK_NOTHROW(expr) \
  ::imgpipe::kernels::detail::check_nothrow((expr), #expr, __FILE__, __LINE__)
/// After a kernel launch: throws if the launch failed (bad configuration, no device, ...).
#define IMGPIPE_CHECK_LAUNCH() IMGPIPE_CUDA_CHECK(cudaGetLastError())
#endif
