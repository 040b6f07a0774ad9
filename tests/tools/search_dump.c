/* search_dump.c — prints what a search run decided, for the tool tests that compare two runs
 * (tests/cli/test_search_workers.sh, test_search_mpi.sh):
 *   search_dump DB     the latest run: status, generation, evaluations, best candidate, then
 *                      every candidate (id, generation, index, genome, origin, parents, metrics
 *                      to 17 digits, per-prompt metrics, predicted time, reuse), one a line.
 * Left out: what differs between two runs of one search by nature (times, dates, host, pid, the
 * measured speedup and the run's device seconds). */
#include <stdio.h>

#include "store.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: search_dump DB\n");
        return 2;
    }
    ast_store *s = NULL;
    ast_run_info r;
    ast_cand *v = NULL;
    int n = 0, got = 0, rc = 1;
    int64_t id = 0;
    if (ast_store_open(argv[1], 1, &s) != 0 || (got = ast_store_run_latest(s, &id)) < 0) goto out;
    if (got == 1) {
        fprintf(stderr, "search_dump: no run in %s\n", argv[1]);
        ast_store_close(s);
        return 1;
    }
    if (ast_store_run_get(s, id, &r) != 0) goto out;
    printf("run %lld status %s generation %d evaluations %lld best %lld\n", (long long)r.id,
           ast_run_status_name(r.status), r.generation, (long long)r.evaluations,
           (long long)r.best_candidate);
    ast_run_info_free(&r);
    if (ast_store_cands_load(s, id, &v, &n) != 0) goto out;
    for (int i = 0; i < n; i++) {
        const ast_cand *c = &v[i];
        printf("%lld g%d i%d ", (long long)c->id, c->generation, c->index);
        for (int t = 0; t < c->steps; t++) printf("%s%d", t ? "," : "", c->genome[t]);
        printf(" %s %lld %lld %.17g %.17g %.17g %s %.17g %lld\n", c->origin,
               (long long)c->parent_a, (long long)c->parent_b, c->mse, c->psnr, c->ssim,
               c->per_prompt_json ? c->per_prompt_json : "-", c->predicted_s,
               (long long)c->reused_from);
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "search_dump: %s\n", ast_error_get());
    ast_cands_free(v, n);
    ast_store_close(s);
    return rc;
}
