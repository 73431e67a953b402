/*
 * test_workq.c - the worker pool (src/lib/workq.c).
 *
 * Jobs record their execution in per-job atomic counters, so "ran exactly
 * once" is checked job by job rather than by a total. Draining and depth are
 * made deterministic with a gate: the first job of a one-thread queue blocks
 * on a condition variable until the test opens it, so every job pushed
 * meanwhile is known to be waiting. Only the test thread calls cmocka
 * assertions; job functions and helper threads just record what happened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/workq.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct counters {
    atomic_int *runs; /* one per job */
    atomic_int total;
} counters;

typedef struct job {
    counters *c;
    int index;
} job;

static void count_job(void *arg)
{
    job *j = arg;
    atomic_fetch_add(&j->c->runs[j->index], 1);
    atomic_fetch_add(&j->c->total, 1);
}

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->entered = g->open = false;
}

static void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* Job: announce entry, then block until the gate opens. */
static void gate_job(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- tests --------------------------------------------------------------- */

static void test_all_jobs_run_exactly_once(void **state)
{
    (void)state;
    enum { N = 50000 };
    counters c = {.runs = calloc(N, sizeof(atomic_int))};
    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    workq *q = workq_start(4);
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){&c, i};
        workq_push(q, count_job, &jobs[i]);
    }
    workq_stop(q);
    assert_int_equal(atomic_load(&c.total), N);
    for (int i = 0; i < N; i++)
        if (atomic_load(&c.runs[i]) != 1) fail_msg("job %d ran %d times", i, c.runs[i]);
    free(jobs);
    free(c.runs);
}

typedef struct producer {
    workq *q;
    job *jobs;
    int n;
} producer;

static void *producer_main(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < p->n; i++) workq_push(p->q, count_job, &p->jobs[i]);
    return NULL;
}

static void test_concurrent_producers(void **state)
{
    (void)state;
    enum { PRODUCERS = 4, EACH = 20000, N = PRODUCERS * EACH };
    counters c = {.runs = calloc(N, sizeof(atomic_int))};
    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) jobs[i] = (job){&c, i};
    workq *q = workq_start(3);
    pthread_t th[PRODUCERS];
    producer pr[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (producer){q, jobs + i * EACH, EACH};
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &pr[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_join(th[i], NULL);
    workq_stop(q);
    assert_int_equal(atomic_load(&c.total), N);
    for (int i = 0; i < N; i++)
        if (atomic_load(&c.runs[i]) != 1) fail_msg("job %d ran %d times", i, c.runs[i]);
    free(jobs);
    free(c.runs);
}

/* Jobs that push more jobs from inside a worker. */
typedef struct chain {
    workq *q;
    atomic_int left;
    atomic_int ran;
} chain;

static void chain_job(void *arg)
{
    chain *ch = arg;
    atomic_fetch_add(&ch->ran, 1);
    if (atomic_fetch_sub(&ch->left, 1) > 1) workq_push(ch->q, chain_job, ch);
}

static void test_jobs_may_push_jobs(void **state)
{
    (void)state;
    chain ch = {.q = workq_start(2)};
    atomic_init(&ch.left, 1000);
    workq_push(ch.q, chain_job, &ch);
    /* wait for the chain to finish before stopping (stop only drains what
     * is queued at the time) */
    for (int i = 0; i < 5000 && atomic_load(&ch.left) > 0; i++) sleep_ms(1);
    workq_stop(ch.q);
    assert_int_equal(atomic_load(&ch.ran), 1000);
}

/* Order recorder: each job appends its number. */
typedef struct order_log {
    atomic_int pos;
    int seen[4096];
} order_log;

typedef struct order_job {
    order_log *log;
    int v;
} order_job;

static void order_fn(void *arg)
{
    order_job *j = arg;
    int at = atomic_fetch_add(&j->log->pos, 1);
    if (at < 4096) j->log->seen[at] = j->v;
}

static void test_fifo_with_one_worker(void **state)
{
    (void)state;
    enum { N = 2000 };
    order_log *log = calloc(1, sizeof *log);
    order_job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(log);
    assert_non_null(jobs);
    workq *q = workq_start(1);
    gate g;
    gate_init(&g);
    workq_push(q, gate_job, &g); /* hold the worker so the queue fills first */
    gate_wait_entered(&g);
    for (int i = 0; i < N; i++) {
        jobs[i] = (order_job){log, i};
        workq_push(q, order_fn, &jobs[i]);
    }
    gate_open(&g);
    workq_stop(q);
    assert_int_equal(atomic_load(&log->pos), N);
    for (int i = 0; i < N; i++)
        if (log->seen[i] != i) fail_msg("position %d ran job %d", i, log->seen[i]);
    gate_destroy(&g);
    free(jobs);
    free(log);
}

static void test_depth_counts_waiting_jobs(void **state)
{
    (void)state;
    enum { N = 100 };
    counters c = {.runs = calloc(N, sizeof(atomic_int))};
    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    workq *q = workq_start(1);
    assert_int_equal(workq_depth(q), 0);
    gate g;
    gate_init(&g);
    workq_push(q, gate_job, &g);
    gate_wait_entered(&g);
    assert_int_equal(workq_depth(q), 0); /* the running job is not waiting */
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){&c, i};
        workq_push(q, count_job, &jobs[i]);
        assert_int_equal(workq_depth(q), (size_t)i + 1);
    }
    assert_int_equal(atomic_load(&c.total), 0);
    gate_open(&g);
    for (int i = 0; i < 5000 && workq_depth(q) > 0; i++) sleep_ms(1);
    assert_int_equal(workq_depth(q), 0);
    /* the nodes are recycled: pushing again after the drain still works */
    for (int i = 0; i < N; i++) workq_push(q, count_job, &jobs[i]);
    workq_stop(q);
    assert_int_equal(atomic_load(&c.total), 2 * N);
    for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&c.runs[i]), 2);
    gate_destroy(&g);
    free(jobs);
    free(c.runs);
}

typedef struct stopper {
    workq *q;
    atomic_bool returned;
} stopper;

static void *stopper_main(void *arg)
{
    stopper *s = arg;
    workq_stop(s->q);
    atomic_store(&s->returned, true);
    return NULL;
}

static void test_stop_drains_queued_jobs(void **state)
{
    (void)state;
    enum { N = 500 };
    counters c = {.runs = calloc(N, sizeof(atomic_int))};
    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    workq *q = workq_start(2);
    gate g1, g2;
    gate_init(&g1);
    gate_init(&g2);
    /* Both workers blocked, N jobs waiting, then stop is requested. */
    workq_push(q, gate_job, &g1);
    workq_push(q, gate_job, &g2);
    gate_wait_entered(&g1);
    gate_wait_entered(&g2);
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){&c, i};
        workq_push(q, count_job, &jobs[i]);
    }
    assert_int_equal(workq_depth(q), N);
    stopper s = {.q = q};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
    sleep_ms(50); /* let stop set its flag while the workers are still held */
    assert_false(atomic_load(&s.returned)); /* stop waits for running jobs */
    assert_int_equal(atomic_load(&c.total), 0);
    gate_open(&g1);
    gate_open(&g2);
    pthread_join(th, NULL);
    assert_true(atomic_load(&s.returned));
    assert_int_equal(atomic_load(&c.total), N);
    for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&c.runs[i]), 1);
    gate_destroy(&g1);
    gate_destroy(&g2);
    free(jobs);
    free(c.runs);
}

static void test_stop_right_after_push(void **state)
{
    (void)state;
    enum { N = 20000 };
    counters c = {.runs = calloc(N, sizeof(atomic_int))};
    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    for (int round = 0; round < 5; round++) {
        atomic_store(&c.total, 0);
        workq *q = workq_start(3);
        for (int i = 0; i < N; i++) {
            jobs[i] = (job){&c, i};
            workq_push(q, count_job, &jobs[i]);
        }
        workq_stop(q);
        assert_int_equal(atomic_load(&c.total), N);
    }
    for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&c.runs[i]), 5);
    free(jobs);
    free(c.runs);
}

/* Pushes that come while the workers sleep, in bursts of 1 to 4, each burst
 * waited for before the next: a push signals only a worker no earlier push
 * signalled, so a lost wake-up would leave a burst unrun (without
 * workq_stop, which would run it) and time out here. */
static void test_bursts_wake_sleeping_workers(void **state)
{
    (void)state;
    enum { ROUNDS = 300, MAXB = 4 };
    counters c = {.runs = calloc(ROUNDS * MAXB, sizeof(atomic_int))};
    job *jobs = calloc(ROUNDS * MAXB, sizeof *jobs);
    assert_non_null(c.runs);
    assert_non_null(jobs);
    workq *q = workq_start(3);
    int pushed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int burst = 1 + r % MAXB;
        for (int b = 0; b < burst; b++, pushed++) {
            jobs[pushed] = (job){&c, pushed};
            workq_push(q, count_job, &jobs[pushed]);
        }
        struct timespec t0, t1, nap = {0, 50000};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (atomic_load(&c.total) < pushed) {
            nanosleep(&nap, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 10) fail_msg("round %d: burst of %d not run", r, burst);
        }
        if (r % 3 == 0) nanosleep(&(struct timespec){0, 200000}, NULL); /* let them sleep */
    }
    workq_stop(q);
    assert_int_equal(atomic_load(&c.total), pushed);
    free(jobs);
    free(c.runs);
}

static void test_thread_count_edge_cases(void **state)
{
    (void)state;
    counters c = {.runs = calloc(1, sizeof(atomic_int))};
    assert_non_null(c.runs);
    job j = {&c, 0};
    /* 0 and negative thread counts still give one worker */
    workq *q = workq_start(0);
    workq_push(q, count_job, &j);
    workq_stop(q);
    q = workq_start(-3);
    workq_push(q, count_job, &j);
    workq_stop(q);
    assert_int_equal(atomic_load(&c.runs[0]), 2);
    /* an idle pool stops promptly; stop(NULL) is a no-op */
    workq_stop(workq_start(8));
    workq_stop(NULL);
    free(c.runs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_jobs_run_exactly_once),
        cmocka_unit_test(test_concurrent_producers),
        cmocka_unit_test(test_jobs_may_push_jobs),
        cmocka_unit_test(test_fifo_with_one_worker),
        cmocka_unit_test(test_depth_counts_waiting_jobs),
        cmocka_unit_test(test_stop_drains_queued_jobs),
        cmocka_unit_test(test_stop_right_after_push),
        cmocka_unit_test(test_bursts_wake_sleeping_workers),
        cmocka_unit_test(test_thread_count_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
