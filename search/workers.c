/* workers.c — evaluation of one candidate, and the inline and thread pools of workers.h (the
 * MPI pool is search/mpi.c).
 *
 * Thread pool: one mutex, a FIFO of jobs and a FIFO of results, two condition variables. A
 * worker thread takes the oldest job, evaluates it with its own evaluator and scratch, and queues
 * the result; the writer thread (search.c) submits and waits. Nothing in a worker touches the
 * store: the writer commits. */
#include "workers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ast_eval_result_clear(ast_eval_result *r) {
    free(r->per_prompt_json);
    r->per_prompt_json = NULL;
}

static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

int ast_eval_genome(const ast_eval_worker *w, const ast_eval_job *job, ast_eval_result *r) {
    const ast_evaluator *ev = w->ev;
    memset(r, 0, sizeof *r);
    r->idx = job->idx;
    r->rc = -1;
    float budgets[AST_GA_MAX_STEPS];
    ast_ga_to_budgets(job->genome, ev->steps, w->levels, budgets);
    double t0 = ast_now_sec(), smse = 0, spsnr = 0, sssim = 0;
    int diverged = 0;
    cJSON *per = cJSON_CreateArray();
    if (!per) {
        snprintf(r->err, sizeof r->err, "out of memory evaluating a candidate");
        return -1;
    }
    for (int p = 0; p < ev->n_prompts; p++) {
        double sec = 0;
        if ((p > 0 && w->between && w->between(w->between_user) != 0) ||
            ev->generate(ev->user, p, budgets, w->out, &sec) != 0) {
            ast_error_prefix("evaluating a candidate on prompt %d", p);
            goto fail;
        }
        ast_quality q;
        int rc = ast_quality_compare(w->out, w->refs[p], ev->channels, ev->frames, ev->height,
                                     ev->width, &q);
        if (rc < 0) goto fail;
        diverged |= rc == 1;
        smse += q.mse;
        spsnr += q.psnr;
        sssim += q.ssim;
        cJSON *o = cJSON_CreateObject();
        if (o && !cJSON_AddItemToArray(per, o)) {
            cJSON_Delete(o);
            o = NULL;
        }
        if (!o || !cJSON_AddItemToObject(o, "mse", num_or_null(q.mse)) ||
            !cJSON_AddItemToObject(o, "psnr", num_or_null(q.psnr)) ||
            !cJSON_AddItemToObject(o, "ssim", num_or_null(q.ssim))) {
            ast_error_set("out of memory evaluating a candidate");
            goto fail;
        }
    }
    int np = ev->n_prompts;
    r->mse = diverged ? NAN : smse / np;
    r->psnr = diverged ? NAN : spsnr / np; /* +inf when every prompt is identical */
    r->ssim = diverged ? NAN : sssim / np;
    r->per_prompt_json = cJSON_PrintUnformatted(per);
    cJSON_Delete(per);
    if (!r->per_prompt_json) {
        snprintf(r->err, sizeof r->err, "out of memory evaluating a candidate");
        return -1;
    }
    r->eval_seconds = ast_now_sec() - t0;
    r->rc = 0;
    return 0;
fail:
    cJSON_Delete(per);
    snprintf(r->err, sizeof r->err, "%s", ast_error_get());
    return -1;
}

/* ---- inline pool --------------------------------------------------------------------------- */

typedef struct {
    ast_eval_pool base;
    ast_eval_worker w;
    ast_eval_result done;
    int has_done;
} inline_pool;

static int inline_submit(ast_eval_pool *p, const ast_eval_job *job) {
    inline_pool *ip = (inline_pool *)p;
    if (ip->has_done) return ast_fail("internal: inline pool: a job is already waiting");
    ast_eval_genome(&ip->w, job, &ip->done);
    ip->has_done = 1;
    return 0;
}

static int inline_wait(ast_eval_pool *p, double timeout_s, ast_eval_result *out) {
    (void)timeout_s;
    inline_pool *ip = (inline_pool *)p;
    if (!ip->has_done) return 0;
    *out = ip->done;
    ip->has_done = 0;
    return 1;
}

static void inline_destroy(ast_eval_pool *p) {
    inline_pool *ip = (inline_pool *)p;
    if (!ip) return;
    if (ip->has_done) ast_eval_result_clear(&ip->done);
    free(ip);
}

int ast_eval_pool_inline(const ast_eval_worker *w, ast_eval_pool **out) {
    *out = NULL;
    inline_pool *ip = ast_calloc(1, sizeof *ip, "the evaluation pool");
    if (!ip) return -1;
    ip->w = *w;
    ip->base.capacity = 1;
    snprintf(ip->base.what, sizeof ip->base.what, "1 worker (this thread)");
    ip->base.submit = inline_submit;
    ip->base.wait = inline_wait;
    ip->base.destroy = inline_destroy;
    *out = &ip->base;
    return 0;
}

/* ---- thread pool --------------------------------------------------------------------------- */

typedef struct thread_pool thread_pool;

typedef struct {
    thread_pool *tp;
    int index, device;
    pthread_t thread;
    int started;                 /* thread created (joinable) */
    int state;                   /* 0 starting, 1 ready, -1 failed to start */
    char err[1024];
    ast_evaluator *own;          /* workers >= 1: their evaluator */
    ast_eval_worker w;
} thread_worker;

struct thread_pool {
    ast_eval_pool base;
    pthread_mutex_t mu;
    pthread_cond_t work, done;   /* a job queued / quit; a result queued / a worker started */
    int quit;
    ast_eval_job *jobs;          /* FIFO ring of capacity n */
    int job_head, job_count;
    ast_eval_result *results;    /* FIFO ring of capacity n */
    int res_head, res_count;
    int n, omp_threads;
    thread_worker *workers;
    ast_make_evaluator_fn make;
    void *make_user;
    int mutex_ok, work_ok, done_ok;
};

/* Between prompts: a pool being destroyed abandons the job. */
static int thread_between(void *user) {
    thread_pool *tp = user;
    pthread_mutex_lock(&tp->mu);
    int quit = tp->quit;
    pthread_mutex_unlock(&tp->mu);
    return quit ? ast_fail("the search stopped") : 0;
}

static void *thread_main(void *arg) {
    thread_worker *tw = arg;
    thread_pool *tp = tw->tp;
    if (tp->omp_threads > 0) omp_set_num_threads(tp->omp_threads);
    int ok = 1;
    if (tw->index > 0) {
        if (tp->make(tp->make_user, tw->index, tw->device, &tw->own) != 0) {
            snprintf(tw->err, sizeof tw->err, "%s", ast_error_get());
            ok = 0;
        } else {
            tw->w.ev = tw->own;
            int64_t n = (int64_t)tw->own->channels * tw->own->frames * tw->own->height *
                        tw->own->width;
            tw->w.out = ast_malloc(sizeof(float) * (size_t)n, "a worker's latent");
            if (!tw->w.out) {
                snprintf(tw->err, sizeof tw->err, "%s", ast_error_get());
                ok = 0;
            }
        }
    }
    pthread_mutex_lock(&tp->mu);
    tw->state = ok ? 1 : -1;
    pthread_cond_broadcast(&tp->done);
    while (ok) {
        while (!tp->quit && tp->job_count == 0) pthread_cond_wait(&tp->work, &tp->mu);
        if (tp->quit) break;
        ast_eval_job job = tp->jobs[tp->job_head];
        tp->job_head = (tp->job_head + 1) % tp->n;
        tp->job_count--;
        pthread_mutex_unlock(&tp->mu);
        ast_eval_result r;
        if (ast_eval_genome(&tw->w, &job, &r) != 0) {
            char keep[sizeof r.err];
            snprintf(keep, sizeof keep, "%s", r.err);
            if (strcmp(tw->w.ev->backend, "cuda") == 0)
                snprintf(r.err, sizeof r.err, "search worker %d (CUDA device %d): %.900s",
                         tw->index, tw->device, keep);
            else
                snprintf(r.err, sizeof r.err, "search worker %d: %.960s", tw->index, keep);
        }
        pthread_mutex_lock(&tp->mu);
        /* at most n jobs are in flight, so the ring has room */
        tp->results[(tp->res_head + tp->res_count) % tp->n] = r;
        tp->res_count++;
        pthread_cond_broadcast(&tp->done);
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

static int thread_submit(ast_eval_pool *p, const ast_eval_job *job) {
    thread_pool *tp = (thread_pool *)p;
    pthread_mutex_lock(&tp->mu);
    if (tp->job_count >= tp->n) {
        pthread_mutex_unlock(&tp->mu);
        return ast_fail("internal: thread pool: more jobs than workers");
    }
    tp->jobs[(tp->job_head + tp->job_count) % tp->n] = *job;
    tp->job_count++;
    pthread_cond_signal(&tp->work);
    pthread_mutex_unlock(&tp->mu);
    return 0;
}

static void deadline_in(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    double whole = floor(seconds);
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int thread_wait(ast_eval_pool *p, double timeout_s, ast_eval_result *out) {
    thread_pool *tp = (thread_pool *)p;
    struct timespec ts;
    deadline_in(&ts, timeout_s);
    pthread_mutex_lock(&tp->mu);
    while (tp->res_count == 0) {
        int e = pthread_cond_timedwait(&tp->done, &tp->mu, &ts);
        if (e == ETIMEDOUT) break;
        if (e != 0) {
            pthread_mutex_unlock(&tp->mu);
            return ast_fail("waiting for the worker threads: %s", strerror(e));
        }
    }
    int got = tp->res_count > 0;
    if (got) {
        *out = tp->results[tp->res_head];
        tp->res_head = (tp->res_head + 1) % tp->n;
        tp->res_count--;
    }
    pthread_mutex_unlock(&tp->mu);
    return got;
}

static void thread_destroy(ast_eval_pool *p) {
    thread_pool *tp = (thread_pool *)p;
    if (!tp) return;
    if (tp->mutex_ok && tp->work_ok) {
        pthread_mutex_lock(&tp->mu);
        tp->quit = 1;
        pthread_cond_broadcast(&tp->work);
        pthread_mutex_unlock(&tp->mu);
    }
    for (int i = 0; tp->workers && i < tp->n; i++) {
        thread_worker *tw = &tp->workers[i];
        if (tw->started) pthread_join(tw->thread, NULL);
        if (tw->index > 0) free(tw->w.out);
        ast_evaluator_free(tw->own);
    }
    for (int i = 0; tp->results && i < tp->res_count; i++)
        ast_eval_result_clear(&tp->results[(tp->res_head + i) % tp->n]);
    if (tp->done_ok) pthread_cond_destroy(&tp->done);
    if (tp->work_ok) pthread_cond_destroy(&tp->work);
    if (tp->mutex_ok) pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp->jobs);
    free(tp->results);
    free(tp);
}

int ast_eval_pool_threads(const ast_eval_worker *w0, int n, const int *devices, int omp_threads,
                          ast_make_evaluator_fn make, void *make_user, ast_eval_pool **out) {
    *out = NULL;
    if (n < 2) return ast_fail("internal: a thread pool needs at least 2 workers, got %d", n);
    thread_pool *tp = ast_calloc(1, sizeof *tp, "the evaluation pool");
    if (!tp) return -1;
    tp->base.capacity = n;
    snprintf(tp->base.what, sizeof tp->base.what, "%d worker threads", n);
    tp->base.submit = thread_submit;
    tp->base.wait = thread_wait;
    tp->base.destroy = thread_destroy;
    tp->n = n;
    tp->omp_threads = omp_threads;
    tp->make = make;
    tp->make_user = make_user;
    tp->jobs = ast_calloc((size_t)n, sizeof *tp->jobs, "the job queue");
    tp->results = ast_calloc((size_t)n, sizeof *tp->results, "the result queue");
    tp->workers = ast_calloc((size_t)n, sizeof *tp->workers, "the workers");
    if (!tp->jobs || !tp->results || !tp->workers) goto fail;
    int e = pthread_mutex_init(&tp->mu, NULL);
    if (e == 0) {
        tp->mutex_ok = 1;
        e = pthread_cond_init(&tp->work, NULL);
    }
    if (e == 0) {
        tp->work_ok = 1;
        e = pthread_cond_init(&tp->done, NULL);
    }
    if (e != 0) {
        ast_error_set("cannot make the worker threads' locks: %s", strerror(e));
        goto fail;
    }
    tp->done_ok = 1;
    for (int i = 0; i < n; i++) {
        thread_worker *tw = &tp->workers[i];
        tw->tp = tp;
        tw->index = i;
        tw->device = devices ? devices[i] : 0;
        tw->w = *w0;
        tw->w.between = thread_between;
        tw->w.between_user = tp;
        if (i > 0) {
            tw->w.ev = NULL;
            tw->w.out = NULL;
        }
        e = pthread_create(&tw->thread, NULL, thread_main, tw);
        if (e != 0) {
            ast_error_set("cannot start worker thread %d of %d: %s", i, n, strerror(e));
            goto fail;
        }
        tw->started = 1;
    }
    /* wait until every worker has its evaluator (model loads run in parallel) */
    pthread_mutex_lock(&tp->mu);
    for (;;) {
        int starting = 0, failed = -1;
        for (int i = 0; i < n; i++) {
            starting += tp->workers[i].state == 0;
            if (tp->workers[i].state < 0 && failed < 0) failed = i;
        }
        if (failed >= 0 && starting == 0) {
            thread_worker *tw = &tp->workers[failed];
            pthread_mutex_unlock(&tp->mu);
            ast_error_set("search worker %d (device %d) could not start: %s", failed, tw->device,
                          tw->err);
            goto fail;
        }
        if (starting == 0) break;
        pthread_cond_wait(&tp->done, &tp->mu);
    }
    pthread_mutex_unlock(&tp->mu);
    *out = &tp->base;
    return 0;
fail:
    thread_destroy(&tp->base);
    return -1;
}
