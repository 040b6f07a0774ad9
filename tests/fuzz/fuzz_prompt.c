/* fuzz_prompt.c — libFuzzer target for wan-mini's prompt tokenizer and text encoder
 * (ast_wan_encode_prompt), with the shipped wan-mini model (models/wan-mini).
 *
 * Differential oracle: a small independent tokenizer written here from the rule in prompt.c's
 * header (a word is a maximal run of ASCII letters/digits or bytes >= 0x80, ASCII lower-cased;
 * every word must be in the vocabulary; at most text_len words) decides whether the prompt is
 * accepted and what the context must be: row r = tok_emb[id_r] + pos_emb[r], zero rows after.
 * A refused prompt must leave the context untouched and say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast_config.h"
#include "common.h"
#include "fuzz_util.h"
#include "wan.h"

static ast_model *g_m;
static float *g_ctx;
static int *g_ids;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (!getenv("ASTRAEA_MODELS")) setenv("ASTRAEA_MODELS", AST_SOURCE_ROOT "/models", 1);
    ast_log_level = 0;
    if (ast_model_load("wan-mini", NULL, &g_m) != 0) {
        fprintf(stderr, "fuzz_prompt: cannot load wan-mini: %s\n", ast_error_get());
        exit(1);
    }
    g_ctx = malloc(sizeof(float) * (size_t)g_m->cfg.text_len * g_m->cfg.text_dim);
    g_ids = malloc(sizeof(int) * 65536);
    if (!g_ctx || !g_ids) exit(1);
    return 0;
}

static int word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* The reference: 1 = accepted with ids[0..*n), 0 = refused. */
static int reference(const char *p, int *ids, int *n) {
    const ast_wan_config *c = &g_m->cfg;
    int count = 0, unknown = 0;
    size_t i = 0, len = strlen(p);
    while (i < len) {
        if (!word_char((unsigned char)p[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && word_char((unsigned char)p[j])) j++;
        int id = -1;
        for (int v = 0; v < c->vocab_size && id < 0; v++) {
            const char *w = c->vocab[v];
            size_t wl = strlen(w), k = 0;
            if (wl != j - i) continue;
            for (; k < wl; k++) {
                unsigned char ch = (unsigned char)p[i + k];
                if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
                if (ch != (unsigned char)w[k]) break;
            }
            if (k == wl) id = v;
        }
        if (id < 0) unknown = 1;
        if (count < 65536) ids[count] = id;
        count++;
        i = j;
    }
    *n = count;
    return !unknown && count <= c->text_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_cstr(data, size);
    const int L = g_m->cfg.text_len, Dt = g_m->cfg.text_dim;
    for (int i = 0; i < L * Dt; i++) g_ctx[i] = 12345.0f;
    int n = -1, ref_n = 0;
    ast_error_clear();
    int rc = ast_wan_encode_prompt(g_m, text, g_ctx, &n);
    int want = reference(text, g_ids, &ref_n);
    FZ_ASSERT((rc == 0) == want, "encoder %s a prompt the reference %s (%s)",
              rc == 0 ? "accepted" : "refused", want ? "accepts" : "refuses", ast_error_get());
    if (rc != 0) {
        FZ_ASSERT(n == 0, "refused prompt reported %d tokens", n);
        FZ_ASSERT(strstr(ast_error_get(), "unknown word") || strstr(ast_error_get(), "at most"),
                  "unclear refusal: '%s'", ast_error_get());
        for (int i = 0; i < L * Dt; i++)
            FZ_ASSERT(g_ctx[i] == 12345.0f, "refused prompt wrote the context at %d", i);
    } else {
        FZ_ASSERT(n == ref_n, "%d tokens, reference %d", n, ref_n);
        for (int r = 0; r < L; r++)
            for (int j = 0; j < Dt; j++) {
                float want_v = r < n ? g_m->w.tok_emb[(size_t)g_ids[r] * Dt + j] +
                                           g_m->w.pos_emb[(size_t)r * Dt + j]
                                     : 0.0f;
                FZ_ASSERT(g_ctx[(size_t)r * Dt + j] == want_v, "context row %d col %d", r, j);
            }
    }
    free(text);
    return 0;
}
