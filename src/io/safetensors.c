/* safetensors.c — validating mmap reader and atomic writer for the safetensors format
 * (wan21.md §5), plus sharded checkpoint folders and the checkpoint hash.
 *
 * Reading never trusts the file: every length, offset and shape is checked before a view is
 * handed out, so a truncated download, a file of another format or a fuzzer's input gives one
 * error naming the file, the tensor and the problem, never a crash or an out-of-bounds read.
 * ast_st_parse_buffer() is the in-memory entry point (libFuzzer target); ast_st_open() mmaps a
 * file and parses the mapping through the same code. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define ST_MAX_HEADER 100000000ull /* reference reader's MAX_HEADER_SIZE */
#define ST_MAX_INDEX_BYTES (100u << 20) /* a *.safetensors.index.json is ~100 KB in practice */

static const char ST_HINT_CORRUPT[] =
    "the file is truncated or not a safetensors file; re-download it";

typedef struct {
    char *path;                 /* file path, or the name given to ast_st_parse_buffer */
    const unsigned char *base;  /* size bytes: the whole file */
    size_t size;
    size_t header_len;          /* N: the JSON header is base[8 .. 8+N) */
    void *map;                  /* mmap owned by the set, or NULL (caller's buffer) */
    size_t map_len;
} st_file;

struct ast_st_set {
    char *origin;       /* the path or folder the set was opened from (for messages) */
    st_file *files;     /* n_files, in hash order (sorted by name for folders) */
    int n_files;
    ast_tensor *tensors; /* n tensors: per file in header order, files in order */
    int *file_of;        /* file index of each tensor */
    int n, cap;
    int *by_name;        /* tensor indices sorted by name (for ast_st_find) */
    int hash_ready;
    char hash[17];
};

/* ---- errors ------------------------------------------------------------------------------ */

/* Records "safetensors file 'F'[, tensor 'T']: <problem> (<hint>)" and returns -1. */
static int st_bad(const char *file, const char *tensor, const char *hint, const char *fmt, ...)
    AST_PRINTF(4, 5);
static int st_bad(const char *file, const char *tensor, const char *hint, const char *fmt, ...) {
    char problem[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    if (tensor)
        ast_error_set("safetensors file '%s', tensor '%s': %s (%s)", file, tensor, problem,
                      hint ? hint : ST_HINT_CORRUPT);
    else
        ast_error_set("safetensors file '%s': %s (%s)", file, problem,
                      hint ? hint : ST_HINT_CORRUPT);
    return -1;
}

/* ---- set construction -------------------------------------------------------------------- */

static ast_st_set *st_new(const char *origin) {
    ast_st_set *s = ast_calloc(1, sizeof *s, "a safetensors set");
    if (!s) return NULL;
    s->origin = ast_strdup(origin);
    if (!s->origin) {
        free(s);
        return NULL;
    }
    return s;
}

void ast_st_close(ast_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free((char *)s->tensors[i].name);
    for (int i = 0; i < s->n_files; i++) {
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].map_len);
        free(s->files[i].path);
    }
    free(s->files);
    free(s->tensors);
    free(s->file_of);
    free(s->by_name);
    free(s->origin);
    free(s);
}

static int st_reserve(ast_st_set *s, int extra) {
    if (extra <= s->cap - s->n) return 0;
    if (extra > (1 << 28) - s->n) return ast_fail("too many tensors in '%s'", s->origin);
    int cap = s->cap ? s->cap : 64;
    while (cap - s->n < extra) cap *= 2;
    ast_tensor *t = realloc(s->tensors, (size_t)cap * sizeof *t);
    if (!t) return ast_fail("out of host memory reading the header of '%s'", s->origin);
    s->tensors = t;
    int *f = realloc(s->file_of, (size_t)cap * sizeof *f);
    if (!f) return ast_fail("out of host memory reading the header of '%s'", s->origin);
    s->file_of = f;
    s->cap = cap;
    return 0;
}

static int st_add_file_record(ast_st_set *s, const char *path, const void *buf, size_t len) {
    st_file *f = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *f);
    if (!f) return ast_fail("out of host memory opening '%s'", path);
    s->files = f;
    st_file *r = &s->files[s->n_files];
    memset(r, 0, sizeof *r);
    r->path = ast_strdup(path);
    if (!r->path) return -1;
    r->base = buf;
    r->size = len;
    s->n_files++;
    return 0;
}

/* ---- header parsing ---------------------------------------------------------------------- */

static uint64_t st_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Returns the offset of the first invalid UTF-8 sequence, or len when all of it is valid. */
static size_t st_utf8_check(const unsigned char *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

static int st_is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A JSON number that is an exact non-negative integer representable in a double (< 2^53). */
static int st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int st_dtype_parse(const char *s, ast_dtype *out) {
    for (int d = 0; d < AST_DT_COUNT; d++) {
        if (strcmp(s, ast_dtype_name((ast_dtype)d)) == 0) {
            *out = (ast_dtype)d;
            return 0;
        }
    }
    return -1;
}

typedef struct {
    const char *name; /* points into the cJSON tree */
    ast_dtype dtype;
    int ndim;
    int64_t shape[AST_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

static int st_entry_cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int st_entry_cmp_name(const void *a, const void *b) {
    const st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Validates one header entry ("name": {"dtype", "shape", "data_offsets"}) into e. */
static int st_parse_entry(const char *file, const cJSON *item, st_entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return st_bad(file, name, NULL, "header entry is not a JSON object with dtype, shape "
                                        "and data_offsets");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt)) return st_bad(file, name, NULL, "\"dtype\" is missing or not a string");
    if (st_dtype_parse(dt->valuestring, &e->dtype) != 0)
        return st_bad(file, name,
                      "Astraea reads F32, BF16, F16, I64 and I32; convert the checkpoint to "
                      "F32 or BF16",
                      "unsupported dtype '%.32s'", dt->valuestring);
    if (!cJSON_IsArray(sh)) return st_bad(file, name, NULL, "\"shape\" is missing or not an array");
    int nd = cJSON_GetArraySize(sh);
    if (nd > AST_MAX_DIMS)
        return st_bad(file, name, NULL, "shape has %d dimensions, more than the %d supported", nd,
                      AST_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (st_json_uint(d, &v) != 0)
            return st_bad(file, name, NULL,
                          "shape entry %d is not a non-negative integer (shapes hold only whole "
                          "numbers >= 0)",
                          k);
        e->shape[k] = (int64_t)v;
        if (v && numel > (uint64_t)INT64_MAX / v)
            return st_bad(file, name, NULL, "shape has more elements than fit in 64 bits");
        numel *= v;
    }
    size_t esz = ast_dtype_size(e->dtype);
    if (numel > (uint64_t)INT64_MAX / esz)
        return st_bad(file, name, NULL, "shape has more bytes than fit in 64 bits");
    if (!cJSON_IsArray(off)) return st_bad(file, name, NULL, "\"data_offsets\" is missing or not an array");
    if (cJSON_GetArraySize(off) != 2)
        return st_bad(file, name, NULL, "data_offsets has %d entries; it must be [begin, end]",
                      cJSON_GetArraySize(off));
    if (st_json_uint(off->child, &e->begin) != 0 || st_json_uint(off->child->next, &e->end) != 0)
        return st_bad(file, name, NULL, "data_offsets entries must be non-negative integers");
    if (e->end < e->begin)
        return st_bad(file, name, NULL, "data_offsets [%llu, %llu] end before they begin",
                      (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != numel * esz) {
        ast_tensor tmp = {.ndim = e->ndim};
        memcpy(tmp.shape, e->shape, sizeof tmp.shape);
        char sbuf[160];
        return st_bad(file, name, NULL,
                      "data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu "
                      "bytes",
                      (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin), ast_shape_str(&tmp, sbuf, sizeof sbuf),
                      ast_dtype_name(e->dtype), (unsigned long long)(numel * esz));
    }
    return 0;
}

/* Validates the __metadata__ entry: an object of string values (reference reader's rule). */
static int st_check_metadata(const char *file, const cJSON *item) {
    if (!cJSON_IsObject(item))
        return st_bad(file, NULL, NULL, "\"__metadata__\" is not a JSON object");
    for (const cJSON *m = item->child; m; m = m->next)
        if (!cJSON_IsString(m))
            return st_bad(file, NULL, NULL, "\"__metadata__\" value '%s' is not a string",
                          m->string);
    return 0;
}

/* Checks the parsed entries: no duplicate names, and sorted by begin they tile the data buffer
 * [0, data_len) exactly. Sorts `e` by begin. */
static int st_check_layout(const char *file, st_entry *e, int n, uint64_t data_len) {
    if (n > 1) {
        const st_entry **byname = malloc((size_t)n * sizeof *byname);
        if (!byname) return ast_fail("out of host memory reading the header of '%s'", file);
        for (int i = 0; i < n; i++) byname[i] = &e[i];
        qsort(byname, (size_t)n, sizeof *byname, st_entry_cmp_name);
        for (int i = 1; i < n; i++) {
            if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
                st_bad(file, byname[i]->name, NULL, "duplicate key: the header names this tensor twice");
                free(byname);
                return -1;
            }
        }
        free(byname);
    }
    qsort(e, (size_t)n, sizeof *e, st_entry_cmp_begin);
    uint64_t expect = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (e[i].begin > expect)
            return st_bad(file, e[i].name, NULL,
                          "gap in the data buffer: bytes [%llu, %llu) belong to no tensor "
                          "(this tensor begins at %llu)",
                          (unsigned long long)expect, (unsigned long long)e[i].begin,
                          (unsigned long long)e[i].begin);
        if (e[i].begin < expect)
            return st_bad(file, e[i].name, NULL,
                          "overlap: its data_offsets begin at %llu, inside tensor '%s' which "
                          "ends at %llu",
                          (unsigned long long)e[i].begin, prev ? prev : "?",
                          (unsigned long long)expect);
        expect = e[i].end;
        prev = e[i].name;
    }
    if (expect < data_len)
        return st_bad(file, NULL, NULL,
                      "size mismatch: the tensors end at data byte %llu but the file has %llu "
                      "data bytes (%llu trailing bytes after the last tensor)",
                      (unsigned long long)expect, (unsigned long long)data_len,
                      (unsigned long long)(data_len - expect));
    if (expect > data_len)
        return st_bad(file, NULL, NULL,
                      "size mismatch: the tensors need %llu data bytes but the file has only "
                      "%llu (the file is cut short)",
                      (unsigned long long)expect, (unsigned long long)data_len);
    return 0;
}

/* Parses and validates one whole file image buf[0..len) and appends its tensors to s. The
 * buffer must outlive s. On failure s is unchanged except perhaps for its capacity. */
static int st_add_buffer(ast_st_set *s, const void *buf, size_t len, const char *name) {
    const unsigned char *p = buf;
    if (len < 8 || !buf)
        return st_bad(name, NULL, NULL, "empty or too small: %zu bytes, but a safetensors file "
                                        "starts with an 8-byte header length", len);
    uint64_t hlen = st_le64(p);
    if (hlen > ST_MAX_HEADER)
        return st_bad(name, NULL, NULL,
                      "header length %llu is larger than the 100,000,000 bytes allowed",
                      (unsigned long long)hlen);
    if (hlen > len - 8)
        return st_bad(name, NULL, NULL,
                      "header length %llu runs past the end of the file (%zu bytes)",
                      (unsigned long long)hlen, len);
    const unsigned char *h = p + 8;
    size_t n = (size_t)hlen;
    const unsigned char *nul = memchr(h, 0, n);
    if (nul)
        return st_bad(name, NULL, NULL, "header JSON contains a NUL byte at header offset %zu",
                      (size_t)(nul - h));
    size_t bad = st_utf8_check(h, n);
    if (bad != n)
        return st_bad(name, NULL, NULL, "header is not valid UTF-8 (at header offset %zu)", bad);

    /* Parse a NUL-terminated private copy so the JSON parser can never read past the header. */
    char *text = ast_malloc(n + 1, "a safetensors header");
    if (!text) return -1;
    memcpy(text, h, n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        free(text);
        return st_bad(name, NULL, NULL, "header is not valid JSON (parse error near header "
                                        "offset %zu)", at);
    }
    size_t used = (end && end >= text && end <= text + n) ? (size_t)(end - text) : n;
    for (size_t i = used; i < n; i++) {
        if (!st_is_space((unsigned char)text[i])) {
            cJSON_Delete(root);
            free(text);
            return st_bad(name, NULL, NULL,
                          "header is not valid JSON: unexpected text after the JSON object at "
                          "header offset %zu",
                          i);
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        free(text);
        return st_bad(name, NULL, NULL, "header JSON is not an object ({...})");
    }

    int rc = -1, count = 0;
    for (const cJSON *c = root->child; c; c = c->next) count++;
    st_entry *e = ast_calloc((size_t)count + 1, sizeof *e, "safetensors header entries");
    int ne = 0;
    if (!e) goto done;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!c->string) {
            st_bad(name, NULL, NULL, "header entry without a key");
            goto done;
        }
        if (strcmp(c->string, "__metadata__") == 0) {
            if (st_check_metadata(name, c) != 0) goto done;
            continue;
        }
        if (st_parse_entry(name, c, &e[ne]) != 0) goto done;
        ne++;
    }
    /* keep header order for ast_st_at: remember it before st_check_layout sorts */
    st_entry *order = ast_malloc((size_t)ne * sizeof *order + 1, "safetensors header entries");
    if (!order) goto done;
    memcpy(order, e, (size_t)ne * sizeof *order);
    if (st_check_layout(name, e, ne, (uint64_t)(len - 8 - n)) != 0) {
        free(order);
        goto done;
    }
    if (st_reserve(s, ne) != 0 || st_add_file_record(s, name, buf, len) != 0) {
        free(order);
        goto done;
    }
    s->files[s->n_files - 1].header_len = n;
    const unsigned char *data = h + n;
    int first = s->n;
    for (int i = 0; i < ne; i++) {
        ast_tensor *t = &s->tensors[s->n];
        memset(t, 0, sizeof *t);
        char *nm = ast_strdup(order[i].name);
        if (!nm) {
            /* roll back this file's tensors */
            for (int j = first; j < s->n; j++) free((char *)s->tensors[j].name);
            s->n = first;
            free(s->files[s->n_files - 1].path);
            s->n_files--;
            free(order);
            goto done;
        }
        t->name = nm;
        t->dtype = order[i].dtype;
        t->ndim = order[i].ndim;
        memcpy(t->shape, order[i].shape, sizeof t->shape);
        t->data = data + order[i].begin;
        t->nbytes = (size_t)(order[i].end - order[i].begin);
        s->file_of[s->n] = s->n_files - 1;
        s->n++;
    }
    free(order);
    rc = 0;
done:
    free(e);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int st_cmp_index_name(const void *a, const void *b, void *ctx);

/* Sorts tensors by name for lookup and refuses a name held twice (within or across files). */
static int st_finish(ast_st_set *s) {
    free(s->by_name);
    s->by_name = ast_malloc((size_t)s->n * sizeof *s->by_name + 1, "a tensor index");
    if (!s->by_name) return -1;
    for (int i = 0; i < s->n; i++) s->by_name[i] = i;
    qsort_r(s->by_name, (size_t)s->n, sizeof *s->by_name, st_cmp_index_name, s);
    for (int i = 1; i < s->n; i++) {
        int a = s->by_name[i - 1], b = s->by_name[i];
        if (strcmp(s->tensors[a].name, s->tensors[b].name) == 0) {
            const char *fa = s->files[s->file_of[a]].path, *fb = s->files[s->file_of[b]].path;
            if (s->file_of[a] == s->file_of[b])
                return st_bad(fa, s->tensors[a].name, NULL, "duplicate key: the header names "
                                                            "this tensor twice");
            return ast_fail("tensor '%s' is in both '%s' and '%s' (the checkpoint folder holds "
                            "two copies of a tensor: remove the extra file, or keep only one "
                            "checkpoint per folder)",
                            s->tensors[a].name, fa, fb);
        }
    }
    return 0;
}

static int st_cmp_index_name(const void *a, const void *b, void *ctx) {
    const ast_st_set *s = ctx;
    return strcmp(s->tensors[*(const int *)a].name, s->tensors[*(const int *)b].name);
}

int ast_st_parse_buffer(const void *buf, size_t len, const char *name, ast_st_set **out) {
    *out = NULL;
    ast_st_set *s = st_new(name ? name : "<buffer>");
    if (!s) return -1;
    if (st_add_buffer(s, buf, len, s->origin) != 0 || st_finish(s) != 0) {
        ast_st_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* mmaps `path` read-only and appends its tensors to s (the set owns the mapping). */
static int st_add_path(ast_st_set *s, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ast_fail("cannot open safetensors file '%s': %s (check the path)", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ast_fail("cannot stat '%s': %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ast_fail("'%s' is a folder, not a .safetensors file (open it as a checkpoint "
                        "folder instead)", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ast_fail("'%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return st_bad(path, NULL, NULL, "empty or too small: %zu bytes, but a safetensors file "
                                        "starts with an 8-byte header length", size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return ast_fail("cannot mmap '%s': %s", path, strerror(e));
    int before = s->n_files;
    if (st_add_buffer(s, map, size, path) != 0) {
        munmap(map, size);
        return -1;
    }
    if (s->n_files == before) { /* cannot happen: st_add_buffer adds a record on success */
        munmap(map, size);
        return ast_fail("internal error reading '%s'", path);
    }
    s->files[s->n_files - 1].map = map;
    s->files[s->n_files - 1].map_len = size;
    return 0;
}

int ast_st_open(const char *path, ast_st_set **out) {
    *out = NULL;
    ast_st_set *s = st_new(path);
    if (!s) return -1;
    if (st_add_path(s, path) != 0 || st_finish(s) != 0) {
        ast_st_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---- checkpoint folders ------------------------------------------------------------------ */

static int st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int st_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **v;
    int n, cap;
} st_strlist;

static void st_strlist_free(st_strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int st_strlist_add(st_strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return ast_fail("out of host memory listing a folder");
        l->v = v;
        l->cap = cap;
    }
    char *d = ast_strdup(s);
    if (!d) return -1;
    l->v[l->n++] = d;
    return 0;
}

static char *st_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ast_malloc(n, "a path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int st_add_path_in(ast_st_set *s, const char *dir, const char *name) {
    char *p = st_join(dir, name);
    if (!p) return -1;
    int rc = st_add_path(s, p);
    free(p);
    return rc;
}

/* Opens the files a *.safetensors.index.json names and checks that each holds exactly the
 * tensors the index says it does. */
static int st_open_indexed(ast_st_set *s, const char *dir, const char *index_name) {
    char *ipath = st_join(dir, index_name);
    if (!ipath) return -1;
    size_t len = 0;
    char *text = ast_read_file(ipath, ST_MAX_INDEX_BYTES, &len);
    if (!text) {
        free(ipath);
        return -1;
    }
    int rc = -1;
    st_strlist files = {0};
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root || !cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        ast_error_set("index '%s' is not a JSON object with a \"weight_map\" object (the file is "
                      "damaged; re-download it, or delete it to load every *.safetensors file in "
                      "the folder)",
                      ipath);
        goto done;
    }
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !c->string) {
            ast_error_set("index '%s': weight_map entry '%s' is not a file name string", ipath,
                          c->string ? c->string : "?");
            goto done;
        }
        const char *f = c->valuestring;
        if (!f[0] || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            ast_error_set("index '%s': tensor '%s' is mapped to '%s', which is not a file name "
                          "in the checkpoint folder",
                          ipath, c->string, f);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < files.n && !seen; i++) seen = strcmp(files.v[i], f) == 0;
        if (!seen && st_strlist_add(&files, f) != 0) goto done;
    }
    if (files.n == 0) {
        ast_error_set("index '%s' has an empty weight_map (re-download the checkpoint)", ipath);
        goto done;
    }
    qsort(files.v, (size_t)files.n, sizeof *files.v, st_cmp_str);
    for (int i = 0; i < files.n; i++) {
        if (st_add_path_in(s, dir, files.v[i]) != 0) {
            ast_error_prefix("index '%s' names shard '%s'", ipath, files.v[i]);
            goto done;
        }
    }
    if (st_finish(s) != 0) goto done;
    /* every index entry is in the file it names ... */
    for (const cJSON *c = wm->child; c; c = c->next) {
        const ast_tensor *t = ast_st_find(s, c->string);
        char *want = st_join(dir, c->valuestring);
        if (!want) goto done;
        if (!t) {
            ast_error_set("index '%s' says tensor '%s' is in '%s', but no shard holds it (the "
                          "download is incomplete or mixes two checkpoints; re-download it)",
                          ipath, c->string, want);
            free(want);
            goto done;
        }
        const char *got = ast_st_file_of(s, t);
        if (strcmp(got, want) != 0) {
            ast_error_set("index '%s' says tensor '%s' is in '%s', but it is in '%s' (the "
                          "download mixes two checkpoints; re-download it)",
                          ipath, c->string, want, got);
            free(want);
            goto done;
        }
        free(want);
    }
    /* ... and no shard holds a tensor the index does not list */
    for (int i = 0; i < s->n; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(wm, s->tensors[i].name)) {
            ast_error_set("tensor '%s' in '%s' is not listed in index '%s' (the index is out of "
                          "date; re-download the checkpoint)",
                          s->tensors[i].name, s->files[s->file_of[i]].path, ipath);
            goto done;
        }
    }
    rc = 0;
done:
    st_strlist_free(&files);
    cJSON_Delete(root);
    free(text);
    free(ipath);
    return rc;
}

int ast_st_open_dir(const char *dir, ast_st_set **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return ast_fail("cannot open checkpoint folder '%s': %s (pass --checkpoint DIR with a "
                        "Wan2.1 checkpoint folder)",
                        dir, strerror(errno));
    st_strlist shards = {0}, indexes = {0};
    int rc = -1;
    ast_st_set *s = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.') continue;
        if (st_ends_with(nm, ".safetensors.index.json")) {
            if (st_strlist_add(&indexes, nm) != 0) goto done;
        } else if (st_ends_with(nm, ".safetensors")) {
            if (st_strlist_add(&shards, nm) != 0) goto done;
        }
    }
    if (indexes.n > 1) {
        qsort(indexes.v, (size_t)indexes.n, sizeof *indexes.v, st_cmp_str);
        ast_error_set("checkpoint folder '%s' has %d index files ('%s', '%s'%s): keep one "
                      "checkpoint per folder",
                      dir, indexes.n, indexes.v[0], indexes.v[1], indexes.n > 2 ? ", ..." : "");
        goto done;
    }
    if (indexes.n == 0 && shards.n == 0) {
        ast_error_set("checkpoint folder '%s' has no *.safetensors files (pass the folder "
                      "holding diffusion_pytorch_model*.safetensors and config.json)",
                      dir);
        goto done;
    }
    s = st_new(dir);
    if (!s) goto done;
    if (indexes.n == 1) {
        if (st_open_indexed(s, dir, indexes.v[0]) != 0) goto done;
    } else {
        qsort(shards.v, (size_t)shards.n, sizeof *shards.v, st_cmp_str);
        for (int i = 0; i < shards.n; i++)
            if (st_add_path_in(s, dir, shards.v[i]) != 0) goto done;
        if (st_finish(s) != 0) goto done;
    }
    rc = 0;
done:
    closedir(d);
    st_strlist_free(&shards);
    st_strlist_free(&indexes);
    if (rc != 0) {
        ast_st_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---- queries ----------------------------------------------------------------------------- */

int ast_st_count(const ast_st_set *s) { return s ? s->n : 0; }

const ast_tensor *ast_st_at(const ast_st_set *s, int i) {
    return (s && i >= 0 && i < s->n) ? &s->tensors[i] : NULL;
}

const ast_tensor *ast_st_find(const ast_st_set *s, const char *name) {
    if (!s || !name || !s->by_name) return NULL;
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->tensors[s->by_name[mid]].name);
        if (c == 0) return &s->tensors[s->by_name[mid]];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *ast_st_file_of(const ast_st_set *s, const ast_tensor *t) {
    if (!s || !t) return "?";
    if (s->n && t >= s->tensors && t < s->tensors + s->n)
        return s->files[s->file_of[t - s->tensors]].path;
    /* a copy of a view (e.g. a model weight): look it up by name */
    const ast_tensor *f = t->name ? ast_st_find(s, t->name) : NULL;
    return f ? s->files[s->file_of[f - s->tensors]].path : s->origin;
}

const ast_tensor *ast_st_require(const ast_st_set *s, const char *name, const char *what_for) {
    const ast_tensor *t = ast_st_find(s, name);
    if (!t)
        ast_error_set("'%s' has no tensor '%s' (needed for %s; check that this is the right "
                      "file)",
                      s ? s->origin : "?", name, what_for ? what_for : "this input");
    return t;
}

/* ---- hash -------------------------------------------------------------------------------- */

#define ST_FNV_OFFSET 0xcbf29ce484222325ull
#define ST_FNV_PRIME 0x100000001b3ull
#define ST_HASH_FULL_LIMIT (256ull << 20) /* files up to 256 MiB are hashed in full */
#define ST_HASH_SAMPLES 64
#define ST_HASH_SAMPLE_BYTES (1ull << 20)

static uint64_t st_fnv(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= ST_FNV_PRIME;
    }
    return h;
}

/* FNV-1a 64 over the files in set order (sorted by name for folders). A file up to 256 MiB
 * is hashed byte for byte. A larger file (a real Wan2.1 checkpoint: 5.7 GB for 1.3B, 57 GB for
 * 14B) is hashed by sampling, so identifying it takes milliseconds instead of a full read:
 * its 8-byte size (little-endian), then its first 8+N bytes (length + JSON header: names,
 * dtypes, shapes, offsets), then 64 chunks of 1 MiB of the data buffer at offsets
 * hdr + k*(data_len - 1 MiB)/63, k = 0..63 (the first and last MiB included). Two files that
 * differ only outside the samples hash equal; profiles keyed by this hash are then shared, which
 * is harmless for same-architecture checkpoints. */
const char *ast_st_hash(ast_st_set *s) {
    if (!s) return "0000000000000000";
    if (s->hash_ready) return s->hash;
    uint64_t h = ST_FNV_OFFSET;
    for (int f = 0; f < s->n_files; f++) {
        const st_file *fl = &s->files[f];
        if (fl->size <= ST_HASH_FULL_LIMIT) {
            h = st_fnv(h, fl->base, fl->size);
            continue;
        }
        unsigned char sz[8];
        for (int i = 0; i < 8; i++) sz[i] = (unsigned char)((uint64_t)fl->size >> (8 * i));
        h = st_fnv(h, sz, 8);
        size_t hdr = 8 + fl->header_len;
        h = st_fnv(h, fl->base, hdr);
        size_t data_len = fl->size - hdr;
        size_t chunk = data_len < ST_HASH_SAMPLE_BYTES ? data_len : ST_HASH_SAMPLE_BYTES;
        size_t span = data_len - chunk;
        for (int k = 0; k < ST_HASH_SAMPLES; k++) {
            size_t off = span / (ST_HASH_SAMPLES - 1) * (size_t)k +
                         span % (ST_HASH_SAMPLES - 1) * (size_t)k / (ST_HASH_SAMPLES - 1);
            h = st_fnv(h, fl->base + hdr + off, chunk);
        }
    }
    snprintf(s->hash, sizeof s->hash, "%016llx", (unsigned long long)h);
    s->hash_ready = 1;
    return s->hash;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} st_buf;

static void st_buf_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void st_buf_printf(st_buf *b, const char *fmt, ...) AST_PRINTF(2, 3);
static void st_buf_printf(st_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) st_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends s as a JSON string literal (quotes, backslashes and control bytes escaped). */
static void st_buf_json_str(st_buf *b, const char *s) {
    st_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            st_buf_put(b, e, 2);
        } else if (c < 0x20) {
            st_buf_printf(b, "\\u%04x", c);
        } else {
            st_buf_put(b, (const char *)&c, 1);
        }
    }
    st_buf_put(b, "\"", 1);
}

int ast_st_write(const char *path, const ast_st_entry *entries, int n, const char *const *metadata,
                 int n_meta) {
    if (n < 0 || n_meta < 0 || (n > 0 && !entries) || (n_meta > 0 && !metadata))
        return ast_fail("writing '%s': bad arguments (n=%d, n_meta=%d)", path, n, n_meta);
    st_buf b = {0};
    uint64_t offset = 0;
    int rc = -1;
    st_buf_put(&b, "{", 1);
    int first = 1;
    if (n_meta > 0) {
        st_buf_json_str(&b, "__metadata__");
        st_buf_put(&b, ":{", 2);
        for (int i = 0; i < n_meta; i++) {
            const char *k = metadata[2 * i], *v = metadata[2 * i + 1];
            if (!k || !v) {
                ast_error_set("writing '%s': metadata pair %d has a NULL key or value", path, i);
                goto done;
            }
            if (i) st_buf_put(&b, ",", 1);
            st_buf_json_str(&b, k);
            st_buf_put(&b, ":", 1);
            st_buf_json_str(&b, v);
        }
        st_buf_put(&b, "}", 1);
        first = 0;
    }
    for (int i = 0; i < n; i++) {
        const ast_st_entry *e = &entries[i];
        if (!e->name || !e->name[0] || strcmp(e->name, "__metadata__") == 0) {
            ast_error_set("writing '%s': entry %d has no usable name", path, i);
            goto done;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(entries[j].name, e->name) == 0) {
                ast_error_set("writing '%s': tensor '%s' is given twice", path, e->name);
                goto done;
            }
        }
        size_t esz = ast_dtype_size(e->dtype);
        if ((unsigned)e->dtype >= AST_DT_COUNT || esz == 0 || e->ndim < 0 ||
            e->ndim > AST_MAX_DIMS) {
            ast_error_set("writing '%s': tensor '%s' has a bad dtype or ndim (%d)", path,
                          e->name, e->ndim);
            goto done;
        }
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            uint64_t v = (uint64_t)e->shape[d];
            if (e->shape[d] < 0 || e->shape[d] > ((int64_t)1 << 53) ||
                (v && numel > (uint64_t)INT64_MAX / v)) {
                ast_error_set("writing '%s': tensor '%s' has a bad shape", path, e->name);
                goto done;
            }
            numel *= v;
        }
        if (numel > (uint64_t)INT64_MAX / esz || (numel && !e->data)) {
            ast_error_set("writing '%s': tensor '%s' is too large or has no data", path, e->name);
            goto done;
        }
        uint64_t bytes = numel * esz;
        if (!first) st_buf_put(&b, ",", 1);
        first = 0;
        st_buf_json_str(&b, e->name);
        st_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", ast_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++)
            st_buf_printf(&b, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        st_buf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                      (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    st_buf_put(&b, "}", 1);
    while (!b.oom && b.n % 8) st_buf_put(&b, " ", 1);
    if (b.oom) {
        ast_error_set("writing '%s': out of host memory building the header", path);
        goto done;
    }
    if (b.n > ST_MAX_HEADER) {
        ast_error_set("writing '%s': the header would be %zu bytes, over the 100,000,000 limit",
                      path, b.n);
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
    ast_outfile o;
    if (ast_outfile_open(&o, path) != 0) goto done;
    if (ast_outfile_write(&o, len8, 8) != 0 || ast_outfile_write(&o, b.p, b.n) != 0) {
        ast_outfile_abort(&o);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const ast_st_entry *e = &entries[i];
        size_t bytes = ast_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) bytes *= (size_t)e->shape[d];
        if (ast_outfile_write(&o, e->data, bytes) != 0) {
            ast_outfile_abort(&o);
            goto done;
        }
    }
    rc = ast_outfile_commit(&o);
done:
    free(b.p);
    return rc;
}
