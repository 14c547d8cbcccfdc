/* gpu_check.h: one check macro per GPU library (CUDA runtime, cuBLAS,
 * cuSPARSE), each naming the failing call, file:line and the library's own
 * message. Two flavours:
 *   ST_CUDA_TRY(err, call) ...  on failure format "CALL failed at FILE:LINE:
 *                               MESSAGE" into err (ST_ERRLEN bytes) and
 *                               `return -1` from the enclosing int function;
 *   ST_CUDA_CHECK(call) ...     on failure print the same line and exit 1
 *                               (tests, benchmarks, cleanup paths).
 * ST_CUDA_LAUNCH_TRY(err, name) checks the last error after a kernel launch;
 * ST_GPU_SYNC_TRY(err, name) follows a library computation (cuBLAS,
 * cuSPARSE, CUB). With ST_GPU_SYNC_CHECK=1 in the environment both also
 * synchronise the device and check its error, so that a fault (an illegal
 * address, say) is reported by the launch that caused it, not by a later
 * synchronisation: "kernel NAME failed at FILE:LINE (ST_GPU_SYNC_CHECK):
 * MESSAGE". Slow; meant for the first run on a new device.
 * Host C and CUDA C++ may include it (it only needs the libraries' C headers). */
#ifndef ST_GPU_CHECK_H
#define ST_GPU_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusparse.h>

#include "util/common.h"

#ifdef __cplusplus
extern "C" {
#endif
/* 1 when ST_GPU_SYNC_CHECK is set to anything but "" or "0" (read at every
 * call, so a test may switch it). Defined in kernels/gpu_ops.cu. */
int st_gpu_sync_check(void);
#ifdef __cplusplus
}
#endif

#define ST_GPU_SYNC_TRY(err, name)                                                      \
    do {                                                                                \
        if (st_gpu_sync_check()) {                                                      \
            cudaError_t st_e_ = cudaDeviceSynchronize();                                \
            if (st_e_ != cudaSuccess)                                                   \
                return st_fail((err), "kernel %s failed at %s:%d (ST_GPU_SYNC_CHECK): %s " \
                                      "(%s)",                                           \
                               name, __FILE__, __LINE__, cudaGetErrorString(st_e_),     \
                               cudaGetErrorName(st_e_));                                \
        }                                                                               \
    } while (0)

#define ST_CUDA_TRY(err, call)                                                          \
    do {                                                                                \
        cudaError_t st_e_ = (call);                                                     \
        if (st_e_ != cudaSuccess)                                                       \
            return st_fail((err), "%s failed at %s:%d: %s (%s)", #call, __FILE__,       \
                           __LINE__, cudaGetErrorString(st_e_), cudaGetErrorName(st_e_)); \
    } while (0)

#define ST_CUDA_LAUNCH_TRY(err, name)                                                   \
    do {                                                                                \
        cudaError_t st_e_ = cudaGetLastError();                                         \
        if (st_e_ != cudaSuccess)                                                       \
            return st_fail((err), "launch of kernel %s failed at %s:%d: %s (%s)", name,  \
                           __FILE__, __LINE__, cudaGetErrorString(st_e_),               \
                           cudaGetErrorName(st_e_));                                    \
        ST_GPU_SYNC_TRY(err, name);                                                     \
    } while (0)

#define ST_CUBLAS_TRY(err, call)                                                        \
    do {                                                                                \
        cublasStatus_t st_s_ = (call);                                                  \
        if (st_s_ != CUBLAS_STATUS_SUCCESS)                                             \
            return st_fail((err), "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,  \
                           cublasGetStatusString(st_s_));                               \
    } while (0)

#define ST_CUSPARSE_TRY(err, call)                                                      \
    do {                                                                                \
        cusparseStatus_t st_s_ = (call);                                                \
        if (st_s_ != CUSPARSE_STATUS_SUCCESS)                                           \
            return st_fail((err), "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,  \
                           cusparseGetErrorString(st_s_));                              \
    } while (0)

#define ST_CUDA_CHECK(call)                                                             \
    do {                                                                                \
        cudaError_t st_e_ = (call);                                                     \
        if (st_e_ != cudaSuccess)                                                       \
            st_die("%s failed at %s:%d: %s (%s)", #call, __FILE__, __LINE__,           \
                   cudaGetErrorString(st_e_), cudaGetErrorName(st_e_));                 \
    } while (0)

#define ST_CUBLAS_CHECK(call)                                                           \
    do {                                                                                \
        cublasStatus_t st_s_ = (call);                                                  \
        if (st_s_ != CUBLAS_STATUS_SUCCESS)                                             \
            st_die("%s failed at %s:%d: %s", #call, __FILE__, __LINE__,                 \
                   cublasGetStatusString(st_s_));                                       \
    } while (0)

#define ST_CUSPARSE_CHECK(call)                                                         \
    do {                                                                                \
        cusparseStatus_t st_s_ = (call);                                                \
        if (st_s_ != CUSPARSE_STATUS_SUCCESS)                                           \
            st_die("%s failed at %s:%d: %s", #call, __FILE__, __LINE__,                 \
                   cusparseGetErrorString(st_s_));                                      \
    } while (0)

/* For functions of this project that return 0 or -1 with err filled:
 * propagate a failure (err already holds the message). */
#define ST_TRY(call)                                                                    \
    do {                                                                                \
        if ((call) != 0)                                                                \
            return -1;                                                                  \
    } while (0)

#endif
