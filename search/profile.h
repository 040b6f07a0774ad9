/* profile.h — budget profiles: the JSON file a search exports and astraea-generate --profile
 * applies (docs/profile-format.md is the format's reference).
 *
 * Two forms are read:
 *   - full (format_version 1): model, checkpoint hash, latent shape, steps, sampler, budgets,
 *     measured/predicted speedup, quality, token-wise options, device, run, date, search cost;
 *   - minimal: {"budgets": [1.0, 0.4, ...]} (hand-written or from older tools).
 * The reader validates every field (types, ranges, budgets count = steps, budgets in [0, 1],
 * budgets[0] == 1) and refuses unknown fields, naming the file and the field. */
#ifndef AST_PROFILE_H
#define AST_PROFILE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "engine.h"

#define AST_PROFILE_FORMAT_VERSION 1
#define AST_PROFILE_MAX_BYTES (4u << 20)

typedef struct {
    char origin[256];            /* file it was read from, for messages ("" if built) */
    int format_version;          /* 0: the minimal form (budgets only) */
    char model_id[64];           /* "" = unknown */
    char checkpoint_hash[17];    /* 16 hex digits, "" = unknown */
    int frames, height, width;   /* latent shape, 0 = unknown */
    int pixel_frames, pixel_height, pixel_width; /* decoded video, 0 = unknown */
    int steps;                   /* = number of budgets */
    char sampler[16];            /* "unipc" / "euler", "" = unknown */
    double shift, guidance;      /* NAN = unknown */
    float *budgets;              /* [steps], owned; budgets[0] == 1 */
    double measured_speedup;     /* wall-clock, dense / profile, on `device`; NAN = unknown */
    double predicted_speedup;    /* latency model; NAN = unknown */
    double mse, psnr, ssim;      /* vs dense on the calibration prompts; NAN = unknown;
                                    psnr +inf when mse == 0 */
    int has_tokenwise;
    ast_tokenwise_opts tokenwise;/* selection options the profile was searched with */
    char device[128];
    int64_t run_id;              /* 0 = unknown */
    char date[32];
    int64_t evaluations;         /* search cost; -1 = unknown */
    double device_seconds;       /* search cost; NAN = unknown */
} ast_profile;

/* Empty profile (every field unknown) with room for `steps` budgets (0: none yet). */
int ast_profile_init(ast_profile *p, int steps);
void ast_profile_free(ast_profile *p);

/* Parses JSON text; `origin` names it in messages. On failure *p is left freed. */
int ast_profile_parse(const char *json, const char *origin, ast_profile *p);
int ast_profile_load(const char *path, ast_profile *p);
/* JSON text (malloc'd); the minimal form when format_version == 0. */
char *ast_profile_to_json(const ast_profile *p);
/* Atomic write (temp file + rename). */
int ast_profile_save(const ast_profile *p, const char *path);

/* Refuses a profile made for another model, checkpoint, latent shape or step count, with a
 * message saying what differs and what to do. Unknown fields in the profile (minimal form) are
 * not compared, except the step count, which is always known. checkpoint_hash may be NULL. */
int ast_profile_check_compatible(const ast_profile *p, const char *model_id,
                                 const char *checkpoint_hash, int frames, int height, int width,
                                 int steps);

#ifdef __cplusplus
}
#endif

#endif
