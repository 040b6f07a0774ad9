// forward_cuda.cu — the CUDA backend (src/backend.h). Placeholder until the forward lands.
#include <stdio.h>

#include "cuda_check.h"

extern "C" {
#include "backend.h"
}

extern "C" int ast_cuda_device_count(char *reason, size_t reason_len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        snprintf(reason, reason_len, "no CUDA device: cudaGetDeviceCount returned %s (%s)",
                 e != cudaSuccess ? cudaGetErrorName(e) : "0 devices",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no GPU visible");
        cudaGetLastError();
        return 0;
    }
    if (reason_len) reason[0] = 0;
    return n;
}

extern "C" int ast_cuda_backend_create(const ast_model *m, const ast_engine_params *p, void **impl,
                                       const ast_backend_vtable **vt) {
    (void)m;
    (void)p;
    *impl = NULL;
    *vt = NULL;
    return ast_fail("the CUDA backend is not implemented yet; use --backend cpu");
}
