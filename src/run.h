/* run.h — what every tool does before and after the engine: pick the model and the backend,
 * turn video frames/pixels into a latent shape, turn prompts or context files into contexts,
 * apply budget profiles, write the result, and show progress. Shared by astraea-generate,
 * astraea-search, astraea-bench and astraea-forward so they behave the same. */
#ifndef AST_RUN_H
#define AST_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "sampler.h"
#include "wan.h"

/* Model spec: --checkpoint DIR wins; else --model (a folder or a built-in id). For the Wan2.1
 * ids without a folder the error explains where to get the checkpoint. */
int ast_run_open_model(const char *model, const char *checkpoint, ast_model **out);

/* "auto" (CUDA if a device is usable, else CPU), "cpu", "cuda". */
int ast_run_pick_backend(const char *name, ast_backend_kind *kind);

/* Latent shape from what the user asked. For pixel-space models (wan-mini) frames/height/width
 * ARE the latent; for VAE models (Wan2.1) they are video frames (4n+1) and pixels, mapped through
 * the VAE stride (4, 8, 8). Zero = the model's default (wan-mini: from its config; Wan2.1:
 * 81 frames, 480x832). */
int ast_run_latent_shape(const ast_model *m, int frames, int height, int width, int *F, int *H,
                         int *W);
bool ast_run_pixel_space(const ast_model *m);

/* A context from either a prompt (models with a text encoder) or a safetensors file holding
 * "context" [L, text_dim] F32 (Wan2.1; docs/context.md). *ctx is malloc'd [L, text_dim]. */
int ast_run_context(const ast_model *m, const char *prompt, const char *file, float **ctx,
                    int *L);

/* Writes a final latent / clip by extension: .safetensors (tensor "x" [C, F, H, W] F32),
 * .gif (animated) or .png (frames name-000.png...; pixel-space models only). */
/* Checks the output name against the model before any work is done. */
int ast_run_check_output(const char *path, const ast_model *m);
int ast_run_write_output(const char *path, const ast_model *m, const float *x, int F, int H,
                         int W);

/* Checks a result (n floats) before it is written: 0 when every value is finite. Otherwise -1
 * with an error that names the cause: a NaN/Inf weight (ast_model_check_finite scans the
 * checkpoint) or, with finite weights and inputs, a diverged computation. `what` names the
 * result in the message ("the final latent"). */
int ast_run_check_result(const ast_model *m, const float *x, int64_t n, const char *what);

/* Reads "x" [C, F, H, W] F32 from a safetensors file and checks it against the model. */
int ast_run_read_latent(const char *path, const ast_model *m, float **x, int *F, int *H, int *W);

/* Progress bar with ETA on stderr when it is a terminal (a line every 10% otherwise). */
typedef struct {
    const char *label;
    int is_tty;
    int last_decile;
} ast_progress;
void ast_progress_init(ast_progress *p, const char *label);
void ast_progress_update(ast_progress *p, int done, int total, double elapsed_sec,
                         const char *extra);
void ast_progress_done(ast_progress *p);

/* SIGINT handling for long jobs: the first Ctrl-C sets the flag (stop after the current unit of
 * work), the second exits at once. */
void ast_run_install_sigint(void);
int ast_run_interrupted(void);

/* Results files (the JSON under results/): an object stamped with device, commit (NULL: the
 * ASTRAEA_COMMIT environment variable, else "unknown"), UTC date and the exact command line;
 * and writing one atomically, pretty-printed, with a final newline (0 or -1). */
struct cJSON;
struct cJSON *ast_run_results_stamp(const char *device, const char *commit, int argc,
                                    char **argv);
int ast_run_write_json(const char *path, const struct cJSON *root);

#endif
