/* test_golden.c — the CPU engine against the independent PyTorch reference (tests/reference/,
 * goldens computed in float64): one forward for every checkpoint flavour (original F32, BF16,
 * diffusers names, model.diffusion_model. prefix), and the 6-step UniPC and Euler runs with CFG.
 * Tolerance: relative L2 <= 1e-4 — our fp32 forward vs a float64 reference differs by fp32
 * rounding (~1e-6); 1e-4 leaves room for the blocked summation order and still catches any wrong
 * op (a wrong sign, order or constant shows up at >= 1e-2). */
#include "engine.h"
#include "safetensors.h"
#include "sampler.h"
#include "test_util.h"
#include "unit/forward_test_util.h"

#define TOL 1e-4

static const ast_tensor *need(ast_st_set *s, const char *name) {
    const ast_tensor *t = ast_st_find(s, name);
    CHECK(t != NULL, "fixture lacks tensor '%s'", name);
    return t;
}

static float *to_f32(const ast_tensor *t) {
    float *p = malloc(sizeof(float) * (size_t)ast_tensor_numel(t));
    ast_tensor_to_f32(t, 0, ast_tensor_numel(t), p);
    return p;
}

static ast_engine *make_engine(const ast_model *m, const ast_tensor *x, int branches, int tw) {
    ast_engine_params p = ft_params(AST_BACKEND_CPU, (int)x->shape[1], (int)x->shape[2],
                                    (int)x->shape[3], branches, tw);
    ast_engine *e = NULL;
    CHECK(ast_engine_create(m, &p, &e) == 0, "engine: %s", ast_error_get());
    return e;
}

static void check_forward(const char *ckpt, const char *golden) {
    char path[1024], gpath[1024], ipath[1024];
    ast_model *m = NULL;
    ast_st_set *in = NULL, *gold = NULL;
    int ok = ast_model_load(ast_test_fixture(ckpt, path, sizeof path), NULL, &m) == 0;
    CHECK(ok, "load %s: %s", ckpt, ast_error_get());
    ok = ok && ast_st_open(ast_test_fixture("tiny/forward_in.safetensors", ipath, sizeof ipath), &in) == 0;
    ok = ok && ast_st_open(ast_test_fixture(golden, gpath, sizeof gpath), &gold) == 0;
    CHECK(ok, "fixtures: %s", ast_error_get());
    if (!ok) goto out;
    const ast_tensor *x = need(in, "x"), *t = need(in, "t"), *ctx = need(in, "context"),
                     *want = need(gold, "out");
    if (!x || !t || !ctx || !want) goto out;
    ast_engine *e = make_engine(m, x, 1, 0);
    if (!e) goto out;
    float *xf = to_f32(x), *cf = to_f32(ctx), *wf = to_f32(want);
    float *y = malloc(want->nbytes);
    for (int64_t i = 0; i < ast_tensor_numel(want); i++) y[i] = NAN; /* poison */
    CHECK(ast_engine_set_context(e, 0, cf, (int)ctx->shape[0]) == 0, "context: %s", ast_error_get());
    CHECK(ast_engine_forward(e, 0, xf, ast_tensor_get_f32(t, 0), 1.0f, y, NULL) == 0,
          "forward: %s", ast_error_get());
    double err = ast_test_rel_l2(y, wf, ast_tensor_numel(want));
    CHECK(err <= TOL, "%s forward vs %s: rel L2 %.3g > %g", ckpt, golden, err, TOL);
    printf("forward %-20s rel L2 %.3g\n", ckpt, err);
    free(xf);
    free(cf);
    free(wf);
    free(y);
    ast_engine_free(e);
out:
    ast_st_close(in);
    ast_st_close(gold);
    ast_model_free(m);
}

static void check_sampler(ast_sampler_kind kind, const char *golden) {
    char path[1024], ipath[1024], gpath[1024];
    ast_model *m = NULL;
    ast_st_set *in = NULL, *gold = NULL;
    int ok = ast_model_load(ast_test_fixture("tiny/orig_f32", path, sizeof path), NULL, &m) == 0;
    ok = ok && ast_st_open(ast_test_fixture("tiny/sample_in.safetensors", ipath, sizeof ipath), &in) == 0;
    ok = ok && ast_st_open(ast_test_fixture(golden, gpath, sizeof gpath), &gold) == 0;
    CHECK(ok, "fixtures: %s", ast_error_get());
    if (!ok) goto out;
    const ast_tensor *x = need(in, "x"), *c = need(in, "context"), *nc = need(in, "neg_context"),
                     *steps = need(in, "steps"), *shift = need(in, "shift"),
                     *g = need(in, "guidance"), *want = need(gold, "x");
    if (!x || !c || !nc || !steps || !shift || !g || !want) goto out;
    ast_sampler_params sp = {kind, (int)ast_tensor_get_f32(steps, 0), ast_tensor_get_f32(shift, 0),
                             ast_tensor_get_f32(g, 0)};
    ast_engine *e = make_engine(m, x, 2, 0);
    if (!e) goto out;
    float *xf = to_f32(x), *cf = to_f32(c), *ncf = to_f32(nc), *wf = to_f32(want);
    float *y = malloc(want->nbytes);
    CHECK(ast_engine_set_context(e, 0, cf, (int)c->shape[0]) == 0, "ctx: %s", ast_error_get());
    CHECK(ast_engine_set_context(e, 1, ncf, (int)nc->shape[0]) == 0, "neg: %s", ast_error_get());
    CHECK(ast_generate(e, &sp, NULL, xf, y, NULL, NULL, NULL) == 0, "generate: %s", ast_error_get());
    double err = ast_test_rel_l2(y, wf, ast_tensor_numel(want));
    CHECK(err <= TOL, "%s: %d-step run vs reference: rel L2 %.3g > %g", golden, sp.steps, err, TOL);
    printf("sampler %-28s rel L2 %.3g\n", golden, err);
    free(xf);
    free(cf);
    free(ncf);
    free(wf);
    free(y);
    ast_engine_free(e);
out:
    ast_st_close(in);
    ast_st_close(gold);
    ast_model_free(m);
}

int main(void) {
    check_forward("tiny/orig_f32", "tiny/forward_out.safetensors");
    check_forward("tiny/diffusers", "tiny/forward_out_bf16.safetensors"); /* stored BF16, sharded */
    check_forward("tiny/prefixed", "tiny/forward_out_f16.safetensors"); /* stored F16 */
    check_forward("tiny/orig_bf16", "tiny/forward_out_bf16.safetensors");
    check_sampler(AST_SAMPLER_UNIPC, "tiny/sample_out.safetensors");
    check_sampler(AST_SAMPLER_EULER, "tiny/sample_euler_out.safetensors");
    return ast_test_finish("golden");
}
