/* test_faults.c — bad weights and failing disks (docs/inputs.md):
 *   - a NaN or Inf weight (F32, BF16, F16; a small vector or a matrix) is refused at load with
 *     an error naming the tensor; in a checkpoint too big to scan at load it is found when the
 *     result is non-finite (ast_run_check_result), and a non-finite result with finite weights
 *     is reported as a diverged computation;
 *   - every writer (safetensors, profile, GIF, PNG frames) on a disk that fills up mid-write
 *     fails with a message and leaves nothing at the output path (no file that looks complete,
 *     no temp file), and an earlier complete file at that path is left as it was.
 * The full disk is a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: write() fails with EFBIG)
 * set in a forked child, so it works without root; tests/cli/test_bad_inputs.sh also uses a
 * real full tmpfs where it can mount one. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "image.h"
#include "loader_test_util.h"
#include "profile.h"
#include "run.h"

static char g_dir[512];

/* ---- NaN / Inf weights ------------------------------------------------------------------- */

/* Overwrites element `elem` of tensor `key` of <dir>/diffusion_pytorch_model.safetensors in
 * place with the bits of `bad` (NaN or Inf) stored as dt. */
static void patch_ckpt(const char *dir, ast_dtype dt, const char *key, int64_t elem, float bad) {
    char p[1024];
    ast_st_set *s = NULL;
    lt_path(p, sizeof p, dir, "diffusion_pytorch_model.safetensors");
    CHECK(ast_st_open(p, &s) == 0, "open %s", p);
    const ast_tensor *t = s ? ast_st_find(s, key) : NULL;
    CHECK(t != NULL, "no %s", key);
    if (t) {
        /* offset of the element in the file: the view points into the mapping */
        const unsigned char *base = ast_st_at(s, 0)->data;
        for (int i = 1; i < ast_st_count(s); i++)
            if ((const unsigned char *)ast_st_at(s, i)->data < base)
                base = ast_st_at(s, i)->data;
        struct stat st;
        stat(p, &st);
        size_t data_len = 0;
        for (int i = 0; i < ast_st_count(s); i++) data_len += ast_st_at(s, i)->nbytes;
        off_t off = (off_t)((size_t)st.st_size - data_len) +
                    ((const unsigned char *)t->data - base) +
                    (off_t)(elem * (int64_t)ast_dtype_size(dt));
        unsigned char b[4];
        if (dt == AST_DT_F32) {
            memcpy(b, &bad, 4);
        } else {
            uint16_t h = dt == AST_DT_BF16 ? ast_f32_to_bf16(bad) : ast_f32_to_f16(bad);
            memcpy(b, &h, 2);
        }
        int fd = open(p, O_WRONLY);
        CHECK(fd >= 0 && pwrite(fd, b, ast_dtype_size(dt), off) == (ssize_t)ast_dtype_size(dt),
              "patch %s", p);
        if (fd >= 0) close(fd);
    }
    ast_st_close(s);
}

/* Writes the mini checkpoint into <g_dir>/<name> with dtype dt, then (key != NULL) patches one
 * element of tensor `key` to `bad`. Returns the folder. */
static const char *bad_ckpt(char *dir, size_t len, const char *name, ast_dtype dt,
                            const char *key, int64_t elem, float bad) {
    lt_path(dir, len, g_dir, name);
    mkdir(dir, 0755);
    ast_wan_config cfg = lt_mini_config();
    lt_ckpt_opts o = {.dtype = dt};
    CHECK(lt_write_ckpt(dir, &cfg, &o) == 0, "write %s: %s", name, ast_error_get());
    char cp[1024];
    lt_write_text(lt_path(cp, sizeof cp, dir, "config.json"), "{\"num_heads\": 2}");
    if (key) patch_ckpt(dir, dt, key, elem, bad);
    return dir;
}

static void test_nonfinite_weights(void) {
    char dir[1024];
    ast_model *m = NULL;
    /* a small vector (converted into the arena) */
    CHECK_FAILS_WITH(ast_model_load(bad_ckpt(dir, sizeof dir, "nan_vec", AST_DT_F32,
                                             "blocks.1.norm3.bias", 17, NAN),
                                    NULL, &m),
                     "tensor 'blocks.1.norm3.bias' holds 1 NaN/Inf value (the first, NaN, at "
                     "flat index 17)");
    CHECK(m == NULL, "no model on failure");
    /* matrices, each stored dtype; the message names the tensor and says what to do */
    CHECK_FAILS_WITH(ast_model_load(bad_ckpt(dir, sizeof dir, "inf_bf16", AST_DT_BF16,
                                             "blocks.0.ffn.2.weight", 1000, INFINITY),
                                    NULL, &m),
                     "tensor 'blocks.0.ffn.2.weight' holds 1 NaN/Inf value (the first, +Inf");
    CHECK(strstr(ast_error_get(), "re-download"), "%s", ast_error_get());
    CHECK_FAILS_WITH(ast_model_load(bad_ckpt(dir, sizeof dir, "ninf_f16", AST_DT_F16,
                                             "head.head.weight", 5, -INFINITY),
                                    NULL, &m),
                     "tensor 'head.head.weight' holds 1 NaN/Inf value (the first, -Inf");
    CHECK_FAILS_WITH(ast_model_load(bad_ckpt(dir, sizeof dir, "nan_f32", AST_DT_F32,
                                             "patch_embedding.weight", 0, NAN),
                                    NULL, &m),
                     "'patch_embedding.weight' holds 1 NaN/Inf");

    /* a checkpoint too large to scan at load: damage appears after the load (the mapping
     * shows the file's pages), found when the result is non-finite */
    CHECK(ast_model_load(bad_ckpt(dir, sizeof dir, "late", AST_DT_BF16, NULL, 0, 0), NULL, &m) == 0,
          "clean load: %s", ast_error_get());
    if (!m) return;
    int64_t n = 16 * 2 * 8 * 8;
    float *x = malloc(sizeof(float) * (size_t)n);
    ast_test_fill(x, n, 8, -1, 1);
    CHECK(ast_run_check_result(m, x, n, "the final latent") == 0, "finite result refused: %s",
          ast_error_get());
    x[77] = NAN;
    x[99] = INFINITY;
    CHECK_FAILS_WITH(ast_run_check_result(m, x, n, "the final latent"),
                     "the final latent holds 2 NaN/Inf values (the first at flat index 77) "
                     "although the weights and inputs are finite: the computation diverged");
    patch_ckpt(dir, AST_DT_BF16, "blocks.1.cross_attn.v.weight", 3, NAN); /* in place */
    CHECK_FAILS_WITH(ast_run_check_result(m, x, n, "the final latent"),
                     "the final latent holds 2 NaN/Inf values: checkpoint");
    CHECK(strstr(ast_error_get(), "tensor 'blocks.1.cross_attn.v.weight' holds 1 NaN/Inf"),
          "%s", ast_error_get());
    free(x);
    ast_model_free(m);
}

/* ---- writers on a full disk -------------------------------------------------------------- */

typedef int (*writer_fn)(const char *path, const void *arg);

static int w_safetensors(const char *path, const void *arg) {
    (void)arg;
    static float data[16384];
    for (int i = 0; i < 16384; i++) data[i] = (float)i * 0.25f;
    ast_st_entry e = {"x", AST_DT_F32, 2, {128, 128}, data};
    return ast_st_write(path, &e, 1, NULL, 0);
}

static int w_profile(const char *path, const void *arg) {
    (void)arg;
    ast_profile p;
    if (ast_profile_init(&p, 2000) != 0) return -1;
    for (int i = 0; i < 2000; i++) p.budgets[i] = i ? 0.123456f : 1.0f;
    int rc = ast_profile_save(&p, path);
    ast_profile_free(&p);
    return rc;
}

/* [3, 4, 32, 32]: frame 0 one colour (a ~100-byte PNG), frames 1-3 noise (~12 KB each at
 * scale 2), so a file-size limit of 1000 bytes lets frame 0 through and stops frame 1. */
static float g_clip[3 * 4 * 32 * 32];

static int w_gif(const char *path, const void *arg) {
    (void)arg;
    return ast_write_gif(path, g_clip, 4, 32, 32, 2, 12);
}

static int w_png(const char *path, const void *arg) {
    (void)arg;
    return ast_write_png_frames(path, g_clip, 4, 32, 32, 2);
}

/* Runs fn(path) in a child whose files may not grow past `limit` bytes. Returns the child's
 * result: 0 ok, 1 failed with a message mentioning the disk, 2 failed otherwise, 3 crashed. */
static int run_limited(writer_fn fn, const char *path, rlim_t limit, char *msg, size_t mlen) {
    int pfd[2];
    if (pipe(pfd) != 0) return 3;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        int rc = fn(path, NULL);
        const char *e = ast_error_get();
        ssize_t w = write(pfd[1], e, strlen(e));
        (void)w;
        _exit(rc == 0 ? 0 : (strstr(e, "disk") || strstr(e, "too large")) ? 1 : 2);
    }
    close(pfd[1]);
    ssize_t k = read(pfd[0], msg, mlen - 1);
    msg[k > 0 ? k : 0] = 0;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
}

/* Files in g_dir/sub whose name starts with `stem`. */
static int count_files(const char *sub, const char *stem) {
    char d[1024];
    lt_path(d, sizeof d, g_dir, sub);
    DIR *dd = opendir(d);
    int n = 0;
    struct dirent *de;
    while (dd && (de = readdir(dd)) != NULL) n += strncmp(de->d_name, stem, strlen(stem)) == 0;
    if (dd) closedir(dd);
    return n;
}

static void test_full_disk(void) {
    ast_rng r;
    ast_rng_seed(&r, 3);
    for (int c = 0; c < 3; c++)
        for (int f = 0; f < 4; f++)
            for (int i = 0; i < 32 * 32; i++)
                g_clip[(c * 4 + f) * 1024 + i] = f ? (float)ast_rng_uniform(&r) * 2 - 1 : 0.25f;
    static const struct {
        const char *name, *file;
        writer_fn fn;
    } W[] = {{"safetensors", "out.safetensors", w_safetensors},
             {"profile", "p.json", w_profile},
             {"gif", "clip.gif", w_gif},
             {"png frames", "clip.png", w_png}};
    char sub[1024], path[1200], msg[2048];
    lt_path(sub, sizeof sub, g_dir, "disk");
    mkdir(sub, 0755);
    for (size_t k = 0; k < sizeof W / sizeof W[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", sub, W[k].file);
        const char *stem = W[k].fn == w_png ? "clip-" : W[k].file;
        /* the limit falls inside the file: early, and near its end */
        rlim_t limits[] = {64, 1000, 2000};
        for (size_t l = 0; l < 3; l++) {
            int res = run_limited(W[k].fn, path, limits[l], msg, sizeof msg);
            CHECK(res == 1, "%s at %llu bytes: result %d (want a failure naming the disk): %s",
                  W[k].name, (unsigned long long)limits[l], res, msg);
            CHECK(count_files("disk", stem) == 0, "%s at %llu bytes: %d file(s) left behind",
                  W[k].name, (unsigned long long)limits[l], count_files("disk", stem));
        }
        /* enough room: written; then a failing rewrite keeps the complete earlier file */
        int res = run_limited(W[k].fn, path, 1 << 24, msg, sizeof msg);
        CHECK(res == 0, "%s with room: %d %s", W[k].name, res, msg);
        int before = count_files("disk", stem);
        CHECK(before >= 1, "%s: nothing written", W[k].name);
        res = run_limited(W[k].fn, path, 1000, msg, sizeof msg);
        CHECK(res == 1, "%s rewrite on a full disk: %d %s", W[k].name, res, msg);
        CHECK(count_files("disk", stem) == before, "%s: the earlier output changed (%d -> %d files)",
              W[k].name, before, count_files("disk", stem));
        if (W[k].fn == w_safetensors) {
            ast_st_set *s = NULL;
            CHECK(ast_st_open(path, &s) == 0, "earlier safetensors output damaged: %s",
                  ast_error_get());
            ast_st_close(s);
        }
        if (W[k].fn == w_profile) {
            ast_profile p;
            CHECK(ast_profile_load(path, &p) == 0, "earlier profile damaged: %s", ast_error_get());
            if (p.budgets) ast_profile_free(&p);
        }
    }
    lt_rmtree(sub);
}

int main(void) {
    lt_tmpdir(g_dir, sizeof g_dir, "faults");
    ast_log_level = 0;
    test_nonfinite_weights();
    test_full_disk();
    int rc = ast_test_finish("faults");
    if (rc == 0) lt_rmtree(g_dir);
    else fprintf(stderr, "faults: files kept in %s\n", g_dir);
    return rc;
}
