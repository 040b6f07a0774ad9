/* gpu_none.c — the CUDA entry points of a build made without the CUDA toolkit
 * (-Dcuda=disabled, or no nvcc): they report that clearly instead of failing to link. */
#include <stdio.h>

#include "backend.h"
#include "comm.h"
#include "common.h"

int ast_cuda_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                            void **impl, const ast_backend_vtable **vt) {
    (void)m;
    (void)p;
    (void)sh;
    *impl = NULL;
    *vt = NULL;
    return ast_fail("this build of astraea has no CUDA backend (it was configured without the "
                    "CUDA toolkit); rebuild with 'meson setup build -Dcuda=enabled' on a machine "
                    "with nvcc, or use --backend cpu");
}

int ast_cuda_device_count(char *reason, size_t reason_len) {
    snprintf(reason, reason_len, "built without CUDA (-Dcuda=disabled or no nvcc at configure "
                                 "time)");
    return 0;
}

int ast_cuda_mem_used(int device, double *used_bytes, char *name, size_t name_len) {
    (void)device;
    *used_bytes = 0;
    snprintf(name, name_len, "no CUDA");
    return ast_fail("this build of astraea has no CUDA backend (configured without the CUDA "
                    "toolkit)");
}

int ast_cuda_bench_attention(int device, int Lq, int Lk, int H, int D, int repeats,
                             double *median_ms) {
    (void)device, (void)Lq, (void)Lk, (void)H, (void)D, (void)repeats;
    *median_ms = 0;
    return ast_fail("this build of astraea has no CUDA backend (configured without the CUDA "
                    "toolkit)");
}

int ast_comm_nccl_create(int P, const int *devices, ast_comm **out) {
    (void)devices;
    *out = NULL;
    return ast_fail("one generation over %d GPUs needs the CUDA backend with NCCL, and this "
                    "build has no CUDA; rebuild with 'meson setup build -Dcuda=enabled "
                    "-Dnccl=enabled' on a machine with nvcc and NCCL",
                    P);
}
