/* fuzz_config.c — libFuzzer target for config.json, through the loader's real entry point
 * (ast_model_load on a folder): the input is written as config.json next to a tiny generated
 * checkpoint (dim 8, 2 layers, a 3-word text encoder), so the reader, the config/tensor
 * cross-checks, the key table built from fuzzed sizes and the binding all see it.
 *
 * Oracles beyond "no crash, no sanitizer report": a model that loads has a consistent config
 * (dim = heads x head_dim, even head_dim, sizes in range, vocab_size words that are non-empty
 * lower-case), every bound weight is the tiny checkpoint's, and a failure leaves a message that
 * names the folder or the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "unit/loader_test_util.h"

static char g_dir[1024], g_cfg[1100];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_tmpdir(g_dir, sizeof g_dir, "config");
    ast_wan_config c = lt_mini_config();
    lt_set_heads(&c, 2, 4);
    c.ffn_dim = 16;
    c.freq_dim = 8;
    c.text_dim = 8;
    c.text_len = 4;
    c.in_dim = c.out_dim = 4;
    c.vocab_size = 3; /* adds text_encoder.{token,position}_embedding */
    lt_ckpt_opts o = {.dtype = AST_DT_BF16};
    if (lt_write_ckpt(g_dir, &c, &o) != 0) {
        fprintf(stderr, "fuzz_config: cannot write the tiny checkpoint: %s\n", ast_error_get());
        exit(1);
    }
    snprintf(g_cfg, sizeof g_cfg, "%s/config.json", g_dir);
    ast_log_level = 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FZ_ASSERT(lt_write_bytes(g_cfg, data, size) == 0, "cannot write %s", g_cfg);
    ast_model *m = NULL;
    ast_error_clear();
    if (ast_model_load(g_dir, NULL, &m) != 0) {
        FZ_ASSERT(m == NULL, "failed load returned a model");
        FZ_ASSERT(strstr(ast_error_get(), g_dir) != NULL, "error does not name the checkpoint: "
                  "'%s'", ast_error_get());
        return 0;
    }
    const ast_wan_config *c = &m->cfg;
    FZ_ASSERT(c->dim == 8 && c->num_layers == 2 && c->ffn_dim == 16 && c->text_dim == 8,
              "loaded sizes dim %d layers %d ffn %d text_dim %d differ from the tensors", c->dim,
              c->num_layers, c->ffn_dim, c->text_dim);
    FZ_ASSERT(c->num_heads > 0 && c->head_dim * c->num_heads == c->dim && c->head_dim % 2 == 0,
              "heads %d x head_dim %d vs dim %d", c->num_heads, c->head_dim, c->dim);
    FZ_ASSERT(c->vocab_size == 3 && c->vocab, "vocab_size %d", c->vocab_size);
    for (int i = 0; i < c->vocab_size; i++)
        FZ_ASSERT(c->vocab[i] && c->vocab[i][0] && strlen(c->vocab[i]) < 64, "vocab[%d]", i);
    FZ_ASSERT(c->eps > 0 && c->eps <= 0.1f, "eps %g", (double)c->eps);
    FZ_ASSERT(m->w.blocks && m->w.tok_emb && m->w.pos_emb && m->w.head_b, "weights not bound");
    /* the bound vectors are the checkpoint's values (key names as the loader detected them) */
    const ast_tensor *hb = ast_st_find(m->files, "head.head.bias");
    const ast_tensor *fb = ast_st_find(m->files, "blocks.1.ffn.2.bias");
    FZ_ASSERT(hb && fb, "checkpoint tensors not found");
    for (int i = 0; i < 16; i++)
        FZ_ASSERT(m->w.head_b[i] == ast_tensor_get_f32(hb, i), "head.head.bias[%d]", i);
    for (int i = 0; i < 8; i++)
        FZ_ASSERT(m->w.blocks[1].ffn2_b[i] == ast_tensor_get_f32(fb, i), "ffn.2.bias[%d]", i);
    ast_model_free(m);
    return 0;
}
