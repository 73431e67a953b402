/*
 * store_writer.c - the writer thread and group commit.
 *
 * Callers append jobs to a FIFO (mutex + condition variable). The thread
 * takes every job waiting, up to max_batch, and runs them as one group:
 *
 *   BEGIN IMMEDIATE
 *     SAVEPOINT store_job; job 1; RELEASE       (on error: ROLLBACK TO; RELEASE)
 *     SAVEPOINT store_job; job 2; RELEASE ...
 *   COMMIT
 *
 * and only then completes the jobs: a blocking caller (store_write) is woken
 * with its own rc, an async job's done callback runs. One commit - one WAL
 * append - is shared by every job of the group, which is where the speed-up
 * comes from: while one group commits, the next one queues up, so the group
 * grows with the load by itself, with no timer. When the jobs come from a
 * pipeline whose next writes are still being prepared (embedded, scored),
 * the queue is often a single job; such writes are announced first
 * (store_writer_expect), and while announced writes are on their way the
 * thread holds the group open for up to wait_us, so they share the commit.
 * A write nobody announced, or one arriving when none is announced, never
 * waits.
 *
 * A job that fails is undone alone by its savepoint. Some errors (I/O, disk
 * full, out of memory) make SQLite roll back the whole transaction, and a
 * misbehaving job may end it itself; the thread notices (autocommit is on
 * again), settles that job, and - if the transaction was rolled back, which
 * a commit hook tells apart from a commit - runs the group's other unsettled
 * jobs again in a new transaction. Every pass settles at least one job, so
 * this ends. If COMMIT fails, every job not already failed gets its error.
 *
 * Hooks (store_set_hooks) are handed over under the mutex and installed by
 * this thread before its next group: the row hook as SQLite's update hook on
 * the connection, the after-commit hook called once a group committed,
 * before its jobs are reported done.
 *
 * Blocking jobs live on their caller's stack with the caller's own condition
 * variable, so a commit wakes exactly its waiters. store_write() called on
 * the writer thread (from a done callback) would wait for itself forever; it
 * returns SQLITE_MISUSE instead. Stopping sets a flag; the thread exits only
 * when the queue is empty, so every job queued before (or by a done callback
 * during) store_close runs and commits.
 */
#include "store/store.h"

#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

/* Arrays, not macros: the statement cache is keyed by address, and each of
 * these must have exactly one. */
static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_SAVE[] = "SAVEPOINT store_job";
static const char SQL_RELEASE[] = "RELEASE store_job";
static const char SQL_UNDO[] = "ROLLBACK TO store_job";

typedef struct wjob {
    store_write_fn fn;
    store_done_fn done;
    void *ctx;
    pthread_cond_t *waiter; /* blocking job: its caller's; NULL when async */
    int rc;
    bool settled;  /* rc is final (failed, or committed on its own) */
    bool finished; /* blocking: completion seen by the waiter, under mu */
    struct wjob *next;
} wjob;

struct store_writer {
    pthread_mutex_t mu;
    pthread_cond_t work; /* signalled when a job is queued or stop is asked */
    wjob *head, *tail;
    uint64_t depth;
    int expected; /* announced writes not yet queued */
    int wait_us;
    int sync_fd; /* -1, or the new database file to sync before the first job */
    bool stopping, exited;
    store_row_fn new_row; /* hooks handed over, under mu */
    store_commit_fn new_after;
    void *new_ctx;
    bool hooks_changed;
    pthread_t thread;
    /* writer thread only */
    store_conn *conn;
    int max_batch;
    wjob **batch;
    bool hook_committed;
    store_row_fn row_hook; /* installed */
    store_commit_fn after_hook;
    void *hook_ctx;
    uint64_t group_commits, group_commit_errors;
    /* statistics, under mu */
    uint64_t writes, write_errors, commits, commit_errors, batch_sum;
    uint64_t batch_le[STORE_BATCH_BUCKETS];
};

/* ---- queue --------------------------------------------------------------- */

static int enqueue_locked(store_writer *w, wjob *j)
{
    if (w->exited) {
        log_error("store write after the writer stopped", NULL);
        return SQLITE_MISUSE;
    }
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->depth++;
    pthread_cond_signal(&w->work);
    return SQLITE_OK;
}

static int take_batch_locked(store_writer *w)
{
    int n = 0;
    while (w->head && n < w->max_batch) {
        wjob *j = w->head;
        w->head = j->next;
        j->next = NULL;
        w->batch[n++] = j;
    }
    if (!w->head) w->tail = NULL;
    w->depth -= (uint64_t)n;
    return n;
}

/* ---- running one group --------------------------------------------------- */

static int on_commit(void *arg)
{
    ((store_writer *)arg)->hook_committed = true;
    return 0; /* let it commit */
}

static void settle(wjob *j, int rc)
{
    j->rc = rc;
    j->settled = true;
}

static void settle_rest(store_writer *w, int n, int rc)
{
    for (int i = 0; i < n; i++) {
        if (!w->batch[i]->settled) settle(w->batch[i], rc);
    }
}

/* Undo one job's savepoint; if even that fails, drop the whole transaction
 * (the caller then sees autocommit and retries the others). */
static void undo_job(store_writer *w)
{
    if (store_conn_exec(w->conn, SQL_UNDO) == SQLITE_OK &&
        store_conn_exec(w->conn, SQL_RELEASE) == SQLITE_OK)
        return;
    log_error("savepoint rollback failed, rolling back the group", NULL);
    store_conn_exec(w->conn, SQL_ROLLBACK);
}

static int run_job(store_writer *w, wjob *j)
{
    int rc = store_conn_exec(w->conn, SQL_SAVE);
    if (rc != SQLITE_OK) return rc;
    w->hook_committed = false;
    rc = j->fn(w->conn, j->ctx);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    store_conn_reset_busy(w->conn); /* a statement mid-step would block COMMIT */
    if (sqlite3_get_autocommit(store_conn_db(w->conn))) return rc; /* transaction gone */
    if (rc == SQLITE_OK) rc = store_conn_exec(w->conn, SQL_RELEASE);
    if (rc != SQLITE_OK) undo_job(w);
    return rc;
}

/* Job k ended the transaction. Committed: k and the jobs before it are
 * durable. Rolled back: k failed, the others will be run again. */
static void transaction_lost(store_writer *w, int k, int rc)
{
    if (!w->hook_committed) {
        log_warn("group transaction rolled back by a job, retrying the others", "rc=%d", rc);
        settle(w->batch[k], rc == SQLITE_OK ? SQLITE_ABORT : rc);
        return;
    }
    log_error("a write job committed the group transaction itself", NULL);
    w->group_commits++;
    for (int i = 0; i < k; i++) {
        if (!w->batch[i]->settled) settle(w->batch[i], SQLITE_OK);
    }
    settle(w->batch[k], rc);
}

/* One pass over the unsettled jobs. Returns false if the transaction was
 * lost and another pass is needed. */
static bool run_pass(store_writer *w, int n)
{
    sqlite3 *db = store_conn_db(w->conn);
    for (int i = 0; i < n; i++) {
        wjob *j = w->batch[i];
        if (j->settled) continue;
        int rc = run_job(w, j);
        if (sqlite3_get_autocommit(db)) {
            transaction_lost(w, i, rc);
            return false;
        }
        if (rc != SQLITE_OK) settle(j, rc);
    }
    return true;
}

static void group_commit(store_writer *w, int n)
{
    int rc = store_conn_exec(w->conn, SQL_COMMIT);
    if (rc == SQLITE_OK) {
        w->group_commits++;
        settle_rest(w, n, SQLITE_OK);
        return;
    }
    log_error("group commit failed", "error=\"%s\" jobs=%d", sqlite3_errstr(rc), n);
    w->group_commit_errors++;
    if (!sqlite3_get_autocommit(store_conn_db(w->conn))) store_conn_exec(w->conn, SQL_ROLLBACK);
    settle_rest(w, n, rc);
}

static bool all_settled(store_writer *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (!w->batch[i]->settled) return false;
    }
    return true;
}

static void run_group(store_writer *w, int n)
{
    for (;;) {
        if (all_settled(w, n)) return; /* nothing left to commit */
        int rc = store_conn_exec(w->conn, SQL_BEGIN);
        if (rc != SQLITE_OK) {
            log_error("group BEGIN failed", "error=\"%s\" jobs=%d", sqlite3_errstr(rc), n);
            w->group_commit_errors++;
            settle_rest(w, n, rc);
            return;
        }
        if (run_pass(w, n)) break;
    }
    group_commit(w, n);
}

/* ---- completing a group -------------------------------------------------- */

static void account_locked(store_writer *w, int n)
{
    int b = 0;
    while (b < STORE_BATCH_BUCKETS - 1 && n > (1 << b)) b++;
    for (int i = b; i < STORE_BATCH_BUCKETS; i++) w->batch_le[i]++;
    w->batch_sum += (uint64_t)n;
    w->writes += (uint64_t)n;
    for (int i = 0; i < n; i++) {
        if (w->batch[i]->rc != SQLITE_OK) w->write_errors++;
    }
    w->commits += w->group_commits;
    w->commit_errors += w->group_commit_errors;
    w->group_commits = w->group_commit_errors = 0;
}

/* Wake the blocking callers. Their jobs vanish with their stacks as soon as
 * the mutex is released, so their slots are cleared here. */
static void wake_waiters_locked(store_writer *w, int n)
{
    for (int i = 0; i < n; i++) {
        wjob *j = w->batch[i];
        if (!j->waiter) continue;
        j->finished = true;
        pthread_cond_signal(j->waiter);
        w->batch[i] = NULL;
    }
}

static void call_done(store_writer *w, int n)
{
    for (int i = 0; i < n; i++) {
        wjob *j = w->batch[i];
        if (!j) continue;
        w->batch[i] = NULL;
        if (j->done) j->done(j->rc, j->ctx);
        free(j);
    }
}

/* Announced writes are on their way: give them up to wait_us to join. */
static void linger_locked(store_writer *w)
{
    if (w->expected <= 0 || w->wait_us <= 0) return;
    struct timespec ts = util_realtime_in((uint64_t)w->wait_us);
    while (w->expected > 0 && !w->stopping && w->depth < (uint64_t)w->max_batch)
        if (pthread_cond_timedwait(&w->work, &w->mu, &ts) == ETIMEDOUT) break;
}

/* A database just written from the schema image is made durable before
 * any job runs: no write is acknowledged, and no WAL frame depending on the
 * image is written, before the image is on disk (store_image.c). */
static void sync_new_file(store_writer *w)
{
    if (w->sync_fd < 0) return;
    if (fdatasync(w->sync_fd) != 0)
        log_error("fdatasync of the new database failed", "error=\"%s\"", strerror(errno));
    close(w->sync_fd);
    w->sync_fd = -1;
}

static void on_update(void *arg, int op, const char *db, const char *table, sqlite3_int64 rowid)
{
    (void)db;
    store_writer *w = arg;
    w->row_hook(w->hook_ctx, op, table, (int64_t)rowid);
}

static void install_hooks_locked(store_writer *w)
{
    w->row_hook = w->new_row;
    w->after_hook = w->new_after;
    w->hook_ctx = w->new_ctx;
    w->hooks_changed = false;
    sqlite3_update_hook(store_conn_db(w->conn), w->row_hook ? on_update : NULL, w);
}

static void *writer_main(void *arg)
{
    store_writer *w = arg;
    sync_new_file(w);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping) pthread_cond_wait(&w->work, &w->mu);
        if (!w->head) break; /* stopping and drained */
        linger_locked(w);
        int n = take_batch_locked(w);
        if (w->hooks_changed) install_hooks_locked(w);
        pthread_mutex_unlock(&w->mu);
        run_group(w, n);
        if (w->group_commits && w->after_hook) w->after_hook(w->hook_ctx);
        pthread_mutex_lock(&w->mu);
        account_locked(w, n);
        wake_waiters_locked(w, n);
        pthread_mutex_unlock(&w->mu);
        call_done(w, n); /* unlocked: a callback may queue more work */
        pthread_mutex_lock(&w->mu);
    }
    w->exited = true;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- public side --------------------------------------------------------- */

static void writer_free(store_writer *w)
{
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    free(w->batch);
    free(w);
}

store_writer *store_writer_start(store_conn *c, int max_batch, int wait_us, int sync_fd, char *err,
                                 size_t errlen)
{
    store_writer *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->sync_fd = sync_fd;
    w->conn = c;
    w->max_batch = max_batch;
    w->wait_us = wait_us;
    w->batch = calloc((size_t)max_batch, sizeof w->batch[0]);
    if (!w->batch) goto oom;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    sqlite3_commit_hook(store_conn_db(c), on_commit, w);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        sqlite3_commit_hook(store_conn_db(c), NULL, NULL);
        if (sync_fd >= 0) close(sync_fd);
        writer_free(w);
        return NULL;
    }
    pthread_setname_np(w->thread, "store-writer");
    return w;
oom:
    if (sync_fd >= 0) close(sync_fd);
    if (w) free(w->batch);
    free(w);
    snprintf(err, errlen, "writer: out of memory");
    return NULL;
}

void store_writer_hooks(store_writer *w, store_row_fn row, store_commit_fn after, void *ctx)
{
    pthread_mutex_lock(&w->mu);
    w->new_row = row;
    w->new_after = after;
    w->new_ctx = ctx;
    w->hooks_changed = true;
    pthread_mutex_unlock(&w->mu);
}

void store_writer_stop(store_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    sqlite3_commit_hook(store_conn_db(w->conn), NULL, NULL);
    writer_free(w);
}

int store_writer_write(store_writer *w, store_write_fn fn, void *ctx)
{
    if (pthread_equal(pthread_self(), w->thread)) {
        log_error("store_write called on the writer thread (would deadlock)", NULL);
        return SQLITE_MISUSE;
    }
    pthread_cond_t cv;
    pthread_cond_init(&cv, NULL);
    wjob j = {.fn = fn, .ctx = ctx, .waiter = &cv};
    pthread_mutex_lock(&w->mu);
    int rc = enqueue_locked(w, &j);
    while (rc == SQLITE_OK && !j.finished) pthread_cond_wait(&cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&cv);
    return rc == SQLITE_OK ? j.rc : rc;
}

void store_writer_expect(store_writer *w, int delta)
{
    pthread_mutex_lock(&w->mu);
    w->expected += delta;
    if (delta < 0) pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
}

void store_writer_submit(store_writer *w, store_write_fn fn, store_done_fn done, void *ctx,
                         bool expected)
{
    wjob *j = calloc(1, sizeof *j);
    int rc = SQLITE_NOMEM;
    if (j) {
        j->fn = fn;
        j->done = done;
        j->ctx = ctx;
    } else {
        log_error("store_submit: out of memory", NULL);
    }
    pthread_mutex_lock(&w->mu);
    if (expected) w->expected--; /* in the same step as the queueing */
    if (j) rc = enqueue_locked(w, j);
    pthread_mutex_unlock(&w->mu);
    if (rc == SQLITE_OK) return;
    free(j);
    if (done) done(rc, ctx);
}

void store_writer_stats(store_writer *w, store_stats *out)
{
    pthread_mutex_lock(&w->mu);
    out->writes = w->writes;
    out->write_errors = w->write_errors;
    out->commits = w->commits;
    out->commit_errors = w->commit_errors;
    for (int i = 0; i < STORE_BATCH_BUCKETS; i++) out->batch_le[i] = w->batch_le[i];
    out->batch_sum = w->batch_sum;
    out->queue_depth = w->depth;
    pthread_mutex_unlock(&w->mu);
}
