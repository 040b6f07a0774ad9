/* test_safetensors.c — safetensors writer/reader round trip, one malformed file per validation
 * rule (each must fail with a message naming the problem), sharded folders with and without an
 * index, the checkpoint hash (full and sampled), and a seeded mutation loop (no crash on any
 * corruption of a valid file). */
#include <fcntl.h>

#include "loader_test_util.h"
#include "safetensors.h"

static char g_dir[512];

/* Parses a hand-written header + data_len data bytes in memory. */
static int parse_hdr(const char *header, size_t data_len) {
    size_t len;
    unsigned char *img = lt_image(header, strlen(header), UINT64_MAX, data_len, &len);
    ast_st_set *s = NULL;
    int rc = ast_st_parse_buffer(img, len, "bad.safetensors", &s);
    ast_st_close(s);
    free(img);
    return rc;
}

/* Writes raw bytes to <dir>/name and opens it with ast_st_open. */
static int open_bytes(const char *name, const void *p, size_t n) {
    char path[1024];
    lt_path(path, sizeof path, g_dir, name);
    if (lt_write_bytes(path, p, n) != 0) return 99;
    ast_st_set *s = NULL;
    int rc = ast_st_open(path, &s);
    ast_st_close(s);
    unlink(path);
    return rc;
}

static void test_round_trip(void) {
    float a[12], scalar = 3.25f;
    ast_test_fill(a, 12, 1, -2, 2);
    uint16_t bf[5], h[8];
    float tmp[8];
    ast_test_fill(tmp, 8, 2, -1, 1);
    for (int i = 0; i < 5; i++) bf[i] = ast_f32_to_bf16(tmp[i]);
    for (int i = 0; i < 8; i++) h[i] = ast_f32_to_f16(tmp[i]);
    int64_t i64[3] = {-5, 1LL << 40, 7};
    int32_t i32[6] = {1, -2, 3, -4, 5, 123456};
    ast_st_entry e[] = {
        {"blocks.0.x", AST_DT_F32, 2, {3, 4}, a},
        {"b\"q\\uote", AST_DT_BF16, 1, {5}, bf},
        {"half", AST_DT_F16, 3, {2, 2, 2}, h},
        {"ints64", AST_DT_I64, 1, {3}, i64},
        {"ints32", AST_DT_I32, 2, {2, 3}, i32},
        {"scalar", AST_DT_F32, 0, {0}, &scalar},
        {"empty", AST_DT_F32, 2, {0, 3}, NULL},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    const char *meta[] = {"format", "pt", "note", "a \"quoted\" value"};
    char path[1024];
    lt_path(path, sizeof path, g_dir, "rt.safetensors");
    CHECK(ast_st_write(path, e, n, meta, 2) == 0, "write: %s", ast_error_get());

    size_t flen = 0;
    char *raw = ast_read_file(path, 1 << 20, &flen);
    CHECK(raw && flen > 8, "read back raw");
    if (raw) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)raw[i];
        CHECK(hl % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)hl);
        CHECK(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}', "header ends in '}' or padding");
    }
    free(raw);

    ast_st_set *s = NULL;
    CHECK(ast_st_open(path, &s) == 0, "open: %s", ast_error_get());
    if (!s) return;
    CHECK(ast_st_count(s) == n, "count %d", ast_st_count(s));
    for (int i = 0; i < n && i < ast_st_count(s); i++) {
        const ast_tensor *t = ast_st_at(s, i);
        CHECK(strcmp(t->name, e[i].name) == 0, "entry %d name '%s' (header order kept)", i,
              t->name);
        CHECK(t->dtype == e[i].dtype, "entry %d dtype", i);
        CHECK(t->ndim == e[i].ndim, "entry %d ndim", i);
        for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == e[i].shape[d], "entry %d dim %d", i, d);
        int64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d];
        size_t bytes = (size_t)numel * ast_dtype_size(e[i].dtype);
        CHECK(t->nbytes == bytes, "entry %d nbytes %zu vs %zu", i, t->nbytes, bytes);
        CHECK(bytes == 0 || memcmp(t->data, e[i].data, bytes) == 0, "entry %d bytes", i);
        CHECK(ast_st_find(s, e[i].name) == t, "find '%s'", e[i].name);
        CHECK(strcmp(ast_st_file_of(s, t), path) == 0, "file_of");
    }
    CHECK(ast_st_find(s, "nope") == NULL, "find absent");
    ast_error_clear();
    CHECK(ast_st_require(s, "nope", "the test") == NULL, "require absent");
    CHECK(strstr(ast_error_get(), "nope") && strstr(ast_error_get(), path), "require msg: %s",
          ast_error_get());
    const ast_tensor *bt = ast_st_find(s, "b\"q\\uote");
    CHECK(bt && ast_tensor_get_f32(bt, 3) == ast_bf16_to_f32(bf[3]), "bf16 value");
    /* hash: 16 hex digits, stable, and sensitive to one data byte */
    char h1[17];
    snprintf(h1, sizeof h1, "%s", ast_st_hash(s));
    CHECK(strlen(h1) == 16 && strspn(h1, "0123456789abcdef") == 16, "hash '%s'", h1);
    CHECK(strcmp(ast_st_hash(s), h1) == 0, "cached hash");
    ast_st_close(s);
    a[5] += 1.0f;
    CHECK(ast_st_write(path, e, n, NULL, 0) == 0, "rewrite: %s", ast_error_get());
    CHECK(ast_st_open(path, &s) == 0, "reopen: %s", ast_error_get());
    if (s) CHECK(strcmp(ast_st_hash(s), h1) != 0, "hash changes with data");
    ast_st_close(s);
    unlink(path);

    /* the writer refuses bad input and leaves no file behind */
    ast_st_entry dup[] = {{"x", AST_DT_F32, 1, {2}, a}, {"x", AST_DT_F32, 1, {2}, a}};
    CHECK_FAILS_WITH(ast_st_write(path, dup, 2, NULL, 0), "given twice");
    ast_st_entry neg[] = {{"x", AST_DT_F32, 1, {-2}, a}};
    CHECK_FAILS_WITH(ast_st_write(path, neg, 1, NULL, 0), "bad shape");
    CHECK(access(path, F_OK) != 0, "no file left after a refused write");
}

static void test_malformed(void) {
    /* file-level: too small, header length past the end / over the limit */
    CHECK_FAILS_WITH(open_bytes("empty.safetensors", "", 0), "empty or too small: 0 bytes");
    CHECK_FAILS_WITH(open_bytes("short.safetensors", "\x10\0\0\0\0", 5), "too small: 5 bytes");
    size_t len;
    const char *okh = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char *img = lt_image(okh, strlen(okh), 5000, 8, &len);
    CHECK_FAILS_WITH(open_bytes("long.safetensors", img, len), "runs past the end of the file");
    free(img);
    img = lt_image(okh, strlen(okh), 100000001ull, 8, &len);
    CHECK_FAILS_WITH(open_bytes("huge.safetensors", img, len), "larger than the 100,000,000");
    free(img);
    img = lt_image(okh, strlen(okh), UINT64_MAX - 1, 8, &len);
    CHECK_FAILS_WITH(open_bytes("huge2.safetensors", img, len), "larger than the 100,000,000");
    free(img);
    /* every message names the file and says what to do */
    CHECK(strstr(ast_error_get(), "huge2.safetensors") && strstr(ast_error_get(), "re-download"),
          "message names file and remedy: %s", ast_error_get());

    /* a valid header parses; trailing spaces are tolerated */
    ast_error_clear();
    CHECK(parse_hdr(okh, 8) == 0, "valid header: %s", ast_error_get());
    CHECK(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}     ", 8) == 0,
          "trailing spaces: %s", ast_error_get());
    CHECK(parse_hdr("{}", 0) == 0, "empty object, no data: %s", ast_error_get());

    /* JSON-level */
    CHECK_FAILS_WITH(parse_hdr("{\"a\": ", 0), "not valid JSON");
    CHECK_FAILS_WITH(parse_hdr("", 0), "not valid JSON");
    CHECK_FAILS_WITH(parse_hdr("[1, 2]", 0), "not an object");
    CHECK_FAILS_WITH(parse_hdr("{} xyz", 0), "unexpected text after the JSON");
    CHECK_FAILS_WITH(parse_hdr("{\"a\":\"\xff\xfe\"}", 0), "not valid UTF-8");
    {
        const char h[] = "{\"a\":{\"dtype\":\"F32\",\0\"shape\":[2],\"data_offsets\":[0,8]}}";
        img = lt_image(h, sizeof h - 1, UINT64_MAX, 8, &len);
        ast_st_set *s = NULL;
        CHECK_FAILS_WITH(ast_st_parse_buffer(img, len, "nul.safetensors", &s), "NUL byte");
        free(img);
    }
    CHECK_FAILS_WITH(parse_hdr("{\"__metadata__\":{\"k\":1}}", 0), "is not a string");

    /* entry-level */
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16),
                     "unsupported dtype 'F64'");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"XYZ\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                     "unsupported dtype 'XYZ'");
    CHECK(strstr(ast_error_get(), "tensor 'w'"), "names the tensor: %s", ast_error_get());
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "\"dtype\" is missing");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8),
                     "not a non-negative integer");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8),
                     "not a non-negative integer");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8),
                     "not a non-negative integer");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4),
                     "more than the 8 supported");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8),
                     "more bytes than fit in 64 bits");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                     "hold 8 bytes but shape [3] of F32 needs 12 bytes");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8),
                     "data_offsets has 1 entries");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16),
                     "data_offsets has 3 entries");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8),
                     "end before they begin");
    CHECK_FAILS_WITH(parse_hdr("{\"w\":[1,2]}", 0), "not a JSON object");

    /* layout: gap, overlap, trailing bytes, truncated data, duplicate key */
    CHECK_FAILS_WITH(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20),
                     "gap in the data buffer: bytes [8, 12)");
    CHECK_FAILS_WITH(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
                     "overlap");
    CHECK(strstr(ast_error_get(), "'b'") && strstr(ast_error_get(), "'a'"), "overlap names both: %s",
          ast_error_get());
    CHECK_FAILS_WITH(parse_hdr(okh, 9), "1 trailing bytes");
    CHECK_FAILS_WITH(parse_hdr(okh, 7), "the file is cut short");
    CHECK_FAILS_WITH(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                     "duplicate key");
    CHECK(strstr(ast_error_get(), "bad.safetensors"), "names the file: %s", ast_error_get());
}

/* Writes <dir>/<file> holding the named F32 [2] tensors. */
static void write_shard(const char *dir, const char *file, const char *const *names, int n) {
    ast_st_entry e[8];
    static float v[8][2];
    for (int i = 0; i < n; i++) {
        ast_test_fill(v[i], 2, 100 + (uint64_t)i, -1, 1);
        e[i] = (ast_st_entry){names[i], AST_DT_F32, 1, {2}, v[i]};
    }
    char p[1024];
    CHECK(ast_st_write(lt_path(p, sizeof p, dir, file), e, n, NULL, 0) == 0, "write shard: %s",
          ast_error_get());
}

static void test_sharded(void) {
    char dir[1024], p[1024];
    snprintf(dir, sizeof dir, "%s/plain", g_dir);
    mkdir(dir, 0755);
    const char *n1[] = {"z.first", "a.second"}, *n2[] = {"m.third"};
    write_shard(dir, "b-00002.safetensors", n2, 1);
    write_shard(dir, "a-00001.safetensors", n1, 2);
    lt_write_text(lt_path(p, sizeof p, dir, "config.json"), "{}");
    ast_st_set *s = NULL;
    CHECK(ast_st_open_dir(dir, &s) == 0, "open dir: %s", ast_error_get());
    if (s) {
        CHECK(ast_st_count(s) == 3, "3 tensors");
        /* files in name order, header order within a file */
        CHECK(strcmp(ast_st_at(s, 0)->name, "z.first") == 0 && strcmp(ast_st_at(s, 2)->name, "m.third") == 0,
              "order %s %s", ast_st_at(s, 0)->name, ast_st_at(s, 2)->name);
        CHECK(strstr(ast_st_file_of(s, ast_st_find(s, "m.third")), "b-00002"), "file_of shard");
        char h[17];
        snprintf(h, sizeof h, "%s", ast_st_hash(s));
        ast_st_close(s);
        CHECK(ast_st_open_dir(dir, &s) == 0, "reopen: %s", ast_error_get());
        CHECK(s && strcmp(ast_st_hash(s), h) == 0, "folder hash is stable");
        ast_st_close(s);
    }
    /* the same tensor in two files */
    const char *n3[] = {"a.second"};
    write_shard(dir, "c-dup.safetensors", n3, 1);
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "is in both");
    unlink(lt_path(p, sizeof p, dir, "c-dup.safetensors"));

    /* with an index: only the files it names are read, and they must match it */
    write_shard(dir, "stray.safetensors.bak", n3, 1); /* not *.safetensors: ignored */
    const char *index = "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                        "\"z.first\":\"a-00001.safetensors\",\"a.second\":\"a-00001.safetensors\","
                        "\"m.third\":\"b-00002.safetensors\"}}";
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"), index);
    write_shard(dir, "unlisted.safetensors", n3, 1); /* not named by the index: ignored */
    CHECK(ast_st_open_dir(dir, &s) == 0, "open indexed: %s", ast_error_get());
    CHECK(s && ast_st_count(s) == 3, "indexed count");
    ast_st_close(s);
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"),
                  "{\"weight_map\":{\"z.first\":\"a-00001.safetensors\",\"a.second\":\"a-00001.safetensors\","
                  "\"m.third\":\"a-00001.safetensors\"}}");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "says tensor 'm.third' is in");
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"),
                  "{\"weight_map\":{\"z.first\":\"a-00001.safetensors\",\"a.second\":\"a-00001.safetensors\","
                  "\"m.third\":\"b-00002.safetensors\",\"q.fourth\":\"b-00002.safetensors\"}}");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "no shard holds it");
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"),
                  "{\"weight_map\":{\"z.first\":\"a-00001.safetensors\",\"m.third\":\"b-00002.safetensors\"}}");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "not listed in index");
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"),
                  "{\"weight_map\":{\"z.first\":\"a-00003.safetensors\"}}");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "a-00003.safetensors");
    CHECK(strstr(ast_error_get(), "No such file"), "missing shard message: %s", ast_error_get());
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"),
                  "{\"weight_map\":{\"z.first\":\"../a-00001.safetensors\"}}");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "not a file name");
    lt_write_text(lt_path(p, sizeof p, dir, "model.safetensors.index.json"), "[]");
    CHECK_FAILS_WITH(ast_st_open_dir(dir, &s), "weight_map");

    char empty[1024];
    snprintf(empty, sizeof empty, "%s/empty", g_dir);
    mkdir(empty, 0755);
    CHECK_FAILS_WITH(ast_st_open_dir(empty, &s), "has no *.safetensors files");
    CHECK_FAILS_WITH(ast_st_open_dir("/nonexistent/ckpt", &s), "cannot open checkpoint folder");
    CHECK_FAILS_WITH(ast_st_open(dir, &s), "is a folder");
}

/* Files over 256 MiB are hashed by sampling; a sparse 300 MiB file costs no disk. */
static void test_sampled_hash(void) {
    char path[1024];
    lt_path(path, sizeof path, g_dir, "big.safetensors");
    const int64_t n = (300ll << 20) / 4;
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr,
                      "{\"big\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[0,%lld]}}",
                      (long long)n, (long long)(n * 4));
    while (hl % 8) hdr[hl++] = ' ';
    size_t len;
    unsigned char *img = lt_image(hdr, (size_t)hl, UINT64_MAX, 0, &len);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    CHECK(fd >= 0, "create big");
    if (fd < 0) {
        free(img);
        return;
    }
    CHECK(write(fd, img, len) == (ssize_t)len, "write header");
    CHECK(ftruncate(fd, (off_t)(len + (size_t)n * 4)) == 0, "extend sparse");
    close(fd);
    free(img);
    ast_st_set *s = NULL;
    CHECK(ast_st_open(path, &s) == 0, "open big: %s", ast_error_get());
    if (!s) return;
    double t0 = ast_now_sec();
    char h1[17];
    snprintf(h1, sizeof h1, "%s", ast_st_hash(s));
    double dt = ast_now_sec() - t0;
    /* 64 MiB of FNV is ~0.1 s; a full 300 MiB pass would be several times that */
    CHECK(dt < 5.0, "sampled hash took %.2f s", dt);
    ast_st_close(s);
    /* the last byte of the file is in the last sample */
    fd = open(path, O_WRONLY);
    unsigned char one = 1;
    CHECK(pwrite(fd, &one, 1, (off_t)(len + (size_t)n * 4 - 1)) == 1, "poke last byte");
    close(fd);
    CHECK(ast_st_open(path, &s) == 0, "reopen big: %s", ast_error_get());
    if (s) CHECK(strcmp(ast_st_hash(s), h1) != 0, "sampled hash sees the last byte");
    ast_st_close(s);
    unlink(path);
}

/* Seeded corruption of a valid image: every parse must either succeed with in-bounds views or
 * fail with a message (run under ASan/valgrind or the libFuzzer target for the strong form). */
static void test_mutations(void) {
    float a[6];
    ast_test_fill(a, 6, 5, -1, 1);
    ast_st_entry e[] = {{"x.weight", AST_DT_F32, 2, {2, 2}, a}, {"y", AST_DT_BF16, 1, {4}, a}};
    char path[1024];
    lt_path(path, sizeof path, g_dir, "mut.safetensors");
    CHECK(ast_st_write(path, e, 2, NULL, 0) == 0, "write: %s", ast_error_get());
    size_t n = 0;
    unsigned char *orig = (unsigned char *)ast_read_file(path, 1 << 20, &n);
    unlink(path);
    if (!orig) return;
    ast_rng r;
    ast_rng_seed(&r, 99);
    int ok = 0, failed_silently = 0, out_of_bounds = 0;
    for (int it = 0; it < 20000; it++) {
        unsigned char *b = malloc(n);
        memcpy(b, orig, n);
        size_t len = n;
        int kind = ast_rng_below(&r, 4);
        if (kind == 0) {
            b[ast_rng_below(&r, (int)n)] ^= (unsigned char)(1u << ast_rng_below(&r, 8));
        } else if (kind == 1) {
            len = (size_t)ast_rng_below(&r, (int)n);
        } else if (kind == 2) {
            const char digits[] = "0123456789-.e,[]{}\" ";
            b[8 + ast_rng_below(&r, (int)(n - 8 < 200 ? n - 8 : 200))] =
                (unsigned char)digits[ast_rng_below(&r, (int)sizeof digits - 1)];
        } else {
            b[ast_rng_below(&r, 8)] = (unsigned char)ast_rng_next(&r);
        }
        /* copy into an exact-size buffer so an over-read past len is visible to ASan */
        unsigned char *exact = malloc(len ? len : 1);
        memcpy(exact, b, len);
        free(b);
        ast_st_set *s = NULL;
        ast_error_clear();
        if (ast_st_parse_buffer(exact, len, "mut", &s) == 0) {
            ok++;
            for (int i = 0; i < ast_st_count(s); i++) {
                const ast_tensor *t = ast_st_at(s, i);
                const unsigned char *d = t->data;
                if (d < exact || d + t->nbytes > exact + len) out_of_bounds++;
            }
            ast_st_close(s);
        } else if (!ast_error_get()[0]) {
            failed_silently++;
        }
        free(exact);
    }
    free(orig);
    CHECK(out_of_bounds == 0, "%d views out of bounds", out_of_bounds);
    CHECK(failed_silently == 0, "%d failures without a message", failed_silently);
    CHECK(ok > 0, "some mutations still parse (%d)", ok);
}

int main(void) {
    lt_tmpdir(g_dir, sizeof g_dir, "st");
    test_round_trip();
    test_malformed();
    test_sharded();
    test_sampled_hash();
    test_mutations();
    lt_rmtree(g_dir);
    return ast_test_finish("safetensors");
}
