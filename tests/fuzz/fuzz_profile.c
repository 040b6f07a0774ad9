/* fuzz_profile.c — libFuzzer target for the budget profile reader (ast_profile_parse, what
 * astraea-generate --profile and astraea-search --validate read).
 *
 * Oracles beyond "no crash, no sanitizer report": a profile that parses keeps the documented
 * invariants (1 <= steps <= 10000 budgets, each in [0, 1], budgets[0] == 1, known sampler and
 * cache names, hash of 16 hex digits or empty); written back with ast_profile_to_json it parses
 * again to the same budgets, steps, shape and model; the compatibility check accepts the
 * profile's own model/shape/steps and refuses another step count; a failure frees everything
 * and names the input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz_util.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_cstr(data, size);
    ast_profile p;
    ast_error_clear();
    if (ast_profile_parse(text, "fuzz.json", &p) != 0) {
        FZ_ASSERT(p.budgets == NULL, "failed parse kept its budgets");
        FZ_ASSERT(strstr(ast_error_get(), "fuzz.json") != NULL, "error does not name the input: "
                  "'%s'", ast_error_get());
        free(text);
        return 0;
    }
    FZ_ASSERT(p.steps >= 1 && p.steps <= 10000 && p.budgets, "steps %d", p.steps);
    FZ_ASSERT(p.budgets[0] == 1.0f, "budgets[0] = %g", (double)p.budgets[0]);
    for (int i = 0; i < p.steps; i++)
        FZ_ASSERT(p.budgets[i] >= 0 && p.budgets[i] <= 1, "budgets[%d] = %g", i,
                  (double)p.budgets[i]);
    FZ_ASSERT(!p.sampler[0] || !strcmp(p.sampler, "unipc") || !strcmp(p.sampler, "euler"),
              "sampler '%s'", p.sampler);
    FZ_ASSERT(!p.checkpoint_hash[0] || strspn(p.checkpoint_hash, "0123456789abcdef") == 16,
              "hash '%s'", p.checkpoint_hash);
    FZ_ASSERT((p.frames == 0) == (p.height == 0) && (p.frames == 0) == (p.width == 0),
              "latent %dx%dx%d", p.frames, p.height, p.width);

    /* its own model, shape and steps are compatible; another step count is not */
    FZ_ASSERT(ast_profile_check_compatible(&p, p.model_id[0] ? p.model_id : "x", NULL, p.frames,
                                           p.height, p.width, p.steps) == 0,
              "profile incompatible with itself: %s", ast_error_get());
    FZ_ASSERT(ast_profile_check_compatible(&p, NULL, NULL, p.frames, p.height, p.width,
                                           p.steps + 1) != 0,
              "profile accepted for another step count");

    /* round trip */
    char *json = ast_profile_to_json(&p);
    FZ_ASSERT(json != NULL, "to_json: %s", ast_error_get());
    ast_profile q;
    FZ_ASSERT(ast_profile_parse(json, "round trip", &q) == 0, "written profile does not parse "
              "again: %s\n%s", ast_error_get(), json);
    FZ_ASSERT(q.steps == p.steps && q.format_version == p.format_version, "steps/format");
    FZ_ASSERT(memcmp(q.budgets, p.budgets, sizeof *p.budgets * (size_t)p.steps) == 0,
              "budgets changed in the round trip");
    FZ_ASSERT(q.frames == p.frames && q.height == p.height && q.width == p.width, "latent");
    FZ_ASSERT(p.format_version == 0 || strcmp(q.model_id, p.model_id[0] ? p.model_id : "custom") == 0,
              "model_id");
    FZ_ASSERT(strcmp(q.checkpoint_hash, p.checkpoint_hash) == 0, "hash");
    FZ_ASSERT(q.has_tokenwise == p.has_tokenwise, "tokenwise");
    ast_profile_free(&q);
    free(json);
    ast_profile_free(&p);
    free(text);
    return 0;
}
