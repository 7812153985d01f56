#pragma once
// Move-only owners of CUDA resources (as CUTLASS's DeviceAllocation: a unique_ptr with a
// deleter). Creation failures throw CudaError / CudaOutOfMemory; release never throws (a
// failure is logged to stderr). CUDA builds only.
#if defined(IMGPIPE_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <utility>

#include "cuda_check.h"

namespace imgpipe::kernels {

namespace detail {
struct CudaFree {
  void operator()(void* p) const noexcept { (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaFree(p)); }
};
struct CudaFreeHost {
  void operator()(void* p) const noexcept { (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaFreeHost(p)); }
};
struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept {
    (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaStreamDestroy(s));
  }
};
struct EventDestroy {
  void operator()(cudaEvent_t e) const noexcept {
    (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaEventDestroy(e));
  }
};

/// Bytes owned through a unique_ptr with deleter D, allocated by Alloc.
template <class D>
class OwnedBytes {
 public:
  OwnedBytes() = default;
  OwnedBytes(OwnedBytes&& o) noexcept : ptr_(std::move(o.ptr_)), size_(std::exchange(o.size_, 0)) {}
  OwnedBytes& operator=(OwnedBytes&& o) noexcept {
    ptr_ = std::move(o.ptr_);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  void* get() const noexcept { return ptr_.get(); }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(ptr_.get());
  }
  size_t size() const noexcept { return size_; }  ///< bytes
  bool empty() const noexcept { return size_ == 0; }
  /// Frees the memory now (the owner becomes empty).
  void reset() noexcept {
    ptr_.reset();
    size_ = 0;
  }

 protected:
  void adopt(void* p, size_t bytes) noexcept {
    ptr_.reset(p);
    size_ = bytes;
  }

 private:
  std::unique_ptr<void, D> ptr_;
  size_t size_ = 0;
};
}  // namespace detail

/// Device memory from cudaMalloc on the current device. Throws CudaOutOfMemory when the
/// device cannot provide `bytes`; 0 bytes allocates nothing.
class DeviceBuffer : public detail::OwnedBytes<detail::CudaFree> {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    IMGPIPE_CUDA_CHECK(cudaMalloc(&p, bytes));
    adopt(p, bytes);
  }
};

/// Page-locked host memory from cudaMallocHost (for asynchronous copies). Throws
/// CudaOutOfMemory when it cannot be allocated; 0 bytes allocates nothing.
class PinnedBuffer : public detail::OwnedBytes<detail::CudaFreeHost> {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    IMGPIPE_CUDA_CHECK(cudaMallocHost(&p, bytes));
    adopt(p, bytes);
  }
};

/// A CUDA stream on the current device; non-blocking (no implicit sync with the legacy
/// default stream) unless other flags are given.
class Stream {
 public:
  explicit Stream(unsigned flags = cudaStreamNonBlocking) {
    cudaStream_t s = nullptr;
    IMGPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, flags));
    stream_.reset(s);
  }
  cudaStream_t get() const noexcept { return stream_.get(); }
  operator cudaStream_t() const noexcept { return stream_.get(); }
  /// Blocks until all work enqueued so far has finished; throws its error if it failed.
  void synchronize() const { IMGPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }

 private:
  std::unique_ptr<CUstream_st, detail::StreamDestroy> stream_;
};

/// A CUDA event; by default without timing (cheaper) and with blocking sync, so that
/// synchronize() sleeps instead of spinning a CPU core the decoders need. Pass
/// cudaEventDefault to use elapsed_ms.
class Event {
 public:
  explicit Event(unsigned flags = cudaEventDisableTiming | cudaEventBlockingSync) {
    cudaEvent_t e = nullptr;
    IMGPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
    event_.reset(e);
  }
  cudaEvent_t get() const noexcept { return event_.get(); }
  operator cudaEvent_t() const noexcept { return event_.get(); }
  void record(cudaStream_t stream) { IMGPIPE_CUDA_CHECK(cudaEventRecord(event_.get(), stream)); }
  void synchronize() const { IMGPIPE_CUDA_CHECK(cudaEventSynchronize(event_.get())); }
  /// True when the work before the recorded point has finished (does not block).
  bool ready() const {
    const cudaError_t e = cudaEventQuery(event_.get());
    if (e == cudaErrorNotReady) return false;
    IMGPIPE_CUDA_CHECK(e);
    return true;
  }
  /// Milliseconds between two recorded, completed events created with timing enabled.
  static float elapsed_ms(const Event& start, const Event& end) {
    float ms = 0.f;
    IMGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), end.get()));
    return ms;
  }

 private:
  std::unique_ptr<CUevent_st, detail::EventDestroy> event_;
};

}  // namespace imgpipe::kernels
#endif  // IMGPIPE_HAVE_CUDA
