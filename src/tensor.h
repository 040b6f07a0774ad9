/* tensor.h — the one tensor convention (docs/architecture.md "Tensors").
 *
 * Row-major, last dimension contiguous, shapes in the order the checkpoint uses (PyTorch order:
 * Linear weights are [out, in]). An ast_tensor is a VIEW: it never owns its bytes; the bytes
 * live in an mmapped checkpoint or an arena owned by whoever made the view, and may be
 * unaligned (other safetensors writers do not align), so read them with memcpy-based loads. */
#ifndef AST_TENSOR_H
#define AST_TENSOR_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AST_DT_F32 = 0,
    AST_DT_BF16,
    AST_DT_F16,
    AST_DT_I64,
    AST_DT_I32,
    AST_DT_COUNT
} ast_dtype;

#define AST_MAX_DIMS 8

typedef struct {
    const char *name;             /* checkpoint key (as stored in the file) */
    ast_dtype dtype;
    int ndim;                     /* 0 = scalar */
    int64_t shape[AST_MAX_DIMS];
    const void *data;             /* nbytes bytes; may be unaligned */
    size_t nbytes;                /* = numel * ast_dtype_size(dtype) */
} ast_tensor;

static inline size_t ast_dtype_size(ast_dtype t) {
    switch (t) {
    case AST_DT_F32: return 4;
    case AST_DT_BF16: return 2;
    case AST_DT_F16: return 2;
    case AST_DT_I64: return 8;
    case AST_DT_I32: return 4;
    default: return 0;
    }
}

const char *ast_dtype_name(ast_dtype t); /* "F32", "BF16", ... (safetensors spelling) */
int64_t ast_tensor_numel(const ast_tensor *t);
/* Formats "[1536, 16, 1, 2, 2]" into buf. */
const char *ast_shape_str(const ast_tensor *t, char *buf, size_t len);
/* Reads element i converted to float (F32/BF16/F16/I64/I32). */
float ast_tensor_get_f32(const ast_tensor *t, int64_t i);
/* Converts n elements starting at element `first` to fp32 into dst. */
void ast_tensor_to_f32(const ast_tensor *t, int64_t first, int64_t n, float *dst);

#ifdef __cplusplus
}
#endif

#endif
