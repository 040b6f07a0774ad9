/* mpi.c — the search's evaluation workers as MPI ranks (issue 9; docs/search.md "MPI").
 *
 * Rank 0 runs the search (search.c): it owns the GA and the SQLite file, and is the only rank
 * that reads or writes it. Ranks 1..P-1 serve evaluations:
 *
 *   rank 0                                   worker rank r
 *   CONFIG {config, key}          ──────>    evaluator for the run's stored configuration
 *                                 <──────    READY {status, "host<TAB>device" or the error}
 *   REF x n_prompts (fp32 latents)──────>    rank 0's dense references (every rank compares
 *                                            against the very same ones)
 *   JOB {idx, genome}             ──────>    generate on every prompt, compare
 *                                 <──────    RESULT {idx, rc, mse, psnr, ssim, seconds, text}
 *   QUIT                          ──────>    free everything, return (then MPI_Finalize)
 *
 * The key in CONFIG is the run's config key; a rank whose evaluator makes another key (another
 * checkpoint at that path, other context files) refuses, naming what differs. Waiting polls with
 * MPI_Iprobe and short sleeps: OpenMPI's blocking receive spins a core, which would disturb the
 * writer's timings and the ranks sharing its host. Messages are raw bytes in the hosts' native
 * layout: every rank must run on the same architecture (x86-64 everywhere, say). */
#include "workers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ast_config.h"
#include "backend.h"

#if AST_HAVE_MPI
#include <mpi.h>

enum { TAG_CONFIG = 11, TAG_READY, TAG_REF, TAG_JOB, TAG_RESULT, TAG_QUIT };

struct ast_search_mpi {
    int rank, size;
    int host_index;   /* worker ranks: index among the worker ranks of this host */
    int host_workers; /* worker ranks on this host */
    int quit_sent;    /* rank 0: every worker was told to quit */
    char host[MPI_MAX_PROCESSOR_NAME + 1];
};

static int mpi_check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING + 1] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return ast_fail("MPI: %s failed: %s", what, msg);
}

static int launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int ast_search_mpi_init(int *argc, char ***argv, ast_search_mpi **out) {
    *out = NULL;
    if (!launched_by_mpi()) return 0;
    int provided = 0, inited = 0;
    if (MPI_Initialized(&inited) != MPI_SUCCESS || inited)
        return ast_fail("MPI: already initialized (internal)");
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        return ast_fail("MPI: MPI_Init_thread failed (code %d): is this process started by "
                        "mpirun of the same MPI library this astraea was built with?",
                        rc);
    ast_search_mpi *m = ast_calloc(1, sizeof *m, "the MPI session");
    if (!m) goto fail;
    MPI_Comm node = MPI_COMM_NULL;
    int local = 0, local_n = 1, here0 = 0, len = 0;
    if (mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
                  "MPI_Comm_set_errhandler") ||
        mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &m->rank), "MPI_Comm_rank") ||
        mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &m->size), "MPI_Comm_size") ||
        mpi_check(MPI_Get_processor_name(m->host, &len), "MPI_Get_processor_name") ||
        mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, m->rank,
                                      MPI_INFO_NULL, &node),
                  "MPI_Comm_split_type (ranks of one host)") ||
        mpi_check(MPI_Comm_rank(node, &local), "MPI_Comm_rank (host)") ||
        mpi_check(MPI_Comm_size(node, &local_n), "MPI_Comm_size (host)"))
        goto fail;
    int is0 = m->rank == 0;
    if (mpi_check(MPI_Allreduce(&is0, &here0, 1, MPI_INT, MPI_MAX, node),
                  "MPI_Allreduce (is rank 0 on this host)") ||
        mpi_check(MPI_Comm_free(&node), "MPI_Comm_free"))
        goto fail;
    /* ranks of a host are ordered by world rank, so rank 0 is local rank 0 on its host */
    m->host_index = local - here0;
    m->host_workers = local_n - here0;
    *out = m;
    return 0;
fail:
    /* a rank that stops here alone would leave the others waiting for it: end the job */
    fprintf(stderr, "astraea-search: error: %s\n", ast_error_get());
    free(m);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return -1;
}

int ast_search_mpi_rank(const ast_search_mpi *m) { return m ? m->rank : 0; }
int ast_search_mpi_size(const ast_search_mpi *m) { return m ? m->size : 1; }

static void nap(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Waits for a message from src with tag (MPI_ANY_*): 1 found (*st), 0 not within timeout_s
 * (< 0: no limit), -1 MPI error. */
static int poll_msg(int src, int tag, double timeout_s, MPI_Status *st) {
    double t0 = ast_now_sec(), pause = 1e-4;
    for (;;) {
        int flag = 0;
        if (mpi_check(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, st), "MPI_Iprobe")) return -1;
        if (flag) return 1;
        if (timeout_s >= 0 && ast_now_sec() - t0 >= timeout_s) return 0;
        nap(pause);
        if (pause < 2e-3) pause *= 1.5;
    }
}

/* Receives the probed message (bytes) into a malloc'd buffer with a terminating 0. */
static char *recv_bytes(const MPI_Status *st, int *len) {
    int n = 0;
    if (mpi_check(MPI_Get_count(st, MPI_BYTE, &n), "MPI_Get_count")) return NULL;
    char *buf = ast_malloc((size_t)n + 1, "an MPI message");
    if (!buf) return NULL;
    if (mpi_check(MPI_Recv(buf, n, MPI_BYTE, st->MPI_SOURCE, st->MPI_TAG, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE),
                  "MPI_Recv")) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int send_bytes(const void *buf, size_t n, int dest, int tag, const char *what) {
    if (n > INT_MAX) return ast_fail("MPI: %s of %zu bytes is too large for one message", what, n);
    char name[96];
    snprintf(name, sizeof name, "MPI_Send (%s to rank %d)", what, dest);
    return mpi_check(MPI_Send(buf, (int)n, MPI_BYTE, dest, tag, MPI_COMM_WORLD), name);
}

/* RESULT: fixed header, then per_prompt_json (rc 0) or the error (rc -1). */
typedef struct {
    int32_t idx, rc;
    double mse, psnr, ssim, eval_seconds;
} result_head;

static int send_result(const ast_eval_result *r, int dest) {
    const char *text = r->rc == 0 ? r->per_prompt_json : r->err;
    size_t tl = text ? strlen(text) : 0, n = sizeof(result_head) + tl;
    char *buf = ast_malloc(n, "a result message");
    if (!buf) return -1;
    result_head h = {r->idx, r->rc, r->mse, r->psnr, r->ssim, r->eval_seconds};
    memcpy(buf, &h, sizeof h);
    if (tl) memcpy(buf + sizeof h, text, tl);
    int rc = send_bytes(buf, n, dest, TAG_RESULT, "a result");
    free(buf);
    return rc;
}

static int recv_result(const MPI_Status *st, ast_eval_result *r) {
    int n = 0;
    char *buf = recv_bytes(st, &n);
    if (!buf) return -1;
    if (n < (int)sizeof(result_head)) {
        free(buf);
        return ast_fail("MPI: a result of %d bytes from rank %d (expected at least %zu: a rank "
                        "of another version or architecture?)",
                        n, st->MPI_SOURCE, sizeof(result_head));
    }
    result_head h;
    memcpy(&h, buf, sizeof h);
    memset(r, 0, sizeof *r);
    r->idx = h.idx;
    r->rc = h.rc;
    r->mse = h.mse;
    r->psnr = h.psnr;
    r->ssim = h.ssim;
    r->eval_seconds = h.eval_seconds;
    const char *text = buf + sizeof h;
    if (r->rc == 0) {
        r->per_prompt_json = ast_strdup(text);
        if (!r->per_prompt_json) {
            free(buf);
            return -1;
        }
    } else {
        snprintf(r->err, sizeof r->err, "%s", text);
    }
    free(buf);
    return 0;
}

/* ---- rank 0: the pool of worker ranks --------------------------------------------------------- */

typedef struct {
    ast_eval_pool base;
    ast_search_mpi *m;
    int n;                 /* worker ranks: rank r is index r-1 */
    int *state;            /* 0 config not sent, 1 waiting for READY, 2 idle, 3 busy */
    char (*name)[256];     /* "rank r (host, device)" */
} mpi_pool;

static int mpi_submit(ast_eval_pool *p, const ast_eval_job *job) {
    mpi_pool *mp = (mpi_pool *)p;
    int w = -1;
    for (int i = 0; i < mp->n && w < 0; i++)
        if (mp->state[i] == 2) w = i;
    if (w < 0) return ast_fail("internal: MPI pool: no idle worker rank");
    char buf[8 + AST_GA_MAX_STEPS];
    int32_t head[2] = {job->idx, job->steps};
    memcpy(buf, head, sizeof head);
    memcpy(buf + 8, job->genome, (size_t)job->steps);
    if (send_bytes(buf, 8 + (size_t)job->steps, w + 1, TAG_JOB, "a genome") != 0) return -1;
    mp->state[w] = 3;
    return 0;
}

static int mpi_wait(ast_eval_pool *p, double timeout_s, ast_eval_result *out) {
    mpi_pool *mp = (mpi_pool *)p;
    MPI_Status st;
    int got = poll_msg(MPI_ANY_SOURCE, TAG_RESULT, timeout_s, &st);
    if (got <= 0) return got;
    int w = st.MPI_SOURCE - 1;
    if (recv_result(&st, out) != 0) return -1;
    if (w < 0 || w >= mp->n || mp->state[w] != 3) {
        ast_eval_result_clear(out);
        return ast_fail("MPI: a result from rank %d, which had no job (internal)", st.MPI_SOURCE);
    }
    mp->state[w] = 2;
    if (out->rc != 0) {
        char keep[sizeof out->err];
        snprintf(keep, sizeof keep, "%s", out->err);
        snprintf(out->err, sizeof out->err, "%.200s: %.800s", mp->name[w], keep);
    }
    return 1;
}

/* Tells every worker rank to quit and collects what the busy ones still send (a rank blocked
 * sending a large message would never see the QUIT). */
static int quit_all(ast_search_mpi *m, mpi_pool *mp) {
    int rc = 0;
    if (m->quit_sent) return 0;
    m->quit_sent = 1;
    for (int r = 1; r < m->size; r++)
        if (send_bytes("", 0, r, TAG_QUIT, "quit") != 0) rc = -1;
    for (int i = 0; mp && rc == 0 && i < mp->n; i++) {
        while (mp->state[i] == 1 || mp->state[i] == 3) {
            MPI_Status st;
            if (poll_msg(i + 1, mp->state[i] == 1 ? TAG_READY : TAG_RESULT, -1, &st) < 0) {
                rc = -1;
                break;
            }
            char *buf = recv_bytes(&st, NULL);
            free(buf);
            if (!buf) {
                rc = -1;
                break;
            }
            mp->state[i] = 2;
        }
    }
    return rc;
}

static void mpi_destroy(ast_eval_pool *p) {
    mpi_pool *mp = (mpi_pool *)p;
    if (!mp) return;
    char keep[2048];
    snprintf(keep, sizeof keep, "%s", ast_error_get());
    quit_all(mp->m, mp);
    ast_error_set("%s", keep);
    free(mp->state);
    free(mp->name);
    free(mp);
}

int ast_eval_pool_mpi(ast_search_mpi *m, const char *config_json, const char *config_key,
                      const ast_evaluator *ev, float *const *refs, int64_t n,
                      int (*between)(void *user), void *between_user, ast_eval_pool **out) {
    *out = NULL;
    if (!m || m->size < 2 || m->rank != 0)
        return ast_fail("internal: an MPI pool needs rank 0 of a session with worker ranks");
    if (m->quit_sent) return ast_fail("internal: the MPI worker ranks were already released");
    if (n > INT_MAX)
        return ast_fail("MPI: a dense reference of %lld floats is too large for one message",
                        (long long)n);
    mpi_pool *mp = ast_calloc(1, sizeof *mp, "the MPI pool");
    if (!mp) return -1;
    mp->m = m;
    mp->n = m->size - 1;
    mp->base.capacity = mp->n;
    snprintf(mp->base.what, sizeof mp->base.what, "%d MPI worker ranks", mp->n);
    mp->base.submit = mpi_submit;
    mp->base.wait = mpi_wait;
    mp->base.destroy = mpi_destroy;
    mp->state = ast_calloc((size_t)mp->n, sizeof *mp->state, "the MPI pool");
    mp->name = ast_calloc((size_t)mp->n, sizeof *mp->name, "the MPI pool");
    char *msg = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!mp->state || !mp->name || !o || !cJSON_AddStringToObject(o, "config", config_json) ||
        !cJSON_AddStringToObject(o, "key", config_key) || !(msg = cJSON_PrintUnformatted(o))) {
        cJSON_Delete(o);
        ast_error_set("out of memory starting the MPI workers");
        goto fail;
    }
    cJSON_Delete(o);
    for (int i = 0; i < mp->n; i++) {
        snprintf(mp->name[i], sizeof mp->name[i], "MPI rank %d", i + 1);
        if (send_bytes(msg, strlen(msg) + 1, i + 1, TAG_CONFIG, "the run configuration") != 0)
            goto fail;
        mp->state[i] = 1;
    }
    free(msg);
    msg = NULL;
    /* every rank loads its model (in parallel); collect all answers, then report the first
     * refusal */
    int failed = -1;
    char why[1024] = "";
    for (int left = mp->n; left > 0;) {
        MPI_Status st;
        int got = poll_msg(MPI_ANY_SOURCE, TAG_READY, 1.0, &st);
        if (got < 0) goto fail;
        if (between && between(between_user) != 0) goto fail; /* a paced lock heartbeat */
        if (!got) continue;
        int w = st.MPI_SOURCE - 1, len = 0;
        char *buf = recv_bytes(&st, &len);
        if (!buf) goto fail;
        if (w < 0 || w >= mp->n || mp->state[w] != 1 || len < 4) {
            free(buf);
            ast_error_set("MPI: an unexpected READY from rank %d (internal)", st.MPI_SOURCE);
            goto fail;
        }
        int32_t status;
        memcpy(&status, buf, 4);
        mp->state[w] = 2;
        left--;
        const char *text = buf + 4, *tab = strchr(text, '\t');
        if (status == 0 && tab)
            snprintf(mp->name[w], sizeof mp->name[w], "MPI rank %d (%.*s, %.150s)", w + 1,
                     (int)(tab - text < 80 ? tab - text : 80), text, tab + 1);
        if (status != 0 && failed < 0) {
            failed = w;
            snprintf(why, sizeof why, "%.1000s", text);
        }
        free(buf);
    }
    if (failed >= 0) {
        ast_error_set("MPI rank %d could not start: %s", failed + 1, why);
        goto fail;
    }
    for (int i = 0; i < mp->n; i++)
        for (int p = 0; p < ev->n_prompts; p++) {
            char name[96];
            snprintf(name, sizeof name, "MPI_Send (dense reference %d to rank %d)", p + 1, i + 1);
            if (mpi_check(MPI_Send(refs[p], (int)n, MPI_FLOAT, i + 1, TAG_REF, MPI_COMM_WORLD),
                          name))
                goto fail;
        }
    *out = &mp->base;
    return 0;
fail:
    free(msg);
    mpi_destroy(&mp->base);
    return -1;
}

/* ---- worker ranks ------------------------------------------------------------------------------ */

typedef struct {
    ast_search_mpi *m;
    ast_evaluator *ev;
    float **refs;
    int n_refs;
    ast_eval_worker w;
} serve_state;

static void serve_release(serve_state *s) {
    for (int p = 0; s->refs && s->ev && p < s->ev->n_prompts; p++) free(s->refs[p]);
    free(s->refs);
    free(s->w.out);
    ast_evaluator_free(s->ev);
    memset(s, 0, sizeof *s);
}

/* Between prompts: rank 0 said quit (its search stopped or failed). */
static int serve_between(void *user) {
    (void)user;
    int flag = 0;
    if (mpi_check(MPI_Iprobe(0, TAG_QUIT, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe"))
        return -1;
    return flag ? ast_fail("rank 0 stopped the search") : 0;
}

/* The device of this rank: the host_index-th of --gpus, else of the visible devices. */
static int serve_device(const ast_search_mpi *m, const ast_search_config *given) {
    if (given->gpus && given->n_gpus > 0) return given->gpus[m->host_index % given->n_gpus];
    char why[256];
    int count = ast_cuda_device_count(why, sizeof why);
    return count > 0 ? m->host_index % count : 0;
}

/* CONFIG: the evaluator; the READY answer carries "host<TAB>device" or the refusal. */
static int serve_config(serve_state *s, const ast_search_config *given, const char *text) {
    ast_search_mpi *m = s->m;
    serve_release(s);
    s->m = m;
    int rc = -1;
    cJSON *o = cJSON_Parse(text);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(o, "config");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "key");
    char mine[17];
    int levels = 0;
    int device = serve_device(m, given);
    if (!cJSON_IsString(cfg) || !cJSON_IsString(key)) {
        ast_error_set("the run configuration from rank 0 is unreadable (another version?)");
    } else if (ast_search_worker_evaluator(given, cfg->valuestring, device, &s->ev, &levels,
                                           mine) == 0) {
        if (strcmp(mine, key->valuestring) != 0) {
            ast_error_set("on this host the run's inputs differ from rank 0's (model '%s', "
                          "checkpoint %s, prompts): every rank needs the same checkpoint and "
                          "prompt/context files at the same paths",
                          s->ev->model_id, s->ev->checkpoint_hash);
        } else {
            int64_t n = (int64_t)s->ev->channels * s->ev->frames * s->ev->height * s->ev->width;
            s->refs = ast_calloc((size_t)s->ev->n_prompts, sizeof *s->refs, "dense references");
            s->w.out = ast_malloc(sizeof(float) * (size_t)n, "a latent");
            if (s->refs && s->w.out) rc = 0;
            for (int p = 0; rc == 0 && p < s->ev->n_prompts; p++) {
                s->refs[p] = ast_malloc(sizeof(float) * (size_t)n, "a dense reference");
                if (!s->refs[p]) rc = -1;
            }
        }
    }
    cJSON_Delete(o);
    char reply[1100];
    int32_t status = rc;
    memcpy(reply, &status, 4);
    if (rc == 0) {
        s->w.ev = s->ev;
        s->w.refs = s->refs;
        s->w.between = serve_between;
        s->w.levels = levels;
        if (strcmp(s->ev->backend, "cuda") == 0)
            snprintf(reply + 4, sizeof reply - 4, "%.100s\tCUDA device %d: %.200s", m->host,
                     device, s->ev->device);
        else
            snprintf(reply + 4, sizeof reply - 4, "%.100s\t%.200s", m->host, s->ev->device);
    } else {
        snprintf(reply + 4, sizeof reply - 4, "on host %.100s: %.900s", m->host, ast_error_get());
        serve_release(s);
        s->m = m;
    }
    return send_bytes(reply, 4 + strlen(reply + 4) + 1, 0, TAG_READY, "READY");
}

static int serve_job(serve_state *s, const char *buf, int len) {
    ast_eval_job job;
    memset(&job, 0, sizeof job);
    ast_eval_result r;
    memset(&r, 0, sizeof r);
    int32_t head[2] = {-1, 0};
    if (len >= 8) memcpy(head, buf, sizeof head);
    job.idx = head[0];
    job.steps = head[1];
    r.idx = job.idx;
    r.rc = -1;
    if (!s->ev || s->n_refs < s->ev->n_prompts) {
        snprintf(r.err, sizeof r.err, "on host %s: a genome before the run's configuration and "
                                      "references (internal)", s->m->host);
    } else if (len != 8 + head[1] || head[1] != s->ev->steps) {
        snprintf(r.err, sizeof r.err, "a genome of %d genes for a run of %d steps (internal)",
                 head[1], s->ev->steps);
    } else {
        memcpy(job.genome, buf + 8, (size_t)job.steps);
        ast_eval_genome(&s->w, &job, &r);
    }
    int rc = send_result(&r, 0);
    ast_eval_result_clear(&r);
    return rc;
}

int ast_search_mpi_serve(ast_search_mpi *m, const ast_search_config *given) {
    serve_state s;
    memset(&s, 0, sizeof s);
    s.m = m;
    int rc = -1;
    /* the worker ranks of a host share its cores (OpenMP regions of the CPU backend) */
    int threads = omp_get_max_threads() / (m->host_workers > 0 ? m->host_workers : 1);
    omp_set_num_threads(threads > 0 ? threads : 1);
    for (;;) {
        MPI_Status st;
        if (poll_msg(0, MPI_ANY_TAG, -1, &st) < 0) break;
        if (st.MPI_TAG == TAG_REF) {
            int n = 0;
            if (mpi_check(MPI_Get_count(&st, MPI_FLOAT, &n), "MPI_Get_count")) break;
            int64_t want = s.ev ? (int64_t)s.ev->channels * s.ev->frames * s.ev->height *
                                      s.ev->width
                                : -1;
            if (!s.ev || s.n_refs >= s.ev->n_prompts || n != want) {
                ast_error_set("MPI: an unexpected dense reference from rank 0 (%d floats, "
                              "expected %lld; internal)",
                              n, (long long)want);
                break;
            }
            if (mpi_check(MPI_Recv(s.refs[s.n_refs], n, MPI_FLOAT, 0, TAG_REF, MPI_COMM_WORLD,
                                   MPI_STATUS_IGNORE),
                          "MPI_Recv (a dense reference)"))
                break;
            s.n_refs++;
            continue;
        }
        int len = 0;
        char *buf = recv_bytes(&st, &len);
        if (!buf) break;
        int step = 0;
        if (st.MPI_TAG == TAG_QUIT) {
            free(buf);
            rc = 0;
            break;
        } else if (st.MPI_TAG == TAG_CONFIG) {
            step = serve_config(&s, given, buf);
        } else if (st.MPI_TAG == TAG_JOB) {
            step = serve_job(&s, buf, len);
        } else {
            step = ast_fail("MPI: a message with unknown tag %d from rank 0 (another version?)",
                            st.MPI_TAG);
        }
        free(buf);
        if (step != 0) break;
    }
    serve_release(&s);
    return rc;
}

int ast_search_mpi_finish(ast_search_mpi *m, int workers_serve) {
    if (!m) return 0;
    int rc = 0;
    if (m->rank == 0 && workers_serve && quit_all(m, NULL) != 0) rc = -1;
    if (mpi_check(MPI_Finalize(), "MPI_Finalize") != 0) rc = -1;
    free(m);
    return rc;
}

void ast_search_mpi_abort(ast_search_mpi *m, int code) {
    if (m) MPI_Abort(MPI_COMM_WORLD, code);
}

#else /* built without MPI: one process, always */

struct ast_search_mpi {
    int unused;
};

int ast_search_mpi_init(int *argc, char ***argv, ast_search_mpi **out) {
    (void)argc;
    (void)argv;
    *out = NULL;
    return 0;
}
int ast_search_mpi_rank(const ast_search_mpi *m) {
    (void)m;
    return 0;
}
int ast_search_mpi_size(const ast_search_mpi *m) {
    (void)m;
    return 1;
}
int ast_search_mpi_serve(ast_search_mpi *m, const ast_search_config *given) {
    (void)m;
    (void)given;
    return ast_fail("this astraea was built without MPI (meson setup -Dmpi=enabled needs "
                    "libopenmpi-dev)");
}
int ast_search_mpi_finish(ast_search_mpi *m, int workers_serve) {
    (void)m;
    (void)workers_serve;
    return 0;
}
void ast_search_mpi_abort(ast_search_mpi *m, int code) {
    (void)m;
    (void)code;
}
int ast_eval_pool_mpi(ast_search_mpi *m, const char *config_json, const char *config_key,
                      const ast_evaluator *ev, float *const *refs, int64_t n,
                      int (*between)(void *user), void *between_user, ast_eval_pool **out) {
    (void)m;
    (void)config_json;
    (void)config_key;
    (void)ev;
    (void)refs;
    (void)n;
    (void)between;
    (void)between_user;
    *out = NULL;
    return ast_fail("this astraea was built without MPI");
}

#endif
