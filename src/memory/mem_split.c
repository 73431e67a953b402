/*
 * mem_split.c - the half-precision scan of a large collection, shared with
 * a helper thread.
 *
 * A search of one large persona is one request on one worker; on a machine
 * with a second core idle, half of its scan can run there. The rows are
 * cut into chunks that both threads take from one atomic counter, so if the
 * helper is slow to wake (or busy with another search's chunks) the searcher
 * simply takes them all and is never slower than scanning alone by more
 * than a wake-up call. One search at a time owns the helper (a trylock);
 * the others scan alone.
 *
 * Lifetime of a job: the searcher fills sp->job and posts it, scans chunks,
 * then (under mu) withdraws the job if the helper never took it, or waits
 * until the helper has left it. Only then does it release ownership, so the
 * helper never touches a job that is being reused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/log.h"
#include "memory/mem_internal.h"
#include "memory/mem_scan.h"

#define SPLIT_MIN_ROWS 4096 /* below this, the wake-up costs more than it saves */
#define SPLIT_CHUNKS   8

typedef struct split_job {
    const uint16_t *half;
    const float *q;
    const uint8_t *keep;
    float *scores;
    size_t n, chunk;
    int dim;
    atomic_size_t next; /* next chunk to take */
} split_job;

struct mem_split {
    pthread_mutex_t owner; /* held by the search using the helper */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool posted; /* a job waits for the helper */
    bool in_job; /* the helper is scanning chunks of it */
    bool quit;
    split_job job;
    pthread_t thread;
};

static void run_chunks(split_job *j)
{
    size_t c;
    while ((c = atomic_fetch_add(&j->next, 1)) < SPLIT_CHUNKS) {
        size_t from = c * j->chunk, to = from + j->chunk < j->n ? from + j->chunk : j->n;
        if (from < to) mem_half_scores(j->half, from, to, j->dim, j->q, j->keep, j->scores);
    }
}

static void *split_main(void *arg)
{
    mem_split *sp = arg;
    pthread_mutex_lock(&sp->mu);
    for (;;) {
        while (!sp->posted && !sp->quit) pthread_cond_wait(&sp->cv, &sp->mu);
        if (sp->quit) break;
        sp->posted = false;
        sp->in_job = true;
        pthread_mutex_unlock(&sp->mu);
        run_chunks(&sp->job);
        pthread_mutex_lock(&sp->mu);
        sp->in_job = false;
        pthread_cond_broadcast(&sp->cv);
    }
    pthread_mutex_unlock(&sp->mu);
    return NULL;
}

mem_split *mem_split_start(void)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return NULL;
    mem_split *sp = calloc(1, sizeof *sp);
    if (!sp) abort();
    pthread_mutex_init(&sp->owner, NULL);
    pthread_mutex_init(&sp->mu, NULL);
    pthread_cond_init(&sp->cv, NULL);
    if (pthread_create(&sp->thread, NULL, split_main, sp) != 0) {
        log_warn("scan helper thread not started", NULL);
        pthread_mutex_destroy(&sp->owner);
        pthread_mutex_destroy(&sp->mu);
        pthread_cond_destroy(&sp->cv);
        free(sp);
        return NULL;
    }
    pthread_setname_np(sp->thread, "scan-helper");
    return sp;
}

void mem_split_stop(mem_split *sp)
{
    if (!sp) return;
    pthread_mutex_lock(&sp->mu);
    sp->quit = true;
    pthread_cond_broadcast(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->thread, NULL);
    pthread_mutex_destroy(&sp->owner);
    pthread_mutex_destroy(&sp->mu);
    pthread_cond_destroy(&sp->cv);
    free(sp);
}

void mem_split_half_scores(mem_split *sp, const uint16_t *half, size_t n, int dim, const float *q,
                           const uint8_t *keep, float *scores)
{
    if (!sp || n < SPLIT_MIN_ROWS || pthread_mutex_trylock(&sp->owner) != 0) {
        mem_half_scores(half, 0, n, dim, q, keep, scores);
        return;
    }
    split_job *j = &sp->job;
    j->half = half;
    j->q = q;
    j->keep = keep;
    j->scores = scores;
    j->n = n;
    j->dim = dim;
    j->chunk = (n + SPLIT_CHUNKS - 1) / SPLIT_CHUNKS;
    atomic_store(&j->next, 0);
    pthread_mutex_lock(&sp->mu);
    sp->posted = true;
    pthread_cond_broadcast(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    run_chunks(j);
    pthread_mutex_lock(&sp->mu);
    sp->posted = false; /* not taken yet: withdrawn (every chunk is done) */
    while (sp->in_job) pthread_cond_wait(&sp->cv, &sp->mu);
    pthread_mutex_unlock(&sp->mu);
    pthread_mutex_unlock(&sp->owner);
}
