/* prompt.c — wan-mini's built-in text encoder: prompt -> word ids -> context rows.
 *
 * Tokenizing: lower-case ASCII, then a word is a maximal run of [a-z0-9] (bytes >= 0x80 are kept
 * inside words so a non-English word is reported whole instead of split); everything else
 * (spaces, punctuation) separates words. Each word must be in cfg.vocab (id = index). Context
 * row r < n is tok_emb[id_r] + pos_emb[r]; rows n..text_len-1 are zeros, like the zero padding
 * Wan2.1 applies to umT5 output. Wan2.1 itself takes its context from a file made by the official
 * umT5 encoder (docs/context.md), not from here. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wan.h"

static int prompt_word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* The whole vocabulary as "a, red, ...", for messages. */
static void prompt_vocab_list(const ast_wan_config *c, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < c->vocab_size && o + 1 < cap; i++) {
        int k = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", c->vocab[i]);
        if (k < 0) break;
        o += (size_t)k;
    }
}

int ast_wan_encode_prompt(const ast_model *m, const char *prompt, float *ctx, int *n_tokens) {
    if (n_tokens) *n_tokens = 0;
    const ast_wan_config *c = &m->cfg;
    if (c->vocab_size <= 0 || !c->vocab || !m->w.tok_emb || !m->w.pos_emb)
        return ast_fail("model '%s' has no built-in text encoder: Wan2.1 takes its context from "
                        "a file (pass --context FILE.safetensors made with the official umT5 "
                        "encoder, see docs/context.md)",
                        c->model_id);
    if (!prompt) prompt = "";
    const int L = c->text_len, Dt = c->text_dim;
    int n = 0; /* words seen */
    const unsigned char *p = (const unsigned char *)prompt;
    /* pass 1: count and look up the words, so nothing is written on error */
    int *ids = ast_malloc((size_t)L * sizeof *ids, "prompt token ids");
    if (!ids) return -1;
    while (*p) {
        while (*p && !prompt_word_char(*p)) p++;
        if (!*p) break;
        char w[64];
        size_t len = 0, full = 0;
        for (; *p && prompt_word_char(*p); p++, full++) {
            unsigned char ch = *p;
            if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
            if (len + 1 < sizeof w) w[len++] = (char)ch;
        }
        w[len] = 0;
        int id = -1;
        if (full == len)
            for (int i = 0; i < c->vocab_size && id < 0; i++)
                if (strcmp(c->vocab[i], w) == 0) id = i;
        if (id < 0) {
            char voc[3000];
            prompt_vocab_list(c, voc, sizeof voc);
            free(ids);
            return ast_fail("unknown word '%s%s' in prompt; %s knows: %s", w,
                            full > len ? "..." : "", c->model_id, voc);
        }
        if (n < L) ids[n] = id;
        n++;
    }
    if (n > L) {
        free(ids);
        return ast_fail("prompt has %d words, but %s takes at most %d (shorten the prompt)", n,
                        c->model_id, L);
    }
    memset(ctx, 0, (size_t)L * (size_t)Dt * sizeof *ctx);
    for (int r = 0; r < n; r++) {
        const float *te = m->w.tok_emb + (size_t)ids[r] * (size_t)Dt;
        const float *pe = m->w.pos_emb + (size_t)r * (size_t)Dt;
        float *row = ctx + (size_t)r * (size_t)Dt;
        for (int j = 0; j < Dt; j++) row[j] = te[j] + pe[j];
    }
    free(ids);
    if (n_tokens) *n_tokens = n;
    return 0;
}
