/* model_random.c — writes a checkpoint folder with random, non-degenerate weights for a Wan
 * configuration (benchmarks only: timing needs real shapes, never real weights). Every key and
 * shape comes from ast_wan_key_table, so the result loads through the normal loader. */
#include "model_random.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "safetensors.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Scale of a uniform draw for one tensor: matrices ~ U(±√3/√fan_in) so activations stay O(1);
 * norm weights around 1; modulation, biases small. Returns the centre in *centre. */
static float init_scale(const ast_wan_key *k, float *centre) {
    *centre = 0;
    if (ends_with(k->name, "modulation")) return 0.1f;
    if (strstr(k->name, "norm")) {
        if (ends_with(k->name, ".weight")) *centre = 1.0f;
        return 0.1f;
    }
    if (ends_with(k->name, ".bias")) return 0.02f;
    if (k->ndim >= 2) {
        int64_t fan_in = 1;
        for (int i = 1; i < k->ndim; i++) fan_in *= k->shape[i];
        return 1.7320508f / sqrtf((float)fan_in);
    }
    return 0.1f;
}

int ast_write_random_checkpoint(const char *dir, const ast_wan_config *cfg, uint64_t seed,
                                ast_dtype dtype) {
    if (dtype != AST_DT_F32 && dtype != AST_DT_BF16)
        return ast_fail("random checkpoint: dtype must be F32 or BF16");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ast_fail("cannot create folder '%s': %s", dir, strerror(errno));
    int n = 0;
    ast_wan_key *keys = ast_wan_key_table(cfg, &n);
    if (!keys) return -1;
    ast_st_entry *e = ast_calloc((size_t)n, sizeof *e, "checkpoint entries");
    void **bufs = ast_calloc((size_t)n, sizeof *bufs, "checkpoint buffers");
    int rc = -1;
    if (!e || !bufs) goto out;
    for (int t = 0; t < n; t++) {
        const ast_wan_key *k = &keys[t];
        int64_t numel = 1;
        for (int i = 0; i < k->ndim; i++) numel *= k->shape[i];
        /* vectors stay F32 (as the loader converts them anyway); matrices in `dtype` */
        ast_dtype dt = k->ndim >= 2 && !ends_with(k->name, "modulation") ? dtype : AST_DT_F32;
        bufs[t] = ast_malloc((size_t)numel * ast_dtype_size(dt), k->name);
        if (!bufs[t]) goto out;
        float centre, a = init_scale(k, &centre);
        const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t c0 = 0; c0 < numel; c0 += chunk) {
            ast_rng g;
            ast_rng_seed(&g, seed ^ ((uint64_t)t << 40) ^ (uint64_t)(c0 / chunk));
            int64_t end = c0 + chunk < numel ? c0 + chunk : numel;
            for (int64_t i = c0; i < end; i++) {
                float v = centre + a * (float)(2.0 * ast_rng_uniform(&g) - 1.0);
                if (dt == AST_DT_F32)
                    ((float *)bufs[t])[i] = v;
                else
                    ((uint16_t *)bufs[t])[i] = ast_f32_to_bf16(v);
            }
        }
        e[t].name = k->name;
        e[t].dtype = dt;
        e[t].ndim = k->ndim;
        memcpy(e[t].shape, k->shape, sizeof e[t].shape);
        e[t].data = bufs[t];
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (ast_st_write(path, e, n, NULL, 0)) goto out;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char json[1024];
    int len = snprintf(json, sizeof json,
                       "{\"_class_name\": \"WanModel\", \"model_type\": \"t2v\", \"dim\": %d, "
                       "\"eps\": %g, \"ffn_dim\": %d, \"freq_dim\": %d, \"in_dim\": %d, "
                       "\"num_heads\": %d, \"num_layers\": %d, \"out_dim\": %d, \"text_len\": %d}\n",
                       cfg->dim, cfg->eps, cfg->ffn_dim, cfg->freq_dim, cfg->in_dim,
                       cfg->num_heads, cfg->num_layers, cfg->out_dim, cfg->text_len);
    ast_outfile o;
    if (ast_outfile_open(&o, path)) goto out;
    if (ast_outfile_write(&o, json, (size_t)len)) {
        ast_outfile_abort(&o);
        goto out;
    }
    if (ast_outfile_commit(&o)) goto out;
    rc = 0;
out:
    if (bufs)
        for (int t = 0; t < n; t++) free(bufs[t]);
    free(bufs);
    free(e);
    ast_wan_key_table_free(keys, n);
    return rc;
}
