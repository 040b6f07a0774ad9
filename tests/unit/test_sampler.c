/* test_sampler.c — the flow-matching schedule against wan21.md §3.2 (the integer timesteps the
 * official FlowUniPCMultistepScheduler gives for N=50, shift 5) and against the PyTorch
 * reference's schedule.json fixture; the seeded noise generator's moments. */
#include <cjson/cJSON.h>

#include "sampler.h"
#include "test_util.h"

int main(void) {
    float sig[51];
    int64_t ts[50];
    ast_schedule(50, 5.0f, sig, ts);
    /* from the spec (checked against the official scheduler): first six and last six */
    const int64_t head[6] = {999, 995, 991, 987, 982, 978}, tail[6] = {405, 356, 302, 241, 172, 92};
    for (int i = 0; i < 6; i++) {
        CHECK(ts[i] == head[i], "t[%d] = %lld, want %lld", i, (long long)ts[i], (long long)head[i]);
        CHECK(ts[44 + i] == tail[i], "t[%d] = %lld, want %lld", 44 + i, (long long)ts[44 + i],
              (long long)tail[i]);
    }
    CHECK(fabsf(sig[0] - 0.99980f) < 1e-5f && fabsf(sig[49] - 0.09251f) < 1e-5f && sig[50] == 0,
          "sigmas %g %g %g", sig[0], sig[49], sig[50]);
    /* every value against the reference's schedule.json */
    char path[1024];
    size_t len;
    char *txt = ast_read_file(ast_test_fixture("tiny/schedule.json", path, sizeof path), 1 << 20, &len);
    CHECK(txt != NULL, "fixture %s: %s", path, ast_error_get());
    cJSON *root = txt ? cJSON_Parse(txt) : NULL;
    cJSON *item;
    int cases = 0;
    cJSON_ArrayForEach(item, root) {
        cJSON *jn = cJSON_GetObjectItem(item, "steps"), *js = cJSON_GetObjectItem(item, "shift");
        cJSON *jt = cJSON_GetObjectItem(item, "timesteps"), *jg = cJSON_GetObjectItem(item, "sigmas");
        if (!cJSON_IsNumber(jn) || !cJSON_IsNumber(js) || !cJSON_IsArray(jt) || !cJSON_IsArray(jg)) continue;
        int n = jn->valueint;
        float *s = malloc(sizeof(float) * (n + 1));
        int64_t *t = malloc(sizeof(int64_t) * n);
        ast_schedule(n, (float)js->valuedouble, s, t);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += t[i] != (int64_t)cJSON_GetArrayItem(jt, i)->valuedouble;
        for (int i = 0; i <= n; i++) bad += fabs(s[i] - cJSON_GetArrayItem(jg, i)->valuedouble) > 1e-6;
        CHECK(bad == 0, "schedule N=%d shift=%g: %d values differ from the reference", n, js->valuedouble, bad);
        cases++;
        free(s);
        free(t);
    }
    CHECK(cases >= 2, "schedule.json held %d usable cases", cases);
    cJSON_Delete(root);
    free(txt);
    /* noise: mean ~0, variance ~1, deterministic */
    int64_t n = 200001;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    ast_noise(5, a, n);
    ast_noise(5, b, n);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += a[i] / (double)n;
    for (int64_t i = 0; i < n; i++) v += (a[i] - m) * (a[i] - m) / (double)n;
    CHECK(memcmp(a, b, sizeof(float) * n) == 0, "same seed, same noise");
    CHECK(fabs(m) < 0.01 && fabs(v - 1) < 0.01, "noise mean %g var %g", m, v);
    free(a);
    free(b);
    return ast_test_finish("sampler");
}
