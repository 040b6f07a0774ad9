/* wan.h — the Wan2.1 DiT model: configuration, weights named after their checkpoint keys, and
 * the loader (wan21.md §1–2).
 *
 * A model is loaded from a folder holding config.json and *.safetensors (single file, sharded
 * with an index, original, diffusers or "model.diffusion_model."-prefixed key names), or from a
 * built-in id ("wan-mini", shipped in models/wan-mini). Large matrices stay in the mmapped files
 * in their stored dtype (F32/BF16/F16); the CPU GEMM converts while packing, the CUDA backend
 * uploads them once as bf16. Small vectors (biases, norms, modulation) are converted to fp32
 * into one arena at load. */
#ifndef AST_WAN_H
#define AST_WAN_H

#ifdef __cplusplus
extern "C" {
#endif

#include "safetensors.h"

typedef struct {
    char model_id[64];  /* "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan-mini", or "custom" */
    int dim;            /* model width D (1536 / 5120) */
    int ffn_dim;        /* FFN hidden width (8960 / 13824) */
    int num_heads;      /* attention heads (12 / 40) */
    int head_dim;       /* = dim / num_heads (128) */
    int num_layers;     /* transformer blocks (30 / 40) */
    int freq_dim;       /* sinusoidal time features (256) */
    int text_dim;       /* context width (4096 = umT5-XXL d_model) */
    int text_len;       /* context rows after zero-padding (512) */
    int in_dim, out_dim;/* latent channels (16 / 16) */
    int patch[3];       /* (t, h, w) patch size, (1, 2, 2) */
    float eps;          /* every LayerNorm/RMSNorm, 1e-6 */

    /* Text encoder shipped inside the checkpoint (wan-mini only; 0/NULL for Wan2.1, whose
     * context comes from a file made by the official umT5 pipeline). */
    int vocab_size;
    char **vocab;       /* vocab_size words; token id = index */

    /* Defaults a checkpoint may carry in config.json ("astraea" object); 0 = use the tool's. */
    int default_frames, default_height, default_width, default_steps; /* latent F,H,W */
    float default_shift, default_guidance;
} ast_wan_config;

/* One attention module: self_attn.* or cross_attn.* of a block. */
typedef struct {
    ast_tensor q_w, k_w, v_w, o_w;       /* {self,cross}_attn.{q,k,v,o}.weight [D, D] */
    const float *q_b, *k_b, *v_b, *o_b;  /* {self,cross}_attn.{q,k,v,o}.bias   [D] */
    const float *norm_q, *norm_k;        /* {self,cross}_attn.norm_{q,k}.weight [D] (RMSNorm) */
} ast_wan_attn;

typedef struct {
    const float *modulation;   /* blocks.{i}.modulation [1, 6, D] -> 6*D floats */
    ast_wan_attn self_attn;    /* blocks.{i}.self_attn.* */
    ast_wan_attn cross_attn;   /* blocks.{i}.cross_attn.* */
    const float *norm3_w;      /* blocks.{i}.norm3.weight [D] (affine LayerNorm before cross) */
    const float *norm3_b;      /* blocks.{i}.norm3.bias   [D] */
    ast_tensor ffn0_w;         /* blocks.{i}.ffn.0.weight [Fd, D] */
    const float *ffn0_b;       /* blocks.{i}.ffn.0.bias   [Fd] */
    ast_tensor ffn2_w;         /* blocks.{i}.ffn.2.weight [D, Fd] */
    const float *ffn2_b;       /* blocks.{i}.ffn.2.bias   [D] */
} ast_wan_block;

typedef struct {
    ast_tensor patch_w;        /* patch_embedding.weight [D, in_dim, pt, ph, pw] */
    const float *patch_b;      /* patch_embedding.bias [D] */
    ast_tensor text0_w;        /* text_embedding.0.weight [D, text_dim] */
    const float *text0_b;      /* text_embedding.0.bias [D] */
    ast_tensor text2_w;        /* text_embedding.2.weight [D, D] */
    const float *text2_b;      /* text_embedding.2.bias [D] */
    ast_tensor time0_w;        /* time_embedding.0.weight [D, freq_dim] */
    const float *time0_b;      /* time_embedding.0.bias [D] */
    ast_tensor time2_w;        /* time_embedding.2.weight [D, D] */
    const float *time2_b;      /* time_embedding.2.bias [D] */
    ast_tensor tproj_w;        /* time_projection.1.weight [6D, D] */
    const float *tproj_b;      /* time_projection.1.bias [6D] */
    const float *head_mod;     /* head.modulation [1, 2, D] -> 2*D floats */
    ast_tensor head_w;         /* head.head.weight [out_dim*pt*ph*pw, D] */
    const float *head_b;       /* head.head.bias [out_dim*pt*ph*pw] */
    ast_wan_block *blocks;     /* num_layers */
    /* wan-mini text encoder (NULL for Wan2.1): context row r = tok_emb[id_r] + pos_emb[r]
     * for the prompt's tokens, zero rows after them up to text_len. */
    const float *tok_emb;      /* text_encoder.token_embedding [vocab_size, text_dim] */
    const float *pos_emb;      /* text_encoder.position_embedding [text_len, text_dim] */
} ast_wan_weights;

typedef struct ast_model {
    ast_wan_config cfg;
    ast_wan_weights w;
    ast_st_set *files;         /* owns the mmapped checkpoint */
    float *arena;              /* owns every fp32 vector in w */
    char path[1024];           /* folder it was loaded from */
    char hash[17];             /* ast_st_hash of the checkpoint */
    int key_style;             /* AST_KEYS_* it was stored with */
    char key_prefix[32];       /* "" or "model.diffusion_model." (ComfyUI single files) */
} ast_model;

enum { AST_KEYS_ORIGINAL = 0, AST_KEYS_DIFFUSERS = 1 };

/* Loads a model. `spec` is a folder path, or a built-in id: "wan-mini" (found in
 * $ASTRAEA_MODELS, then <exe>/../models, then <exe>/models, then the install datadir).
 * `expect_id` may be NULL, or "wan2.1-t2v-1.3b"/"wan2.1-t2v-14b" to insist the checkpoint has
 * that configuration. Errors list every missing, unexpected or misshapen tensor at once. */
int ast_model_load(const char *spec, const char *expect_id, ast_model **out);
void ast_model_free(ast_model *m);

/* Scans every tensor of the checkpoint for NaN/Inf; -1 with an error naming the first tensor
 * that holds one. ast_model_load already refuses NaN/Inf in the small vectors, and in every
 * tensor of a checkpoint up to 256 MiB; for larger ones (Wan2.1) this full read runs only when
 * an output is non-finite (ast_run_check_result). */
int ast_model_check_finite(const ast_model *m);

/* Returns the shapes the config implies for every tensor, in original key names, for the
 * loader and for tests (e.g. checking the full 1.3B key list). *n_out = count. The returned
 * array and its strings are owned by the caller (free with ast_wan_key_table_free). */
typedef struct {
    char *name;
    int ndim;
    int64_t shape[AST_MAX_DIMS];
} ast_wan_key;
ast_wan_key *ast_wan_key_table(const ast_wan_config *cfg, int *n_out);
void ast_wan_key_table_free(ast_wan_key *t, int n);
/* The name an original key has in a checkpoint of the given style: AST_KEYS_DIFFUSERS applies
 * the diffusers rename rules (wan21.md §2.2), then `prefix` ("" or "model.diffusion_model.",
 * NULL = "") is prepended. Writes at most cap bytes into buf and returns buf ("" if too long). */
const char *ast_wan_key_name(int key_style, const char *prefix, const char *orig, char *buf,
                             size_t cap);

/* Built-in configurations (wan21.md §1.1); returns 0 and fills cfg, or -1 for an unknown id. */
int ast_wan_config_builtin(const char *id, ast_wan_config *cfg);

/* wan-mini: tokenizes `prompt` (lower-cased, split on spaces and punctuation) and writes the
 * context [text_len, text_dim]; *n_tokens = real token count. Unknown word -> error listing the
 * vocabulary. */
int ast_wan_encode_prompt(const ast_model *m, const char *prompt, float *ctx, int *n_tokens);

#ifdef __cplusplus
}
#endif

#endif
