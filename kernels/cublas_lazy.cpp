// cuBLAS, loaded when first used. Linking libcublas makes every run map it at start (over
// 200 MB of resident memory, most of a second), although only inference on CUDA calls it;
// these definitions of the few entry points imgpipe uses take the library's place at link
// time and forward to it through dlopen on the first call. Without the library the calls
// return CUBLAS_STATUS_NOT_INITIALIZED (and say why once on stderr) instead of the program
// failing to start.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <cstdio>
#include <mutex>
#include <string>

namespace {

void* cublas_library() {
  static void* handle = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) std::fprintf(stderr, "imgpipe: cannot load %s: %s\n", soname.c_str(), dlerror());
  });
  return handle;
}

template <class Fn>
Fn lookup(const char* name) {
  void* lib = cublas_library();
  return lib ? reinterpret_cast<Fn>(dlsym(lib, name)) : nullptr;
}

}  // namespace

// Each forwarder resolves its symbol once; the compiler checks each definition against the
// header's declaration.
#define IMGPIPE_CUBLAS_FORWARD(name, params, args)                    \
  cublasStatus_t CUBLASWINAPI name params {                           \
    using Fn = cublasStatus_t(CUBLASWINAPI*) params;                  \
    static const Fn fn = lookup<Fn>(#name);                           \
    return fn ? fn args : CUBLAS_STATUS_NOT_INITIALIZED;              \
  }

extern "C" {

IMGPIPE_CUBLAS_FORWARD(cublasCreate_v2, (cublasHandle_t * handle), (handle))
IMGPIPE_CUBLAS_FORWARD(cublasDestroy_v2, (cublasHandle_t handle), (handle))
IMGPIPE_CUBLAS_FORWARD(cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream), (handle, stream))
IMGPIPE_CUBLAS_FORWARD(cublasSetWorkspace_v2, (cublasHandle_t handle, void* workspace, size_t bytes),
                       (handle, workspace, bytes))
IMGPIPE_CUBLAS_FORWARD(cublasSetMathMode, (cublasHandle_t handle, cublasMath_t mode), (handle, mode))
IMGPIPE_CUBLAS_FORWARD(cublasGemmEx,
                       (cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                        const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                        int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                        cublasGemmAlgo_t algo),
                       (handle, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo))
IMGPIPE_CUBLAS_FORWARD(cublasGemmStridedBatchedEx,
                       (cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                        const void* alpha, const void* A, cudaDataType at, int lda, long long int sa, const void* B,
                        cudaDataType bt, int ldb, long long int sb, const void* beta, void* C, cudaDataType ct,
                        int ldc, long long int sc, int count, cublasComputeType_t compute, cublasGemmAlgo_t algo),
                       (handle, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, count,
                        compute, algo))

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  static const auto fn = lookup<decltype(&cublasGetStatusName)>("cublasGetStatusName");
  return fn ? fn(status) : "CUBLAS_STATUS_(cuBLAS not loaded)";
}

const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  static const auto fn = lookup<decltype(&cublasGetStatusString)>("cublasGetStatusString");
  return fn ? fn(status) : "the cuBLAS library could not be loaded";
}

}  // extern "C"
