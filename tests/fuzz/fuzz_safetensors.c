/* fuzz_safetensors.c — libFuzzer target for the safetensors reader (ast_st_parse_buffer, the
 * code every checkpoint, context, latent and input file goes through).
 *
 * Input: a whole file image. Oracles beyond "no crash, no sanitizer report":
 *   - on success every tensor's bytes lie inside the input (each element is read, so ASan sees
 *     any view outside the buffer), nbytes = numel x dtype size, the tensors tile the data
 *     buffer exactly (their bytes sum to len - 8 - header length), each is found by name, and
 *     the hash is 16 hex digits;
 *   - a set that parses, written back with ast_st_write and parsed again, holds the same
 *     tensors (names, dtypes, shapes, bytes) in the same order;
 *   - on failure the message names the input (never empty). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fuzz_util.h"
#include "safetensors.h"

static char g_out[1100];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char dir[1024];
    fz_tmpdir(dir, sizeof dir, "st");
    snprintf(g_out, sizeof g_out, "%s/rt.safetensors", dir);
    return 0;
}

static int same_tensor(const ast_tensor *a, const ast_tensor *b) {
    if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || a->ndim != b->ndim ||
        a->nbytes != b->nbytes)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ast_st_set *s = NULL;
    ast_error_clear();
    if (ast_st_parse_buffer(data, size, "fuzz.safetensors", &s) != 0) {
        FZ_ASSERT(s == NULL, "failed parse returned a set");
        FZ_ASSERT(strstr(ast_error_get(), "fuzz.safetensors") != NULL,
                  "error does not name the input: '%s'", ast_error_get());
        return 0;
    }
    int n = ast_st_count(s);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    uint64_t total = 0;
    float tmp[64];
    for (int i = 0; i < n; i++) {
        const ast_tensor *t = ast_st_at(s, i);
        FZ_ASSERT(t && t->name, "tensor %d missing", i);
        size_t esz = ast_dtype_size(t->dtype);
        FZ_ASSERT(esz > 0, "tensor '%s' has dtype %d", t->name, (int)t->dtype);
        FZ_ASSERT((uint64_t)ast_tensor_numel(t) * esz == t->nbytes, "tensor '%s': nbytes", t->name);
        const uint8_t *p = t->data;
        FZ_ASSERT(t->nbytes == 0 || (p >= data + 8 + hlen && p + t->nbytes <= data + size),
                  "tensor '%s' outside the input", t->name);
        /* read every element (bounded: the tensors tile the input) */
        int64_t numel = ast_tensor_numel(t);
        for (int64_t k = 0; k < numel; k += 64) {
            int64_t m = numel - k < 64 ? numel - k : 64;
            ast_tensor_to_f32(t, k, m, tmp);
        }
        FZ_ASSERT(ast_st_find(s, t->name) == t, "tensor '%s' not found by name", t->name);
        total += t->nbytes;
    }
    FZ_ASSERT(total == size - 8 - hlen, "tensors hold %llu bytes of %llu", (unsigned long long)total,
              (unsigned long long)(size - 8 - hlen));
    const char *h = ast_st_hash(s);
    FZ_ASSERT(strlen(h) == 16 && strspn(h, "0123456789abcdef") == 16, "hash '%s'", h);

    /* round trip through the writer */
    ast_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    FZ_ASSERT(e != NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        const ast_tensor *t = ast_st_at(s, i);
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        e[i].data = t->data;
    }
    if (ast_st_write(g_out, e, n, NULL, 0) == 0) {
        ast_st_set *r = NULL;
        FZ_ASSERT(ast_st_open(g_out, &r) == 0, "written set does not read back: %s",
                  ast_error_get());
        FZ_ASSERT(ast_st_count(r) == n, "written set has %d tensors, not %d", ast_st_count(r), n);
        for (int i = 0; i < n; i++)
            FZ_ASSERT(same_tensor(ast_st_at(s, i), ast_st_at(r, i)), "tensor %d differs after "
                      "the round trip", i);
        ast_st_close(r);
        unlink(g_out);
    } else {
        /* the only refusals the writer may have for a set the reader took: an empty name (a
         * JSON key "" or "\u0000...", which the reader allows and the writer does not make),
         * or a header past the limit after re-formatting (the input may pack it tighter) */
        int empty = 0;
        for (int i = 0; i < n; i++) empty |= e[i].name[0] == 0;
        FZ_ASSERT((empty && strstr(ast_error_get(), "no usable name")) ||
                      strstr(ast_error_get(), "header would be"),
                  "writer refused: %s", ast_error_get());
    }
    free(e);
    ast_st_close(s);
    return 0;
}
