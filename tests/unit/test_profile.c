/* test_profile.c — budget profiles: full round trip (text and file), the minimal form, every
 * invalid field refused with a message naming it, a newer format refused, and the compatibility
 * check against another model, checkpoint, shape or step count. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "profile.h"
#include "test_util.h"

static void make_full(ast_profile *p) {
    ast_profile_init(p, 6);
    p->format_version = AST_PROFILE_FORMAT_VERSION;
    snprintf(p->model_id, sizeof p->model_id, "wan-mini");
    snprintf(p->checkpoint_hash, sizeof p->checkpoint_hash, "0123456789abcdef");
    p->frames = 8;
    p->height = 32;
    p->width = 32;
    p->pixel_frames = 8;
    p->pixel_height = 32;
    p->pixel_width = 32;
    snprintf(p->sampler, sizeof p->sampler, "unipc");
    p->shift = 3.0;
    p->guidance = 5.0;
    const float b[6] = {1.0f, 0.7f, 0.4f, 0.1f, 0.123456789f, 0.0f};
    memcpy(p->budgets, b, sizeof b);
    p->measured_speedup = 2.0312;
    p->predicted_speedup = 2.05;
    p->mse = 1.25e-3;
    p->psnr = 29.03;
    p->ssim = 0.9312;
    p->has_tokenwise = 1;
    p->tokenwise.w_alpha = 1.0f;
    p->tokenwise.w_beta = 0.5f;
    p->tokenwise.cache = AST_CACHE_OUTPUT;
    p->tokenwise.delta_normalize = 1;
    p->tokenwise.sketch_dim = 32;
    p->tokenwise.select_segments = 2; /* searched with --gpus-per-eval 2 */
    snprintf(p->device, sizeof p->device, "cpu (2 threads)");
    p->run_id = 3;
    snprintf(p->date, sizeof p->date, "2026-01-02T03:04:05Z");
    p->evaluations = 950;
    p->device_seconds = 412.5;
}

static void test_round_trip(void) {
    ast_profile p, q;
    make_full(&p);
    char *js = ast_profile_to_json(&p);
    CHECK(js != NULL, "to_json: %s", ast_error_get());
    if (!js) return;
    CHECK(ast_profile_parse(js, "mem", &q) == 0, "parse back: %s\n%s", ast_error_get(), js);
    if (q.budgets) {
        CHECK(q.format_version == 1 && strcmp(q.model_id, "wan-mini") == 0 &&
                  strcmp(q.checkpoint_hash, p.checkpoint_hash) == 0 && q.frames == 8 &&
                  q.height == 32 && q.width == 32 && q.pixel_frames == 8 && q.steps == 6 &&
                  strcmp(q.sampler, "unipc") == 0 && q.shift == 3.0 && q.guidance == 5.0,
              "header fields");
        /* budgets are exact (shortest float text); metrics keep 6 significant digits */
        CHECK(memcmp(q.budgets, p.budgets, sizeof(float) * 6) == 0, "budgets not exact");
        CHECK(fabs(q.measured_speedup - 2.0312) < 1e-9 && fabs(q.mse - 1.25e-3) < 1e-12 &&
                  fabs(q.psnr - 29.03) < 1e-9 && fabs(q.ssim - 0.9312) < 1e-9 &&
                  fabs(q.predicted_speedup - 2.05) < 1e-9,
              "metrics");
        CHECK(q.has_tokenwise && q.tokenwise.w_beta == 0.5f && q.tokenwise.cache == AST_CACHE_OUTPUT &&
                  q.tokenwise.delta_normalize == 1 && q.tokenwise.sketch_dim == 32 &&
                  q.tokenwise.select_segments == 2,
              "tokenwise (select_segments %d)", q.tokenwise.select_segments);
        CHECK(strcmp(q.device, p.device) == 0 && q.run_id == 3 && strcmp(q.date, p.date) == 0 &&
                  q.evaluations == 950 && q.device_seconds == 412.5,
              "provenance and cost");
        /* writing it again gives the same text */
        char *js2 = ast_profile_to_json(&q);
        CHECK(js2 && strcmp(js, js2) == 0, "second round trip differs:\n%s\n%s", js, js2 ? js2 : "");
        free(js2);
        ast_profile_free(&q);
    }
    /* through a file, atomically */
    char path[256];
    snprintf(path, sizeof path, "%s/astraea-test-profile-%d.json",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    CHECK(ast_profile_save(&p, path) == 0, "save: %s", ast_error_get());
    CHECK(ast_profile_load(path, &q) == 0 && q.steps == 6 && strcmp(q.origin, path) == 0,
          "load: %s", ast_error_get());
    ast_profile_free(&q);
    unlink(path);
    CHECK_FAILS_WITH(ast_profile_load(path, &q), "reading profile");
    /* unknown values are written as null and read back unknown; identical output: psnr null */
    p.measured_speedup = NAN;
    p.mse = 0;
    p.psnr = INFINITY;
    free(js);
    js = ast_profile_to_json(&p);
    CHECK(js && strstr(js, "\"measured_speedup\":\tnull") && strstr(js, "\"psnr\":\tnull"),
          "nulls:\n%s", js ? js : "");
    CHECK(js && ast_profile_parse(js, "mem", &q) == 0 && isnan(q.measured_speedup) &&
              isinf(q.psnr),
          "nulls read back: %s", ast_error_get());
    ast_profile_free(&q);
    free(js);
    ast_profile_free(&p);
}

static void test_minimal(void) {
    ast_profile q;
    CHECK(ast_profile_parse("{\"budgets\": [1, 0.5, 0.25, 0]}", "min.json", &q) == 0,
          "minimal: %s", ast_error_get());
    if (q.budgets) {
        CHECK(q.format_version == 0 && q.steps == 4 && q.budgets[1] == 0.5f && q.model_id[0] == 0 &&
                  q.frames == 0 && isnan(q.measured_speedup),
              "minimal fields");
        char *js = ast_profile_to_json(&q);
        CHECK(js && strstr(js, "format_version") == NULL && strstr(js, "budgets"), "minimal written: %s",
              js ? js : "");
        free(js);
        /* the minimal form only checks the step count */
        CHECK(ast_profile_check_compatible(&q, "wan2.1-t2v-14b", "ffffffffffffffff", 21, 60, 104, 4) == 0,
              "minimal compatible: %s", ast_error_get());
        CHECK_FAILS_WITH(ast_profile_check_compatible(&q, "wan-mini", NULL, 8, 32, 32, 20),
                         "has 4 budgets");
        ast_profile_free(&q);
    }
}

/* Each broken profile must be refused, with the field named in the message. */
static void test_invalid(void) {
    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"", "not valid JSON"},
        {"[1, 0.5]", "not a JSON object"},
        {"{\"budgets\": [1, 0.5]", "not valid JSON"},
        {"{\"budgets\": [1, 0.5]} trailing", "not valid JSON"},
        {"{}", "budgets"},
        {"{\"budgets\": []}", "budgets"},
        {"{\"budgets\": \"1,0.5\"}", "budgets"},
        {"{\"budgets\": [1, 1.5]}", "budgets[1]"},
        {"{\"budgets\": [1, -0.1]}", "budgets[1]"},
        {"{\"budgets\": [1, \"0.5\"]}", "budgets[1]"},
        {"{\"budgets\": [1, null]}", "budgets[1]"},
        {"{\"budgets\": [0.9, 0.5]}", "step 0 always runs dense"},
        {"{\"budget\": [1, 0.5]}", "unknown field 'budget'"},
        {"{\"budgets\": [1, 0.5], \"steps\": 2}", "minimal form"},
        {"{\"budgets\": [1], \"budgets\": [1]}", "appears twice"},
#define HEAD "{\"format_version\": 1, \"model_id\": \"wan-mini\", \"steps\": 2, "
        {HEAD "\"budgets\": [1, 0.5, 0.5]}", "'steps' is 2"},
        {"{\"format_version\": 2, \"model_id\": \"m\", \"steps\": 1, \"budgets\": [1]}",
         "newer astraea (format 2 > 1)"},
        {"{\"format_version\": 0, \"model_id\": \"m\", \"steps\": 1, \"budgets\": [1]}", "format_version"},
        {"{\"format_version\": 1.5, \"model_id\": \"m\", \"steps\": 1, \"budgets\": [1]}", "format_version"},
        {"{\"format_version\": 1, \"steps\": 1, \"budgets\": [1]}", "model_id"},
        {"{\"format_version\": 1, \"model_id\": \"\", \"steps\": 1, \"budgets\": [1]}", "model_id"},
        {"{\"format_version\": 1, \"model_id\": 7, \"steps\": 1, \"budgets\": [1]}", "model_id"},
        {"{\"format_version\": 1, \"model_id\": \"m\", \"budgets\": [1]}", "'steps'"},
        {HEAD "\"budgets\": [1, 0.5], \"checkpoint_hash\": \"xyz\"}", "checkpoint_hash"},
        {HEAD "\"budgets\": [1, 0.5], \"checkpoint_hash\": \"0123456789ABCDEF\"}", "checkpoint_hash"},
        {HEAD "\"budgets\": [1, 0.5], \"latent\": [8, 32, 32]}", "latent"},
        {HEAD "\"budgets\": [1, 0.5], \"latent\": {\"frames\": 8, \"height\": 32}}", "latent.width"},
        {HEAD "\"budgets\": [1, 0.5], \"latent\": {\"frames\": 0, \"height\": 32, \"width\": 32}}",
         "latent.frames"},
        {HEAD "\"budgets\": [1, 0.5], \"latent\": {\"frames\": 8, \"height\": 32, \"width\": 32, "
              "\"depth\": 1}}",
         "latent.depth"},
        {HEAD "\"budgets\": [1, 0.5], \"pixels\": {\"frames\": 8, \"height\": -32, \"width\": 32}}",
         "pixels.height"},
        {HEAD "\"budgets\": [1, 0.5], \"sampler\": \"ddim\"}", "sampler"},
        {HEAD "\"budgets\": [1, 0.5], \"shift\": -1}", "shift"},
        {HEAD "\"budgets\": [1, 0.5], \"guidance\": \"5\"}", "guidance"},
        {HEAD "\"budgets\": [1, 0.5], \"measured_speedup\": 0}", "measured_speedup"},
        {HEAD "\"budgets\": [1, 0.5], \"predicted_speedup\": true}", "predicted_speedup"},
        {HEAD "\"budgets\": [1, 0.5], \"quality\": 3}", "quality"},
        {HEAD "\"budgets\": [1, 0.5], \"quality\": {\"mse\": -1}}", "quality.mse"},
        {HEAD "\"budgets\": [1, 0.5], \"quality\": {\"ssim\": 1.5}}", "quality.ssim"},
        {HEAD "\"budgets\": [1, 0.5], \"quality\": {\"lpips\": 0.1}}", "quality.lpips"},
        {HEAD "\"budgets\": [1, 0.5], \"tokenwise\": {\"w_alpha\": 1, \"w_beta\": 0.5}}",
         "tokenwise.cache"},
        {HEAD "\"budgets\": [1, 0.5], \"tokenwise\": {\"w_alpha\": 1, \"w_beta\": 0.5, "
              "\"cache\": \"all\", \"delta_normalize\": 0, \"sketch_dim\": 8}}",
         "tokenwise.cache"},
        {HEAD "\"budgets\": [1, 0.5], \"tokenwise\": {\"w_alpha\": 1, \"w_beta\": 0.5, "
              "\"cache\": \"output\", \"delta_normalize\": 2, \"sketch_dim\": 8}}",
         "tokenwise.delta_normalize"},
        {HEAD "\"budgets\": [1, 0.5], \"tokenwise\": {\"w_alpha\": 1, \"w_beta\": 0.5, "
              "\"cache\": \"output\", \"delta_normalize\": 1, \"sketch_dim\": 8, "
              "\"select_segments\": 17}}",
         "tokenwise.select_segments"},
        {HEAD "\"budgets\": [1, 0.5], \"device\": 5}", "device"},
        {HEAD "\"budgets\": [1, 0.5], \"run_id\": 0}", "run_id"},
        {HEAD "\"budgets\": [1, 0.5], \"date\": \"\"}", "date"},
        {HEAD "\"budgets\": [1, 0.5], \"search_cost\": {\"evaluations\": -1}}",
         "search_cost.evaluations"},
        {HEAD "\"budgets\": [1, 0.5], \"search_cost\": {\"device_seconds\": \"1h\"}}",
         "search_cost.device_seconds"},
        {HEAD "\"budgets\": [1, 0.5], \"speedup\": 2}", "unknown field 'speedup'"},
#undef HEAD
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ast_profile q;
        ast_error_clear();
        int rc = ast_profile_parse(bad[i].json, "bad.json", &q);
        CHECK(rc != 0, "case %zu accepted: %s", i, bad[i].json);
        CHECK(strstr(ast_error_get(), bad[i].needle) && strstr(ast_error_get(), "bad.json"),
              "case %zu: message '%s' lacks '%s'", i, ast_error_get(), bad[i].needle);
        CHECK(q.budgets == NULL, "case %zu: budgets left allocated", i);
        if (rc == 0) ast_profile_free(&q);
    }
}

static void test_compatible(void) {
    ast_profile p;
    make_full(&p);
    snprintf(p.origin, sizeof p.origin, "wan-mini-2x.json");
    CHECK(ast_profile_check_compatible(&p, "wan-mini", "0123456789abcdef", 8, 32, 32, 6) == 0,
          "compatible: %s", ast_error_get());
    CHECK(ast_profile_check_compatible(&p, "wan-mini", NULL, 8, 32, 32, 6) == 0,
          "unknown checkpoint hash is not compared");
    CHECK_FAILS_WITH(ast_profile_check_compatible(&p, "wan2.1-t2v-1.3b", NULL, 8, 32, 32, 6),
                     "was made for model 'wan-mini', not 'wan2.1-t2v-1.3b'");
    CHECK_FAILS_WITH(ast_profile_check_compatible(&p, "wan-mini", "fedcba9876543210", 8, 32, 32, 6),
                     "checkpoint 0123456789abcdef");
    CHECK_FAILS_WITH(ast_profile_check_compatible(&p, "wan-mini", NULL, 8, 32, 32, 20),
                     "--steps 6");
    CHECK_FAILS_WITH(ast_profile_check_compatible(&p, "wan-mini", NULL, 16, 32, 32, 6),
                     "8 x 32 x 32");
    CHECK(strstr(ast_error_get(), "wan-mini-2x.json") != NULL, "names the file: %s", ast_error_get());
    ast_profile_free(&p);
}

int main(void) {
    test_round_trip();
    test_minimal();
    test_invalid();
    test_compatible();
    return ast_test_finish("test_profile");
}
