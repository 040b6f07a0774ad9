/* common.h — the one error-reporting convention and small utilities every module uses.
 *
 * Errors (style.md habit 4, docs/architecture.md "Errors"):
 *   - A function that can fail returns int: 0 on success, -1 on failure (or NULL for pointers).
 *   - Before failing it records ONE message with ast_error_set(): what failed, on which input,
 *     and what the user can do, e.g.
 *       "cannot open checkpoint 'x/model.safetensors': No such file or directory
 *        (pass --checkpoint DIR with a Wan2.1 checkpoint folder, or --model wan-mini)"
 *   - A caller that adds context wraps it with ast_error_prefix("loading model '%s'", id).
 *   - Library code never prints and never exits; the tools (src/tools/) print
 *     "astraea-X: error: <message>" and exit with AST_EXIT_FAIL.
 *   - The message is thread-local, so OpenMP workers and search workers do not clobber each other.
 */
#ifndef AST_COMMON_H
#define AST_COMMON_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AST_VERSION_STRING "0.1.0"

/* Process exit codes shared by every tool. */
enum {
    AST_EXIT_OK = 0,
    AST_EXIT_FAIL = 1,        /* the job could not be done; message printed */
    AST_EXIT_USAGE = 2,       /* bad command line; message printed */
    AST_EXIT_INTERRUPTED = 130 /* Ctrl-C: stopped cleanly, state saved */
};

#if defined(__GNUC__)
#define AST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define AST_UNUSED __attribute__((unused))
#else
#define AST_PRINTF(a, b)
#define AST_UNUSED
#endif

/* ---- errors ---------------------------------------------------------------------------- */
void ast_error_set(const char *fmt, ...) AST_PRINTF(1, 2);
/* Prepends "<context>: " to the current message (no-op format if no message is set). */
void ast_error_prefix(const char *fmt, ...) AST_PRINTF(1, 2);
const char *ast_error_get(void); /* never NULL; "" when no error is recorded */
void ast_error_clear(void);
/* Sets the message and returns -1, for `return ast_fail("...", ...);`. */
int ast_fail(const char *fmt, ...) AST_PRINTF(1, 2);

/* ---- logging (stderr) ------------------------------------------------------------------- */
extern int ast_log_level; /* 0 quiet, 1 normal (default), 2 verbose */
void ast_log(int level, const char *fmt, ...) AST_PRINTF(2, 3);

/* ---- memory: checked allocation; on failure set the error and return NULL --------------- */
void *ast_malloc(size_t bytes, const char *what);
void *ast_calloc(size_t n, size_t size, const char *what);
/* 64-byte aligned, zero-filled; free with ast_free_aligned. */
void *ast_alloc_aligned(size_t bytes, const char *what);
void ast_free_aligned(void *p);
char *ast_strdup(const char *s);

/* ---- time ------------------------------------------------------------------------------- */
double ast_now_sec(void);       /* monotonic seconds */
void ast_utc_date(char out[32]); /* "2026-11-27T13:21:07Z" */

/* ---- files ------------------------------------------------------------------------------ */
/* Reads a whole file into a NUL-terminated malloc'd buffer (max_bytes guards against a huge
 * file). Returns NULL with the error set. */
char *ast_read_file(const char *path, size_t max_bytes, size_t *len_out);

/* Atomic output: write to "<path>.tmp-<pid>", then fsync + rename on commit. On abort or crash
 * no file at <path> is left that looks complete. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} ast_outfile;
int ast_outfile_open(ast_outfile *o, const char *path);
int ast_outfile_write(ast_outfile *o, const void *data, size_t bytes);
int ast_outfile_commit(ast_outfile *o); /* closes; on failure removes the temp file */
/* The first half of commit, for outputs of several files that appear together: flushes, fsyncs
 * and closes the temp file, keeping it (on failure it is removed). Then ast_outfile_rename()
 * puts it in place, or ast_outfile_abort() removes it. */
int ast_outfile_finish(ast_outfile *o);
int ast_outfile_rename(ast_outfile *o);
void ast_outfile_abort(ast_outfile *o); /* closes and removes the temp file */

/* Folder of the running executable (for finding models/ next to the build), or NULL. */
const char *ast_exe_dir(void);

/* ---- numbers ---------------------------------------------------------------------------- */
static inline float ast_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
uint16_t ast_f32_to_bf16(float f); /* round to nearest even, NaN preserved */
float ast_f16_to_f32(uint16_t h);
uint16_t ast_f32_to_f16(float f);

/* SplitMix64 / xoshiro256** for everything seeded that is not the noise generator. */
typedef struct { uint64_t s[4]; } ast_rng;
void ast_rng_seed(ast_rng *r, uint64_t seed);
uint64_t ast_rng_next(ast_rng *r);
double ast_rng_uniform(ast_rng *r);             /* [0,1) with 53 bits */
int ast_rng_below(ast_rng *r, int n);           /* uniform integer in [0,n) */

#ifdef __cplusplus
}
#endif

#endif
