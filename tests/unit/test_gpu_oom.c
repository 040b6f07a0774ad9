/* test_gpu_oom.c — out of GPU memory is a clear error, not a crash (docs/inputs.md): a CUDA
 * engine asked for far more tokens than any GPU holds (3.9M tokens of a 1-layer model with
 * dim 1024 and ffn_dim 16384: the FFN activations alone need ~128 GB in bf16) must fail in
 * ast_engine_create with a message that says it ran out of GPU memory and suggests fewer frames
 * or more GPUs; and the device must still work afterwards (a small engine on the same model runs
 * a finite forward). Exits 77 when built without CUDA or when no CUDA device is visible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ast_config.h"
#include "backend.h"
#include "engine.h"
#include "test_util.h"
#include "unit/forward_test_util.h"
#include "unit/loader_test_util.h"

#define NAME "test_gpu_oom"

static ast_engine *make(const ast_model *m, int F, int H, int W) {
    ast_engine_params p = ft_params(AST_BACKEND_CUDA, F, H, W, 2, 1);
    ast_engine *e = NULL;
    ast_error_clear();
    if (ast_engine_create(m, &p, &e) != 0) return NULL;
    return e;
}

int main(void) {
    if (!AST_HAVE_CUDA) return ast_test_skip(NAME, "built without CUDA (-Dcuda=disabled or no nvcc)");
    char why[256];
    if (ast_cuda_device_count(why, sizeof why) <= 0) return ast_test_skip(NAME, why);

    ast_wan_config c = lt_mini_config();
    lt_set_heads(&c, 8, 128);
    c.ffn_dim = 16384;
    c.num_layers = 1;
    c.text_dim = 64;
    c.text_len = 16;
    ast_model *m = lt_random_model("gpu_oom", &c, 7, AST_DT_BF16);
    if (!m) return ast_test_finish(NAME);

    /* 15 x 512 x 512 = 3.9M tokens (the engine's limit is 4M) */
    ast_engine *e = make(m, 15, 1024, 1024);
    CHECK(e == NULL, "an engine for 3.9M tokens of a dim-1024 model was created");
    const char *msg = ast_error_get();
    printf("%s: the error: %s\n", NAME, msg);
    CHECK(strstr(msg, "out of GPU memory") != NULL, "message lacks 'out of GPU memory': %s", msg);
    CHECK(strstr(msg, "fewer frames") != NULL, "message lacks 'fewer frames': %s", msg);
    CHECK(strstr(msg, "more GPUs") != NULL, "message lacks 'more GPUs': %s", msg);
    CHECK(strstr(msg, "tokens") != NULL, "message does not say how many tokens: %s", msg);
    ast_engine_free(e);

    /* the device still works: a small engine on the same model, one finite forward */
    e = make(m, 2, 16, 16);
    CHECK(e != NULL, "small engine after the failure: %s", ast_error_get());
    if (e) {
        int64_t n = (int64_t)c.in_dim * 2 * 16 * 16;
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        float *ctx = malloc(sizeof(float) * (size_t)c.text_len * c.text_dim);
        ast_rng r;
        ast_rng_seed(&r, 11);
        for (int64_t i = 0; i < n; i++) x[i] = (float)ast_rng_uniform(&r) * 2 - 1;
        for (int i = 0; i < c.text_len * c.text_dim; i++) ctx[i] = (float)ast_rng_uniform(&r) - 0.5f;
        int rc = ast_engine_set_context(e, 0, ctx, 4) || ast_engine_set_context(e, 1, ctx, 0);
        CHECK(rc == 0, "contexts after the failure: %s", ast_error_get());
        if (rc == 0) ft_forward(e, "forward after the failure", 0, x, 500.0f, 1.0f, y, n, NULL);
        free(x);
        free(y);
        free(ctx);
        ast_engine_free(e);
    }
    ast_model_free(m);
    return ast_test_finish(NAME);
}
