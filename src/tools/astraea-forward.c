/* astraea-forward — one dense denoiser forward: IN.safetensors (x, t, context) -> OUT.safetensors
 * (out = the model's velocity). For users porting or debugging a model, and for golden tests. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "run.h"
#include "safetensors.h"

int main(int argc, char **argv) {
    const char *checkpoint = NULL, *in = NULL, *out = NULL, *backend = "cpu";
    int gpu = 0;
    ast_arg args[] = {
        {"--checkpoint", AST_ARG_STRING, &checkpoint, "DIR", "checkpoint folder (config.json + *.safetensors) or a built-in id such as wan-mini", 0, 0, 0},
        {"--in", AST_ARG_STRING, &in, "FILE", "input safetensors: x [C, F, H, W] F32, t [1] F32 or I64, context [L, text_dim] F32", 0, 0, 0},
        {"--out", AST_ARG_STRING, &out, "FILE", "output safetensors: out [C, F, H, W] F32, the predicted velocity", 0, 0, 0},
        {"--backend", AST_ARG_STRING, &backend, "NAME", "cpu (default: the fp32 reference) or cuda (bf16)", 0, 0, 0},
        {"--gpu", AST_ARG_INT, &gpu, "N", "CUDA device index (default 0)", 0, 64, 0},
    };
    ast_cli cli = {"astraea-forward", "run one Wan2.1 denoiser forward on given inputs",
                   "astraea-forward --checkpoint DIR --in IN.safetensors --out OUT.safetensors",
                   "The output file is written only when the forward succeeds.", args,
                   (int)(sizeof args / sizeof *args)};
    int prc = ast_cli_parse(&cli, argc, argv);
    if (prc == 1) return AST_EXIT_OK;
    if (prc) return AST_EXIT_USAGE;
    if (!checkpoint || !in || !out)
        return ast_cli_usage_error(&cli, "--checkpoint, --in and --out are all required");

    ast_model *m = NULL;
    ast_st_set *s = NULL;
    ast_engine *e = NULL;
    float *ctx = NULL, *x = NULL, *y = NULL;
    int rc = AST_EXIT_FAIL;
    char shp[128];
    if (ast_run_open_model(NULL, checkpoint, &m)) goto fail;
    const ast_wan_config *c = &m->cfg;
    if (ast_st_open(in, &s)) goto fail;
    const ast_tensor *tx = ast_st_require(s, "x", "the latent input");
    const ast_tensor *tt = tx ? ast_st_require(s, "t", "the timestep") : NULL;
    const ast_tensor *tc = tt ? ast_st_require(s, "context", "the text context") : NULL;
    if (!tc || ast_check_latent(m, tx, "tensor 'x'")) goto in_fail;
    if (ast_tensor_numel(tt) != 1 || (tt->dtype != AST_DT_F32 && tt->dtype != AST_DT_I64)) {
        ast_error_set("tensor 't' must hold one F32 or I64 value, got %s %s",
                      ast_dtype_name(tt->dtype), ast_shape_str(tt, shp, sizeof shp));
        goto in_fail;
    }
    float t = ast_tensor_get_f32(tt, 0);
    if (!isfinite(t) || t < 0 || t > 1000) {
        ast_error_set("tensor 't' = %g is outside the model's range [0, 1000]", t);
        goto in_fail;
    }
    if (tc->dtype != AST_DT_F32 || tc->ndim != 2 || tc->shape[1] != c->text_dim ||
        tc->shape[0] > c->text_len) {
        ast_error_set("tensor 'context' must be F32 [L <= %d, %d], got %s %s", c->text_len,
                      c->text_dim, ast_dtype_name(tc->dtype), ast_shape_str(tc, shp, sizeof shp));
        goto in_fail;
    }
    int L = (int)tc->shape[0];
    ctx = ast_malloc(sizeof(float) * (size_t)(L ? L : 1) * c->text_dim, "the context");
    x = ast_malloc(tx->nbytes, "the latent");
    y = ast_malloc(sizeof(float) * (size_t)c->out_dim * tx->shape[1] * tx->shape[2] * tx->shape[3],
                   "the output");
    if (!ctx || !x || !y) goto fail;
    ast_tensor_to_f32(tc, 0, (int64_t)L * c->text_dim, ctx);
    ast_tensor_to_f32(tx, 0, ast_tensor_numel(tx), x);

    ast_engine_params ep = {0};
    if (ast_run_pick_backend(backend, &ep.backend)) goto fail;
    ep.device = gpu;
    ep.frames = (int)tx->shape[1];
    ep.height = (int)tx->shape[2];
    ep.width = (int)tx->shape[3];
    ep.n_branches = 1;
    ast_tokenwise_opts_default(&ep.tw);
    if (ast_engine_create(m, &ep, &e) || ast_engine_set_context(e, 0, ctx, L) ||
        ast_engine_forward(e, 0, x, t, 1.0f, y, NULL))
        goto fail;
    ast_st_entry oe = {"out", AST_DT_F32, 4, {c->out_dim, tx->shape[1], tx->shape[2], tx->shape[3]}, y};
    if (ast_run_check_result(m, y, oe.shape[0] * oe.shape[1] * oe.shape[2] * oe.shape[3],
                             "the forward's output") ||
        ast_st_write(out, &oe, 1, NULL, 0))
        goto fail;
    rc = AST_EXIT_OK;
    goto done;
in_fail:
    ast_error_prefix("input '%s'", in);
fail:
    rc = ast_cli_fail(&cli);
done:
    ast_engine_free(e);
    ast_st_close(s);
    ast_model_free(m);
    free(ctx);
    free(x);
    free(y);
    return rc;
}
