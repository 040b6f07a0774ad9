/* fuzz_util.h — what the libFuzzer targets share: an assertion that reports and aborts (so
 * libFuzzer saves the input as a crash), the input as a string, and a scratch folder removed at
 * exit. Header-only. */
#ifndef AST_FUZZ_UTIL_H
#define AST_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit/loader_test_util.h" /* lt_rmtree */

/* An invariant of the code under test does not hold: print it and abort (a libFuzzer crash). */
#define FZ_ASSERT(cond, ...)                                                                   \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static char fz_dir[1024];

static void fz_cleanup(void) {
    if (fz_dir[0]) lt_rmtree(fz_dir);
}

/* The fuzzer's input as a NUL-terminated string (free it). */
static inline char *fz_cstr(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    FZ_ASSERT(text != NULL, "out of memory");
    memcpy(text, data, size);
    text[size] = 0;
    return text;
}

/* A fresh folder in /dev/shm (cheap writes) or $TMPDIR or /tmp, removed at exit. */
static inline void fz_tmpdir(char *out, size_t len, const char *tag) {
    struct stat st;
    const char *base = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    snprintf(fz_dir, sizeof fz_dir, "%s/astraea-fuzz-%s-XXXXXX", base && base[0] ? base : "/tmp",
             tag);
    if (!mkdtemp(fz_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(fz_cleanup);
    snprintf(out, len, "%s", fz_dir);
}

#endif
