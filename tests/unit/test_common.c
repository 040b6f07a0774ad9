/* test_common.c — error convention, number conversions, RNG and atomic output files. */
#include <unistd.h>

#include "test_util.h"

int main(void) {
    /* bf16/f16 round trips on random values */
    ast_rng r;
    ast_rng_seed(&r, 1234);
    for (int i = 0; i < 10000; i++) {
        float f = (float)((ast_rng_uniform(&r) - 0.5) * 200.0);
        float b = ast_bf16_to_f32(ast_f32_to_bf16(f));
        CHECK(fabsf(b - f) <= fabsf(f) * (1.0f / 256), "bf16 %g -> %g", f, b);
        float h = ast_f16_to_f32(ast_f32_to_f16(f));
        CHECK(fabsf(h - f) <= fabsf(f) * (1.0f / 2048) + 1e-7f, "f16 %g -> %g", f, h);
    }
    CHECK(ast_f16_to_f32(0x3c00) == 1.0f, "f16 one");
    CHECK(ast_f16_to_f32(0x0001) == 5.9604645e-08f, "f16 smallest subnormal");
    CHECK(ast_f32_to_bf16(1.0f) == 0x3f80, "bf16 one");
    CHECK(isnan(ast_bf16_to_f32(ast_f32_to_bf16(NAN))), "bf16 NaN stays NaN");

    /* RNG determinism and bounds */
    ast_rng a, b;
    ast_rng_seed(&a, 7);
    ast_rng_seed(&b, 7);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= ast_rng_next(&a) == ast_rng_next(&b);
    CHECK(same, "same seed, same stream");
    int counts[5] = {0};
    for (int i = 0; i < 50000; i++) counts[ast_rng_below(&a, 5)]++;
    for (int i = 0; i < 5; i++) CHECK(counts[i] > 9000 && counts[i] < 11000, "bucket %d: %d", i, counts[i]);

    /* error convention */
    CHECK(ast_fail("bad %s", "thing") == -1, "ast_fail returns -1");
    ast_error_prefix("loading '%s'", "x");
    CHECK(strcmp(ast_error_get(), "loading 'x': bad thing") == 0, "prefix: %s", ast_error_get());

    /* atomic output: abort leaves nothing, commit leaves the file */
    char path[] = "/tmp/ast_test_outXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    ast_outfile o;
    CHECK(ast_outfile_open(&o, path) == 0, "open: %s", ast_error_get());
    ast_outfile_write(&o, "abc", 3);
    ast_outfile_abort(&o);
    CHECK(access(path, F_OK) != 0, "aborted output must not exist");
    CHECK(ast_outfile_open(&o, path) == 0, "open: %s", ast_error_get());
    ast_outfile_write(&o, "abc", 3);
    CHECK(ast_outfile_commit(&o) == 0, "commit: %s", ast_error_get());
    size_t n = 0;
    char *txt = ast_read_file(path, 100, &n);
    CHECK(txt && n == 3 && memcmp(txt, "abc", 3) == 0, "committed content");
    free(txt);
    unlink(path);
    CHECK_FAILS_WITH(ast_outfile_open(&o, "/nonexistent-dir/x"), "cannot create output");
    return ast_test_finish("common");
}
