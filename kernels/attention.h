/* attention.h — flash-attention forward on the GPU (bf16 in, bf16 out, fp32 log-sum-exp).
 *
 * One entry point, three kernels behind it (kernels/attention.cu):
 *   "wgmma": Hopper (sm_90a) FlashAttention-3-style kernel: TMA loads, warpgroup MMA, one producer
 *            warpgroup and two consumer warpgroups.
 *   "fa2":   portable mma.sync m16n8k16 FlashAttention-2-style kernel (sm_80+); the correctness
 *            baseline, and the fallback on other devices.
 *   "wgmma_pp": the wgmma kernel with FA3's ping-pong schedule between its two consumer
 *            warpgroups. The default on an sm_90 device: fastest at every measured Wan shape
 *            (H200: 663 TFLOP/s at 14,040 tokens, 640 at 32,760; results/attention.json).
 * ASTRAEA_ATTN=fa2|wgmma|wgmma_pp (environment) or ast_cuda_attention_variant() forces one.
 *
 * Layout (ld in elements; every row must start on a 16-byte boundary):
 *   q [Lq, ldq], k [Lk, ldk], v [Lk, ldv], o [Lq, ldo]: bf16 row-major, head h = columns
 *   h*D .. h*D+D-1 (ldq = H*D for a plain tensor, 3*H*D for a fused QKV GEMM output).
 *   lse [H, Lq] fp32 or NULL: lse[h*Lq + i] = ln sum_j exp(scale * q_i . k_j), natural log of the
 *   SCALED scores (docs/method.md §1: the token selection reads it).
 * Non-causal; any Lq, Lk >= 1; D in {64, 128}. */
#ifndef AST_ATTENTION_H
#define AST_ATTENTION_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* o = softmax(scale * q k^T) v per head, on `stream` (asynchronous). Returns 0, or -1 with the
 * error set (bad D or shape, misaligned pointer or ld, launch failure). */
int ast_cuda_attention(const void *q, int ldq, const void *k, int ldk, const void *v, int ldv,
                       void *o, int ldo, float *lse, int Lq, int Lk, int H, int D, float scale,
                       cudaStream_t stream);

/* Forces a kernel for later calls in this process: "fa2", "wgmma", "wgmma_pp", or "auto" / NULL
 * (back to the default: ASTRAEA_ATTN if set, else wgmma on sm_90 devices, else fa2). Returns 0, or -1
 * with the error set for an unknown name. */
int ast_cuda_attention_variant(const char *name);

/* 1 when the wgmma kernels (wgmma, wgmma_pp) can run on the current device (sm_90 device, sm_90a code built in),
 * else 0 with the reason in `reason` (may be NULL). */
int ast_cuda_attention_wgmma_available(char *reason, int reason_len);

#ifdef __cplusplus
}
#endif

#endif
