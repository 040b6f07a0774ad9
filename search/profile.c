/* profile.c — reading, validating, writing and checking budget profiles (see profile.h and
 * docs/profile-format.md). Every field is validated by one of the small get_* helpers below;
 * each failure message names the file, the field (dotted path), what was expected and what was
 * there. */
#include "profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define PROFILE_MAX_STEPS 10000
#define PROFILE_MAX_DIM 100000

int ast_profile_init(ast_profile *p, int steps) {
    memset(p, 0, sizeof *p);
    p->shift = p->guidance = NAN;
    p->measured_speedup = p->predicted_speedup = NAN;
    p->mse = p->psnr = p->ssim = NAN;
    p->evaluations = -1;
    p->device_seconds = NAN;
    p->steps = steps;
    if (steps > 0) {
        p->budgets = ast_calloc((size_t)steps, sizeof *p->budgets, "profile budgets");
        if (!p->budgets) return -1;
    }
    return 0;
}

void ast_profile_free(ast_profile *p) {
    free(p->budgets);
    p->budgets = NULL;
}

/* ---- reading ------------------------------------------------------------------------------- */

typedef struct {
    const char *origin;
} rd;

static int bad(const rd *r, const char *field, const char *want, const cJSON *got) {
    char shown[64] = "nothing";
    if (got) {
        char *txt = cJSON_PrintUnformatted(got);
        if (txt) {
            snprintf(shown, sizeof shown, "%.40s%s", txt, strlen(txt) > 40 ? "..." : "");
            cJSON_free(txt);
        }
    }
    return ast_fail("profile '%s': field '%s' must be %s, got %s", r->origin, field, want, shown);
}

/* Refuses duplicate keys and keys not in `allowed` (NULL-terminated). */
static int check_keys(const rd *r, const cJSON *obj, const char *where,
                      const char *const *allowed) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++) ok |= strcmp(it->string, allowed[i]) == 0;
        if (!ok) {
            char list[512] = "";
            for (int i = 0; allowed[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                         allowed[i]);
            return ast_fail("profile '%s': unknown field '%s%s%s' (the fields are: %s)",
                            r->origin, where, where[0] ? "." : "", it->string, list);
        }
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (strcmp(o->string, it->string) == 0)
                return ast_fail("profile '%s': field '%s%s%s' appears twice", r->origin, where,
                                where[0] ? "." : "", it->string);
    }
    return 0;
}

static void path_join(char *out, size_t len, const char *where, const char *key) {
    snprintf(out, len, "%s%s%s", where, where[0] ? "." : "", key);
}

/* Integer field in [lo, hi]. Absent: *out untouched unless required. */
static int get_int(const rd *r, const cJSON *obj, const char *where, const char *key, int64_t lo,
                   int64_t hi, int required, int64_t *out) {
    char field[96], want[96];
    path_join(field, sizeof field, where, key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    snprintf(want, sizeof want, "a whole number in [%lld, %lld]", (long long)lo, (long long)hi);
    if (!v) return required ? bad(r, field, want, NULL) : 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return bad(r, field, want, v);
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* Number field in [lo, hi]; null allowed when nullable (-> NAN). */
static int get_num(const rd *r, const cJSON *obj, const char *where, const char *key, double lo,
                   double hi, int nullable, double *out) {
    char field[96], want[96];
    path_join(field, sizeof field, where, key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    snprintf(want, sizeof want, "a number in [%g, %g]%s", lo, hi, nullable ? " or null" : "");
    if (!v) return 0;
    if (nullable && cJSON_IsNull(v)) {
        *out = NAN;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return bad(r, field, want, v);
    *out = v->valuedouble;
    return 0;
}

/* String field of at most len-1 bytes; one of `choices` when given. */
static int get_str(const rd *r, const cJSON *obj, const char *where, const char *key,
                   const char *const *choices, int required, char *out, size_t len) {
    char field[96], want[160];
    path_join(field, sizeof field, where, key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (choices) {
        snprintf(want, sizeof want, "one of");
        for (int i = 0; choices[i]; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s \"%s\"", i ? "," : "",
                     choices[i]);
    } else {
        snprintf(want, sizeof want, "a string of 1 to %zu characters", len - 1);
    }
    if (!v) return required ? bad(r, field, want, NULL) : 0;
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= len)
        return bad(r, field, want, v);
    if (choices) {
        int ok = 0;
        for (int i = 0; choices[i]; i++) ok |= strcmp(v->valuestring, choices[i]) == 0;
        if (!ok) return bad(r, field, want, v);
    }
    snprintf(out, len, "%s", v->valuestring);
    return 0;
}

/* Optional object field: NULL when absent or null; an error when another type. */
static int get_obj(const rd *r, const cJSON *obj, const char *key, const char *const *allowed,
                   const cJSON **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsObject(v)) return bad(r, key, "an object", v);
    if (check_keys(r, v, key, allowed) != 0) return -1;
    *out = v;
    return 0;
}

static int get_shape(const rd *r, const cJSON *root, const char *key, int *f, int *h, int *w) {
    static const char *const keys[] = {"frames", "height", "width", NULL};
    const cJSON *o;
    if (get_obj(r, root, key, keys, &o) != 0) return -1;
    if (!o) return 0;
    int64_t v[3];
    for (int i = 0; i < 3; i++)
        if (get_int(r, o, key, keys[i], 1, PROFILE_MAX_DIM, 1, &v[i]) != 0) return -1;
    *f = (int)v[0];
    *h = (int)v[1];
    *w = (int)v[2];
    return 0;
}

static int get_budgets(const rd *r, const cJSON *root, int steps_given, ast_profile *p) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "budgets");
    if (!b || !cJSON_IsArray(b) || cJSON_GetArraySize(b) < 1 ||
        cJSON_GetArraySize(b) > PROFILE_MAX_STEPS)
        return bad(r, "budgets", "a list of 1 to 10000 numbers in [0, 1]", b);
    int n = cJSON_GetArraySize(b);
    if (steps_given && n != p->steps)
        return ast_fail("profile '%s': 'budgets' has %d values but 'steps' is %d (one budget per "
                        "denoising step)",
                        r->origin, n, p->steps);
    p->steps = n;
    p->budgets = ast_calloc((size_t)n, sizeof *p->budgets, "profile budgets");
    if (!p->budgets) return -1;
    int i = 0;
    for (const cJSON *v = b->child; v; v = v->next, i++) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 1) {
            char field[32];
            snprintf(field, sizeof field, "budgets[%d]", i);
            return bad(r, field, "a number in [0, 1]", v);
        }
        p->budgets[i] = (float)v->valuedouble;
    }
    if (p->budgets[0] != 1.0f)
        return ast_fail("profile '%s': budgets[0] is %g, but step 0 always runs dense: it must "
                        "be 1",
                        r->origin, (double)p->budgets[0]);
    return 0;
}

static int parse_root(const rd *r, const cJSON *root, ast_profile *p) {
    static const char *const top[] = {
        "format_version", "model_id", "checkpoint_hash", "latent", "pixels", "steps",
        "sampler", "shift", "guidance", "budgets", "measured_speedup", "predicted_speedup",
        "quality", "tokenwise", "device", "run_id", "date", "search_cost", NULL};
    static const char *const minimal[] = {"budgets", NULL};
    if (!cJSON_IsObject(root))
        return ast_fail("profile '%s' is not a JSON object (a profile is {\"budgets\": [...]} "
                        "or the full form of docs/profile-format.md)",
                        r->origin);
    int64_t v = 0;
    if (!cJSON_GetObjectItemCaseSensitive(root, "format_version")) {
        /* the minimal form: budgets only */
        for (const cJSON *it = root->child; it; it = it->next)
            if (strcmp(it->string, "budgets") != 0)
                return ast_fail("profile '%s': unknown field '%s' (without 'format_version' a "
                                "profile is the minimal form {\"budgets\": [...]}; the full form "
                                "is in docs/profile-format.md)",
                                r->origin, it->string);
        if (check_keys(r, root, "", minimal) != 0) return -1; /* duplicates */
        return get_budgets(r, root, 0, p);
    }
    if (check_keys(r, root, "", top) != 0) return -1;
    if (get_int(r, root, "", "format_version", 1, 1000000, 1, &v) != 0) return -1;
    if (v > AST_PROFILE_FORMAT_VERSION)
        return ast_fail("profile '%s' was made by a newer astraea (format %lld > %d); upgrade "
                        "astraea",
                        r->origin, (long long)v, AST_PROFILE_FORMAT_VERSION);
    p->format_version = (int)v;
    if (get_str(r, root, "", "model_id", NULL, 1, p->model_id, sizeof p->model_id) != 0)
        return -1;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "checkpoint_hash");
    if (h && !cJSON_IsNull(h)) {
        int ok = cJSON_IsString(h) && strlen(h->valuestring) == 16;
        for (int i = 0; ok && i < 16; i++) ok = strchr("0123456789abcdef", h->valuestring[i]) != NULL;
        if (!ok) return bad(r, "checkpoint_hash", "16 lower-case hex digits or null", h);
        snprintf(p->checkpoint_hash, sizeof p->checkpoint_hash, "%s", h->valuestring);
    }
    if (get_shape(r, root, "latent", &p->frames, &p->height, &p->width) != 0 ||
        get_shape(r, root, "pixels", &p->pixel_frames, &p->pixel_height, &p->pixel_width) != 0)
        return -1;
    if (get_int(r, root, "", "steps", 1, PROFILE_MAX_STEPS, 1, &v) != 0) return -1;
    p->steps = (int)v;
    static const char *const samplers[] = {"unipc", "euler", NULL};
    if (get_str(r, root, "", "sampler", samplers, 0, p->sampler, sizeof p->sampler) != 0 ||
        get_num(r, root, "", "shift", 1e-6, 1e6, 1, &p->shift) != 0 ||
        get_num(r, root, "", "guidance", 0, 1e6, 1, &p->guidance) != 0 ||
        get_budgets(r, root, 1, p) != 0 ||
        get_num(r, root, "", "measured_speedup", 1e-6, 1e6, 1, &p->measured_speedup) != 0 ||
        get_num(r, root, "", "predicted_speedup", 1e-6, 1e6, 1, &p->predicted_speedup) != 0)
        return -1;

    static const char *const qkeys[] = {"mse", "psnr", "ssim", NULL};
    const cJSON *q;
    if (get_obj(r, root, "quality", qkeys, &q) != 0) return -1;
    if (q && (get_num(r, q, "quality", "mse", 0, 1e300, 1, &p->mse) != 0 ||
              get_num(r, q, "quality", "psnr", -1e6, 1e6, 1, &p->psnr) != 0 ||
              get_num(r, q, "quality", "ssim", -1, 1, 1, &p->ssim) != 0))
        return -1;
    if (p->mse == 0 && isnan(p->psnr)) p->psnr = INFINITY; /* identical: written as null */

    static const char *const tkeys[] = {"w_alpha", "w_beta", "cache", "delta_normalize",
                                        "sketch_dim", "select_segments", NULL};
    const cJSON *t;
    if (get_obj(r, root, "tokenwise", tkeys, &t) != 0) return -1;
    if (t) {
        static const char *const caches[] = {"residual", "output", NULL};
        /* every option is required: a profile says exactly what it was searched with */
        char cache[16] = "";
        double wa = 0, wb = 0;
        int64_t dn = 0, sk = 0, sg = 1;
        const char *need[] = {"w_alpha", "w_beta", "cache"};
        for (int i = 0; i < 3; i++)
            if (!cJSON_GetObjectItemCaseSensitive(t, need[i])) {
                char field[48];
                snprintf(field, sizeof field, "tokenwise.%s", need[i]);
                return bad(r, field, "present (the tokenwise object lists every option)", NULL);
            }
        if (get_num(r, t, "tokenwise", "w_alpha", -1e6, 1e6, 0, &wa) != 0 ||
            get_num(r, t, "tokenwise", "w_beta", -1e6, 1e6, 0, &wb) != 0 ||
            get_str(r, t, "tokenwise", "cache", caches, 1, cache, sizeof cache) != 0 ||
            get_int(r, t, "tokenwise", "delta_normalize", 0, 1, 1, &dn) != 0 ||
            get_int(r, t, "tokenwise", "sketch_dim", 0, 65536, 1, &sk) != 0 ||
            get_int(r, t, "tokenwise", "select_segments", 1, AST_MAX_RANKS, 0, &sg) != 0)
            return -1;
        p->tokenwise.select_segments = (int)sg;
        p->has_tokenwise = 1;
        p->tokenwise.w_alpha = (float)wa;
        p->tokenwise.w_beta = (float)wb;
        p->tokenwise.cache = strcmp(cache, "output") == 0 ? AST_CACHE_OUTPUT : AST_CACHE_RESIDUAL;
        p->tokenwise.delta_normalize = (int)dn;
        p->tokenwise.sketch_dim = (int)sk;
    }
    if (get_str(r, root, "", "device", NULL, 0, p->device, sizeof p->device) != 0 ||
        get_str(r, root, "", "date", NULL, 0, p->date, sizeof p->date) != 0 ||
        get_int(r, root, "", "run_id", 1, INT64_C(1) << 53, 0, &p->run_id) != 0)
        return -1;
    static const char *const ckeys[] = {"evaluations", "device_seconds", NULL};
    const cJSON *c;
    if (get_obj(r, root, "search_cost", ckeys, &c) != 0) return -1;
    if (c && (get_int(r, c, "search_cost", "evaluations", 0, INT64_C(1) << 53, 0,
                      &p->evaluations) != 0 ||
              get_num(r, c, "search_cost", "device_seconds", 0, 1e15, 1, &p->device_seconds) != 0))
        return -1;
    return 0;
}

int ast_profile_parse(const char *json, const char *origin, ast_profile *p) {
    ast_profile_init(p, 0);
    snprintf(p->origin, sizeof p->origin, "%s", origin);
    rd r = {origin};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) {
        long off = end ? (long)(end - json) : -1;
        return ast_fail("profile '%s' is not valid JSON (error near byte %ld)", origin, off);
    }
    int rc = parse_root(&r, root, p);
    cJSON_Delete(root);
    if (rc != 0) ast_profile_free(p);
    return rc;
}

int ast_profile_load(const char *path, ast_profile *p) {
    char *text = ast_read_file(path, AST_PROFILE_MAX_BYTES, NULL);
    if (!text) {
        ast_profile_init(p, 0);
        ast_error_prefix("reading profile");
        return -1;
    }
    int rc = ast_profile_parse(text, path, p);
    free(text);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Shortest decimal that reads back as the same float. */
static cJSON *float_item(float v) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

/* Numbers rounded to 6 significant digits (enough for speedups and metrics; stable across a
 * read/write round trip); NAN/inf -> null. */
static cJSON *num_item(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    snprintf(buf, sizeof buf, "%.6g", v);
    return cJSON_CreateRaw(buf);
}

typedef struct {
    int ok;
} wr;

static cJSON *add(wr *w, cJSON *obj, const char *key, cJSON *item) {
    if (!item || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        w->ok = 0;
        return NULL;
    }
    return item;
}

static void add_shape(wr *w, cJSON *root, const char *key, int f, int h, int wd) {
    if (f <= 0) return;
    cJSON *o = add(w, root, key, cJSON_CreateObject());
    if (!o) return;
    add(w, o, "frames", cJSON_CreateNumber(f));
    add(w, o, "height", cJSON_CreateNumber(h));
    add(w, o, "width", cJSON_CreateNumber(wd));
}

char *ast_profile_to_json(const ast_profile *p) {
    wr w = {1};
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        ast_error_set("out of memory writing a profile");
        return NULL;
    }
    if (p->format_version > 0) {
        add(&w, root, "format_version", cJSON_CreateNumber(AST_PROFILE_FORMAT_VERSION));
        add(&w, root, "model_id", cJSON_CreateString(p->model_id[0] ? p->model_id : "custom"));
        add(&w, root, "checkpoint_hash",
            p->checkpoint_hash[0] ? cJSON_CreateString(p->checkpoint_hash) : cJSON_CreateNull());
        add_shape(&w, root, "latent", p->frames, p->height, p->width);
        add_shape(&w, root, "pixels", p->pixel_frames, p->pixel_height, p->pixel_width);
        add(&w, root, "steps", cJSON_CreateNumber(p->steps));
        if (p->sampler[0]) add(&w, root, "sampler", cJSON_CreateString(p->sampler));
        add(&w, root, "shift", num_item(p->shift));
        add(&w, root, "guidance", num_item(p->guidance));
    }
    cJSON *b = add(&w, root, "budgets", cJSON_CreateArray());
    for (int t = 0; b && t < p->steps; t++) {
        cJSON *it = float_item(p->budgets[t]);
        if (!it || !cJSON_AddItemToArray(b, it)) {
            cJSON_Delete(it);
            w.ok = 0;
        }
    }
    if (p->format_version > 0) {
        add(&w, root, "measured_speedup", num_item(p->measured_speedup));
        add(&w, root, "predicted_speedup", num_item(p->predicted_speedup));
        cJSON *q = add(&w, root, "quality", cJSON_CreateObject());
        if (q) {
            add(&w, q, "mse", num_item(p->mse));
            add(&w, q, "psnr", num_item(p->psnr)); /* null when identical (mse 0) */
            add(&w, q, "ssim", num_item(p->ssim));
        }
        if (p->has_tokenwise) {
            cJSON *t = add(&w, root, "tokenwise", cJSON_CreateObject());
            if (t) {
                add(&w, t, "w_alpha", float_item(p->tokenwise.w_alpha));
                add(&w, t, "w_beta", float_item(p->tokenwise.w_beta));
                add(&w, t, "cache",
                    cJSON_CreateString(p->tokenwise.cache == AST_CACHE_OUTPUT ? "output"
                                                                             : "residual"));
                add(&w, t, "delta_normalize", cJSON_CreateNumber(p->tokenwise.delta_normalize));
                add(&w, t, "sketch_dim", cJSON_CreateNumber(p->tokenwise.sketch_dim));
                if (p->tokenwise.select_segments > 1) /* per-GPU selection over that many GPUs */
                    add(&w, t, "select_segments",
                        cJSON_CreateNumber(p->tokenwise.select_segments));
            }
        }
        if (p->device[0]) add(&w, root, "device", cJSON_CreateString(p->device));
        if (p->run_id > 0) add(&w, root, "run_id", cJSON_CreateNumber((double)p->run_id));
        if (p->date[0]) add(&w, root, "date", cJSON_CreateString(p->date));
        if (p->evaluations >= 0) {
            cJSON *c = add(&w, root, "search_cost", cJSON_CreateObject());
            if (c) {
                add(&w, c, "evaluations", cJSON_CreateNumber((double)p->evaluations));
                add(&w, c, "device_seconds", num_item(p->device_seconds));
            }
        }
    }
    char *text = w.ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        ast_error_set("out of memory writing a profile");
        return NULL;
    }
    /* cJSON's allocator is malloc unless hooks are installed (they are not): free() is right */
    return text;
}

int ast_profile_save(const ast_profile *p, const char *path) {
    char *text = ast_profile_to_json(p);
    if (!text) return -1;
    ast_outfile o;
    int rc = ast_outfile_open(&o, path);
    if (rc == 0) {
        rc = ast_outfile_write(&o, text, strlen(text));
        if (rc == 0) rc = ast_outfile_write(&o, "\n", 1);
        if (rc == 0) rc = ast_outfile_commit(&o);
        else ast_outfile_abort(&o);
    }
    free(text);
    return rc;
}

/* ---- compatibility ------------------------------------------------------------------------- */

int ast_profile_check_compatible(const ast_profile *p, const char *model_id,
                                 const char *checkpoint_hash, int frames, int height, int width,
                                 int steps) {
    const char *o = p->origin[0] ? p->origin : "(built in)";
    if (p->model_id[0] && model_id && strcmp(p->model_id, model_id) != 0)
        return ast_fail("profile '%s' was made for model '%s', not '%s' (its budgets were "
                        "searched on another network; run astraea-search for this model)",
                        o, p->model_id, model_id);
    if (p->checkpoint_hash[0] && checkpoint_hash && checkpoint_hash[0] &&
        strcmp(p->checkpoint_hash, checkpoint_hash) != 0)
        return ast_fail("profile '%s' was made for checkpoint %s, but this checkpoint hashes to "
                        "%s (other weights: run astraea-search on this checkpoint)",
                        o, p->checkpoint_hash, checkpoint_hash);
    if (p->steps != steps)
        return ast_fail("profile '%s' has %d budgets (one per step) but this run has %d steps "
                        "(pass --steps %d, or search a profile for %d steps)",
                        o, p->steps, steps, p->steps, steps);
    if (p->frames > 0 && (p->frames != frames || p->height != height || p->width != width))
        return ast_fail("profile '%s' was made for latent frames x height x width = %d x %d x %d, "
                        "this run is %d x %d x %d (its speedup and quality hold only for that "
                        "shape: use that shape, or search a profile for this one)",
                        o, p->frames, p->height, p->width, frames, height, width);
    return 0;
}
