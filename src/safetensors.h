/* safetensors.h — mmap reader and atomic writer for the safetensors format (wan21.md §5).
 *
 * The reader validates everything before handing out a view: header length (<= 100,000,000),
 * UTF-8 JSON object, each entry's dtype/shape/data_offsets, byte count = numel * dtype size,
 * offsets that tile the data buffer from 0 with no gap or overlap, and 8 + N + last_end = file
 * size; duplicate keys are refused. A malformed file gives an error naming the file, the tensor
 * and the problem — never a crash, a hang or an out-of-bounds read. */
#ifndef AST_SAFETENSORS_H
#define AST_SAFETENSORS_H

#ifdef __cplusplus
extern "C" {
#endif

#include "tensor.h"

/* One or more mmapped safetensors files seen as one set of named tensors. */
typedef struct ast_st_set ast_st_set;

/* Opens one .safetensors file. */
int ast_st_open(const char *path, ast_st_set **out);
/* Parses and validates an in-memory file image buf[0..len) (what ast_st_open does after mmap;
 * also the libFuzzer entry). `name` is used in messages. The set's views point into buf, which
 * must outlive the set. */
int ast_st_parse_buffer(const void *buf, size_t len, const char *name, ast_st_set **out);
/* Opens a checkpoint folder: "<dir>/<name>.safetensors.index.json" (sharded; weight_map names the
 * file of each tensor) if present, else every "*.safetensors" file in the folder (the set of
 * tensors must then be disjoint). Tensors with the same name in two files are an error. */
int ast_st_open_dir(const char *dir, ast_st_set **out);
void ast_st_close(ast_st_set *s);

int ast_st_count(const ast_st_set *s);
const ast_tensor *ast_st_at(const ast_st_set *s, int i);          /* i in [0, count) */
const ast_tensor *ast_st_find(const ast_st_set *s, const char *name); /* NULL if absent */
/* The file a tensor came from (for error messages). */
const char *ast_st_file_of(const ast_st_set *s, const ast_tensor *t);
/* A 64-bit hash over every file's header and data (FNV-1a, streamed; docs/profile-format.md),
 * as 16 hex digits. Identifies a checkpoint in profiles. Files over 256 MiB are hashed from
 * their size, header and 64 evenly spaced 1 MiB samples of the data (see safetensors.c).
 * Computed on first call and cached. */
const char *ast_st_hash(ast_st_set *s);

/* Writer: entries are written in the order given, tightly packed, header padded with spaces to a
 * multiple of 8. metadata may be NULL or a list of key/value string pairs (n_meta pairs) stored
 * under "__metadata__". Atomic (temp file + rename): on error no file is left at path. */
typedef struct {
    const char *name;
    ast_dtype dtype;
    int ndim;
    int64_t shape[AST_MAX_DIMS];
    const void *data; /* numel * dtype size bytes */
} ast_st_entry;

int ast_st_write(const char *path, const ast_st_entry *entries, int n, const char *const *metadata,
                 int n_meta);

/* Convenience for loading one F32 input tensor by name, with shape checking done by the caller:
 * returns the view or NULL with an error naming the file and the missing key. */
const ast_tensor *ast_st_require(const ast_st_set *s, const char *name, const char *what_for);

#ifdef __cplusplus
}
#endif

#endif
