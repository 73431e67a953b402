/*
 * workq.h - a fixed pool of worker threads fed by one FIFO queue.
 *
 * Workers run requests that may block (SQLite, vector scans, embedding).
 * Jobs never touch libwebsockets objects: they hand results back through
 * net_complete(). workq_stop() runs every job already queued, then joins.
 * Ownership: the queue owns nothing but its nodes; `arg` belongs to fn.
 */
#ifndef PMCP_WORKQ_H
#define PMCP_WORKQ_H

#include <stddef.h>

typedef struct workq workq;
typedef void (*workq_fn)(void *arg);

workq *workq_start(int nthreads);
void workq_push(workq *q, workq_fn fn, void *arg);
size_t workq_depth(workq *q); /* jobs waiting, for metrics */
void workq_stop(workq *q);    /* drain, join, free */

#endif
