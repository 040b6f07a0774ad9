/* test_wan_load.c — the Wan2.1 loader on synthetic checkpoints: F32/BF16/F16, original,
 * diffusers and "model.diffusion_model."-prefixed names, sharded with an index; config
 * inference and contradictions; one error listing every missing/unexpected/misshapen tensor;
 * the built-in wan-mini lookup; the full 1.3B/14B key tables (counts, parameter totals) and a
 * header-only (sparse) 1.3B file and sharded 14B folder loaded end to end. */
#include <fcntl.h>

#include "loader_test_util.h"

static char g_dir[512];

static const char *CFG_ORIGINAL =
    "{\"_class_name\": \"WanModel\", \"_diffusers_version\": \"0.30.0\", \"model_type\": \"t2v\","
    " \"dim\": 64, \"eps\": 1e-06, \"ffn_dim\": 128, \"freq_dim\": 256, \"in_dim\": 16,"
    " \"num_heads\": 2, \"num_layers\": 2, \"out_dim\": 16, \"text_len\": 8}";
static const char *CFG_DIFFUSERS =
    "{\"_class_name\": \"WanTransformer3DModel\", \"added_kv_proj_dim\": null,"
    " \"attention_head_dim\": 32, \"cross_attn_norm\": true, \"eps\": 1e-06, \"ffn_dim\": 128,"
    " \"freq_dim\": 256, \"in_channels\": 16, \"num_attention_heads\": 2, \"num_layers\": 2,"
    " \"out_channels\": 16, \"patch_size\": [1, 2, 2], \"qk_norm\": \"rms_norm_across_heads\","
    " \"rope_max_seq_len\": 1024, \"text_dim\": 32}";

/* Makes <g_dir>/<name>/ with a checkpoint and (if config_json) a config.json. */
static const char *make_ckpt(const char *name, const ast_wan_config *cfg, const lt_ckpt_opts *o,
                             const char *config_json, char *dir, size_t cap) {
    lt_path(dir, cap, g_dir, name);
    mkdir(dir, 0755);
    CHECK(lt_write_ckpt(dir, cfg, o) == 0, "write checkpoint %s: %s", name, ast_error_get());
    if (config_json) {
        char p[1024];
        lt_write_text(lt_path(p, sizeof p, dir, "config.json"), config_json);
    }
    return dir;
}

/* Checks the loaded config equals `want` in every size. */
static void check_config(const ast_model *m, const ast_wan_config *want, const char *what) {
    const ast_wan_config *c = &m->cfg;
    CHECK(c->dim == want->dim && c->num_heads == want->num_heads && c->head_dim == want->head_dim,
          "%s: dim %d heads %d head_dim %d", what, c->dim, c->num_heads, c->head_dim);
    CHECK(c->num_layers == want->num_layers && c->ffn_dim == want->ffn_dim,
          "%s: layers %d ffn %d", what, c->num_layers, c->ffn_dim);
    CHECK(c->freq_dim == want->freq_dim && c->text_dim == want->text_dim,
          "%s: freq %d text_dim %d", what, c->freq_dim, c->text_dim);
    CHECK(c->in_dim == want->in_dim && c->out_dim == want->out_dim, "%s: in %d out %d", what,
          c->in_dim, c->out_dim);
    CHECK(c->patch[0] == want->patch[0] && c->patch[1] == want->patch[1] &&
              c->patch[2] == want->patch[2],
          "%s: patch %d,%d,%d", what, c->patch[0], c->patch[1], c->patch[2]);
    CHECK(c->eps == want->eps, "%s: eps %g", what, (double)c->eps);
}

/* Checks vector and matrix elements read through the model equal what was written (after the
 * stored dtype's rounding: exact equality, since fp32 <- bf16/f16 is exact). */
static void check_values(const ast_model *m, ast_dtype dt, const char *what) {
    const ast_wan_config *c = &m->cfg;
    int k = lt_key_index(c, "blocks.1.norm3.bias");
    int ok = k >= 0;
    for (int i = 0; ok && i < c->dim; i++) ok = m->w.blocks[1].norm3_b[i] == lt_ckpt_stored(dt, k, i);
    CHECK(ok, "%s: blocks.1.norm3.bias values", what);
    k = lt_key_index(c, "blocks.0.modulation");
    ok = k >= 0;
    for (int i = 0; ok && i < 6 * c->dim; i++) ok = m->w.blocks[0].modulation[i] == lt_ckpt_stored(dt, k, i);
    CHECK(ok, "%s: blocks.0.modulation values", what);
    k = lt_key_index(c, "head.modulation");
    CHECK(k >= 0 && m->w.head_mod[2 * c->dim - 1] == lt_ckpt_stored(dt, k, 2 * c->dim - 1),
          "%s: head.modulation last value", what);
    k = lt_key_index(c, "time_projection.1.bias");
    CHECK(k >= 0 && m->w.tproj_b[6 * c->dim - 3] == lt_ckpt_stored(dt, k, 6 * c->dim - 3),
          "%s: time_projection.1.bias", what);
    k = lt_key_index(c, "blocks.1.cross_attn.norm_k.weight");
    CHECK(k >= 0 && m->w.blocks[1].cross_attn.norm_k[7] == lt_ckpt_stored(dt, k, 7),
          "%s: cross_attn.norm_k", what);
    /* matrices: views in the stored dtype */
    const ast_tensor *t = &m->w.blocks[1].ffn0_w;
    k = lt_key_index(c, "blocks.1.ffn.0.weight");
    CHECK(t->dtype == dt && t->ndim == 2 && t->shape[0] == c->ffn_dim && t->shape[1] == c->dim,
          "%s: ffn0_w view", what);
    ok = k >= 0;
    for (int64_t i = 0; ok && i < ast_tensor_numel(t); i += 97) ok = ast_tensor_get_f32(t, i) == lt_ckpt_stored(dt, k, i);
    CHECK(ok, "%s: blocks.1.ffn.0.weight values", what);
    t = &m->w.blocks[0].self_attn.o_w;
    k = lt_key_index(c, "blocks.0.self_attn.o.weight");
    CHECK(k >= 0 && ast_tensor_get_f32(t, 4095) == lt_ckpt_stored(dt, k, 4095), "%s: self_attn.o", what);
    t = &m->w.patch_w;
    k = lt_key_index(c, "patch_embedding.weight");
    CHECK(t->ndim == 5 && t->shape[0] == c->dim && t->shape[1] == c->in_dim &&
              t->shape[2] == c->patch[0] && t->shape[3] == c->patch[1] && t->shape[4] == c->patch[2],
          "%s: patch_w shape", what);
    CHECK(k >= 0 && ast_tensor_get_f32(t, 1000) == lt_ckpt_stored(dt, k, 1000), "%s: patch_w value", what);
    t = &m->w.head_w;
    CHECK(t->shape[0] == (int64_t)c->out_dim * 4 && t->shape[1] == c->dim, "%s: head_w shape", what);
    CHECK(m->w.tok_emb == NULL && m->w.pos_emb == NULL, "%s: no text encoder", what);
    CHECK(strlen(m->hash) == 16, "%s: hash '%s'", what, m->hash);
}

static void test_variants(void) {
    ast_wan_config cfg = lt_mini_config();
    char dir[1024];
    ast_model *m = NULL;
    ast_wan_config want = cfg;

    /* original names, F32, original config.json */
    lt_ckpt_opts o = {.dtype = AST_DT_F32};
    make_ckpt("orig_f32", &cfg, &o, CFG_ORIGINAL, dir, sizeof dir);
    CHECK(ast_model_load(dir, NULL, &m) == 0, "load orig f32: %s", ast_error_get());
    if (m) {
        check_config(m, &want, "orig f32");
        CHECK(m->cfg.text_len == 8, "text_len %d", m->cfg.text_len);
        CHECK(m->key_style == AST_KEYS_ORIGINAL && m->key_prefix[0] == 0, "style");
        CHECK(strcmp(m->cfg.model_id, "custom") == 0, "model_id %s", m->cfg.model_id);
        CHECK(strcmp(m->path, dir) == 0, "path %s", m->path);
        check_values(m, AST_DT_F32, "orig f32");
        ast_model_free(m);
        m = NULL;
    }

    /* BF16, no config.json: everything but num_heads is inferred; dim 64 is not a multiple of
     * 128, so num_heads cannot be, and the error says to add it */
    o.dtype = AST_DT_BF16;
    make_ckpt("orig_bf16", &cfg, &o, NULL, dir, sizeof dir);
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "add \"num_heads\" to config.json");
    char p[1024];
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2}");
    CHECK(ast_model_load(dir, NULL, &m) == 0, "load bf16: %s", ast_error_get());
    if (m) {
        check_config(m, &want, "bf16 inferred");
        CHECK(m->cfg.text_len == 512, "default text_len %d", m->cfg.text_len);
        check_values(m, AST_DT_BF16, "bf16");
        ast_model_free(m);
        m = NULL;
    }

    /* F16, diffusers-style config with attention_head_dim only */
    o.dtype = AST_DT_F16;
    make_ckpt("orig_f16", &cfg, &o, "{\"attention_head_dim\": 32}", dir, sizeof dir);
    CHECK(ast_model_load(dir, NULL, &m) == 0, "load f16: %s", ast_error_get());
    if (m) {
        check_config(m, &want, "f16");
        check_values(m, AST_DT_F16, "f16");
        ast_model_free(m);
        m = NULL;
    }

    /* diffusers names + diffusers config.json, sharded with an index */
    o = (lt_ckpt_opts){.dtype = AST_DT_BF16, .key_style = AST_KEYS_DIFFUSERS, .shards = 2};
    make_ckpt("diffusers", &cfg, &o, CFG_DIFFUSERS, dir, sizeof dir);
    /* the names are the diffusers ones (wan21.md §2.2), independent of the loader's table */
    ast_st_set *s = NULL;
    CHECK(ast_st_open_dir(dir, &s) == 0, "open diffusers dir: %s", ast_error_get());
    static const char *diff_names[] = {
        "patch_embedding.weight", "condition_embedder.time_embedder.linear_1.weight",
        "condition_embedder.time_embedder.linear_2.bias", "condition_embedder.text_embedder.linear_1.weight",
        "condition_embedder.text_embedder.linear_2.weight", "condition_embedder.time_proj.weight",
        "scale_shift_table", "proj_out.weight", "proj_out.bias", "blocks.1.scale_shift_table",
        "blocks.0.attn1.to_q.weight", "blocks.0.attn1.to_out.0.bias", "blocks.0.attn1.norm_q.weight",
        "blocks.1.attn2.to_k.bias", "blocks.1.attn2.to_out.0.weight", "blocks.1.attn2.norm_k.weight",
        "blocks.0.norm2.weight", "blocks.0.norm2.bias", "blocks.1.ffn.net.0.proj.weight",
        "blocks.1.ffn.net.2.bias"};
    for (size_t i = 0; s && i < sizeof diff_names / sizeof diff_names[0]; i++)
        CHECK(ast_st_find(s, diff_names[i]) != NULL, "diffusers file lacks '%s'", diff_names[i]);
    CHECK(s && ast_st_find(s, "blocks.0.norm3.weight") == NULL, "no norm3 in diffusers names");
    ast_st_close(s);
    CHECK(ast_model_load(dir, NULL, &m) == 0, "load diffusers: %s", ast_error_get());
    if (m) {
        check_config(m, &want, "diffusers");
        CHECK(m->key_style == AST_KEYS_DIFFUSERS, "diffusers style");
        check_values(m, AST_DT_BF16, "diffusers");
        ast_model_free(m);
        m = NULL;
    }

    /* ComfyUI-style prefixed names, F32, given as a single file */
    o = (lt_ckpt_opts){.dtype = AST_DT_F32, .prefix = "model.diffusion_model."};
    make_ckpt("prefixed", &cfg, &o, "{\"num_heads\": 2, \"text_len\": 8}", dir, sizeof dir);
    lt_path(p, sizeof p, dir, "diffusion_pytorch_model.safetensors");
    CHECK(ast_model_load(p, NULL, &m) == 0, "load prefixed file: %s", ast_error_get());
    if (m) {
        check_config(m, &want, "prefixed");
        CHECK(m->key_style == AST_KEYS_ORIGINAL && strcmp(m->key_prefix, "model.diffusion_model.") == 0,
              "prefix '%s'", m->key_prefix);
        check_values(m, AST_DT_F32, "prefixed");
        ast_model_free(m);
        m = NULL;
    }

    /* expect_id: a mini checkpoint is not the 1.3B model; the error lists the differing sizes */
    lt_path(dir, sizeof dir, g_dir, "orig_f32");
    CHECK_FAILS_WITH(ast_model_load(dir, "wan2.1-t2v-1.3b", &m), "dim 64 (expected 1536)");
    CHECK(strstr(ast_error_get(), "num_layers 2 (expected 30)") &&
              strstr(ast_error_get(), "ffn_dim 128 (expected 8960)") &&
              strstr(ast_error_get(), "text_len 8 (expected 512)"),
          "all differences listed: %s", ast_error_get());
}

static void test_errors(void) {
    ast_wan_config cfg = lt_mini_config();
    char dir[1024], p[1024];
    ast_model *m = NULL;

    /* two missing, two misshapen, two unexpected: ONE error naming all six */
    lt_ckpt_opts o = {.dtype = AST_DT_F32,
                      .drop = {"blocks.1.self_attn.k.bias", "head.head.bias"},
                      .reshape = {"blocks.0.ffn.2.weight", "time_embedding.2.weight"},
                      .extra = {"blocks.0.img_emb.weight", "extra.thing"}};
    make_ckpt("offenders", &cfg, &o, CFG_ORIGINAL, dir, sizeof dir);
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "2 missing, 2 misshapen, 2 unexpected");
    const char *msg = ast_error_get();
    static const char *names[] = {"blocks.1.self_attn.k.bias", "head.head.bias",
                                  "blocks.0.ffn.2.weight", "time_embedding.2.weight",
                                  "blocks.0.img_emb.weight", "extra.thing"};
    for (int i = 0; i < 6; i++) CHECK(strstr(msg, names[i]), "error lacks '%s': %s", names[i], msg);
    CHECK(strstr(msg, "expected [64, 128], found [65, 128]"), "misshapen shows shapes: %s", msg);
    CHECK(strstr(msg, "missing:    head.head.bias [64]"), "missing shows shape: %s", msg);
    CHECK(m == NULL, "no model on failure");

    /* config.json and the counted blocks disagree */
    o = (lt_ckpt_opts){.dtype = AST_DT_F32, .key_style = AST_KEYS_DIFFUSERS};
    ast_wan_config big = cfg;
    big.num_layers = 5;
    make_ckpt("layers", &big, &o, CFG_DIFFUSERS, dir, sizeof dir); /* config says 2 layers */
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "config.json \"num_layers\" says num_layers = 2, "
                                                   "but the checkpoint's blocks 0..4 implies 5");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"num_layers\": 5}");
    CHECK(ast_model_load(dir, NULL, &m) == 0, "5 layers load: %s", ast_error_get());
    CHECK(m && m->cfg.num_layers == 5, "5 layers");
    ast_model_free(m);
    m = NULL;

    /* a whole block missing: 27 offenders, the list is capped with "and N more" */
    o.drop_prefix = "blocks.2.";
    make_ckpt("layers", &big, &o, "{\"num_heads\": 2}", dir, sizeof dir);
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "27 missing, 0 misshapen, 0 unexpected");
    CHECK(strstr(ast_error_get(), "... and 7 more"), "capped: %s", ast_error_get());
    CHECK(strstr(ast_error_get(), "missing:    blocks.2.scale_shift_table [1, 6, 64]"),
          "diffusers names in the report: %s", ast_error_get());

    /* contradictory config.json: every contradiction in one error */
    o = (lt_ckpt_opts){.dtype = AST_DT_F32};
    make_ckpt("contra", &cfg, &o,
              "{\"dim\": 128, \"num_heads\": 2, \"ffn_dim\": 100, \"in_dim\": 36, \"num_layers\": 2,"
              " \"text_dim\": 40}",
              dir, sizeof dir);
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "config.json contradicts the tensors");
    msg = ast_error_get();
    CHECK(strstr(msg, "dim = 128, but patch_embedding.weight [64, 16, 1, 2, 2] implies 64") &&
              strstr(msg, "ffn_dim = 100") && strstr(msg, "in_dim = 36") && strstr(msg, "text_dim = 40"),
          "all contradictions listed: %s", msg);
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"),
                  "{\"dim\": 64, \"num_attention_heads\": 2, \"attention_head_dim\": 64}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "config.json gives dim = 64");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 3}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "does not split into 3 heads");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"dim\": 64.5}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "\"dim\" must be a whole number");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"model_type\": \"i2v\"}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "text-to-video");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"image_dim\": 1280}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "image-to-video");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "[1, 2]");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "is not a JSON object");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"patch_size\": [1, 2]}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "patch_size must be three");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2, \"patch_size\": [2, 2, 2]}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "patch_size[0] = 2, but patch_embedding.weight");

    /* wrong dtype for a weight */
    o = (lt_ckpt_opts){.dtype = AST_DT_BF16, .as_i32 = "head.head.bias"};
    make_ckpt("ints", &cfg, &o, CFG_ORIGINAL, dir, sizeof dir);
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "wrong type: head.head.bias is I32");

    /* not a Wan checkpoint at all */
    {
        lt_path(dir, sizeof dir, g_dir, "other");
        mkdir(dir, 0755);
        float v[4] = {1, 2, 3, 4};
        ast_st_entry e = {"unet.conv_in.weight", AST_DT_F32, 1, {4}, v};
        CHECK(ast_st_write(lt_path(p, sizeof p, dir, "x.safetensors"), &e, 1, NULL, 0) == 0, "w");
        CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "does not look like a Wan2.1 DiT checkpoint");
    }

    /* specs that are not folders */
    CHECK_FAILS_WITH(ast_model_load("wan2.1-t2v-1.3b", NULL, &m), "--checkpoint");
    CHECK(strstr(ast_error_get(), "Wan-AI/Wan2.1-T2V-1.3B"), "names the download: %s", ast_error_get());
    CHECK_FAILS_WITH(ast_model_load("wan2.1-t2v-14b", NULL, &m), "Wan-AI/Wan2.1-T2V-14B");
    CHECK_FAILS_WITH(ast_model_load("no-such-model", NULL, &m), "neither a checkpoint folder");
    CHECK_FAILS_WITH(ast_model_load("", NULL, &m), "no model given");
    lt_path(p, sizeof p, g_dir, "contra/config.json");
    CHECK_FAILS_WITH(ast_model_load(p, NULL, &m), "not a .safetensors checkpoint");
}

/* wan-mini: found through $ASTRAEA_MODELS; vocab and defaults from the "astraea" object; the
 * text encoder tensors are required exactly when there is a vocabulary. */
static void test_wan_mini(void) {
    char models[1024], dir[1024], p[1024];
    lt_path(models, sizeof models, g_dir, "models");
    mkdir(models, 0755);
    lt_path(dir, sizeof dir, models, "wan-mini");
    mkdir(dir, 0755);
    setenv("ASTRAEA_MODELS", models, 1);
    ast_model *m = NULL;
    CHECK_FAILS_WITH(ast_model_load("wan-mini", NULL, &m), "wan-mini was not found");
    CHECK(strstr(ast_error_get(), models), "lists where it looked: %s", ast_error_get());

    ast_wan_config cfg = lt_mini_config();
    cfg.vocab_size = 5;
    const char *config =
        "{\"dim\": 64, \"num_heads\": 2, \"text_len\": 8, \"astraea\": {\"model_id\": \"wan-mini\","
        " \"vocab\": [\"a\", \"red\", \"ball\", \"moves\", \"left\"], \"frames\": 4, \"height\": 16,"
        " \"width\": 24, \"steps\": 12, \"shift\": 3.5, \"guidance\": 4.5}}";
    lt_ckpt_opts o = {.dtype = AST_DT_F32};
    CHECK(lt_write_ckpt(dir, &cfg, &o) == 0, "write wan-mini: %s", ast_error_get());
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), config);
    CHECK(ast_model_load("wan-mini", "wan-mini", &m) == 0, "load wan-mini: %s", ast_error_get());
    if (m) {
        const ast_wan_config *c = &m->cfg;
        CHECK(strcmp(c->model_id, "wan-mini") == 0, "id %s", c->model_id);
        CHECK(c->vocab_size == 5 && strcmp(c->vocab[1], "red") == 0 && strcmp(c->vocab[4], "left") == 0,
              "vocab");
        CHECK(c->default_frames == 4 && c->default_height == 16 && c->default_width == 24 &&
                  c->default_steps == 12 && c->default_shift == 3.5f && c->default_guidance == 4.5f,
              "defaults");
        CHECK(c->text_len == 8 && c->text_dim == 32, "text_len %d text_dim %d", c->text_len, c->text_dim);
        int kt = lt_key_index(c, "text_encoder.token_embedding");
        int kp = lt_key_index(c, "text_encoder.position_embedding");
        CHECK(kt >= 0 && m->w.tok_emb && m->w.tok_emb[3 * 32 + 5] == lt_ckpt_value(kt, 3 * 32 + 5), "tok_emb");
        CHECK(kp >= 0 && m->w.pos_emb && m->w.pos_emb[7 * 32 + 31] == lt_ckpt_value(kp, 7 * 32 + 31), "pos_emb");
        ast_model_free(m);
        m = NULL;
    }
    CHECK_FAILS_WITH(ast_model_load("wan-mini", "wan2.1-t2v-1.3b", &m), "is not wan2.1-t2v-1.3b");

    /* vocab without the tensors, tensors without vocab */
    char d2[1024];
    lt_path(d2, sizeof d2, g_dir, "mini_noenc");
    mkdir(d2, 0755);
    ast_wan_config plain = lt_mini_config();
    CHECK(lt_write_ckpt(d2, &plain, &o) == 0, "write");
    lt_write_text(lt_path(p, sizeof p, d2, "config.json"), config);
    CHECK_FAILS_WITH(ast_model_load(d2, NULL, &m), "2 missing");
    CHECK(strstr(ast_error_get(), "text_encoder.token_embedding [5, 32]") &&
              strstr(ast_error_get(), "text_encoder.position_embedding [8, 32]"),
          "%s", ast_error_get());
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{\"num_heads\": 2}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "2 unexpected");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"),
                  "{\"num_heads\": 2, \"astraea\": {\"vocab\": [\"Red\"]}}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "not a lower-case word");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"),
                  "{\"num_heads\": 2, \"astraea\": {\"vocab\": [\"a\", \"a\"]}}");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "has 'a' twice");
    unsetenv("ASTRAEA_MODELS");
}

/* ---- the real model sizes ------------------------------------------------------------------- */

static void check_table(const char *id, int want_n, int64_t want_params) {
    ast_wan_config c;
    CHECK(ast_wan_config_builtin(id, &c) == 0, "builtin %s", id);
    int n = 0;
    ast_wan_key *k = ast_wan_key_table(&c, &n);
    CHECK(k && n == want_n, "%s: %d tensors (want %d)", id, n, want_n);
    int64_t params = 0;
    for (int i = 0; k && i < n; i++) {
        int64_t e = 1;
        for (int d = 0; d < k[i].ndim; d++) e *= k[i].shape[d];
        params += e;
        for (int j = 0; j < i && i < 60; j++) CHECK(strcmp(k[i].name, k[j].name) != 0, "dup %s", k[i].name);
    }
    CHECK(params == want_params, "%s: %lld parameters (want %lld)", id, (long long)params,
          (long long)want_params);
    ast_wan_key_table_free(k, n);
}

/* Finds a key in a table and checks its shape. */
static void check_key(const ast_wan_key *k, int n, const char *name, int ndim, const int64_t *shape) {
    for (int i = 0; i < n; i++) {
        if (strcmp(k[i].name, name) != 0) continue;
        int ok = k[i].ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = k[i].shape[d] == shape[d];
        CHECK(ok, "%s has the wrong shape", name);
        return;
    }
    CHECK(0, "key table lacks %s", name);
}

static void test_builtin_tables(void) {
    check_table("wan2.1-t2v-1.3b", 825, 1418996800ll);
    check_table("wan2.1-t2v-14b", 1095, 14288491584ll);
    ast_wan_config c;
    ast_wan_config_builtin("wan2.1-t2v-1.3b", &c);
    CHECK(c.head_dim == 128 && c.text_len == 512 && c.eps == 1e-6f, "1.3B derived fields");
    int n;
    ast_wan_key *k = ast_wan_key_table(&c, &n);
    if (!k) return;
    /* every name and shape of wan21.md §2.1 for 1.3B (D=1536, Fd=8960), by family */
    check_key(k, n, "patch_embedding.weight", 5, (int64_t[]){1536, 16, 1, 2, 2});
    check_key(k, n, "patch_embedding.bias", 1, (int64_t[]){1536});
    check_key(k, n, "text_embedding.0.weight", 2, (int64_t[]){1536, 4096});
    check_key(k, n, "text_embedding.2.weight", 2, (int64_t[]){1536, 1536});
    check_key(k, n, "time_embedding.0.weight", 2, (int64_t[]){1536, 256});
    check_key(k, n, "time_embedding.2.bias", 1, (int64_t[]){1536});
    check_key(k, n, "time_projection.1.weight", 2, (int64_t[]){9216, 1536});
    check_key(k, n, "time_projection.1.bias", 1, (int64_t[]){9216});
    check_key(k, n, "head.modulation", 3, (int64_t[]){1, 2, 1536});
    check_key(k, n, "head.head.weight", 2, (int64_t[]){64, 1536});
    check_key(k, n, "head.head.bias", 1, (int64_t[]){64});
    const char *attn[] = {"self_attn", "cross_attn"};
    const char *qkvo[] = {"q", "k", "v", "o"};
    for (int b = 0; b < 30; b++) {
        char nm[96];
        snprintf(nm, sizeof nm, "blocks.%d.modulation", b);
        check_key(k, n, nm, 3, (int64_t[]){1, 6, 1536});
        for (int a = 0; a < 2; a++) {
            for (int j = 0; j < 4; j++) {
                snprintf(nm, sizeof nm, "blocks.%d.%s.%s.weight", b, attn[a], qkvo[j]);
                check_key(k, n, nm, 2, (int64_t[]){1536, 1536});
                snprintf(nm, sizeof nm, "blocks.%d.%s.%s.bias", b, attn[a], qkvo[j]);
                check_key(k, n, nm, 1, (int64_t[]){1536});
            }
            snprintf(nm, sizeof nm, "blocks.%d.%s.norm_q.weight", b, attn[a]);
            check_key(k, n, nm, 1, (int64_t[]){1536});
            snprintf(nm, sizeof nm, "blocks.%d.%s.norm_k.weight", b, attn[a]);
            check_key(k, n, nm, 1, (int64_t[]){1536});
        }
        snprintf(nm, sizeof nm, "blocks.%d.norm3.weight", b);
        check_key(k, n, nm, 1, (int64_t[]){1536});
        snprintf(nm, sizeof nm, "blocks.%d.norm3.bias", b);
        check_key(k, n, nm, 1, (int64_t[]){1536});
        snprintf(nm, sizeof nm, "blocks.%d.ffn.0.weight", b);
        check_key(k, n, nm, 2, (int64_t[]){8960, 1536});
        snprintf(nm, sizeof nm, "blocks.%d.ffn.0.bias", b);
        check_key(k, n, nm, 1, (int64_t[]){8960});
        snprintf(nm, sizeof nm, "blocks.%d.ffn.2.weight", b);
        check_key(k, n, nm, 2, (int64_t[]){1536, 8960});
        snprintf(nm, sizeof nm, "blocks.%d.ffn.2.bias", b);
        check_key(k, n, nm, 1, (int64_t[]){1536});
    }
    ast_wan_key_table_free(k, n);
    CHECK(ast_wan_config_builtin("wan2.1-t2v-7b", &c) != 0, "unknown builtin");
}

/* Writes a header-only safetensors file for keys[from..to) (stored names via style/prefix,
 * BF16) and extends it to its full size as a sparse file: no data is written, so a 2.8 GB
 * checkpoint costs a few hundred KB of disk. `drop` is left out. */
static int write_sparse(const char *path, const ast_wan_key *keys, int from, int to, int style,
                        const char *drop) {
    size_t cap = (size_t)(to - from) * 200 + 64, len = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = from; i < to; i++) {
        if (drop && strcmp(keys[i].name, drop) == 0) continue;
        char nm[256];
        ast_wan_key_name(style, "", keys[i].name, nm, sizeof nm);
        uint64_t bytes = 2;
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[", nm);
        for (int d = 0; d < keys[i].ndim; d++) {
            bytes *= (uint64_t)keys[i].shape[d];
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)keys[i].shape[d]);
        }
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    int rc = fd >= 0 && write(fd, l8, 8) == 8 && write(fd, h, len) == (ssize_t)len &&
                     ftruncate(fd, (off_t)(8 + len + off)) == 0
                 ? 0
                 : -1;
    if (fd >= 0) close(fd);
    free(h);
    return rc;
}

static void test_sparse_real_sizes(void) {
    char dir[1024], p[1024];
    ast_wan_config c;
    ast_wan_config_builtin("wan2.1-t2v-1.3b", &c);
    int n;
    ast_wan_key *k = ast_wan_key_table(&c, &n);
    if (!k) return;
    /* 1.3B, original names, the official config.json */
    lt_path(dir, sizeof dir, g_dir, "wan13b");
    mkdir(dir, 0755);
    CHECK(write_sparse(lt_path(p, sizeof p, dir, "diffusion_pytorch_model.safetensors"), k, 0, n,
                       AST_KEYS_ORIGINAL, NULL) == 0,
          "write sparse 1.3B");
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"),
                  "{\"_class_name\": \"WanModel\", \"_diffusers_version\": \"0.30.0\", \"dim\": 1536,"
                  " \"eps\": 1e-06, \"ffn_dim\": 8960, \"freq_dim\": 256, \"in_dim\": 16,"
                  " \"model_type\": \"t2v\", \"num_heads\": 12, \"num_layers\": 30, \"out_dim\": 16,"
                  " \"text_len\": 512}");
    ast_model *m = NULL;
    double t0 = ast_now_sec();
    CHECK(ast_model_load(dir, "wan2.1-t2v-1.3b", &m) == 0, "load sparse 1.3B: %s", ast_error_get());
    double dt = ast_now_sec() - t0;
    if (m) {
        CHECK(strcmp(m->cfg.model_id, "wan2.1-t2v-1.3b") == 0, "recognised as %s", m->cfg.model_id);
        CHECK(m->w.blocks[29].ffn2_w.shape[1] == 8960 && m->w.blocks[29].ffn2_w.dtype == AST_DT_BF16,
              "block 29 ffn2 view");
        CHECK(m->w.tproj_b && m->w.tproj_b[9215] == 0.0f, "time_projection bias read (sparse zeros)");
        CHECK(strlen(m->hash) == 16, "hash");
        ast_model_free(m);
        m = NULL;
    }
    /* sampled hash + small-vector conversion: a real 1.3B load must not read the 2.8 GB */
    CHECK(dt < 10.0, "1.3B header-only load took %.2f s", dt);
    /* the same file without the config: everything inferred, num_heads from 128-wide heads */
    unlink(p);
    CHECK(ast_model_load(dir, "wan2.1-t2v-1.3b", &m) == 0, "1.3B without config: %s", ast_error_get());
    ast_model_free(m);
    m = NULL;
    /* one tensor short: the error names it */
    CHECK(write_sparse(lt_path(p, sizeof p, dir, "diffusion_pytorch_model.safetensors"), k, 0, n,
                       AST_KEYS_ORIGINAL, "blocks.17.cross_attn.norm_k.weight") == 0,
          "write sparse 1.3B minus one");
    CHECK_FAILS_WITH(ast_model_load(dir, NULL, &m), "missing:    blocks.17.cross_attn.norm_k.weight [1536]");
    ast_wan_key_table_free(k, n);

    /* 14B, diffusers names, six shards with an index */
    ast_wan_config_builtin("wan2.1-t2v-14b", &c);
    k = ast_wan_key_table(&c, &n);
    if (!k) return;
    lt_path(dir, sizeof dir, g_dir, "wan14b");
    mkdir(dir, 0755);
    size_t icap = (size_t)n * 160 + 64, ilen = 0;
    char *idx = malloc(icap);
    ilen += (size_t)snprintf(idx + ilen, icap - ilen, "{\"metadata\":{},\"weight_map\":{");
    for (int s = 0; s < 6; s++) {
        int from = n * s / 6, to = n * (s + 1) / 6;
        char fname[96];
        snprintf(fname, sizeof fname, "diffusion_pytorch_model-%05d-of-00006.safetensors", s + 1);
        CHECK(write_sparse(lt_path(p, sizeof p, dir, fname), k, from, to, AST_KEYS_DIFFUSERS, NULL) == 0,
              "write shard %d", s);
        for (int i = from; i < to; i++) {
            char nm[256];
            ast_wan_key_name(AST_KEYS_DIFFUSERS, "", k[i].name, nm, sizeof nm);
            ilen += (size_t)snprintf(idx + ilen, icap - ilen, "%s\"%s\":\"%s\"", i ? "," : "", nm, fname);
        }
    }
    snprintf(idx + ilen, icap - ilen, "}}");
    lt_write_text(lt_path(p, sizeof p, dir, "diffusion_pytorch_model.safetensors.index.json"), idx);
    free(idx);
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"),
                  "{\"_class_name\": \"WanTransformer3DModel\", \"added_kv_proj_dim\": null,"
                  " \"attention_head_dim\": 128, \"cross_attn_norm\": true, \"eps\": 1e-06,"
                  " \"ffn_dim\": 13824, \"freq_dim\": 256, \"in_channels\": 16,"
                  " \"num_attention_heads\": 40, \"num_layers\": 40, \"out_channels\": 16,"
                  " \"patch_size\": [1, 2, 2], \"qk_norm\": \"rms_norm_across_heads\","
                  " \"rope_max_seq_len\": 1024, \"text_dim\": 4096}");
    CHECK(ast_model_load(dir, "wan2.1-t2v-14b", &m) == 0, "load sparse 14B: %s", ast_error_get());
    if (m) {
        CHECK(m->key_style == AST_KEYS_DIFFUSERS && strcmp(m->cfg.model_id, "wan2.1-t2v-14b") == 0,
              "14B diffusers");
        CHECK(m->w.blocks[39].cross_attn.o_w.shape[0] == 5120, "14B block 39");
        ast_model_free(m);
    }
    ast_wan_key_table_free(k, n);
}

int main(void) {
    lt_tmpdir(g_dir, sizeof g_dir, "wanload");
    test_builtin_tables();
    test_variants();
    test_errors();
    test_wan_mini();
    test_sparse_real_sizes();
    lt_rmtree(g_dir);
    return ast_test_finish("wan_load");
}
