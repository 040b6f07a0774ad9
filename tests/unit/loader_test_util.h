/* loader_test_util.h — helpers shared by the checkpoint-reading tests (test_safetensors,
 * test_wan_load, test_prompt, test_faults, fuzz_config) and the tests that need a model of a
 * given size (test_seqpar, test_gpu_seqpar, test_gpu_oom): a scratch folder that is removed
 * afterwards, raw file writers for hand-made (often deliberately broken) safetensors files,
 * synthetic Wan checkpoints and configs, and a loaded model with random weights. Header-only. */
#ifndef AST_LOADER_TEST_UTIL_H
#define AST_LOADER_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_random.h"
#include "test_util.h"
#include "wan.h"

/* Makes a fresh scratch folder under $TMPDIR (or /tmp) into buf; exits 1 if it cannot. */
static inline const char *lt_tmpdir(char *buf, size_t len, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/ast_%s_XXXXXX", base && base[0] ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    return buf;
}

static inline const char *lt_path(char *buf, size_t len, const char *dir, const char *name) {
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
    return buf;
}

/* Removes a folder and everything in it (one level of sub-folders is enough here). */
static inline void lt_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        lt_path(p, sizeof p, dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            lt_rmtree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}


/* Writes bytes to a file (not atomic: test input only). Returns 0 on success. */
static inline int lt_write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static inline int lt_write_text(const char *path, const char *text) {
    return lt_write_bytes(path, text, strlen(text));
}

/* Builds a safetensors image in memory: u64 LE header length `hlen_field` (pass UINT64_MAX to
 * use the real header length), the header bytes (hlen bytes, may hold NULs) and data_len bytes
 * of data (a repeating pattern). Caller frees; *len_out = total size. */
static inline unsigned char *lt_image(const char *header, size_t hlen, uint64_t hlen_field,
                                      size_t data_len, size_t *len_out) {
    size_t n = 8 + hlen + data_len;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) exit(1);
    uint64_t v = hlen_field == UINT64_MAX ? (uint64_t)hlen : hlen_field;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)(i * 37 + 11);
    *len_out = n;
    return b;
}

/* ---- synthetic Wan checkpoints -------------------------------------------------------------- */

/* The value written for element i of key-table entry k: uniform in [-1, 1), deterministic, so a
 * test can check any element read back without keeping the data. */
static inline float lt_ckpt_value(int k, int64_t i) {
    uint64_t z = (uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* The same value after storing it in dtype dt and reading it back. */
static inline float lt_ckpt_stored(ast_dtype dt, int k, int64_t i) {
    float v = lt_ckpt_value(k, i);
    if (dt == AST_DT_BF16) return ast_bf16_to_f32(ast_f32_to_bf16(v));
    if (dt == AST_DT_F16) return ast_f16_to_f32(ast_f32_to_f16(v));
    return v;
}

typedef struct {
    ast_dtype dtype;
    int key_style;           /* AST_KEYS_ORIGINAL / AST_KEYS_DIFFUSERS */
    const char *prefix;      /* "" / NULL, or "model.diffusion_model." */
    int shards;              /* 0/1: one file; 2: two files + index.json */
    const char *drop[4];     /* original names left out */
    const char *reshape[4];  /* original names stored with shape[0] + 1 */
    const char *extra[4];    /* stored names added as F32 [3] */
    const char *drop_prefix; /* original names starting with this are left out */
    const char *as_i32;      /* original name stored as I32 (a wrong dtype) */
} lt_ckpt_opts;

static inline int lt_in(const char *const *list, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], s) == 0) return 1;
    return 0;
}

/* Index of an original key in the key table of cfg, or -1. */
static inline int lt_key_index(const ast_wan_config *cfg, const char *name) {
    int n, r = -1;
    ast_wan_key *k = ast_wan_key_table(cfg, &n);
    for (int i = 0; k && i < n && r < 0; i++)
        if (strcmp(k[i].name, name) == 0) r = i;
    ast_wan_key_table_free(k, n);
    return r;
}

/* Writes the tensors cfg implies (random lt_ckpt_value data) into dir, as one file
 * "diffusion_pytorch_model.safetensors" or two shards with an index. Returns 0 on success. */
static inline int lt_write_ckpt(const char *dir, const ast_wan_config *cfg, const lt_ckpt_opts *o) {
    int n = 0;
    ast_wan_key *keys = ast_wan_key_table(cfg, &n);
    if (!keys) return -1;
    ast_st_entry *e = calloc((size_t)n + 4, sizeof *e);
    char **names = calloc((size_t)n + 4, sizeof *names);
    void **bufs = calloc((size_t)n + 4, sizeof *bufs);
    int ne = 0, rc = -1;
    float extra_data[3] = {0.5f, -0.25f, 2.0f};
    for (int k = 0; k < n; k++) {
        if (lt_in(o->drop, 4, keys[k].name)) continue;
        if (o->drop_prefix && strncmp(keys[k].name, o->drop_prefix, strlen(o->drop_prefix)) == 0)
            continue;
        char nm[256];
        ast_wan_key_name(o->key_style, o->prefix, keys[k].name, nm, sizeof nm);
        ast_st_entry *x = &e[ne];
        names[ne] = ast_strdup(nm);
        x->name = names[ne];
        int as_int = o->as_i32 && strcmp(o->as_i32, keys[k].name) == 0;
        x->dtype = as_int ? AST_DT_I32 : o->dtype;
        x->ndim = keys[k].ndim;
        memcpy(x->shape, keys[k].shape, sizeof keys[k].shape);
        if (lt_in(o->reshape, 4, keys[k].name)) x->shape[0] += 1;
        int64_t numel = 1;
        for (int d = 0; d < x->ndim; d++) numel *= x->shape[d];
        size_t es = ast_dtype_size(x->dtype);
        unsigned char *b = malloc((size_t)numel * es + 1);
        for (int64_t i = 0; i < numel; i++) {
            float v = lt_ckpt_value(k, i);
            if (as_int) {
                int32_t iv = (int32_t)(v * 1000);
                memcpy(b + i * 4, &iv, 4);
            } else if (o->dtype == AST_DT_F32) {
                memcpy(b + i * 4, &v, 4);
            } else {
                uint16_t h = o->dtype == AST_DT_BF16 ? ast_f32_to_bf16(v) : ast_f32_to_f16(v);
                memcpy(b + i * 2, &h, 2);
            }
        }
        bufs[ne] = b;
        x->data = b;
        ne++;
    }
    for (int i = 0; i < 4 && o->extra[i]; i++)
        e[ne++] = (ast_st_entry){o->extra[i], AST_DT_F32, 1, {3}, extra_data};
    char path[1024];
    if (o->shards <= 1) {
        rc = ast_st_write(lt_path(path, sizeof path, dir, "diffusion_pytorch_model.safetensors"),
                          e, ne, NULL, 0);
    } else {
        static const char *files[2] = {"diffusion_pytorch_model-00001-of-00002.safetensors",
                                       "diffusion_pytorch_model-00002-of-00002.safetensors"};
        int half = ne / 2;
        rc = ast_st_write(lt_path(path, sizeof path, dir, files[0]), e, half, NULL, 0);
        if (rc == 0) rc = ast_st_write(lt_path(path, sizeof path, dir, files[1]), e + half, ne - half, NULL, 0);
        size_t cap = (size_t)ne * 200 + 100, len = 0;
        char *idx = malloc(cap);
        len += (size_t)snprintf(idx + len, cap - len, "{\"metadata\":{},\"weight_map\":{");
        for (int i = 0; i < ne; i++)
            len += (size_t)snprintf(idx + len, cap - len, "%s\"%s\":\"%s\"", i ? "," : "",
                                    e[i].name, files[i >= half]);
        snprintf(idx + len, cap - len, "}}");
        if (rc == 0)
            rc = lt_write_text(lt_path(path, sizeof path, dir,
                                       "diffusion_pytorch_model.safetensors.index.json"),
                               idx);
        free(idx);
    }
    for (int i = 0; i < ne; i++) {
        free(names[i]);
        free(bufs[i]);
    }
    free(names);
    free(bufs);
    free(e);
    ast_wan_key_table_free(keys, n);
    return rc;
}

/* Sets the attention width of c: num_heads heads of head_dim (dim = num_heads x head_dim). */
static inline void lt_set_heads(ast_wan_config *c, int num_heads, int head_dim) {
    c->num_heads = num_heads;
    c->head_dim = head_dim;
    c->dim = num_heads * head_dim;
}

/* The tiny model the loader tests use: dim 64, 2 heads, 2 layers, ffn 128, text_dim 32,
 * text_len 8, in/out 16, patch (1,2,2), freq_dim 256. */
static inline ast_wan_config lt_mini_config(void) {
    ast_wan_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_id, sizeof c.model_id, "custom");
    lt_set_heads(&c, 2, 32);
    c.num_layers = 2;
    c.ffn_dim = 128;
    c.freq_dim = 256;
    c.text_dim = 32;
    c.text_len = 8;
    c.in_dim = c.out_dim = 16;
    c.patch[0] = 1;
    c.patch[1] = c.patch[2] = 2;
    c.eps = 1e-6f;
    return c;
}

/* A model of config cfg with random weights (ast_write_random_checkpoint: seed, matrices stored
 * as dtype), written to a scratch folder named after tag and loaded; the folder is removed once
 * loaded (the model keeps its mmapped files). Checks the write and the load; NULL if either
 * failed (the failure is recorded). */
static inline ast_model *lt_random_model(const char *tag, const ast_wan_config *cfg, uint64_t seed,
                                         ast_dtype dtype) {
    char dir[512];
    lt_tmpdir(dir, sizeof dir, tag);
    ast_model *m = NULL;
    const int written = ast_write_random_checkpoint(dir, cfg, seed, dtype) == 0;
    CHECK(written, "write: %s", ast_error_get());
    if (written) CHECK(ast_model_load(dir, NULL, &m) == 0, "load: %s", ast_error_get());
    lt_rmtree(dir);
    return m;
}

#endif
