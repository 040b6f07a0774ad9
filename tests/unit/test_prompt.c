/* test_prompt.c — wan-mini's prompt encoder: tokenizing (case, whitespace, punctuation, digits),
 * the context rows tok_emb[id] + pos_emb[r] and zero padding, and the errors (unknown word with
 * the whole vocabulary, too many words, a model without a text encoder). */
#include "loader_test_util.h"

static char g_dir[512];

static const char *VOCAB_JSON =
    "[\"a\", \"red\", \"ball\", \"moves\", \"left\", \"on\", \"blue\", \"background\", \"2\"]";

/* Loads a wan-mini-like model (text_len 8, text_dim 32) from a fresh folder. */
static ast_model *load_mini(const char *name, int with_vocab) {
    char dir[1024], p[1024], config[1024];
    lt_path(dir, sizeof dir, g_dir, name);
    mkdir(dir, 0755);
    ast_wan_config cfg = lt_mini_config();
    cfg.vocab_size = with_vocab ? 9 : 0;
    lt_ckpt_opts o = {.dtype = AST_DT_BF16};
    CHECK(lt_write_ckpt(dir, &cfg, &o) == 0, "write: %s", ast_error_get());
    snprintf(config, sizeof config,
             "{\"num_heads\": 2, \"text_len\": 8%s%s%s}", with_vocab ? ", \"astraea\": {\"model_id\": "
                                                                      "\"wan-mini\", \"vocab\": " : "",
             with_vocab ? VOCAB_JSON : "", with_vocab ? "}" : "");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), config);
    ast_model *m = NULL;
    CHECK(ast_model_load(dir, NULL, &m) == 0, "load %s: %s", name, ast_error_get());
    return m;
}

/* Checks ctx holds the rows for ids[0..n) and zeros after. */
static void check_ctx(const ast_model *m, const float *ctx, const int *ids, int n, const char *what) {
    const int L = m->cfg.text_len, Dt = m->cfg.text_dim;
    int ok = 1;
    for (int r = 0; r < L && ok; r++)
        for (int j = 0; j < Dt && ok; j++) {
            float want = r < n ? m->w.tok_emb[ids[r] * Dt + j] + m->w.pos_emb[r * Dt + j] : 0.0f;
            ok = ctx[r * Dt + j] == want; /* the same fp32 sum: exact */
            if (!ok) CHECK(0, "%s: ctx[%d][%d] = %g, want %g", what, r, j, (double)ctx[r * Dt + j], (double)want);
        }
    CHECK(ok, "%s: context rows", what);
}

int main(void) {
    lt_tmpdir(g_dir, sizeof g_dir, "prompt");
    ast_model *m = load_mini("mini", 1);
    if (!m) {
        lt_rmtree(g_dir);
        return ast_test_finish("prompt");
    }
    const int L = m->cfg.text_len, Dt = m->cfg.text_dim;
    float *ctx = malloc((size_t)L * Dt * sizeof *ctx);
    int n = -1;

    /* the encoder's tables are the checkpoint's, nonzero random values */
    CHECK(m->w.tok_emb[5] != 0.0f && m->w.pos_emb[Dt + 3] != 0.0f, "tables loaded");

    /* case, punctuation and whitespace */
    for (int i = 0; i < L * Dt; i++) ctx[i] = NAN; /* everything must be written */
    CHECK(ast_wan_encode_prompt(m, "A red Ball, moves... LEFT!", ctx, &n) == 0, "%s", ast_error_get());
    CHECK(n == 5, "n = %d", n);
    check_ctx(m, ctx, (const int[]){0, 1, 2, 3, 4}, 5, "basic");
    CHECK(ast_wan_encode_prompt(m, "\tred\nball;blue(background)  2", ctx, &n) == 0, "%s", ast_error_get());
    check_ctx(m, ctx, (const int[]){1, 2, 6, 7, 8}, 5, "separators and digits");
    CHECK(n == 5, "n = %d", n);
    /* exactly text_len words */
    CHECK(ast_wan_encode_prompt(m, "a red ball moves left on blue background", ctx, &n) == 0, "%s",
          ast_error_get());
    CHECK(n == 8, "n = %d", n);
    check_ctx(m, ctx, (const int[]){0, 1, 2, 3, 4, 5, 6, 7}, 8, "full");
    /* empty prompt (unconditional / empty negative prompt): all zero rows */
    for (int i = 0; i < L * Dt; i++) ctx[i] = NAN;
    CHECK(ast_wan_encode_prompt(m, "", ctx, &n) == 0 && n == 0, "empty: %s", ast_error_get());
    check_ctx(m, ctx, NULL, 0, "empty");
    CHECK(ast_wan_encode_prompt(m, " ,.! ", ctx, &n) == 0 && n == 0, "punctuation only");

    /* errors: nothing is written */
    for (int i = 0; i < L * Dt; i++) ctx[i] = 7.0f;
    CHECK_FAILS_WITH(ast_wan_encode_prompt(m, "a red xyz ball", ctx, &n),
                     "unknown word 'xyz' in prompt; wan-mini knows: a, red, ball, moves, left, on, "
                     "blue, background, 2");
    CHECK(ctx[0] == 7.0f && ctx[L * Dt - 1] == 7.0f, "ctx untouched on error");
    CHECK_FAILS_WITH(ast_wan_encode_prompt(m, "2 red balls", ctx, &n), "unknown word 'balls'");
    CHECK_FAILS_WITH(ast_wan_encode_prompt(m, "a caf\xc3\xa9", ctx, &n), "unknown word 'caf\xc3\xa9'");
    CHECK_FAILS_WITH(ast_wan_encode_prompt(m, "a red ball moves left on blue background a", ctx, &n),
                     "prompt has 9 words, but wan-mini takes at most 8");
    char longw[200];
    memset(longw, 'z', sizeof longw - 1);
    longw[sizeof longw - 1] = 0;
    CHECK_FAILS_WITH(ast_wan_encode_prompt(m, longw, ctx, &n), "unknown word 'zzz");
    CHECK(ctx[0] == 7.0f, "ctx untouched on error");
    ast_model_free(m);

    /* a model without vocabulary: context comes from a file */
    m = load_mini("plain", 0);
    if (m) {
        CHECK_FAILS_WITH(ast_wan_encode_prompt(m, "a red ball", ctx, &n),
                         "Wan2.1 takes its context from a file");
        CHECK(strstr(ast_error_get(), "--context") && strstr(ast_error_get(), "docs/context.md"),
              "points to --context: %s", ast_error_get());
        ast_model_free(m);
    }
    free(ctx);
    lt_rmtree(g_dir);
    return ast_test_finish("prompt");
}
