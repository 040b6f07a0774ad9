/* cuda_check.h — checked CUDA/cuBLAS calls for kernels/ (style.md habit 4).
 *
 * CUDA_TRY(call) / CUBLAS_TRY(call): on failure record "what failed at file:line on device N:
 * reason (what to do)" through the project's error convention (src/common.h) and `return -1`
 * from the enclosing int function. CUDA_TRY_LAUNCH() checks the last launch error. */
#ifndef AST_CUDA_CHECK_H
#define AST_CUDA_CHECK_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "common.h"
#ifdef __cplusplus
}
#endif

static inline const char *ast_cuda_hint(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation:
        return "out of GPU memory: try fewer frames, a lower resolution, a GPU with more memory, or more GPUs for one clip (--gpus 0,1)";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
        return "no usable CUDA device: check nvidia-smi, or run with --backend cpu";
    default:
        return "this is a bug or a broken device; rerun with CUDA_LAUNCH_BLOCKING=1 and report it";
    }
}

#define CUDA_TRY(call)                                                                         \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            int dev_ = -1;                                                                     \
            cudaGetDevice(&dev_);                                                              \
            ast_error_set("%s failed at %s:%d on CUDA device %d: %s (%s)", #call, __FILE__,     \
                          __LINE__, dev_, cudaGetErrorString(e_), ast_cuda_hint(e_));          \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

#define CUDA_TRY_LAUNCH() CUDA_TRY(cudaGetLastError())

#define CUBLAS_TRY(call)                                                                       \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            ast_error_set("%s failed at %s:%d: cuBLAS status %d (%s)%s", #call, __FILE__,       \
                          __LINE__, (int)s_, cublasGetStatusString(s_),                        \
                          s_ == CUBLAS_STATUS_ALLOC_FAILED                                     \
                              ? ": out of GPU memory: try fewer frames, a GPU with more memory, or more GPUs for one clip (--gpus 0,1)"\
                              : "");                                                           \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

#endif
