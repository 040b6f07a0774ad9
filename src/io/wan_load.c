/* wan_load.c — Wan2.1 DiT loader: finds the checkpoint (folder, single file or the built-in
 * "wan-mini"), reads config.json (original or diffusers keys, plus the optional "astraea"
 * object), infers whatever the config omits from tensor shapes, checks every tensor against the
 * one key table (wan21.md §2.1; diffusers names by the §2.2 rename rules; the ComfyUI
 * "model.diffusion_model." prefix), and binds the weights: matrices stay views into the mmapped
 * files in their stored dtype, every small vector is converted to fp32 into one arena.
 *
 * A checkpoint that does not fit gets ONE error listing every missing, unexpected and misshapen
 * tensor (capped), or every config/shape contradiction, so the user fixes it in one go. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ast_config.h"
#include "common.h"
#include "wan.h"

#define WAN_MAX_LAYERS 1000        /* block indices at or above this are "unexpected" */
#define WAN_MAX_WIDTH (1 << 20)    /* any single dimension; keeps every product in range */
#define WAN_MAX_CONFIG_BYTES (16u << 20)
#define WAN_REPORT_LINES 20        /* offenders listed in one error before "and N more" */
#define WAN_COMFY_PREFIX "model.diffusion_model."

/* ---- built-in configurations (wan21.md §1.1) ------------------------------------------------ */

static void wan_config_base(ast_wan_config *c) {
    memset(c, 0, sizeof *c);
    c->freq_dim = 256;
    c->text_dim = 4096;
    c->text_len = 512;
    c->in_dim = c->out_dim = 16;
    c->patch[0] = 1;
    c->patch[1] = c->patch[2] = 2;
    c->eps = 1e-6f;
}

int ast_wan_config_builtin(const char *id, ast_wan_config *cfg) {
    ast_wan_config c;
    wan_config_base(&c);
    if (id && strcmp(id, "wan2.1-t2v-1.3b") == 0) {
        c.dim = 1536;
        c.ffn_dim = 8960;
        c.num_heads = 12;
        c.num_layers = 30;
    } else if (id && strcmp(id, "wan2.1-t2v-14b") == 0) {
        c.dim = 5120;
        c.ffn_dim = 13824;
        c.num_heads = 40;
        c.num_layers = 40;
    } else {
        return ast_fail("unknown built-in model '%s' (built-in configurations: "
                        "wan2.1-t2v-1.3b, wan2.1-t2v-14b)",
                        id ? id : "(null)");
    }
    c.head_dim = c.dim / c.num_heads;
    snprintf(c.model_id, sizeof c.model_id, "%s", id);
    *cfg = c;
    return 0;
}

/* ---- the key table ------------------------------------------------------------------------ */

/* One tensor the config implies: its original key, shape, and where it is bound. */
typedef struct {
    char name[64];       /* original key (wan21.md §2.1) */
    int ndim;
    int64_t shape[5];
    int is_vec;          /* small vector: converted to fp32 into the arena */
    ast_tensor *mat;     /* destination view (matrices), or NULL when only listing */
    const float **vec;   /* destination fp32 pointer (vectors), or NULL when only listing */
} wan_slot;

typedef struct {
    wan_slot *s; /* NULL: count only */
    int n;
} wan_slots;

static void slot_add(wan_slots *l, const char *name, int is_vec, ast_tensor *mat,
                     const float **vec, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                     int64_t d4) {
    if (l->s) {
        wan_slot *s = &l->s[l->n];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        s->ndim = ndim;
        int64_t d[5] = {d0, d1, d2, d3, d4};
        memcpy(s->shape, d, sizeof d);
        s->is_vec = is_vec;
        s->mat = mat;
        s->vec = vec;
    }
    l->n++;
}

#define WAN_MAT(l, nm, dst, ...) slot_add(l, nm, 0, dst, NULL, __VA_ARGS__)
#define WAN_VEC(l, nm, dst, ...) slot_add(l, nm, 1, NULL, dst, __VA_ARGS__)

/* Linear layer "<base>.weight" [out, in] (matrix) + "<base>.bias" [out] (vector). */
static void slot_linear(wan_slots *l, const char *base, ast_tensor *w, const float **b,
                        int64_t out, int64_t in) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", base);
    WAN_MAT(l, nm, w, 2, out, in, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bias", base);
    WAN_VEC(l, nm, b, 1, out, 0, 0, 0, 0);
}

static void slot_attn(wan_slots *l, const char *base, ast_wan_attn *a, int64_t D) {
    static const char qkvo[4] = {'q', 'k', 'v', 'o'};
    char nm[64];
    for (int j = 0; j < 4; j++) {
        snprintf(nm, sizeof nm, "%s.%c", base, qkvo[j]);
        ast_tensor *w = NULL;
        const float **b = NULL;
        if (a) {
            ast_tensor *ws[4] = {&a->q_w, &a->k_w, &a->v_w, &a->o_w};
            const float **bs[4] = {&a->q_b, &a->k_b, &a->v_b, &a->o_b};
            w = ws[j];
            b = bs[j];
        }
        slot_linear(l, nm, w, b, D, D);
    }
    snprintf(nm, sizeof nm, "%s.norm_q.weight", base);
    WAN_VEC(l, nm, a ? &a->norm_q : NULL, 1, D, 0, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.norm_k.weight", base);
    WAN_VEC(l, nm, a ? &a->norm_k : NULL, 1, D, 0, 0, 0, 0);
}

/* Enumerates every tensor of `c` in checkpoint order; binds into w when w is non-NULL (then
 * w->blocks must hold c->num_layers blocks). Returns the count. */
static int wan_enumerate(const ast_wan_config *c, ast_wan_weights *w, wan_slot *out) {
    wan_slots l = {out, 0};
    const int64_t D = c->dim, Fd = c->ffn_dim;
    const int64_t P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
#define B(field) (w ? &w->field : NULL)
    WAN_MAT(&l, "patch_embedding.weight", B(patch_w), 5, D, c->in_dim, c->patch[0], c->patch[1],
            c->patch[2]);
    WAN_VEC(&l, "patch_embedding.bias", B(patch_b), 1, D, 0, 0, 0, 0);
    slot_linear(&l, "text_embedding.0", B(text0_w), B(text0_b), D, c->text_dim);
    slot_linear(&l, "text_embedding.2", B(text2_w), B(text2_b), D, D);
    slot_linear(&l, "time_embedding.0", B(time0_w), B(time0_b), D, c->freq_dim);
    slot_linear(&l, "time_embedding.2", B(time2_w), B(time2_b), D, D);
    slot_linear(&l, "time_projection.1", B(tproj_w), B(tproj_b), 6 * D, D);
    for (int i = 0; i < c->num_layers; i++) {
        ast_wan_block *bk = w ? &w->blocks[i] : NULL;
        char nm[64];
        snprintf(nm, sizeof nm, "blocks.%d.modulation", i);
        WAN_VEC(&l, nm, bk ? &bk->modulation : NULL, 3, 1, 6, D, 0, 0);
        snprintf(nm, sizeof nm, "blocks.%d.self_attn", i);
        slot_attn(&l, nm, bk ? &bk->self_attn : NULL, D);
        snprintf(nm, sizeof nm, "blocks.%d.norm3.weight", i);
        WAN_VEC(&l, nm, bk ? &bk->norm3_w : NULL, 1, D, 0, 0, 0, 0);
        snprintf(nm, sizeof nm, "blocks.%d.norm3.bias", i);
        WAN_VEC(&l, nm, bk ? &bk->norm3_b : NULL, 1, D, 0, 0, 0, 0);
        snprintf(nm, sizeof nm, "blocks.%d.cross_attn", i);
        slot_attn(&l, nm, bk ? &bk->cross_attn : NULL, D);
        snprintf(nm, sizeof nm, "blocks.%d.ffn.0", i);
        slot_linear(&l, nm, bk ? &bk->ffn0_w : NULL, bk ? &bk->ffn0_b : NULL, Fd, D);
        snprintf(nm, sizeof nm, "blocks.%d.ffn.2", i);
        slot_linear(&l, nm, bk ? &bk->ffn2_w : NULL, bk ? &bk->ffn2_b : NULL, D, Fd);
    }
    WAN_VEC(&l, "head.modulation", B(head_mod), 3, 1, 2, D, 0, 0);
    slot_linear(&l, "head.head", B(head_w), B(head_b), c->out_dim * P, D);
    if (c->vocab_size > 0) {
        WAN_VEC(&l, "text_encoder.token_embedding", B(tok_emb), 2, c->vocab_size, c->text_dim, 0,
                0, 0);
        WAN_VEC(&l, "text_encoder.position_embedding", B(pos_emb), 2, c->text_len, c->text_dim,
                0, 0, 0);
    }
#undef B
    return l.n;
}

/* Checks the numbers a key table is built from (guards products and allocations). */
static int wan_config_sane(const ast_wan_config *c) {
    const int v[] = {c->dim, c->ffn_dim, c->freq_dim, c->text_dim, c->text_len, c->in_dim,
                     c->out_dim, c->patch[0], c->patch[1], c->patch[2]};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] <= 0 || v[i] > WAN_MAX_WIDTH)
            return ast_fail("model config has a size out of range (dim %d, ffn_dim %d, freq_dim "
                            "%d, text_dim %d, text_len %d, in_dim %d, out_dim %d, patch %dx%dx%d)",
                            c->dim, c->ffn_dim, c->freq_dim, c->text_dim, c->text_len, c->in_dim,
                            c->out_dim, c->patch[0], c->patch[1], c->patch[2]);
    if (c->num_layers <= 0 || c->num_layers > WAN_MAX_LAYERS)
        return ast_fail("model config has num_layers %d (expected 1..%d)", c->num_layers,
                        WAN_MAX_LAYERS);
    if (c->vocab_size < 0 || c->vocab_size > WAN_MAX_WIDTH)
        return ast_fail("model config has vocab_size %d", c->vocab_size);
    return 0;
}

ast_wan_key *ast_wan_key_table(const ast_wan_config *cfg, int *n_out) {
    *n_out = 0;
    if (wan_config_sane(cfg) != 0) return NULL;
    int n = wan_enumerate(cfg, NULL, NULL);
    wan_slot *slots = ast_calloc((size_t)n, sizeof *slots, "the key table");
    ast_wan_key *keys = ast_calloc((size_t)n, sizeof *keys, "the key table");
    if (!slots || !keys) {
        free(slots);
        free(keys);
        return NULL;
    }
    wan_enumerate(cfg, NULL, slots);
    for (int i = 0; i < n; i++) {
        keys[i].name = ast_strdup(slots[i].name);
        if (!keys[i].name) {
            ast_wan_key_table_free(keys, i);
            free(slots);
            return NULL;
        }
        keys[i].ndim = slots[i].ndim;
        memcpy(keys[i].shape, slots[i].shape, sizeof slots[i].shape);
    }
    free(slots);
    *n_out = n;
    return keys;
}

void ast_wan_key_table_free(ast_wan_key *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* ---- key styles ---------------------------------------------------------------------------- */

/* Diffusers names (wan21.md §2.2; D scripts/convert_wan_to_diffusers.py
 * TRANSFORMER_KEYS_RENAME_DICT): ordered replace-all substring rules applied to the original
 * name, exactly as the conversion script applies them. */
static const struct {
    const char *from, *to;
} WAN_DIFFUSERS_RENAMES[] = {
    {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
    {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
    {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
    {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
    {"time_projection.1", "condition_embedder.time_proj"},
    {"head.modulation", "scale_shift_table"},
    {"head.head", "proj_out"},
    {"modulation", "scale_shift_table"},
    {"ffn.0", "ffn.net.0.proj"},
    {"ffn.2", "ffn.net.2"},
    {"norm2", "norm__placeholder"}, /* the script's norm2 <-> norm3 swap */
    {"norm3", "norm2"},
    {"norm__placeholder", "norm3"},
    {"self_attn.q", "attn1.to_q"},
    {"self_attn.k", "attn1.to_k"},
    {"self_attn.v", "attn1.to_v"},
    {"self_attn.o", "attn1.to_out.0"},
    {"self_attn.norm_q", "attn1.norm_q"},
    {"self_attn.norm_k", "attn1.norm_k"},
    {"cross_attn.q", "attn2.to_q"},
    {"cross_attn.k", "attn2.to_k"},
    {"cross_attn.v", "attn2.to_v"},
    {"cross_attn.o", "attn2.to_out.0"},
    {"cross_attn.norm_q", "attn2.norm_q"},
    {"cross_attn.norm_k", "attn2.norm_k"},
};

/* Replaces every occurrence of `from` in buf (capacity cap) by `to`. */
static void wan_replace_all(char *buf, size_t cap, const char *from, const char *to) {
    char out[256];
    size_t fl = strlen(from), tl = strlen(to), o = 0;
    const char *p = buf;
    int changed = 0;
    while (*p && o + 1 < sizeof out) {
        if (strncmp(p, from, fl) == 0) {
            if (o + tl + 1 >= sizeof out) break;
            memcpy(out + o, to, tl);
            o += tl;
            p += fl;
            changed = 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    if (changed && o < cap) memcpy(buf, out, o + 1);
}

typedef struct {
    int style;          /* AST_KEYS_ORIGINAL / AST_KEYS_DIFFUSERS */
    const char *prefix; /* "" or WAN_COMFY_PREFIX */
} wan_keystyle;

/* The name an original key has in a checkpoint of the given style. */
static const char *wan_key_name(wan_keystyle ks, const char *orig, char *buf, size_t cap) {
    char tmp[192];
    snprintf(tmp, sizeof tmp, "%s", orig);
    if (ks.style == AST_KEYS_DIFFUSERS)
        for (size_t i = 0; i < sizeof WAN_DIFFUSERS_RENAMES / sizeof WAN_DIFFUSERS_RENAMES[0]; i++)
            wan_replace_all(tmp, sizeof tmp, WAN_DIFFUSERS_RENAMES[i].from,
                            WAN_DIFFUSERS_RENAMES[i].to);
    int k = snprintf(buf, cap, "%s%s", ks.prefix, tmp);
    if (k < 0 || (size_t)k >= cap) buf[0] = 0; /* no real key is this long: it matches nothing */
    return buf;
}

const char *ast_wan_key_name(int key_style, const char *prefix, const char *orig, char *buf,
                             size_t cap) {
    wan_keystyle ks = {key_style, prefix ? prefix : ""};
    return wan_key_name(ks, orig, buf, cap);
}

static const ast_tensor *wan_find(const ast_st_set *s, wan_keystyle ks, const char *orig) {
    char nm[256];
    return ast_st_find(s, wan_key_name(ks, orig, nm, sizeof nm));
}

/* Picks the key style whose marker tensors the checkpoint holds most of. */
static int wan_detect_style(const ast_st_set *s, const char *where, wan_keystyle *out) {
    static const char *markers[] = {
        "patch_embedding.weight",      "text_embedding.0.weight", "time_embedding.0.weight",
        "time_projection.1.weight",    "head.head.weight",        "head.modulation",
        "blocks.0.self_attn.q.weight", "blocks.0.modulation",     "blocks.0.norm3.weight",
        "blocks.0.ffn.0.weight",       "blocks.0.cross_attn.k.weight",
    };
    const wan_keystyle styles[4] = {{AST_KEYS_ORIGINAL, ""},
                                    {AST_KEYS_DIFFUSERS, ""},
                                    {AST_KEYS_ORIGINAL, WAN_COMFY_PREFIX},
                                    {AST_KEYS_DIFFUSERS, WAN_COMFY_PREFIX}};
    int best = -1, best_score = 0;
    for (int k = 0; k < 4; k++) {
        int score = 0;
        for (size_t j = 0; j < sizeof markers / sizeof markers[0]; j++)
            score += wan_find(s, styles[k], markers[j]) != NULL;
        if (score > best_score) {
            best = k;
            best_score = score;
        }
    }
    if (best < 0) {
        const ast_tensor *t0 = ast_st_at(s, 0);
        return ast_fail("'%s' does not look like a Wan2.1 DiT checkpoint: none of its %d tensors "
                        "has a Wan2.1 name (e.g. patch_embedding.weight, "
                        "blocks.0.self_attn.q.weight; its first is '%.80s'). Pass the folder "
                        "of a Wan2.1 T2V transformer (original, diffusers 'transformer/' or "
                        "ComfyUI single file)",
                        where, ast_st_count(s), t0 ? t0->name : "(none)");
    }
    *out = styles[best];
    return 0;
}

/* ---- config.json ---------------------------------------------------------------------------- */

enum {
    F_DIM, F_FFN, F_HEADS, F_LAYERS, F_FREQ, F_TEXT_DIM, F_TEXT_LEN, F_IN, F_OUT, F_PT, F_PH,
    F_PW, F_COUNT
};
static const char *const WAN_FIELD[F_COUNT] = {
    "dim",      "ffn_dim", "num_heads", "num_layers",    "freq_dim",      "text_dim",
    "text_len", "in_dim",  "out_dim",   "patch_size[0]", "patch_size[1]", "patch_size[2]"};

/* Values for each field from one kind of source (config.json, or tensor shapes), with a
 * human-readable origin for messages. -1 = not given. */
typedef struct {
    int v[F_COUNT];
    char src[F_COUNT][160];
    int head_dim; /* config.json attention_head_dim when num_attention_heads is absent, or 0 */
} wan_fields;

static void fields_init(wan_fields *f) {
    for (int i = 0; i < F_COUNT; i++) {
        f->v[i] = -1;
        f->src[i][0] = 0;
    }
    f->head_dim = 0;
}

/* Growing text for multi-line reports. */
typedef struct {
    char buf[3072];
    size_t n;
    int lines, more;
} wan_report;

static void report_line(wan_report *r, const char *fmt, ...) AST_PRINTF(2, 3);
static void report_line(wan_report *r, const char *fmt, ...) {
    if (r->lines >= WAN_REPORT_LINES) {
        r->more++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (r->n < sizeof r->buf) {
        int k = vsnprintf(r->buf + r->n, sizeof r->buf - r->n, fmt, ap);
        if (k > 0) r->n += (size_t)k;
        if (r->n >= sizeof r->buf) r->n = sizeof r->buf - 1;
    }
    va_end(ap);
    r->lines++;
}

static const char *report_text(wan_report *r) {
    if (r->more && r->n + 40 < sizeof r->buf)
        r->n += (size_t)snprintf(r->buf + r->n, sizeof r->buf - r->n, "\n  ... and %d more",
                                 r->more);
    return r->buf;
}

/* Sets field k from config.json key `key`; a second key naming the same field must agree. */
static void cfg_set(wan_fields *f, wan_report *contra, int k, int v, const char *key) {
    if (f->v[k] >= 0 && f->v[k] != v) {
        report_line(contra, "\n  config.json gives %s = %d (%s) and %d (\"%s\")", WAN_FIELD[k],
                    f->v[k], f->src[k], v, key);
        return;
    }
    f->v[k] = v;
    snprintf(f->src[k], sizeof f->src[k], "\"%s\"", key);
}

/* Reads an optional whole-number key in [lo, hi]. Returns 1 if present, 0 if absent, -1 on a
 * bad value (error set). */
static int cfg_get_int(const cJSON *obj, const char *key, const char *file, int lo, int hi,
                       int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) return 0;
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!cJSON_IsNumber(j) || !isfinite(v) || v != floor(v) || v < lo || v > hi) {
        ast_error_set("'%s': \"%s\" must be a whole number in [%d, %d] (fix or delete the "
                      "entry; missing sizes are inferred from the tensors)",
                      file, key, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 1;
}

static int cfg_get_num(const cJSON *obj, const char *key, const char *file, double lo, double hi,
                       double *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi) {
        ast_error_set("'%s': \"%s\" must be a number in [%g, %g]", file, key, lo, hi);
        return -1;
    }
    *out = j->valuedouble;
    return 1;
}

/* Reads the "astraea" object (wan-mini): model id, vocabulary and run defaults. */
static int cfg_read_astraea(const cJSON *a, const char *file, ast_wan_config *cfg) {
    if (!cJSON_IsObject(a)) return ast_fail("'%s': \"astraea\" must be a JSON object", file);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "model_id");
    if (id) {
        if (!cJSON_IsString(id) || !id->valuestring[0] ||
            strlen(id->valuestring) >= sizeof cfg->model_id)
            return ast_fail("'%s': astraea.model_id must be a non-empty string of at most %zu "
                            "characters",
                            file, sizeof cfg->model_id - 1);
        snprintf(cfg->model_id, sizeof cfg->model_id, "%s", id->valuestring);
    }
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(a, "vocab");
    if (voc) {
        int n = cJSON_IsArray(voc) ? cJSON_GetArraySize(voc) : -1;
        if (n <= 0 || n > WAN_MAX_WIDTH)
            return ast_fail("'%s': astraea.vocab must be a non-empty array of words", file);
        cfg->vocab = ast_calloc((size_t)n, sizeof *cfg->vocab, "the vocabulary");
        if (!cfg->vocab) return -1;
        int i = 0;
        for (const cJSON *w = voc->child; w; w = w->next, i++) {
            const char *s = cJSON_IsString(w) ? w->valuestring : NULL;
            int ok = s && s[0] && strlen(s) < 64;
            for (const char *p = s; ok && *p; p++)
                ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                     (unsigned char)*p >= 0x80;
            if (!ok)
                return ast_fail("'%s': astraea.vocab entry %d is not a lower-case word "
                                "(a-z, 0-9; prompts are lower-cased and split on everything "
                                "else, so it could never match)",
                                file, i);
            for (int k = 0; k < i; k++)
                if (strcmp(cfg->vocab[k], s) == 0)
                    return ast_fail("'%s': astraea.vocab has '%s' twice", file, s);
            cfg->vocab[i] = ast_strdup(s);
            if (!cfg->vocab[i]) return -1;
            cfg->vocab_size = i + 1;
        }
    }
    int v;
    double d;
    int r;
    if ((r = cfg_get_int(a, "frames", file, 0, 1 << 16, &v)) < 0) return -1;
    if (r) cfg->default_frames = v;
    if ((r = cfg_get_int(a, "height", file, 0, 1 << 16, &v)) < 0) return -1;
    if (r) cfg->default_height = v;
    if ((r = cfg_get_int(a, "width", file, 0, 1 << 16, &v)) < 0) return -1;
    if (r) cfg->default_width = v;
    if ((r = cfg_get_int(a, "steps", file, 0, 100000, &v)) < 0) return -1;
    if (r) cfg->default_steps = v;
    if ((r = cfg_get_num(a, "shift", file, 0, 1e6, &d)) < 0) return -1;
    if (r) cfg->default_shift = (float)d;
    if ((r = cfg_get_num(a, "guidance", file, 0, 1e6, &d)) < 0) return -1;
    if (r) cfg->default_guidance = (float)d;
    return 0;
}

/* Reads config.json (original WanModel or diffusers WanTransformer3DModel keys) into f (sizes)
 * and cfg (eps, astraea object). Contradictions between two keys go to `contra`. */
static int cfg_read(const char *file, wan_fields *f, ast_wan_config *cfg, int *have_eps,
                    wan_report *contra) {
    size_t len = 0;
    char *text = ast_read_file(file, WAN_MAX_CONFIG_BYTES, &len);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        ast_error_set("'%s' is not a JSON object (fix it, or delete it: every size can be "
                      "inferred from the tensors except num_heads when dim is not a multiple "
                      "of 128)",
                      file);
        goto done;
    }
    /* kinds of model this loader does not run */
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "t2v") != 0)) {
        ast_error_set("'%s': model_type is %s%s%s, but Astraea runs text-to-video (\"t2v\") "
                      "Wan2.1 checkpoints",
                      file, cJSON_IsString(mt) ? "'" : "", cJSON_IsString(mt) ? mt->valuestring : "not a string",
                      cJSON_IsString(mt) ? "'" : "");
        goto done;
    }
    static const char *i2v_keys[] = {"image_dim", "added_kv_proj_dim"};
    for (int i = 0; i < 2; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, i2v_keys[i]);
        if (j && !cJSON_IsNull(j)) {
            ast_error_set("'%s': \"%s\" is set, so this is an image-to-video (I2V) transformer; "
                          "Astraea runs the text-to-video (T2V) Wan2.1 models",
                          file, i2v_keys[i]);
            goto done;
        }
    }
    const cJSON *qk = cJSON_GetObjectItemCaseSensitive(root, "qk_norm");
    if (qk && !cJSON_IsTrue(qk) &&
        !(cJSON_IsString(qk) && strcmp(qk->valuestring, "rms_norm_across_heads") == 0)) {
        ast_error_set("'%s': qk_norm must be \"rms_norm_across_heads\" (or true), as in every "
                      "Wan2.1 model",
                      file);
        goto done;
    }
    const cJSON *can = cJSON_GetObjectItemCaseSensitive(root, "cross_attn_norm");
    if (can && !cJSON_IsTrue(can)) {
        ast_error_set("'%s': cross_attn_norm must be true, as in every Wan2.1 model", file);
        goto done;
    }

    /* sizes: each field may come from an original and a diffusers key */
    static const struct {
        const char *key;
        int field;
    } ints[] = {
        {"dim", F_DIM},           {"ffn_dim", F_FFN},          {"num_heads", F_HEADS},
        {"num_attention_heads", F_HEADS}, {"num_layers", F_LAYERS}, {"freq_dim", F_FREQ},
        {"text_dim", F_TEXT_DIM}, {"text_len", F_TEXT_LEN},   {"in_dim", F_IN},
        {"in_channels", F_IN},    {"out_dim", F_OUT},          {"out_channels", F_OUT},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int v, r = cfg_get_int(root, ints[i].key, file, 1,
                               ints[i].field == F_LAYERS ? WAN_MAX_LAYERS : WAN_MAX_WIDTH, &v);
        if (r < 0) goto done;
        if (r) cfg_set(f, contra, ints[i].field, v, ints[i].key);
    }
    int head_dim = 0;
    int r = cfg_get_int(root, "attention_head_dim", file, 1, WAN_MAX_WIDTH, &head_dim);
    if (r < 0) goto done;
    if (r && f->v[F_HEADS] > 0) {
        int64_t d = (int64_t)head_dim * f->v[F_HEADS];
        if (d > WAN_MAX_WIDTH) {
            ast_error_set("'%s': attention_head_dim x num_attention_heads is too large", file);
            goto done;
        }
        cfg_set(f, contra, F_DIM, (int)d, "attention_head_dim x num_attention_heads");
    } else if (r) {
        f->head_dim = head_dim; /* num_heads = dim / head_dim once dim is known */
    }
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "patch_size");
    if (ps && !cJSON_IsNull(ps)) {
        int ok = cJSON_IsArray(ps) && cJSON_GetArraySize(ps) == 3;
        int k = 0;
        for (const cJSON *j = ok ? ps->child : NULL; j; j = j->next, k++) {
            double v = cJSON_IsNumber(j) ? j->valuedouble : -1;
            if (!(v >= 1 && v <= 64 && v == floor(v))) {
                ok = 0;
                break;
            }
            cfg_set(f, contra, F_PT + k, (int)v, "patch_size");
        }
        if (!ok) {
            ast_error_set("'%s': patch_size must be three whole numbers (t, h, w), e.g. [1, 2, 2]",
                          file);
            goto done;
        }
    }
    double eps;
    r = cfg_get_num(root, "eps", file, 1e-30, 0.1, &eps);
    if (r < 0) goto done;
    if (r) {
        cfg->eps = (float)eps;
        *have_eps = 1;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "astraea");
    if (a && cfg_read_astraea(a, file, cfg) != 0) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- inference from shapes ------------------------------------------------------------------ */

static void shape_src(wan_fields *f, int k, int v, const char *name, const ast_tensor *t) {
    char sh[96];
    f->v[k] = v;
    snprintf(f->src[k], sizeof f->src[k], "%.60s %s", name, ast_shape_str(t, sh, sizeof sh));
}

/* Where a size can be read: dimension `axis` of original key `name` when it has `ndim` dims. */
typedef struct {
    const char *name;
    int ndim, axis;
} wan_shape_src;

/* Takes field k from the first source that exists with the right rank (the key check later
 * reports any other tensor that disagrees). */
static void infer_from(wan_fields *f, int k, const ast_st_set *s, wan_keystyle ks,
                       const wan_shape_src *src, int n_src) {
    for (int i = 0; i < n_src && f->v[k] < 0; i++) {
        const ast_tensor *t = wan_find(s, ks, src[i].name);
        int64_t v = t && t->ndim == src[i].ndim ? t->shape[src[i].axis] : 0;
        if (v > 0 && v <= WAN_MAX_WIDTH) shape_src(f, k, (int)v, src[i].name, t);
    }
}

/* Counts blocks: 1 + the largest i with some "blocks.{i}." tensor (i < WAN_MAX_LAYERS). */
static int count_blocks(const ast_st_set *s, wan_keystyle ks) {
    char pre[64];
    wan_key_name(ks, "blocks.", pre, sizeof pre);
    size_t pl = strlen(pre);
    int max = -1;
    for (int i = 0; i < ast_st_count(s); i++) {
        const char *nm = ast_st_at(s, i)->name;
        if (strncmp(nm, pre, pl) != 0) continue;
        const char *p = nm + pl;
        int v = 0, digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 5) v = v * 10 + (*p++ - '0'), digits++;
        if (digits && *p == '.' && v < WAN_MAX_LAYERS && v > max) max = v;
    }
    return max + 1;
}

static void infer_shapes(wan_fields *f, const ast_st_set *s, wan_keystyle ks) {
    static const wan_shape_src dim[] = {
        {"patch_embedding.weight", 5, 0},  {"text_embedding.0.weight", 2, 0},
        {"time_embedding.0.weight", 2, 0}, {"time_embedding.2.weight", 2, 0},
        {"head.head.weight", 2, 1},        {"blocks.0.self_attn.q.weight", 2, 0}};
    static const wan_shape_src in[] = {{"patch_embedding.weight", 5, 1}};
    static const wan_shape_src pt[] = {{"patch_embedding.weight", 5, 2}};
    static const wan_shape_src ph[] = {{"patch_embedding.weight", 5, 3}};
    static const wan_shape_src pw[] = {{"patch_embedding.weight", 5, 4}};
    static const wan_shape_src text_dim[] = {{"text_embedding.0.weight", 2, 1},
                                             {"text_encoder.token_embedding", 2, 1}};
    static const wan_shape_src freq[] = {{"time_embedding.0.weight", 2, 1}};
    static const wan_shape_src text_len[] = {{"text_encoder.position_embedding", 2, 0}};
    infer_from(f, F_DIM, s, ks, dim, 6);
    infer_from(f, F_IN, s, ks, in, 1);
    infer_from(f, F_PT, s, ks, pt, 1);
    infer_from(f, F_PH, s, ks, ph, 1);
    infer_from(f, F_PW, s, ks, pw, 1);
    infer_from(f, F_TEXT_DIM, s, ks, text_dim, 2);
    infer_from(f, F_FREQ, s, ks, freq, 1);
    infer_from(f, F_TEXT_LEN, s, ks, text_len, 1);
    int L = count_blocks(s, ks);
    if (L > 0) {
        f->v[F_LAYERS] = L;
        snprintf(f->src[F_LAYERS], sizeof f->src[F_LAYERS], "the checkpoint's blocks 0..%d",
                 L - 1);
    }
    /* ffn_dim: the first block that has its FFN */
    for (int i = 0; i < L && f->v[F_FFN] < 0; i++) {
        char n0[64], n2[64];
        snprintf(n0, sizeof n0, "blocks.%d.ffn.0.weight", i);
        snprintf(n2, sizeof n2, "blocks.%d.ffn.2.weight", i);
        const wan_shape_src ffn[] = {{n0, 2, 0}, {n2, 2, 1}};
        infer_from(f, F_FFN, s, ks, ffn, 2);
    }
}

/* out_dim = head.head.weight rows / prod(patch), once the patch is known. */
static void infer_out_dim(wan_fields *f, const ast_st_set *s, wan_keystyle ks, const int patch[3]) {
    const ast_tensor *t = wan_find(s, ks, "head.head.weight");
    int64_t P = (int64_t)patch[0] * patch[1] * patch[2];
    if (t && t->ndim == 2 && P > 0 && t->shape[0] > 0 && t->shape[0] % P == 0 &&
        t->shape[0] / P <= WAN_MAX_WIDTH)
        shape_src(f, F_OUT, (int)(t->shape[0] / P), "head.head.weight", t);
}

/* Builds the config: config.json values, then shapes, then Wan2.1 defaults. Every disagreement
 * between config.json and the tensors is collected into one error. */
static int wan_infer(const char *where, const char *config_path, const ast_st_set *s,
                     wan_keystyle ks, ast_wan_config *cfg) {
    wan_fields fc, fs;
    fields_init(&fc);
    fields_init(&fs);
    wan_report contra = {0};
    int have_eps = 0;
    wan_config_base(cfg);
    if (config_path && cfg_read(config_path, &fc, cfg, &have_eps, &contra) != 0) return -1;
    infer_shapes(&fs, s, ks);
    int patch[3];
    for (int k = 0; k < 3; k++) {
        int c = fc.v[F_PT + k], sh = fs.v[F_PT + k];
        patch[k] = c >= 0 ? c : sh >= 0 ? sh : (k == 0 ? 1 : 2);
    }
    infer_out_dim(&fs, s, ks, patch);

    int v[F_COUNT];
    static const int defaults[F_COUNT] = {-1, -1, -1, -1, 256, 4096, 512, 16, 16, 1, 2, 2};
    for (int k = 0; k < F_COUNT; k++) {
        if (k == F_HEADS) continue;
        if (fc.v[k] >= 0 && fs.v[k] >= 0 && fc.v[k] != fs.v[k])
            report_line(&contra, "\n  config.json %s says %s = %d, but %s implies %d", fc.src[k],
                        WAN_FIELD[k], fc.v[k], fs.src[k], fs.v[k]);
        v[k] = fc.v[k] >= 0 ? fc.v[k] : fs.v[k] >= 0 ? fs.v[k] : defaults[k];
    }
    if (contra.lines)
        return ast_fail("checkpoint '%s': config.json contradicts the tensors:%s\n(the "
                        "config.json belongs to another model: use the checkpoint's own, or "
                        "delete it to infer the sizes from the tensors)",
                        where, report_text(&contra));
    if (v[F_DIM] <= 0)
        return ast_fail("checkpoint '%s': cannot tell the model width: none of "
                        "patch_embedding.weight, text_embedding.0.weight, time_embedding.0.weight "
                        "is present and config.json gives no dim",
                        where);
    if (v[F_LAYERS] <= 0)
        return ast_fail("checkpoint '%s' has no transformer blocks (no blocks.0.* tensors) and "
                        "config.json gives no num_layers: the download is incomplete",
                        where);
    if (v[F_FFN] <= 0)
        return ast_fail("checkpoint '%s': cannot tell ffn_dim: no block has ffn.0.weight or "
                        "ffn.2.weight and config.json gives no ffn_dim",
                        where);
    int heads = fc.v[F_HEADS];
    if (heads < 0 && fc.head_dim > 0) { /* only attention_head_dim was given */
        int hd = fc.head_dim;
        if (v[F_DIM] % hd != 0)
            return ast_fail("checkpoint '%s': dim %d is not a multiple of config.json "
                            "attention_head_dim %d",
                            where, v[F_DIM], hd);
        heads = v[F_DIM] / hd;
    }
    if (heads < 0) {
        if (v[F_DIM] % 128 != 0)
            return ast_fail("checkpoint '%s': cannot tell num_heads (config.json does not give "
                            "it and dim %d is not a multiple of Wan2.1's 128-wide heads): add "
                            "\"num_heads\" to config.json",
                            where, v[F_DIM]);
        heads = v[F_DIM] / 128;
    }
    if (v[F_DIM] % heads != 0 || (v[F_DIM] / heads) % 2 != 0)
        return ast_fail("checkpoint '%s': dim %d does not split into %d heads of even width "
                        "(check num_heads in config.json)",
                        where, v[F_DIM], heads);
    cfg->dim = v[F_DIM];
    cfg->ffn_dim = v[F_FFN];
    cfg->num_heads = heads;
    cfg->head_dim = v[F_DIM] / heads;
    cfg->num_layers = v[F_LAYERS];
    cfg->freq_dim = v[F_FREQ];
    cfg->text_dim = v[F_TEXT_DIM];
    cfg->text_len = v[F_TEXT_LEN];
    cfg->in_dim = v[F_IN];
    cfg->out_dim = v[F_OUT];
    for (int k = 0; k < 3; k++) cfg->patch[k] = v[F_PT + k];
    if (!have_eps) cfg->eps = 1e-6f;
    return wan_config_sane(cfg);
}

/* Lists the fields in which two configs differ ("dim 64 (expected 1536), ..."); 0 if equal. */
static int config_diff(const ast_wan_config *a, const ast_wan_config *b, char *buf, size_t cap) {
    const int va[] = {a->dim, a->ffn_dim, a->num_heads, a->num_layers, a->freq_dim, a->text_dim,
                      a->text_len, a->in_dim, a->out_dim, a->patch[0], a->patch[1], a->patch[2]};
    const int vb[] = {b->dim, b->ffn_dim, b->num_heads, b->num_layers, b->freq_dim, b->text_dim,
                      b->text_len, b->in_dim, b->out_dim, b->patch[0], b->patch[1], b->patch[2]};
    int n = 0;
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < F_COUNT; k++) {
        if (va[k] == vb[k]) continue;
        if (o < cap)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s %d (expected %d)", n ? ", " : "",
                                  WAN_FIELD[k], va[k], vb[k]);
        n++;
    }
    if (a->eps != b->eps) {
        if (o < cap)
            o += (size_t)snprintf(buf + o, cap - o, "%seps %g (expected %g)", n ? ", " : "",
                                  (double)a->eps, (double)b->eps);
        n++;
    }
    return n;
}

/* ---- checking and binding ------------------------------------------------------------------- */

static int is_float_dtype(ast_dtype d) {
    return d == AST_DT_F32 || d == AST_DT_BF16 || d == AST_DT_F16;
}

static void shape_of_slot(const wan_slot *sl, char *buf, size_t cap) {
    ast_tensor t = {.ndim = sl->ndim};
    memcpy(t.shape, sl->shape, sizeof sl->shape);
    ast_shape_str(&t, buf, cap);
}

/* Checks the set against the slots; on any mismatch sets ONE error listing every offender. */
static int wan_check(const char *where, const ast_st_set *s, wan_keystyle ks, const wan_slot *sl,
                     int n, const ast_wan_config *cfg) {
    int nt = ast_st_count(s);
    unsigned char *used = ast_calloc((size_t)nt + 1, 1, "a tensor checklist");
    if (!used) return -1;
    const ast_tensor *base = ast_st_at(s, 0);
    wan_report r = {0};
    int missing = 0, bad = 0, extra = 0;
    char nm[256], want[96], got[96];
    /* pass 0 lists the missing tensors, pass 1 the misshapen ones, so the report is grouped */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            wan_key_name(ks, sl[i].name, nm, sizeof nm);
            const ast_tensor *t = ast_st_find(s, nm);
            shape_of_slot(&sl[i], want, sizeof want);
            if (!t) {
                if (pass == 0) {
                    missing++;
                    report_line(&r, "\n  missing:    %s %s", nm, want);
                }
                continue;
            }
            used[t - base] = 1;
            if (pass == 0) continue;
            int same = t->ndim == sl[i].ndim;
            for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == sl[i].shape[d];
            if (!same) {
                bad++;
                report_line(&r, "\n  misshapen:  %s: expected %s, found %s", nm, want,
                            ast_shape_str(t, got, sizeof got));
            } else if (!is_float_dtype(t->dtype)) {
                bad++;
                report_line(&r, "\n  wrong type: %s is %s, expected F32, BF16 or F16", nm,
                            ast_dtype_name(t->dtype));
            }
        }
    }
    for (int i = 0; i < nt; i++) {
        if (used[i]) continue;
        const ast_tensor *t = ast_st_at(s, i);
        extra++;
        report_line(&r, "\n  unexpected: %.100s %s", t->name, ast_shape_str(t, got, sizeof got));
    }
    free(used);
    if (!missing && !bad && !extra) return 0;
    return ast_fail("checkpoint '%s' does not match a Wan2.1 T2V model with dim %d, ffn_dim %d, "
                    "%d layers, text_dim %d, in/out %d/%d%s (%s key names): %d missing, %d "
                    "misshapen, %d unexpected tensor%s:%s\n(an incomplete download, a different "
                    "model, or a config.json that does not belong to these weights)",
                    where, cfg->dim, cfg->ffn_dim, cfg->num_layers, cfg->text_dim, cfg->in_dim,
                    cfg->out_dim, cfg->vocab_size ? ", with a text encoder" : "",
                    ks.style == AST_KEYS_DIFFUSERS ? "diffusers"
                    : ks.prefix[0]                 ? "model.diffusion_model.-prefixed"
                                                   : "original",
                    missing, bad, extra, missing + bad + extra == 1 ? "" : "s", report_text(&r));
}

/* ---- NaN / Inf in the weights ----------------------------------------------------------------
 * A checkpoint with a NaN or Inf weight (a damaged file, a diverged training run) would give NaN
 * video after minutes of work and no clue why, so the loader refuses it, naming the tensor.
 * Cost: the small vectors are checked as they are converted (free). The matrices are checked at
 * load when the checkpoint is at most WAN_SCAN_AT_LOAD bytes (wan-mini, test checkpoints: its
 * files are read whole for the hash anyway); a Wan2.1 checkpoint (5.7 / 57 GB) is not read whole
 * at load, so its matrices are scanned by ast_model_check_finite() only when an output turns out
 * non-finite (ast_run_check_result), which then names the tensor. The scan reads exponent bits
 * only: about memory bandwidth, ~1 s per 5 GB on two cores. */
#define WAN_SCAN_AT_LOAD (256ull << 20)

/* Number of NaN/Inf elements of t; *first = the first one's flat index (when any). */
static int64_t wan_count_nonfinite(const ast_tensor *t, int64_t *first) {
    const unsigned char *p = t->data;
    int64_t n = ast_tensor_numel(t), bad = 0, lo = INT64_MAX;
    size_t es = ast_dtype_size(t->dtype);
    uint32_t mask = t->dtype == AST_DT_F32 ? 0x7f800000u : t->dtype == AST_DT_BF16 ? 0x7f80u
                    : t->dtype == AST_DT_F16 ? 0x7c00u : 0u;
    if (!mask) return 0;
#pragma omp parallel for reduction(+ : bad) reduction(min : lo) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = 0;
        if (es == 4) {
            memcpy(&v, p + i * 4, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + i * 2, 2);
            v = h;
        }
        if ((v & mask) == mask) {
            bad++;
            if (i < lo) lo = i;
        }
    }
    *first = lo;
    return bad;
}

static int wan_nonfinite_fail(const char *where, const ast_tensor *t, int64_t bad, int64_t first) {
    float v = ast_tensor_get_f32(t, first);
    return ast_fail("checkpoint '%s': tensor '%s' holds %lld NaN/Inf value%s (the first, %s, at "
                    "flat index %lld): the file is damaged or the weights diverged in training; "
                    "re-download the checkpoint",
                    where, t->name ? t->name : "?", (long long)bad, bad == 1 ? "" : "s",
                    isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (long long)first);
}

int ast_model_check_finite(const ast_model *m) {
    for (int i = 0; i < ast_st_count(m->files); i++) {
        const ast_tensor *t = ast_st_at(m->files, i);
        int64_t first = 0, bad = wan_count_nonfinite(t, &first);
        if (bad) return wan_nonfinite_fail(m->path, t, bad, first);
    }
    return 0;
}

/* Binds views and fills the fp32 arena. The slots carry destinations into m->w. */
static int wan_bind(ast_model *m, wan_keystyle ks, const wan_slot *sl, int n) {
    size_t floats = 0;
    for (int i = 0; i < n; i++) {
        if (!sl[i].is_vec) continue;
        int64_t k = 1;
        for (int d = 0; d < sl[i].ndim; d++) k *= sl[i].shape[d];
        floats += ((size_t)k + 15) & ~(size_t)15; /* each vector starts 64-byte aligned */
    }
    m->arena = ast_alloc_aligned(floats * sizeof(float), "the model's fp32 vectors");
    if (!m->arena) return -1;
    size_t off = 0;
    char nm[256];
    for (int i = 0; i < n; i++) {
        const ast_tensor *t = ast_st_find(m->files, wan_key_name(ks, sl[i].name, nm, sizeof nm));
        if (!t) return ast_fail("internal error: '%s' vanished after the check", nm);
        if (sl[i].is_vec) {
            int64_t k = ast_tensor_numel(t), first = 0, bad = wan_count_nonfinite(t, &first);
            if (bad) return wan_nonfinite_fail(m->path, t, bad, first);
            ast_tensor_to_f32(t, 0, k, m->arena + off);
            *sl[i].vec = m->arena + off;
            off += ((size_t)k + 15) & ~(size_t)15;
        } else {
            *sl[i].mat = *t;
        }
    }
    return 0;
}

/* ---- finding the checkpoint ----------------------------------------------------------------- */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Locates the built-in wan-mini folder (the first candidate holding a config.json). */
static int find_wan_mini(char *out, size_t cap) {
    char cand[4][1024];
    int nc = 0;
    const char *env = getenv("ASTRAEA_MODELS");
    if (env && env[0]) snprintf(cand[nc++], sizeof cand[0], "%s/wan-mini", env);
    const char *exe = ast_exe_dir();
    if (exe) {
        snprintf(cand[nc++], sizeof cand[0], "%s/../models/wan-mini", exe);
        snprintf(cand[nc++], sizeof cand[0], "%s/models/wan-mini", exe);
    }
    snprintf(cand[nc++], sizeof cand[0], "%s/models/wan-mini", AST_DATADIR);
    char tried[4200];
    size_t o = 0;
    tried[0] = 0;
    for (int i = 0; i < nc; i++) {
        char cfgp[1100];
        int k = snprintf(cfgp, sizeof cfgp, "%s/config.json", cand[i]);
        if (k > 0 && (size_t)k < sizeof cfgp && is_dir(cand[i]) && is_file(cfgp) &&
            strlen(cand[i]) < cap) {
            memcpy(out, cand[i], strlen(cand[i]) + 1);
            return 0;
        }
        if (o < sizeof tried)
            o += (size_t)snprintf(tried + o, sizeof tried - o, "%s%s", i ? ", " : "", cand[i]);
    }
    return ast_fail("the built-in model wan-mini was not found (looked for a folder with "
                    "config.json in: %s); set ASTRAEA_MODELS to the folder that holds wan-mini/, "
                    "or pass the folder itself",
                    tried);
}

/* Resolves spec to a folder (or a single .safetensors file: *single = 1). */
static int resolve_spec(const char *spec, char *out, size_t cap, int *single) {
    *single = 0;
    if (!spec || !spec[0])
        return ast_fail("no model given (pass --model wan-mini or --checkpoint DIR)");
    if (strlen(spec) >= cap) return ast_fail("checkpoint path '%.80s...' is too long", spec);
    if (is_dir(spec)) {
        snprintf(out, cap, "%s", spec);
        return 0;
    }
    if (is_file(spec)) {
        size_t n = strlen(spec);
        if (n > 12 && strcmp(spec + n - 12, ".safetensors") == 0) {
            snprintf(out, cap, "%s", spec);
            *single = 1;
            return 0;
        }
        return ast_fail("'%s' is a file but not a .safetensors checkpoint (pass the checkpoint "
                        "folder)",
                        spec);
    }
    if (strcmp(spec, "wan-mini") == 0) return find_wan_mini(out, cap);
    ast_wan_config tmp;
    if (ast_wan_config_builtin(spec, &tmp) == 0)
        return ast_fail("'%s' is not shipped with Astraea: download its checkpoint folder "
                        "(Wan-AI/Wan2.1-T2V-%s from Hugging Face) and pass it with --checkpoint "
                        "DIR",
                        spec, tmp.dim == 1536 ? "1.3B" : "14B");
    return ast_fail("'%s' is neither a checkpoint folder nor a built-in model (built-in: "
                    "wan-mini; for Wan2.1 pass the downloaded Wan-AI/Wan2.1-T2V-1.3B or -14B "
                    "folder with --checkpoint DIR)",
                    spec);
}

/* ---- public entry points -------------------------------------------------------------------- */

static void config_free_vocab(ast_wan_config *c) {
    if (c->vocab)
        for (int i = 0; i < c->vocab_size; i++) free(c->vocab[i]);
    free(c->vocab);
    c->vocab = NULL;
    c->vocab_size = 0;
}

void ast_model_free(ast_model *m) {
    if (!m) return;
    ast_st_close(m->files);
    ast_free_aligned(m->arena);
    free(m->w.blocks);
    config_free_vocab(&m->cfg);
    free(m);
}

static int model_load(ast_model *m, const char *spec, const char *expect_id) {
    int single;
    if (resolve_spec(spec, m->path, sizeof m->path, &single) != 0) return -1;
    const char *where = m->path;
    char cfgpath[1100];
    if (single) {
        const char *slash = strrchr(m->path, '/');
        if (slash)
            snprintf(cfgpath, sizeof cfgpath, "%.*s/config.json", (int)(slash - m->path), m->path);
        else
            snprintf(cfgpath, sizeof cfgpath, "config.json");
        if (ast_st_open(m->path, &m->files) != 0) return -1;
    } else {
        snprintf(cfgpath, sizeof cfgpath, "%s/config.json", m->path);
        if (ast_st_open_dir(m->path, &m->files) != 0) return -1;
    }
    wan_keystyle ks = {AST_KEYS_ORIGINAL, ""};
    if (wan_detect_style(m->files, where, &ks) != 0) return -1;
    m->key_style = ks.style;
    snprintf(m->key_prefix, sizeof m->key_prefix, "%s", ks.prefix);
    if (wan_infer(where, is_file(cfgpath) ? cfgpath : NULL, m->files, ks, &m->cfg) != 0)
        return -1;

    /* identity: the config's own id, else the built-in it equals, else "custom" */
    if (!m->cfg.model_id[0]) {
        static const char *ids[] = {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b"};
        snprintf(m->cfg.model_id, sizeof m->cfg.model_id, "custom");
        for (int i = 0; i < 2; i++) {
            ast_wan_config b;
            char diff[8];
            ast_wan_config_builtin(ids[i], &b);
            if (m->cfg.vocab_size == 0 && config_diff(&m->cfg, &b, diff, sizeof diff) == 0)
                snprintf(m->cfg.model_id, sizeof m->cfg.model_id, "%s", ids[i]);
        }
    }
    if (expect_id) {
        ast_wan_config b;
        char diff[1024];
        if (ast_wan_config_builtin(expect_id, &b) == 0) {
            if (config_diff(&m->cfg, &b, diff, sizeof diff) != 0)
                return ast_fail("checkpoint '%s' is not %s: %s (pass the matching checkpoint "
                                "folder, or drop the model id to run it as it is)",
                                where, expect_id, diff);
        } else if (strcmp(m->cfg.model_id, expect_id) != 0) {
            return ast_fail("checkpoint '%s' is model '%s', not '%s'", where, m->cfg.model_id,
                            expect_id);
        }
    }

    int n = wan_enumerate(&m->cfg, NULL, NULL);
    m->w.blocks = ast_calloc((size_t)m->cfg.num_layers, sizeof *m->w.blocks, "the model blocks");
    wan_slot *sl = ast_calloc((size_t)n, sizeof *sl, "the key table");
    if (!m->w.blocks || !sl) {
        free(sl);
        return -1;
    }
    wan_enumerate(&m->cfg, &m->w, sl);
    int rc = wan_check(where, m->files, ks, sl, n, &m->cfg);
    if (rc == 0) rc = wan_bind(m, ks, sl, n);
    free(sl);
    if (rc != 0) return -1;
    uint64_t bytes = 0;
    for (int i = 0; i < ast_st_count(m->files); i++) bytes += ast_st_at(m->files, i)->nbytes;
    if (bytes <= WAN_SCAN_AT_LOAD && ast_model_check_finite(m) != 0) return -1;
    snprintf(m->hash, sizeof m->hash, "%s", ast_st_hash(m->files));
    return 0;
}

int ast_model_load(const char *spec, const char *expect_id, ast_model **out) {
    *out = NULL;
    ast_model *m = ast_calloc(1, sizeof *m, "the model");
    if (!m) return -1;
    if (model_load(m, spec, expect_id) != 0) {
        ast_model_free(m);
        return -1;
    }
    ast_log(2, "loaded %s from '%s' (%s keys, hash %s)\n", m->cfg.model_id, m->path,
            m->key_style == AST_KEYS_DIFFUSERS ? "diffusers" : "original", m->hash);
    *out = m;
    return 0;
}
