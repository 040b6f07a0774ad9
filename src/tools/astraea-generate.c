/* astraea-generate — text to video with the Wan2.1 DiT: the whole sampling loop (UniPC or Euler,
 * CFG), dense or token-wise with a budget profile, on the CPU or a CUDA GPU. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "profile.h"
#include "run.h"
#include "sampler.h"

typedef struct {
    ast_progress bar;
} step_ctx;

static int on_step(void *user, int step, int steps, double elapsed) {
    step_ctx *s = user;
    ast_progress_update(&s->bar, step + 1, steps, elapsed, NULL);
    return ast_run_interrupted();
}

int main(int argc, char **argv) {
    const char *model = "wan-mini", *checkpoint = NULL, *prompt = NULL, *neg_prompt = "";
    const char *context = NULL, *neg_context = NULL, *out = NULL, *init_noise = NULL;
    const char *sampler = "unipc", *backend = "auto", *cache = "residual", *profile = NULL;
    const char *delta_norm = "mean", *gpus_text = NULL;
    int sketch = 32;
    int frames = 0, height = 0, width = 0, steps = 0, seed = 42, gpu = 0;
    ast_tokenwise_opts tw_default;
    ast_tokenwise_opts_default(&tw_default);
    double shift = NAN, guidance = NAN, budget = 1.0, w_alpha = tw_default.w_alpha,
           w_beta = tw_default.w_beta;
    bool quiet = false;
    ast_arg args[] = {
        {"--model", AST_ARG_STRING, &model, "ID|DIR", "model: wan-mini (default, shipped), or a checkpoint folder", 0, 0, 0},
        {"--checkpoint", AST_ARG_STRING, &checkpoint, "DIR", "Wan2.1 checkpoint folder (config.json + *.safetensors); with --model wan2.1-t2v-1.3b|14b it is checked against that config", 0, 0, 0},
        {"--prompt", AST_ARG_STRING, &prompt, "TEXT", "prompt (models with a built-in text encoder, e.g. wan-mini)", 0, 0, 0},
        {"--negative-prompt", AST_ARG_STRING, &neg_prompt, "TEXT", "negative prompt for CFG (default: empty)", 0, 0, 0},
        {"--context", AST_ARG_STRING, &context, "FILE", "safetensors with 'context' [L, 4096] from the umT5 encoder (Wan2.1)", 0, 0, 0},
        {"--negative-context", AST_ARG_STRING, &neg_context, "FILE", "the negative prompt's context (Wan2.1 with CFG)", 0, 0, 0},
        {"--frames", AST_ARG_INT, &frames, "N", "video frames (Wan2.1: 4n+1, default 81; wan-mini: default 8)", 1, 100000, 0},
        {"--height", AST_ARG_INT, &height, "PX", "height in pixels (Wan2.1 default 480; wan-mini 32)", 1, 100000, 0},
        {"--width", AST_ARG_INT, &width, "PX", "width in pixels (Wan2.1 default 832; wan-mini 32)", 1, 100000, 0},
        {"--steps", AST_ARG_INT, &steps, "N", "denoising steps (default: the model's, Wan2.1 50)", 1, 10000, 0},
        {"--shift", AST_ARG_DOUBLE, &shift, "S", "flow shift (default: the model's, Wan2.1 t2v 5.0)", 0.01, 1000, 0},
        {"--guidance", AST_ARG_DOUBLE, &guidance, "G", "CFG scale; 1 disables CFG (default: the model's, Wan2.1 5.0)", 0, 100, 0},
        {"--sampler", AST_ARG_STRING, &sampler, "NAME", "unipc (default, as Wan) or euler", 0, 0, 0},
        {"--seed", AST_ARG_INT, &seed, "N", "noise seed (default 42; generator in docs/architecture.md)", 0, 2147483647, 0},
        {"--init-noise", AST_ARG_STRING, &init_noise, "FILE", "initial noise: safetensors 'x' [C, F, H, W] F32 (reproduces a PyTorch run)", 0, 0, 0},
        {"--profile", AST_ARG_STRING, &profile, "FILE", "budget profile JSON from astraea-export (token-wise acceleration)", 0, 0, 0},
        {"--budget", AST_ARG_DOUBLE, &budget, "THETA", "one token budget for every step after the first (default 1 = dense)", 0, 1, 0},
        {"--cache", AST_ARG_STRING, &cache, "MODE", "token-wise cache: residual (default) or output", 0, 0, 0},
        {"--w-alpha", AST_ARG_DOUBLE, &w_alpha, "W", "selection weight of LSE x delta (default 0, measured on wan-mini; the paper's is 1)", 0, 1000, 0},
        {"--w-beta", AST_ARG_DOUBLE, &w_beta, "W", "selection weight of exp(skip) (default 0.5)", 0, 1000, 0},
        {"--delta-norm", AST_ARG_STRING, &delta_norm, "MODE", "scale of delta in the score: mean (default: delta / its mean over tokens) or none", 0, 0, 0},
        {"--sketch-dim", AST_ARG_INT, &sketch, "R", "width of the random projection that estimates delta (default 32)", 1, 1024, 0},
        {"--backend", AST_ARG_STRING, &backend, "NAME", "auto (default: CUDA if present), cpu, cuda", 0, 0, 0},
        {"--gpu", AST_ARG_INT, &gpu, "N", "CUDA device index (default 0)", 0, 64, 0},
        {"--gpus", AST_ARG_STRING, &gpus_text, "LIST", "spread one generation over these CUDA devices, e.g. 0,1 (sequence parallelism over NCCL: Ulysses all-to-all when the count divides the model's heads, 12 for Wan2.1-1.3B and 40 for 14B, else a K/V all-gather; docs/multigpu.md)", 0, 0, 0},
        {"--out", AST_ARG_STRING, &out, "FILE", "output: .gif / .png (pixel models) or .safetensors (latent 'x')", 0, 0, 0},
        {"--quiet", AST_ARG_FLAG, &quiet, NULL, "no progress output", 0, 0, 0},
    };
    ast_cli cli = {"astraea-generate",
                   "generate a video clip with a Wan2.1 DiT, dense or token-wise",
                   "astraea-generate [--model wan-mini] --prompt TEXT --out clip.gif [options]",
                   "Examples:\n"
                   "  astraea-generate --prompt \"a red circle moves left over a blue background\" --out clip.gif\n"
                   "  astraea-generate --prompt \"...\" --profile profiles/wan-mini-2x.json --out fast.gif\n"
                   "  astraea-generate --checkpoint Wan2.1-T2V-1.3B --context ctx.safetensors \\\n"
                   "      --negative-context neg.safetensors --frames 33 --out latent.safetensors\n"
                   "  astraea-generate --checkpoint Wan2.1-T2V-1.3B --gpus 0,1 ...   (one clip, 2 GPUs)\n"
                   "Wan2.1 produces a VAE latent (.safetensors); wan-mini produces pixels (.gif/.png).",
                   args, (int)(sizeof args / sizeof *args)};
    int prc = ast_cli_parse(&cli, argc, argv);
    if (prc == 1) return AST_EXIT_OK;
    if (prc) return AST_EXIT_USAGE;
    if (!out) return ast_cli_usage_error(&cli, "--out FILE is required");
    if (prompt && context) return ast_cli_usage_error(&cli, "give --prompt or --context, not both");
    if (profile && ast_cli_seen(&cli, "--budget"))
        return ast_cli_usage_error(&cli, "give --profile or --budget, not both");
    /* A profile brings the settings it was searched with; options given on the command line
     * win, and the compatibility check below refuses a run the profile does not fit. */
    ast_profile prof;
    int have_prof = 0;
    if (profile) {
        if (ast_profile_load(profile, &prof)) return ast_cli_fail(&cli);
        have_prof = 1;
        if (prof.sampler[0] && !ast_cli_seen(&cli, "--sampler")) sampler = prof.sampler;
        if (!steps) steps = prof.steps;
        if (isnan(shift)) shift = prof.shift;
        if (isnan(guidance)) guidance = prof.guidance;
        if (prof.pixel_frames > 0 && !frames && !height && !width) {
            frames = prof.pixel_frames;
            height = prof.pixel_height;
            width = prof.pixel_width;
        }
        if (prof.has_tokenwise) {
            if (!ast_cli_seen(&cli, "--cache"))
                cache = prof.tokenwise.cache == AST_CACHE_OUTPUT ? "output" : "residual";
            if (!ast_cli_seen(&cli, "--w-alpha")) w_alpha = prof.tokenwise.w_alpha;
            if (!ast_cli_seen(&cli, "--w-beta")) w_beta = prof.tokenwise.w_beta;
            if (!ast_cli_seen(&cli, "--delta-norm"))
                delta_norm = prof.tokenwise.delta_normalize ? "mean" : "none";
            if (!ast_cli_seen(&cli, "--sketch-dim") && prof.tokenwise.sketch_dim > 0)
                sketch = prof.tokenwise.sketch_dim;
        }
    }
    ast_sampler_kind skind;
    if (strcmp(sampler, "unipc") == 0)
        skind = AST_SAMPLER_UNIPC;
    else if (strcmp(sampler, "euler") == 0)
        skind = AST_SAMPLER_EULER;
    else
        return ast_cli_usage_error(&cli, "--sampler must be unipc or euler, got '%s'", sampler);
    ast_cache_mode cmode;
    if (strcmp(cache, "residual") == 0)
        cmode = AST_CACHE_RESIDUAL;
    else if (strcmp(cache, "output") == 0)
        cmode = AST_CACHE_OUTPUT;
    else
        return ast_cli_usage_error(&cli, "--cache must be residual or output, got '%s'", cache);
    if (strcmp(delta_norm, "mean") != 0 && strcmp(delta_norm, "none") != 0)
        return ast_cli_usage_error(&cli, "--delta-norm must be mean or none, got '%s'", delta_norm);
    int devices[AST_MAX_RANKS], n_devices = 0;
    if (gpus_text) {
        char why[256];
        if (ast_cli_seen(&cli, "--gpu"))
            return ast_cli_usage_error(&cli, "give --gpu N or --gpus LIST, not both");
        if (ast_parse_devices("--gpus", gpus_text, devices, AST_MAX_RANKS, &n_devices, NULL, why,
                              sizeof why))
            return ast_cli_usage_error(&cli, "%s", why);
        if (strcmp(backend, "cpu") == 0)
            return ast_cli_usage_error(&cli, "--gpus needs the CUDA backend, not --backend cpu");
        if (strcmp(backend, "auto") == 0) backend = "cuda";
        gpu = devices[0];
    }
    if (quiet) ast_log_level = 0;
    if (have_prof && prof.has_tokenwise && prof.tokenwise.select_segments > 1 &&
        prof.tokenwise.select_segments != (n_devices > 1 ? n_devices : 1))
        ast_log(1, "astraea-generate: note: this profile was searched with token selection per "
                   "GPU over %d GPUs (astraea-search --gpus-per-eval %d); on %d the selection "
                   "differs a little, and so may the quality it reports\n",
                prof.tokenwise.select_segments, prof.tokenwise.select_segments,
                n_devices > 1 ? n_devices : 1);

    ast_model *m = NULL;
    ast_engine *e = NULL;
    float *ctx = NULL, *nctx = NULL, *noise = NULL, *result = NULL, *budgets = NULL;
    int rc = AST_EXIT_FAIL, L = 0, nL = 0, F, H, W;
    if (ast_run_open_model(model, checkpoint, &m) || ast_run_check_output(out, m)) goto fail;
    const ast_wan_config *c = &m->cfg;
    ast_sampler_params sp = {skind, steps ? steps : (c->default_steps ? c->default_steps : 50),
                             (float)(!isnan(shift) ? shift : (c->default_shift > 0 ? c->default_shift : 5.0)),
                             (float)(!isnan(guidance) ? guidance : (c->default_guidance > 0 ? c->default_guidance : 5.0))};
    if (have_prof && prof.frames > 0 && prof.pixel_frames <= 0 && !frames && !height &&
        !width) { /* only the latent shape is known: the pixels it decodes to */
        int pix = ast_run_pixel_space(m);
        frames = pix ? prof.frames : 4 * (prof.frames - 1) + 1;
        height = pix ? prof.height : 8 * prof.height;
        width = pix ? prof.width : 8 * prof.width;
    }
    if (init_noise) {
        if (ast_run_read_latent(init_noise, m, &noise, &F, &H, &W)) goto fail;
    } else if (ast_run_latent_shape(m, frames, height, width, &F, &H, &W)) {
        goto fail;
    }
    if (ast_run_context(m, prompt, context, &ctx, &L)) goto fail;
    int branches = sp.guidance != 1.0f ? 2 : 1;
    if (branches == 2) {
        if (context && !neg_context) {
            ast_error_set("CFG (--guidance %g) needs --negative-context FILE with the negative "
                          "prompt's context (or --guidance 1)", sp.guidance);
            goto fail;
        }
        if (ast_run_context(m, neg_prompt, neg_context, &nctx, &nL)) goto fail;
    }
    budgets = ast_malloc(sizeof(float) * sp.steps, "the budgets");
    if (!budgets) goto fail;
    for (int i = 0; i < sp.steps; i++) budgets[i] = i == 0 ? 1.0f : (float)budget;
    if (have_prof) {
        if (ast_profile_check_compatible(&prof, c->model_id, m->hash, F, H, W, sp.steps))
            goto fail;
        memcpy(budgets, prof.budgets, sizeof(float) * sp.steps);
    }
    int tokenwise = 0;
    for (int i = 1; i < sp.steps; i++) tokenwise |= budgets[i] < 1.0f;

    ast_engine_params ep = {0};
    if (ast_run_pick_backend(backend, &ep.backend)) goto fail;
    ep.device = gpu;
    if (n_devices > 1) {
        ep.n_ranks = n_devices;
        memcpy(ep.devices, devices, sizeof(int) * (size_t)n_devices);
    }
    ep.frames = F;
    ep.height = H;
    ep.width = W;
    ep.n_branches = branches;
    ep.tokenwise = tokenwise;
    ast_tokenwise_opts_default(&ep.tw);
    ep.tw.cache = cmode;
    ep.tw.w_alpha = (float)w_alpha;
    ep.tw.w_beta = (float)w_beta;
    ep.tw.delta_normalize = strcmp(delta_norm, "mean") == 0;
    ep.tw.sketch_dim = sketch;
    if (ast_engine_create(m, &ep, &e)) goto fail;
    if (ast_engine_set_context(e, 0, ctx, L)) goto fail;
    if (branches == 2 && ast_engine_set_context(e, 1, nctx, nL)) goto fail;
    int64_t n = (int64_t)c->in_dim * F * H * W;
    if (!noise) {
        noise = ast_malloc(sizeof(float) * n, "the noise");
        if (!noise) goto fail;
        ast_noise((uint64_t)seed, noise, n);
    }
    result = ast_malloc(sizeof(float) * n, "the result");
    if (!result) goto fail;
    ast_log(1, "astraea-generate: %s on %s, latent [%d, %d, %d, %d] = %d tokens, %d steps %s, "
               "guidance %g, shift %g%s\n",
            c->model_id, ast_engine_device_name(e), c->in_dim, F, H, W, ast_engine_tokens(e),
            sp.steps, sampler, sp.guidance, sp.shift, tokenwise ? ", token-wise" : ", dense");
    ast_run_install_sigint();
    step_ctx sc;
    ast_progress_init(&sc.bar, "denoising");
    ast_generate_stats st;
    int grc = ast_generate(e, &sp, budgets, noise, result, on_step, &sc, &st);
    ast_progress_done(&sc.bar);
    if (grc) {
        if (ast_run_interrupted()) rc = AST_EXIT_INTERRUPTED;
        goto fail;
    }
    if (ast_run_check_result(m, result, (int64_t)c->out_dim * F * H * W, "the final latent") ||
        ast_run_write_output(out, m, result, F, H, W))
        goto fail;
    ast_log(1, "astraea-generate: wrote %s (%.2f s, %d forwards, %.1f ms per forward)\n", out,
            st.seconds, st.forwards, 1e3 * st.forward_seconds / (st.forwards ? st.forwards : 1));
    rc = AST_EXIT_OK;
    goto done;
fail:
    if (rc != AST_EXIT_INTERRUPTED) rc = ast_cli_fail(&cli);
    else fprintf(stderr, "astraea-generate: interrupted; no output written\n");
done:
    if (have_prof) ast_profile_free(&prof);
    ast_engine_free(e);
    ast_model_free(m);
    free(ctx);
    free(nctx);
    free(noise);
    free(result);
    free(budgets);
    return rc;
}
