/* astraea-export — writes the budget profile of a search run (docs/profile-format.md): the
 * run's best candidate, a candidate by id, or the best-quality member of the Pareto front at a
 * chosen speedup; optionally a PNG plot of the front and of the chosen budget curve. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "plot.h"
#include "search.h"

int main(int argc, char **argv) {
    const char *db = AST_STORE_DEFAULT_PATH, *out = NULL, *plot = NULL;
    int run = 0, cand = 0;
    double speedup = NAN;
    ast_arg args[] = {
        {"--db", AST_ARG_STRING, &db, "PATH", "search database (default ./astraea-search.db)", 0, 0, 0},
        {"--run", AST_ARG_INT, &run, "N", "run to export (default: the latest; see astraea-search --list)", 1, 2147483647, 0},
        {"--speedup", AST_ARG_SPEEDUP, &speedup, "X", "best-quality Pareto-front candidate with predicted speedup >= X (default: the run's best)", 1.0, 1000, 0},
        {"--candidate", AST_ARG_INT, &cand, "ID", "export this candidate (an id from the database)", 1, 2147483647, 0},
        {"--out", AST_ARG_STRING, &out, "FILE", "profile JSON to write (required)", 0, 0, 0},
        {"--plot", AST_ARG_STRING, &plot, "FILE.png", "also draw the Pareto front and the chosen budget curve (needs gnuplot)", 0, 0, 0},
    };
    ast_cli cli = {"astraea-export",
                   "write a budget profile from an astraea-search run",
                   "astraea-export --out PROFILE.json [--run N] [--speedup X] [--plot FRONT.png]",
                   "The profile is what astraea-generate --profile applies; its fields are in\n"
                   "docs/profile-format.md. measured_speedup is set for the candidate the search\n"
                   "timed for real (the run's best); other candidates carry predicted_speedup only.\n\n"
                   "Examples:\n"
                   "  astraea-export --out profiles/wan-mini-2x.json\n"
                   "  astraea-export --run 3 --speedup 1.5x --out p15.json --plot front.png",
                   args, (int)(sizeof args / sizeof *args)};
    int prc = ast_cli_parse(&cli, argc, argv);
    if (prc == 1) return AST_EXIT_OK;
    if (prc) return AST_EXIT_USAGE;
    if (!out) return ast_cli_usage_error(&cli, "--out FILE is required");
    if (cand && !isnan(speedup))
        return ast_cli_usage_error(&cli, "give --candidate or --speedup, not both");

    ast_store *s = NULL;
    ast_profile p;
    ast_cand *front = NULL, chosen;
    int nf = 0, rc = AST_EXIT_FAIL, have_profile = 0;
    memset(&chosen, 0, sizeof chosen);
    int64_t run_id = run, cand_id = cand;
    if (ast_store_open(db, 1, &s) != 0) goto fail;
    if (!run_id) {
        int r = ast_store_run_latest(s, &run_id);
        if (r < 0) goto fail;
        if (r == 1) {
            ast_error_set("search DB '%s' has no runs yet (run astraea-search first)", db);
            goto fail;
        }
    }
    if (!cand_id && ast_search_pick(s, run_id, speedup, &cand_id) != 0) goto fail;
    if (ast_search_profile(s, run_id, cand_id, &p) != 0) goto fail;
    have_profile = 1;
    if (ast_profile_save(&p, out) != 0) goto fail;
    printf("wrote %s: run %lld, candidate %lld, %s, %d steps, predicted %.3fx", out,
           (long long)run_id, (long long)cand_id, p.model_id, p.steps, p.predicted_speedup);
    if (isfinite(p.measured_speedup)) printf(", measured %.3fx", p.measured_speedup);
    printf(", psnr %.2f dB, ssim %.4f, mse %.3g\n", p.psnr, p.ssim, p.mse);
    if (plot) {
        char title[256];
        if (ast_store_pareto(s, run_id, &front, &nf) != 0 ||
            ast_store_cand_get(s, cand_id, &chosen) != 0)
            goto fail;
        snprintf(title, sizeof title, "%s run %lld: candidate %lld (%.2fx predicted)", p.model_id,
                 (long long)run_id, (long long)cand_id, p.predicted_speedup);
        if (ast_plot_front(plot, title, front, nf, &chosen, p.budgets, p.steps) != 0) goto fail;
        printf("wrote %s (Pareto front: %d candidates)\n", plot, nf);
    }
    rc = AST_EXIT_OK;
    goto done;
fail:
    rc = ast_cli_fail(&cli);
done:
    if (have_profile) ast_profile_free(&p);
    free(chosen.per_prompt_json);
    ast_cands_free(front, nf);
    ast_store_close(s);
    return rc;
}
