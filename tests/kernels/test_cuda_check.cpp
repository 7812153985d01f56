// Error mapping of the CUDA check macros and probe_cuda: these need no GPU, only the
// libraries, so they run in the cpu suite.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "cuda_check.h"
#include "device_query.h"

namespace imgpipe::kernels {
namespace {

TEST(DeviceQuery, ZeroDevicesComeWithAReason) {
  const CudaProbe probe = probe_cuda();
  // No NVIDIA driver node: no device. With IMGPIPE_REQUIRE_GPU=1 (a GPU machine): at least one.
  if (!std::filesystem::exists("/dev/nvidiactl")) {
    EXPECT_EQ(probe.device_count, 0);
  }
  const char* require = std::getenv("IMGPIPE_REQUIRE_GPU");
  if (require && std::string(require) == "1") {
    EXPECT_GT(probe.device_count, 0) << probe.reason;
  }
  if (probe.device_count == 0)
    EXPECT_FALSE(probe.reason.empty());
  else
    EXPECT_TRUE(probe.reason.empty()) << probe.reason;
#if !defined(IMGPIPE_HAVE_CUDA)
  EXPECT_EQ(probe.device_count, 0);
  EXPECT_EQ(probe.reason, "built without CUDA");
#endif
}

TEST(CudaError, OutOfMemoryIsACudaError) {
  try {
    throw CudaOutOfMemory("x.cu:3: cudaMalloc: out of memory", "x.cu", 3, 2);
  } catch (const CudaError& e) {
    EXPECT_NE(dynamic_cast<const CudaOutOfMemory*>(&e), nullptr);
    EXPECT_EQ(e.line(), 3);
    EXPECT_STREQ(e.file(), "x.cu");
  }
}

#if defined(IMGPIPE_HAVE_CUDA)
template <class Status>
std::string thrown_message(Status s, bool expect_oom) {
  try {
    IMGPIPE_CUDA_CHECK(s);
  } catch (const CudaOutOfMemory& e) {
    EXPECT_TRUE(expect_oom) << e.what();
    return e.what();
  } catch (const CudaError& e) {
    EXPECT_FALSE(expect_oom) << e.what();
    EXPECT_EQ(e.code(), int(s));
    EXPECT_NE(std::string(e.file()).find("test_cuda_check.cpp"), std::string::npos);
    return e.what();
  }
  ADD_FAILURE() << "nothing thrown";
  return "";
}

TEST(CudaCheck, RuntimeErrorsThrowWithFileLineAndName) {
  EXPECT_NO_THROW(IMGPIPE_CUDA_CHECK(cudaSuccess));
  const std::string oom = thrown_message(cudaErrorMemoryAllocation, true);
  EXPECT_NE(oom.find("test_cuda_check.cpp:"), std::string::npos) << oom;
  EXPECT_NE(oom.find("cudaErrorMemoryAllocation"), std::string::npos) << oom;
  const std::string inval = thrown_message(cudaErrorInvalidValue, false);
  EXPECT_NE(inval.find("cudaErrorInvalidValue"), std::string::npos) << inval;
}

TEST(CudaCheck, CublasAllocFailureIsOutOfMemory) {
  EXPECT_NO_THROW(IMGPIPE_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
  EXPECT_NE(thrown_message(CUBLAS_STATUS_ALLOC_FAILED, true).find("CUBLAS_STATUS_ALLOC_FAILED"),
            std::string::npos);
  thrown_message(CUBLAS_STATUS_NOT_INITIALIZED, false);
}

#if defined(IMGPIPE_HAVE_CUDNN)
TEST(CudaCheck, CudnnAllocFailureIsOutOfMemory) {
  EXPECT_NO_THROW(IMGPIPE_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  thrown_message(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED, true);
  thrown_message(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED, true);
  EXPECT_NE(thrown_message(CUDNN_STATUS_BAD_PARAM, false).find("CUDNN_STATUS_BAD_PARAM"),
            std::string::npos);
}
#endif

// cudnnCreate/cublasCreate on a device too full for their state report these statuses, not
// an allocation failure: the governor must still see out of memory and shrink.
TEST(CudaCheck, HandleCreationFailuresAreOutOfMemory) {
  EXPECT_NO_THROW(IMGPIPE_CUDA_CHECK_CREATE(CUBLAS_STATUS_SUCCESS));
  EXPECT_THROW(IMGPIPE_CUDA_CHECK_CREATE(CUBLAS_STATUS_NOT_INITIALIZED), CudaOutOfMemory);
  EXPECT_THROW(IMGPIPE_CUDA_CHECK_CREATE(CUBLAS_STATUS_ALLOC_FAILED), CudaOutOfMemory);
#if defined(IMGPIPE_HAVE_CUDNN)
  EXPECT_THROW(IMGPIPE_CUDA_CHECK_CREATE(CUDNN_STATUS_NOT_INITIALIZED), CudaOutOfMemory);
#if CUDNN_MAJOR >= 9
  EXPECT_THROW(IMGPIPE_CUDA_CHECK_CREATE(CUDNN_STATUS_EXECUTION_FAILED_CUDART), CudaOutOfMemory);
#endif
#endif
  try {
    IMGPIPE_CUDA_CHECK_CREATE(CUBLAS_STATUS_NOT_INITIALIZED);
  } catch (const CudaOutOfMemory& e) {
    EXPECT_EQ(e.code(), int(CUBLAS_STATUS_NOT_INITIALIZED));
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos) << e.what();
  }
  // Elsewhere the same statuses stay plain errors.
  thrown_message(CUBLAS_STATUS_NOT_INITIALIZED, false);
}

// One classification for the executor's own status tests (the fused convolution) and the
// check macros: cuDNN 9's device allocation failure included.
TEST(CudaCheck, IsOutOfMemoryAgreesWithTheCheckMacros) {
  EXPECT_TRUE(is_out_of_memory(cudaErrorMemoryAllocation));
  EXPECT_FALSE(is_out_of_memory(cudaErrorInvalidValue));
  EXPECT_FALSE(is_out_of_memory(cudaSuccess));
  EXPECT_TRUE(is_out_of_memory(CUBLAS_STATUS_ALLOC_FAILED));
  EXPECT_FALSE(is_out_of_memory(CUBLAS_STATUS_NOT_SUPPORTED));
#if defined(IMGPIPE_HAVE_CUDNN)
  EXPECT_TRUE(is_out_of_memory(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED));
  EXPECT_TRUE(is_out_of_memory(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED));
  EXPECT_FALSE(is_out_of_memory(CUDNN_STATUS_NOT_SUPPORTED));
  EXPECT_FALSE(is_out_of_memory(CUDNN_STATUS_SUCCESS));
#endif
}

TEST(CudaCheck, NoThrowVariantLogsAndReturnsFalse) {
  testing::internal::CaptureStderr();
  bool ok = true;
  EXPECT_NO_THROW(ok = IMGPIPE_CUDA_CHECK_NOTHROW(cudaErrorInvalidValue));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(ok);
  EXPECT_NE(err.find("cudaErrorInvalidValue"), std::string::npos) << err;
  EXPECT_TRUE(IMGPIPE_CUDA_CHECK_NOTHROW(cudaSuccess));
}
#endif

}  // namespace
}  // namespace imgpipe::kernels
