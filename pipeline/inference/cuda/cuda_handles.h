#pragma once
// Move-only owners of cuDNN and cuBLAS handles and descriptors (unique_ptr with a deleter,
// as kernels/cuda_resources.h does for buffers and streams). A creation failure throws
// kernels::CudaOutOfMemory whatever the status (cudnnCreate/cublasCreate report a full device
// as NOT_INITIALIZED or EXECUTION_FAILED_CUDART), so the governor shrinks instead of aborting;
// destruction never throws (failures are logged).
#include <cublas_v2.h>
#include <cudnn.h>

#include <memory>
#include <type_traits>

#include "cuda_check.h"

namespace imgpipe::infer::cuda {

namespace detail {
template <class H, cudnnStatus_t (*Destroy)(H)>
struct CudnnDeleter {
  void operator()(H h) const noexcept { (void)IMGPIPE_CUDA_CHECK_NOTHROW(Destroy(h)); }
};
struct CublasDeleter {
  void operator()(cublasHandle_t h) const noexcept { (void)IMGPIPE_CUDA_CHECK_NOTHROW(cublasDestroy(h)); }
};
}  // namespace detail

/// An owned cuDNN object of handle type H, created by Create and destroyed by Destroy.
template <class H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
class CudnnObject {
 public:
  CudnnObject() {
    H h = nullptr;
    IMGPIPE_CUDA_CHECK_CREATE(Create(&h));
    ptr_.reset(h);
  }
  H get() const noexcept { return ptr_.get(); }
  operator H() const noexcept { return ptr_.get(); }

 private:
  std::unique_ptr<std::remove_pointer_t<H>, detail::CudnnDeleter<H, Destroy>> ptr_;
};

using CudnnHandle = CudnnObject<cudnnHandle_t, cudnnCreate, cudnnDestroy>;
using TensorDesc = CudnnObject<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = CudnnObject<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = CudnnObject<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                             cudnnDestroyConvolutionDescriptor>;
using ActivationDesc = CudnnObject<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor,
                                   cudnnDestroyActivationDescriptor>;

/// An owned cuBLAS handle.
class CublasHandle {
 public:
  CublasHandle() {
    cublasHandle_t h = nullptr;
    IMGPIPE_CUDA_CHECK_CREATE(cublasCreate(&h));
    ptr_.reset(h);
  }
  cublasHandle_t get() const noexcept { return ptr_.get(); }
  operator cublasHandle_t() const noexcept { return ptr_.get(); }

 private:
  std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, detail::CublasDeleter> ptr_;
};

/// Makes `device` current for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    IMGPIPE_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) IMGPIPE_CUDA_CHECK(cudaSetDevice(device));
    changed_ = previous_ != device;
  }
  ~DeviceGuard() {
    if (changed_) (void)IMGPIPE_CUDA_CHECK_NOTHROW(cudaSetDevice(previous_));
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace imgpipe::infer::cuda
