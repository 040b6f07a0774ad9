/* loader_test_util.h — helpers shared by the checkpoint-reading tests (test_safetensors,
 * test_wan_load, test_prompt): a scratch folder that is removed afterwards, and raw file
 * writers for hand-made (often deliberately broken) safetensors files. Header-only. */
#ifndef AST_LOADER_TEST_UTIL_H
#define AST_LOADER_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

/* Makes a fresh scratch folder under $TMPDIR (or /tmp) into buf; exits 1 if it cannot. */
static inline const char *lt_tmpdir(char *buf, size_t len, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/ast_%s_XXXXXX", base && base[0] ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    return buf;
}

static inline const char *lt_path(char *buf, size_t len, const char *dir, const char *name) {
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
    return buf;
}

/* Removes a folder and everything in it (one level of sub-folders is enough here). */
static inline void lt_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        lt_path(p, sizeof p, dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            lt_rmtree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}


/* Writes bytes to a file (not atomic: test input only). Returns 0 on success. */
static inline int lt_write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static inline int lt_write_text(const char *path, const char *text) {
    return lt_write_bytes(path, text, strlen(text));
}

/* Builds a safetensors image in memory: u64 LE header length `hlen_field` (pass UINT64_MAX to
 * use the real header length), the header bytes (hlen bytes, may hold NULs) and data_len bytes
 * of data (a repeating pattern). Caller frees; *len_out = total size. */
static inline unsigned char *lt_image(const char *header, size_t hlen, uint64_t hlen_field,
                                      size_t data_len, size_t *len_out) {
    size_t n = 8 + hlen + data_len;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) exit(1);
    uint64_t v = hlen_field == UINT64_MAX ? (uint64_t)hlen : hlen_field;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)(i * 37 + 11);
    *len_out = n;
    return b;
}

#endif
