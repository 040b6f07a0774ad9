/* common.c — error messages, logging, checked allocation, atomic output files, number
 * conversions and the seeded RNG shared by every module (see common.h). */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AST_ERRMSG_MAX 4096
static _Thread_local char g_errmsg[AST_ERRMSG_MAX];
int ast_log_level = 1;

void ast_error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
}

void ast_error_prefix(const char *fmt, ...) {
    char ctx[1024], old[AST_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, g_errmsg, sizeof old);
    const char *tail = old[0] ? old : "failed (no detail recorded)";
    /* "<ctx>: <old>", truncated to the buffer (the context comes first: it names the input) */
    size_t n = strlen(ctx);
    if (n > sizeof g_errmsg - 3) n = sizeof g_errmsg - 3;
    memcpy(g_errmsg, ctx, n);
    memcpy(g_errmsg + n, ": ", 2);
    size_t room = sizeof g_errmsg - n - 3, m = strlen(tail);
    if (m > room) m = room;
    memcpy(g_errmsg + n + 2, tail, m);
    g_errmsg[n + 2 + m] = 0;
}

const char *ast_error_get(void) { return g_errmsg; }
void ast_error_clear(void) { g_errmsg[0] = 0; }

int ast_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    return -1;
}

void ast_log(int level, const char *fmt, ...) {
    if (level > ast_log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void *ast_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        ast_error_set("out of host memory allocating %zu bytes for %s (try a smaller clip: fewer "
                      "frames or a lower resolution)",
                      bytes, what);
    return p;
}

void *ast_calloc(size_t n, size_t size, const char *what) {
    if (size && n > SIZE_MAX / size) {
        ast_error_set("allocation size overflow for %s (%zu x %zu)", what, n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ast_error_set("out of host memory allocating %zu bytes for %s (try a smaller clip: fewer "
                      "frames or a lower resolution)",
                      n * size, what);
    return p;
}

void *ast_alloc_aligned(size_t bytes, const char *what) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        ast_error_set("out of host memory allocating %zu bytes for %s (try a smaller clip: fewer "
                      "frames or a lower resolution)",
                      bytes, what);
        return NULL;
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void ast_free_aligned(void *p) { free(p); }

char *ast_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ast_malloc(n, "a string");
    if (d) memcpy(d, s, n);
    return d;
}

double ast_now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ast_utc_date(char out[32]) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *ast_read_file(const char *path, size_t max_bytes, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ast_error_set("cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        ast_error_set("'%s' is not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        ast_error_set("'%s' is %lld bytes, more than the %zu this input may have", path,
                      (long long)st.st_size, max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = ast_malloc(n + 1, path);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    if (n && fread(buf, 1, n, f) != n) {
        ast_error_set("cannot read '%s': %s", path, ferror(f) ? strerror(errno) : "file shrank");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len_out) *len_out = n;
    return buf;
}

int ast_outfile_open(ast_outfile *o, const char *path) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(path) + 32;
    o->path = ast_strdup(path);
    o->tmp_path = ast_malloc(n, "a temporary file name");
    if (!o->path || !o->tmp_path) {
        free(o->path);
        free(o->tmp_path);
        return -1;
    }
    snprintf(o->tmp_path, n, "%s.tmp-%ld", path, (long)getpid());
    o->f = fopen(o->tmp_path, "wb");
    if (!o->f) {
        int e = errno;
        ast_error_set("cannot create output '%s': %s (check that the folder exists and is "
                      "writable)",
                      path, strerror(e));
        free(o->path);
        free(o->tmp_path);
        o->path = o->tmp_path = NULL;
        return -1;
    }
    return 0;
}

int ast_outfile_write(ast_outfile *o, const void *data, size_t bytes) {
    if (bytes && fwrite(data, 1, bytes, o->f) != bytes) {
        return ast_fail("cannot write output '%s': %s (is the disk full?)", o->path,
                        strerror(errno));
    }
    return 0;
}

static void outfile_release(ast_outfile *o) {
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
}

int ast_outfile_finish(ast_outfile *o) {
    int rc = 0;
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0) {
        rc = ast_fail("cannot write output '%s': %s (is the disk full?)", o->path,
                      strerror(errno));
    }
    if (fclose(o->f) != 0 && rc == 0)
        rc = ast_fail("cannot close output '%s': %s (is the disk full?)", o->path,
                      strerror(errno));
    o->f = NULL;
    if (rc != 0) {
        unlink(o->tmp_path);
        outfile_release(o);
    }
    return rc;
}

int ast_outfile_rename(ast_outfile *o) {
    int rc = 0;
    if (rename(o->tmp_path, o->path) != 0) {
        rc = ast_fail("cannot move '%s' into place as '%s': %s", o->tmp_path, o->path,
                      strerror(errno));
        unlink(o->tmp_path);
    }
    outfile_release(o);
    return rc;
}

int ast_outfile_commit(ast_outfile *o) {
    if (ast_outfile_finish(o) != 0) return -1;
    return ast_outfile_rename(o);
}

void ast_outfile_abort(ast_outfile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp_path) unlink(o->tmp_path);
    outfile_release(o);
}

const char *ast_exe_dir(void) {
    static char dir[PATH_MAX];
    static int done;
    if (!done) {
        done = 1;
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0) {
            dir[0] = 0;
        } else {
            dir[n] = 0;
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
        }
    }
    return dir[0] ? dir : NULL;
}

uint16_t ast_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* NaN */
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}

float ast_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

uint16_t ast_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000u;
    uint32_t absu = v.u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
    if (absu < 0x38800000u) {                                  /* subnormal or zero */
        union { uint32_t u; float f; } a = {absu};
        float scaled = a.f * 16777216.0f; /* 2^24: one unit = smallest subnormal */
        uint32_t m = (uint32_t)(scaled + 0.5f);
        if ((float)m - scaled == 0.5f && (m & 1u)) m--; /* ties to even */
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (absu >> 23) - 127 + 15, man = absu & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ast_rng_seed(ast_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ast_rng_next(ast_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ast_rng_uniform(ast_rng *r) { return (double)(ast_rng_next(r) >> 11) * 0x1.0p-53; }

int ast_rng_below(ast_rng *r, int n) {
    if (n <= 1) return 0;
    /* Lemire's nearly-divisionless bounded integer, rejection for exact uniformity */
    uint64_t bound = (uint64_t)n, threshold = (0 - bound) % bound, x;
    do {
        x = ast_rng_next(r);
    } while (x < threshold);
    return (int)(x % bound);
}
