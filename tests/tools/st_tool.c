/* st_tool.c — a small safetensors helper for the end-to-end tool tests (the scripts in tests/cli):
 *   st_tool compare A.safetensors NAME_A B.safetensors NAME_B TOL   rel L2 <= TOL -> exit 0
 *   st_tool extract IN.safetensors NAME OUT.safetensors NEWNAME     copies one tensor (as F32)
 *   st_tool nan IN.safetensors NAME OUT.safetensors                 copies IN with NAME[0] = NaN
 *   st_tool quality A.safetensors NAME_A REF.safetensors NAME_R      prints "mse psnr ssim" of A
 *                                                                    vs REF (search/quality.h)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quality.h"
#include "safetensors.h"
#include "test_util.h"

static float *load(const char *path, const char *name, ast_st_set **s, const ast_tensor **t) {
    if (ast_st_open(path, s)) return NULL;
    *t = ast_st_require(*s, name, "st_tool");
    if (!*t) return NULL;
    float *x = malloc(sizeof(float) * (size_t)(ast_tensor_numel(*t) + 1));
    ast_tensor_to_f32(*t, 0, ast_tensor_numel(*t), x);
    return x;
}

static int run(int argc, char **argv, ast_st_set **pa, ast_st_set **pb, float **px, float **py);

/* Everything run() opened or allocated is released here, so the sanitizer build sees no leak. */
int main(int argc, char **argv) {
    ast_st_set *a = NULL, *b = NULL;
    float *x = NULL, *y = NULL;
    int rc = run(argc, argv, &a, &b, &x, &y);
    free(x);
    free(y);
    ast_st_close(a);
    ast_st_close(b);
    return rc;
}

static int run(int argc, char **argv, ast_st_set **pa, ast_st_set **pb, float **px, float **py) {
    ast_st_set *a = NULL;
    const ast_tensor *ta, *tb;
    if (argc == 7 && strcmp(argv[1], "compare") == 0) {
        float *x = *px = load(argv[2], argv[3], pa, &ta);
        float *y = *py = x ? load(argv[4], argv[5], pb, &tb) : NULL;
        if (!y) {
            fprintf(stderr, "st_tool: %s\n", ast_error_get());
            return 1;
        }
        if (ast_tensor_numel(ta) != ast_tensor_numel(tb)) {
            fprintf(stderr, "st_tool: sizes differ\n");
            return 1;
        }
        double err = ast_test_rel_l2(x, y, ast_tensor_numel(ta));
        printf("rel L2 %.3g (tolerance %s)\n", err, argv[6]);
        return err <= atof(argv[6]) ? 0 : 1;
    }
    if (argc == 6 && strcmp(argv[1], "quality") == 0) {
        float *x = *px = load(argv[2], argv[3], pa, &ta);
        float *y = *py = x ? load(argv[4], argv[5], pb, &tb) : NULL;
        if (!y || ta->ndim != 4 || ast_tensor_numel(ta) != ast_tensor_numel(tb)) {
            fprintf(stderr, "st_tool: %s\n", y ? "need two [C, F, H, W] tensors of one shape" : ast_error_get());
            return 1;
        }
        ast_quality q;
        if (ast_quality_compare(x, y, (int)ta->shape[0], (int)ta->shape[1], (int)ta->shape[2],
                                (int)ta->shape[3], &q) < 0) {
            fprintf(stderr, "st_tool: %s\n", ast_error_get());
            return 1;
        }
        printf("%.6g %.4f %.5f\n", q.mse, q.psnr, q.ssim);
        return 0;
    }
    if ((argc == 6 && strcmp(argv[1], "extract") == 0) || (argc == 5 && strcmp(argv[1], "nan") == 0)) {
        int nan_mode = argv[1][0] == 'n';
        if (ast_st_open(argv[2], pa)) {
            fprintf(stderr, "st_tool: %s\n", ast_error_get());
            return 1;
        }
        a = *pa;
        int n = nan_mode ? ast_st_count(a) : 1, rc = 0;
        ast_st_entry *e = calloc((size_t)n, sizeof *e);
        float **bufs = calloc((size_t)n, sizeof *bufs);
        for (int i = 0; i < n && rc == 0; i++) {
            const ast_tensor *t = nan_mode ? ast_st_at(a, i) : ast_st_require(a, argv[3], "st_tool");
            if (!t) {
                fprintf(stderr, "st_tool: %s\n", ast_error_get());
                rc = 1;
                break;
            }
            int keep = t->dtype == AST_DT_I64 || t->dtype == AST_DT_I32;
            e[i].name = nan_mode ? t->name : argv[5];
            e[i].ndim = t->ndim;
            memcpy(e[i].shape, t->shape, sizeof e[i].shape);
            e[i].dtype = keep ? t->dtype : AST_DT_F32;
            if (keep) {
                e[i].data = t->data;
                continue;
            }
            bufs[i] = malloc(sizeof(float) * (size_t)(ast_tensor_numel(t) + 1));
            ast_tensor_to_f32(t, 0, ast_tensor_numel(t), bufs[i]);
            if (nan_mode && strcmp(t->name, argv[3]) == 0) bufs[i][0] = NAN;
            e[i].data = bufs[i];
        }
        if (rc == 0 && ast_st_write(argv[nan_mode ? 4 : 4], e, n, NULL, 0)) {
            fprintf(stderr, "st_tool: %s\n", ast_error_get());
            rc = 1;
        }
        for (int i = 0; i < n; i++) free(bufs[i]);
        free(bufs);
        free(e);
        return rc;
    }
    fprintf(stderr, "usage: st_tool compare A NAME_A B NAME_B TOL | extract IN NAME OUT NEWNAME | nan IN NAME OUT | quality A NAME_A REF NAME_R\n");
    return 2;
}
