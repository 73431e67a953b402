/*
 * workq.c - mutex + condition variable FIFO shared by N threads. Nodes are
 * recycled through a free list so steady-state pushes do not malloc.
 *
 * Wake-ups: a push signals only when a worker sleeps that no earlier push
 * has already signalled (sleeping > woken), and it signals after dropping
 * the mutex, so the woken worker does not block at once on the mutex the
 * pusher still holds. A worker that finishes a job takes the next one
 * without sleeping. No wake-up is lost: a worker checks the queue under the
 * mutex before it sleeps.
 */
#include "lib/workq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct wq_node {
    struct wq_node *next;
    workq_fn fn;
    void *arg;
} wq_node;

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wq_node *head, *tail, *free;
    size_t depth;
    int sleeping, woken; /* workers in cond_wait; signals not yet consumed */
    bool stopping;
    int nthreads;
    pthread_t *threads;
};

static wq_node *take(workq *q)
{
    wq_node *n = q->head;
    q->head = n->next;
    if (!q->head) q->tail = NULL;
    q->depth--;
    return n;
}

static void *worker_main(void *p)
{
    workq *q = p;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stopping) {
            q->sleeping++;
            pthread_cond_wait(&q->cv, &q->mu);
            q->sleeping--;
            if (q->woken) q->woken--;
        }
        if (!q->head) break; /* stopping and drained */
        wq_node *n = take(q);
        pthread_mutex_unlock(&q->mu);
        n->fn(n->arg);
        pthread_mutex_lock(&q->mu);
        n->next = q->free;
        q->free = n;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

workq *workq_start(int nthreads)
{
    workq *q = calloc(1, sizeof *q);
    if (!q) abort();
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->nthreads = nthreads < 1 ? 1 : nthreads;
    q->threads = calloc((size_t)q->nthreads, sizeof *q->threads);
    if (!q->threads) abort();
    for (int i = 0; i < q->nthreads; i++) pthread_create(&q->threads[i], NULL, worker_main, q);
    return q;
}

void workq_push(workq *q, workq_fn fn, void *arg)
{
    pthread_mutex_lock(&q->mu);
    wq_node *n = q->free;
    if (n)
        q->free = n->next;
    else if (!(n = malloc(sizeof *n)))
        abort();
    n->fn = fn;
    n->arg = arg;
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->depth++;
    bool wake = q->sleeping > q->woken;
    if (wake) q->woken++;
    pthread_mutex_unlock(&q->mu);
    if (wake) pthread_cond_signal(&q->cv);
}

size_t workq_depth(workq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t d = q->depth;
    pthread_mutex_unlock(&q->mu);
    return d;
}

void workq_stop(workq *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
    while (q->free) {
        wq_node *n = q->free;
        q->free = n->next;
        free(n);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->threads);
    free(q);
}
