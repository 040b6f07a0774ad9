/* model_random.h — random, non-degenerate checkpoints for benchmarks (never for quality). */
#ifndef AST_MODEL_RANDOM_H
#define AST_MODEL_RANDOM_H

#ifdef __cplusplus
extern "C" {
#endif

#include <math.h>
#include <stdint.h>

#include "wan.h"

/* Writes dir/config.json (original Wan keys) and dir/diffusion_pytorch_model.safetensors with
 * every tensor of `cfg` (original key names); matrices stored as dtype (F32 or BF16). */
int ast_write_random_checkpoint(const char *dir, const ast_wan_config *cfg, uint64_t seed,
                                ast_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif
