#pragma once
// Runs a Model on one CUDA device with one static allocation per prepare(), the same
// contract as the CPU Executor: weights at the storage precision, a liveness-shared
// activation arena (views share their input's memory), and one workspace (cuBLAS workspace,
// cuDNN scratch, conv padding, fp16 I/O conversion). Convolutions run in cuDNN, Gemm/MatMul
// in cuBLAS (fp32 accumulation), everything else in own kernels; FP16 stores weights and
// activations as half and accumulates in fp32.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "allocator.h"
#include "cuda_plan.h"
#include "model.h"

namespace imgpipe::infer {

/// Device memory from cudaMalloc on `device`. cudaErrorMemoryAllocation throws
/// OutOfMemory(requested, free bytes on the device); other failures throw kernels::CudaError.
/// Wrap it in a BudgetedAllocator to cap what an executor may take.
class CudaDeviceAllocator : public Allocator {
 public:
  explicit CudaDeviceAllocator(int device = 0) : device_(device) {}
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) noexcept override;
  int device() const { return device_; }

 private:
  int device_;
};

using cuda::CudaOptions;

class CudaExecutor {
 public:
  /// The allocator (device memory of `device`, e.g. a BudgetedAllocator over a
  /// CudaDeviceAllocator) must outlive the executor. Touches no device until prepare().
  CudaExecutor(Model model, int device, Allocator& device_allocator, CudaOptions options = {});
  ~CudaExecutor();
  CudaExecutor(const CudaExecutor&) = delete;
  CudaExecutor& operator=(const CudaExecutor&) = delete;

  /// Bytes prepare(batch, p) allocates through the allocator; computed on the host, no device.
  MemoryPlan plan(int batch, Precision p) const;
  /// Device bytes the next prepare() takes besides plan(): the cuDNN/cuBLAS handles (and the
  /// kernel modules they load) are created by the first prepare() and kept until the executor
  /// is destroyed, so this is CudaOptions::handle_overhead_estimate before, 0 after.
  size_t overhead_bytes() const;
  /// What creating the handles took, measured as free device memory before and after
  /// (0 before the first prepare()).
  size_t handle_bytes() const { return handle_bytes_; }
  size_t bytes_needed(int batch, Precision p) const { return plan(batch, p).total(); }

  /// Releases what was held, creates the cuDNN/cuBLAS handles on the first call, then
  /// allocates plan(batch, p) exactly (three allocations: weights, arena, workspace), uploads
  /// the weights (converted to fp16 on the host when p is FP16; no fp32 copy is kept on the
  /// device), chooses conv algorithms within the workspace and allocates the pinned output
  /// staging (run()'s pinned input staging is allocated by run()).
  /// On OutOfMemory (also from cuDNN/cuBLAS handle creation, whatever its status, and pinned
  /// allocations) everything is released and prepare() may be called again. Synchronous.
  void prepare(int batch, Precision p);
  /// Re-prepares at the current batch with precision p (frees the old weights first);
  /// before any prepare() it only sets the precision the next prepare() default uses.
  void set_precision(Precision p);
  /// Frees all device and pinned memory (the handles stay); prepared() is false afterwards.
  /// Synchronizes the device first (work in flight may still use the buffers).
  void release() noexcept;

  /// d_input: batch_n images on the device, NCHW, input_size() elements each, fp32, or fp16
  /// when input_fp16 (read in place when that is the prepared precision's type, else
  /// converted into the arena); h_output: host, batch_n x output_size() fp32.
  /// batch_n <= batch(). Enqueues on `stream` and waits for it (blocking sync: the thread
  /// sleeps) before returning. Allocates nothing.
  void run_device(const void* d_input, bool input_fp16, int batch_n, float* h_output,
                  cudaStream_t stream = nullptr);
  /// The same with a device fp32 output (d_output: batch_n x output_size() floats); does not
  /// wait: the output is ready, and d_input may be overwritten, when `stream` reaches this point.
  /// Ranks nothing (top_classes() is left as it was).
  void run_device_to_device(const void* d_input, bool input_fp16, int batch_n, float* d_output,
                            cudaStream_t stream);
  /// h_input: host NCHW fp32, copied through a pinned staging buffer (allocated on the first
  /// call after prepare(); CudaOutOfMemory when pinned memory runs out). Same contract as
  /// Executor::run(); waits for `stream` before returning.
  void run(const float* h_input, int batch_n, float* h_output, cudaStream_t stream = nullptr);

  /// With CudaOptions::top_k > 0: for each image of the last run_device() or run(), its
  /// top_k() classes by decreasing output, equal outputs in class order (the host ranking's
  /// rule), ranked on the GPU; row i at i * top_k(). Empty before the first run.
  const std::vector<int32_t>& top_classes() const;
  /// min(CudaOptions::top_k, output_size()).
  int top_k() const;

  bool prepared() const;
  int batch() const;  ///< prepared batch size (0 when not prepared)
  Precision precision() const;
  int device() const { return device_; }
  const MemoryPlan& memory_plan() const;  ///< of the current preparation
  const Model& model() const { return model_; }
  std::vector<int64_t> input_shape() const { return model_.input_shape(); }
  std::vector<int64_t> output_shape() const { return model_.output_shape(); }

 private:
  struct Prepared;
  struct Handles;
  void create_handles(bool with_cublas);
  void enqueue(const void* d_input, bool input_fp16, int batch_n, cudaStream_t stream);
  void download(int batch_n, float* h_output, cudaStream_t stream);
  Model model_;
  int device_;
  Allocator& allocator_;
  CudaOptions options_;
  Precision precision_ = Precision::FP32;
  std::unique_ptr<Handles> handles_;
  bool handles_ready_ = false;
  size_t handle_bytes_ = 0;
  std::unique_ptr<Prepared> state_;
};

}  // namespace imgpipe::infer
