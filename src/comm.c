/* comm.c — shard ranges and the threads implementation of comm.h.
 *
 * threads: each rank posts its send buffer, displacements and counts in its slot, all meet at a
 * barrier, each copies what the others posted for it, and all meet again (so no rank reuses its
 * send buffer while a peer still reads it). The barrier is a mutex/condition-variable one that an
 * abort wakes up, so a failed rank cannot leave the others waiting. */
#include "comm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void ast_shard_range(int64_t n, int P, int p, int64_t *first, int64_t *count) {
    int64_t base = n / P, extra = n % P;
    *count = base + (p < extra);
    *first = (int64_t)p * base + (p < extra ? p : extra);
}

void ast_comm_abort(ast_comm *c) {
    if (c) c->vt->abort(c);
}

void ast_comm_free(ast_comm *c) {
    if (c) c->vt->destroy(c);
}

/* ---- threads ---------------------------------------------------------------------------- */

typedef struct {
    ast_comm base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waiting;              /* ranks at the barrier */
    unsigned long generation; /* barrier round */
    int aborted;
    struct {
        const char *send;
        const int64_t *scount, *sdispl;
        int elem_bytes;
    } post[AST_MAX_RANKS];
} comm_threads;

static int barrier(comm_threads *t) {
    pthread_mutex_lock(&t->mu);
    if (t->aborted) {
        pthread_mutex_unlock(&t->mu);
        return -1;
    }
    unsigned long gen = t->generation;
    if (++t->waiting == t->base.size) {
        t->waiting = 0;
        t->generation++;
        pthread_cond_broadcast(&t->cv);
    } else {
        while (gen == t->generation && !t->aborted) pthread_cond_wait(&t->cv, &t->mu);
    }
    int rc = t->aborted ? -1 : 0;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int threads_alltoallv(ast_comm *c, int rank, const void *send, const int64_t *scount,
                             const int64_t *sdispl, void *recv, const int64_t *rcount,
                             const int64_t *rdispl, int elem_bytes, void *stream) {
    comm_threads *t = (comm_threads *)c;
    (void)stream;
    t->post[rank].send = send;
    t->post[rank].scount = scount;
    t->post[rank].sdispl = sdispl;
    t->post[rank].elem_bytes = elem_bytes;
    if (barrier(t))
        return ast_fail("sequence-parallel exchange on rank %d: another rank failed", rank);
    int bad = -1;
    for (int i = 0; i < c->size; i++) {
        if (t->post[i].scount[rank] != rcount[i] || t->post[i].elem_bytes != elem_bytes) {
            bad = i;
            continue;
        }
        memcpy((char *)recv + rdispl[i] * elem_bytes,
               t->post[i].send + t->post[i].sdispl[rank] * elem_bytes,
               (size_t)(rcount[i] * elem_bytes));
    }
    int rc = barrier(t);
    if (bad >= 0) {
        ast_comm_abort(c);
        return ast_fail("internal: sequence-parallel exchange: rank %d expects %lld elements of "
                        "%d bytes from rank %d, which sends %lld of %d bytes",
                        rank, (long long)rcount[bad], elem_bytes, bad,
                        (long long)t->post[bad].scount[rank], t->post[bad].elem_bytes);
    }
    if (rc) return ast_fail("sequence-parallel exchange on rank %d: another rank failed", rank);
    return 0;
}

static void threads_abort(ast_comm *c) {
    comm_threads *t = (comm_threads *)c;
    pthread_mutex_lock(&t->mu);
    t->aborted = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void threads_destroy(ast_comm *c) {
    comm_threads *t = (comm_threads *)c;
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static const ast_comm_vtable threads_vt = {threads_alltoallv, threads_abort, threads_destroy};

int ast_comm_threads_create(int P, ast_comm **out) {
    *out = NULL;
    if (P < 1 || P > AST_MAX_RANKS)
        return ast_fail("sequence parallelism over %d ranks: must be 1 to %d", P, AST_MAX_RANKS);
    comm_threads *t = ast_calloc(1, sizeof *t, "the sequence-parallel group");
    if (!t) return -1;
    if (pthread_mutex_init(&t->mu, NULL) || pthread_cond_init(&t->cv, NULL)) {
        free(t);
        return ast_fail("creating the sequence-parallel group: pthread initialisation failed");
    }
    t->base.vt = &threads_vt;
    t->base.size = P;
    t->base.kind = "threads";
    *out = &t->base;
    return 0;
}
