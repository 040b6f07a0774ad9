/* tensor.c — dtype names, element access and conversion for tensor views (see tensor.h). */
#include "tensor.h"

#include <stdio.h>
#include <string.h>

#include "common.h"

const char *ast_dtype_name(ast_dtype t) {
    static const char *names[AST_DT_COUNT] = {"F32", "BF16", "F16", "I64", "I32"};
    return (unsigned)t < AST_DT_COUNT ? names[t] : "?";
}

int64_t ast_tensor_numel(const ast_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *ast_shape_str(const ast_tensor *t, char *buf, size_t len) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)t->shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

float ast_tensor_get_f32(const ast_tensor *t, int64_t i) {
    float out;
    ast_tensor_to_f32(t, i, 1, &out);
    return out;
}

void ast_tensor_to_f32(const ast_tensor *t, int64_t first, int64_t n, float *dst) {
    const unsigned char *p = (const unsigned char *)t->data;
    switch (t->dtype) {
    case AST_DT_F32:
        memcpy(dst, p + first * 4, (size_t)n * 4);
        break;
    case AST_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            dst[i] = ast_bf16_to_f32(h);
        }
        break;
    case AST_DT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            dst[i] = ast_f16_to_f32(h);
        }
        break;
    case AST_DT_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + (first + i) * 8, 8);
            dst[i] = (float)v;
        }
        break;
    case AST_DT_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + (first + i) * 4, 4);
            dst[i] = (float)v;
        }
        break;
    default:
        memset(dst, 0, (size_t)n * sizeof(float));
    }
}
