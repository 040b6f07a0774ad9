/* run.c — shared tool plumbing (see run.h): model and backend choice, latent shapes, contexts,
 * outputs, progress and Ctrl-C. */
#include "run.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "common.h"
#include "image.h"
#include "safetensors.h"

int ast_run_open_model(const char *model, const char *checkpoint, ast_model **out) {
    const char *spec = checkpoint ? checkpoint : (model ? model : "wan-mini");
    const char *expect = NULL;
    if (checkpoint && model && (strcmp(model, "wan2.1-t2v-1.3b") == 0 ||
                                strcmp(model, "wan2.1-t2v-14b") == 0))
        expect = model;
    if (ast_model_load(spec, expect, out)) {
        ast_error_prefix("loading model '%s'", spec);
        return -1;
    }
    return 0;
}

int ast_run_pick_backend(const char *name, ast_backend_kind *kind) {
    char why[256];
    if (!name || strcmp(name, "auto") == 0) {
        *kind = ast_cuda_device_count(why, sizeof why) > 0 ? AST_BACKEND_CUDA : AST_BACKEND_CPU;
        return 0;
    }
    if (strcmp(name, "cpu") == 0) {
        *kind = AST_BACKEND_CPU;
        return 0;
    }
    if (strcmp(name, "cuda") == 0) {
        if (ast_cuda_device_count(why, sizeof why) <= 0)
            return ast_fail("--backend cuda: no usable CUDA device (%s); use --backend cpu", why);
        *kind = AST_BACKEND_CUDA;
        return 0;
    }
    return ast_fail("unknown backend '%s' (choose auto, cpu or cuda)", name);
}

bool ast_run_pixel_space(const ast_model *m) { return m->cfg.default_frames > 0; }

int ast_run_latent_shape(const ast_model *m, int frames, int height, int width, int *F, int *H,
                         int *W) {
    const ast_wan_config *c = &m->cfg;
    if (ast_run_pixel_space(m)) {
        *F = frames ? frames : c->default_frames;
        *H = height ? height : c->default_height;
        *W = width ? width : c->default_width;
    } else {
        int fr = frames ? frames : 81, hp = height ? height : 480, wp = width ? width : 832;
        if (fr < 1 || (fr - 1) % 4 != 0)
            return ast_fail("--frames %d: Wan2.1 takes 4n+1 video frames (e.g. 33, 65, 81)", fr);
        if (hp % 16 != 0 || wp % 16 != 0)
            return ast_fail("--height %d --width %d: both must be multiples of 16 (VAE stride 8 "
                            "x patch 2), e.g. 480x832",
                            hp, wp);
        *F = (fr - 1) / 4 + 1;
        *H = hp / 8;
        *W = wp / 8;
    }
    int dims[3] = {*F, *H, *W};
    for (int i = 0; i < 3; i++)
        if (dims[i] <= 0 || dims[i] % c->patch[i] != 0)
            return ast_fail("latent shape [%d, %d, %d] is not divisible by the patch (%d, %d, %d);"
                            " choose frames/height/width that are",
                            *F, *H, *W, c->patch[0], c->patch[1], c->patch[2]);
    return 0;
}

int ast_run_context(const ast_model *m, const char *prompt, const char *file, float **ctx,
                    int *L) {
    const ast_wan_config *c = &m->cfg;
    *ctx = NULL;
    *L = 0;
    if (file) {
        ast_st_set *s = NULL;
        if (ast_st_open(file, &s)) return -1;
        const ast_tensor *t = ast_st_require(s, "context", "the text context");
        int rc = -1;
        char shp[128];
        if (!t) goto out;
        if (t->ndim != 2 || t->shape[1] != c->text_dim || t->shape[0] > c->text_len) {
            ast_error_set("'%s': tensor 'context' must be [L <= %d, %d], got %s (make it with "
                          "the official umT5 encoder, docs/context.md)",
                          file, c->text_len, c->text_dim, ast_shape_str(t, shp, sizeof shp));
            goto out;
        }
        if (t->dtype != AST_DT_F32 && t->dtype != AST_DT_BF16 && t->dtype != AST_DT_F16) {
            ast_error_set("'%s': tensor 'context' must be F32, BF16 or F16, got %s", file,
                          ast_dtype_name(t->dtype));
            goto out;
        }
        *L = (int)t->shape[0];
        *ctx = ast_malloc(sizeof(float) * (size_t)(*L ? *L : 1) * c->text_dim, "the context");
        if (!*ctx) goto out;
        ast_tensor_to_f32(t, 0, ast_tensor_numel(t), *ctx);
        for (int64_t i = 0; i < ast_tensor_numel(t); i++) {
            if (!isfinite((*ctx)[i])) {
                ast_error_set("'%s': tensor 'context' holds a NaN or Inf at row %lld, column %lld "
                              "(the text encoder output is broken: make it again, "
                              "docs/context.md)",
                              file, (long long)(i / c->text_dim), (long long)(i % c->text_dim));
                free(*ctx);
                *ctx = NULL;
                *L = 0;
                goto out;
            }
        }
        rc = 0;
    out:
        ast_st_close(s);
        return rc;
    }
    if (!m->cfg.vocab_size)
        return ast_fail("this model takes its text context from a file: pass --context "
                        "FILE.safetensors (and --negative-context) made with the official umT5 "
                        "encoder, see docs/context.md");
    *ctx = ast_malloc(sizeof(float) * (size_t)c->text_len * c->text_dim, "the context");
    if (!*ctx) return -1;
    if (ast_wan_encode_prompt(m, prompt ? prompt : "", *ctx, L)) {
        free(*ctx);
        *ctx = NULL;
        return -1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

int ast_run_check_output(const char *path, const ast_model *m) {
    if (ends_with(path, ".safetensors")) return 0;
    if (!ends_with(path, ".gif") && !ends_with(path, ".png"))
        return ast_fail("output '%s': use a .safetensors, .gif or .png name", path);
    if (!ast_run_pixel_space(m) || m->cfg.out_dim != 3)
        return ast_fail("output '%s': this model's output is a VAE latent, not pixels; write "
                        ".safetensors and decode it with the official Wan VAE (docs/context.md)",
                        path);
    return 0;
}

int ast_run_write_output(const char *path, const ast_model *m, const float *x, int F, int H,
                         int W) {
    if (ast_run_check_output(path, m)) return -1;
    if (ends_with(path, ".safetensors")) {
        ast_st_entry e = {"x", AST_DT_F32, 4, {m->cfg.out_dim, F, H, W}, x};
        return ast_st_write(path, &e, 1, NULL, 0);
    }
    int scale = H >= 128 ? 1 : (128 + H - 1) / H; /* small clips are scaled up for viewing */
    return ends_with(path, ".gif") ? ast_write_gif(path, x, F, H, W, scale, 12)
                                   : ast_write_png_frames(path, x, F, H, W, scale);
}

int ast_run_check_result(const ast_model *m, const float *x, int64_t n, const char *what) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && bad++ == 0) first = i;
    if (!bad) return 0;
    if (ast_model_check_finite(m) != 0) {
        ast_error_prefix("%s holds %lld NaN/Inf values", what, (long long)bad);
        return -1;
    }
    return ast_fail("%s holds %lld NaN/Inf values (the first at flat index %lld) although the "
                    "weights and inputs are finite: the computation diverged; nothing was "
                    "written (try more --steps, the dense run --budget 1, or --backend cpu to "
                    "compare)",
                    what, (long long)bad, (long long)first);
}

int ast_run_read_latent(const char *path, const ast_model *m, float **x, int *F, int *H, int *W) {
    ast_st_set *s = NULL;
    *x = NULL;
    if (ast_st_open(path, &s)) return -1;
    int rc = -1;
    const ast_tensor *t = ast_st_require(s, "x", "the latent");
    if (t && ast_check_latent(m, t, "tensor 'x'") == 0) {
        *F = (int)t->shape[1];
        *H = (int)t->shape[2];
        *W = (int)t->shape[3];
        *x = ast_malloc(t->nbytes, "the latent");
        if (*x) {
            memcpy(*x, t->data, t->nbytes);
            rc = 0;
        }
    }
    if (rc) ast_error_prefix("'%s'", path);
    ast_st_close(s);
    return rc;
}

void ast_progress_init(ast_progress *p, const char *label) {
    p->label = label;
    p->is_tty = isatty(STDERR_FILENO);
    p->last_decile = -1;
}

void ast_progress_update(ast_progress *p, int done, int total, double elapsed, const char *extra) {
    if (ast_log_level < 1 || total <= 0) return;
    double frac = (double)done / total;
    double eta = done > 0 ? elapsed * (total - done) / done : 0;
    if (p->is_tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %d/%d  %.1fs elapsed, ETA %.1fs%s%s\033[K", p->label, bar, done,
                total, elapsed, eta, extra ? "  " : "", extra ? extra : "");
    } else {
        int decile = (int)(frac * 10);
        if (decile == p->last_decile) return;
        p->last_decile = decile;
        fprintf(stderr, "%s: %d/%d (%.0f%%), %.1fs elapsed, ETA %.1fs%s%s\n", p->label, done,
                total, 100 * frac, elapsed, eta, extra ? ", " : "", extra ? extra : "");
    }
}

void ast_progress_done(ast_progress *p) {
    if (p->is_tty && ast_log_level >= 1) fputc('\n', stderr);
}

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) _exit(AST_EXIT_INTERRUPTED);
    g_interrupted = 1;
    static const char msg[] = "\ninterrupt: stopping after the current step (Ctrl-C again to "
                              "quit at once)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
}

void ast_run_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int ast_run_interrupted(void) { return g_interrupted != 0; }

cJSON *ast_run_results_stamp(const char *device, const char *commit, int argc, char **argv) {
    cJSON *root = cJSON_CreateObject();
    char date[32], cmd[4096] = "";
    ast_utc_date(date);
    for (int i = 0; i < argc; i++) {
        strncat(cmd, i ? " " : "", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    if (!commit) commit = getenv("ASTRAEA_COMMIT");
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddStringToObject(root, "commit", commit ? commit : "unknown");
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddStringToObject(root, "command", cmd);
    return root;
}

int ast_run_write_json(const char *path, const cJSON *root) {
    char *txt = root ? cJSON_Print(root) : NULL;
    if (!txt) return ast_fail("out of memory writing '%s'", path);
    ast_outfile o;
    int rc = ast_outfile_open(&o, path);
    if (rc == 0 && (rc = ast_outfile_write(&o, txt, strlen(txt))) == 0)
        rc = ast_outfile_write(&o, "\n", 1);
    if (rc == 0)
        rc = ast_outfile_commit(&o);
    else if (o.f)
        ast_outfile_abort(&o);
    free(txt);
    return rc;
}
