/*
 * llm_http.c - the upstream thread: one libcurl multi handle that runs
 * every backend HTTP request, streaming or not.
 *
 * The thread drives libcurl with its multi_socket API on our own epoll
 * set: libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION)
 * and when it next needs time (CURLMOPT_TIMERFUNCTION), and each wakeup
 * hands it only the sockets that are ready (curl_multi_socket_action). A
 * wakeup therefore costs O(ready sockets), not O(transfers), which is what
 * lets a thousand concurrent streams share one thread.
 *
 * Other threads queue requests (and cancellations) under a mutex and wake
 * the thread through an eventfd in the same epoll set; only the push that
 * finds the queues empty writes it, so a burst costs one wakeup. The
 * thread never blocks on anything but epoll_wait. Response bytes are cut
 * into lines here (a line may arrive split across network reads, or
 * several in one read) and handed to the request's on_line callback;
 * providers parse NDJSON or SSE from that. Cancelling removes the easy
 * handle from the multi at once, which closes the connection, so the
 * backend sees the abort immediately.
 *
 * Starting a request: the thread holds loop_mu except while it sleeps in
 * epoll_wait. A caller that finds loop_mu free (try-lock) and no transfer
 * running starts its request itself - add the handle, run libcurl's timer,
 * which sends it - and wakes the thread only if it now sleeps past a new
 * deadline; this saves a thread hand-off on the way to the first token.
 * Otherwise the request goes through the queue. Either way every
 * libcurl call and every callback runs under loop_mu, one at a time.
 *
 * Idle timeout: each request records the loop time of its last byte; the
 * thread keeps the earliest possible expiry as a deadline (a lower bound,
 * since bytes only push expiries later) and sweeps the active list when it
 * passes (the thread sleeps at most MAX_SLEEP_MS, so a request started by
 * another thread needs no wakeup for a later deadline). Easy handles are reset and kept
 * for reuse (a few spares) instead of being created per request.
 */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "llm/llm_internal.h"

#define ERRBODY_MAX    2048
#define LINE_MAX_BYTES (1 << 20)
#define MAX_EVENTS     256
#define SPARE_MAX      64 /* idle easy handles kept for reuse */
#define NEVER          UINT64_MAX
#define BATCH_EVENTS   16 /* ready sockets per batch_begin/batch_end */
/* The longest sleep: a request started by another thread whose deadlines
 * are later than this needs no wakeup (see start_here). */
#define MAX_SLEEP_MS 1000

struct up_req {
    atomic_int refs;
    atomic_bool cancelled;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    up_callbacks cb;
    void *ctx;
    char *line; /* partial line */
    size_t line_len, line_cap;
    char errbody[ERRBODY_MAX];
    size_t errlen;
    bool ended;
    bool idle_expired; /* our idle timer ended it (no byte for idle_ms) */
    int idle_ms;
    uint64_t last_byte_ns;
    struct up_req *next_add, *next_cancel;    /* queues */
    struct up_req *prev_active, *next_active; /* upstream thread's list */
    struct up_thread *thread;
};

typedef struct up_thread {
    pthread_t thread;
    pthread_mutex_t loop_mu; /* the multi handle and everything below "under loop_mu" */
    pthread_mutex_t mu;
    CURLM *multi;
    up_req *adds, *cancels; /* under mu */
    bool quit;              /* under mu */
    CURL *spare[SPARE_MAX]; /* under mu: reset easy handles */
    int nspare;
    int ep, wake_fd;
    /* under loop_mu: */
    int active;
    up_req *active_list;
    uint64_t now;       /* monotonic ns, read after each epoll_wait */
    uint64_t curl_due;  /* libcurl's timer (0 = at once, NEVER = none) */
    uint64_t idle_due;  /* earliest possible idle expiry */
    uint64_t sleep_due; /* the thread sleeps until then (NEVER: until woken) */
    void (*batch_begin)(void), (*batch_end)(void); /* optional (llm_set_batch_hooks) */
    int slice_us; /* asked of the scheduler for this thread (util_set_slice_us) */
} up_thread;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- easy handles: created, or reused from the spares ---------------------- */

static CURL *easy_get(up_thread *t)
{
    CURL *e = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->nspare) e = t->spare[--t->nspare];
    pthread_mutex_unlock(&t->mu);
    return e ? e : curl_easy_init();
}

/* Keep a finished request's handle for the next one (upstream thread). */
static void easy_recycle(up_thread *t, up_req *r)
{
    CURL *e = r->easy;
    r->easy = NULL;
    curl_easy_reset(e);
    pthread_mutex_lock(&t->mu);
    bool kept = t->nspare < SPARE_MAX;
    if (kept) t->spare[t->nspare++] = e;
    pthread_mutex_unlock(&t->mu);
    if (!kept) curl_easy_cleanup(e);
}

static void req_free(up_req *r)
{
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->line);
    free(r);
}

void up_unref(up_req *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) req_free(r);
}

/* ---- response bytes ------------------------------------------------------------ */

static long http_status(up_req *r)
{
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

static void emit_lines(up_req *r, const char *data, size_t n)
{
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (data + i)) : n - i;
        if (r->line_len + take + 1 > r->line_cap) {
            size_t cap = r->line_cap ? r->line_cap : 1024;
            while (cap < r->line_len + take + 1) cap *= 2;
            if (!(r->line = realloc(r->line, cap))) abort();
            r->line_cap = cap;
        }
        memcpy(r->line + r->line_len, data + i, take);
        r->line_len += take;
        i += take;
        if (!nl) break;
        i++; /* the newline */
        size_t len = r->line_len;
        if (len && r->line[len - 1] == '\r') len--;
        r->line[len] = 0;
        if (!atomic_load(&r->cancelled) && !r->cb.on_line(r->ctx, r->line, len))
            atomic_store(&r->cancelled, true);
        r->line_len = 0;
    }
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *p)
{
    up_req *r = p;
    size_t n = size * nmemb;
    r->last_byte_ns = r->thread->now;
    if (atomic_load(&r->cancelled)) return 0; /* aborts the transfer */
    long code = http_status(r);
    if (code < 200 || code >= 300) {
        size_t room = ERRBODY_MAX - 1 - r->errlen;
        size_t take = n < room ? n : room;
        memcpy(r->errbody + r->errlen, data, take);
        r->errlen += take;
        r->errbody[r->errlen] = 0;
        return n;
    }
    if (r->line_len + n > LINE_MAX_BYTES) return 0;
    emit_lines(r, data, n);
    return atomic_load(&r->cancelled) ? 0 : n;
}

/* ---- the end of a request (upstream thread) ------------------------------------ */

static void active_unlink(up_thread *t, up_req *r)
{
    t->active--;
    if (r->prev_active)
        r->prev_active->next_active = r->next_active;
    else
        t->active_list = r->next_active;
    if (r->next_active) r->next_active->prev_active = r->prev_active;
}

static void finish(up_thread *t, up_req *r, int curl_code)
{
    if (r->ended) return;
    r->ended = true;
    curl_multi_remove_handle(t->multi, r->easy);
    active_unlink(t, r);
    if (curl_code == CURLE_OK && r->line_len) { /* last line without newline */
        r->line[r->line_len] = 0;
        long code = http_status(r);
        if (code >= 200 && code < 300 && !atomic_load(&r->cancelled))
            r->cb.on_line(r->ctx, r->line, r->line_len);
        r->line_len = 0;
    }
    if (atomic_load(&r->cancelled)) curl_code = CURLE_ABORTED_BY_CALLBACK;
    long http = http_status(r);
    if (r->idle_expired && http == 0) http = -1; /* connected, but no answer: not unreachable */
    easy_recycle(t, r);
    r->cb.on_end(r->ctx, curl_code, http, r->errbody);
    up_unref(r); /* the thread's reference */
}

static CURL *make_easy(up_thread *t, up_req *r, const up_opts *o)
{
    CURL *e = easy_get(t);
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_ms);
    if (o->total_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->total_ms);
    r->idle_ms = o->idle_ms; /* enforced by idle_sweep: libcurl's low-speed check
                                averages over seconds and ends streams late */
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    r->headers = curl_slist_append(r->headers, "Accept: application/json, text/event-stream");
    if (o->body) {
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (o->bearer && *o->bearer) {
        char h[320];
        snprintf(h, sizeof h, "Authorization: Bearer %s", o->bearer);
        r->headers = curl_slist_append(r->headers, h);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    return e;
}

/* ---- queues (upstream thread) ---------------------------------------------------- */

static void adopt(up_thread *t, up_req *r)
{
    curl_multi_add_handle(t->multi, r->easy); /* sets a timer: it starts this wakeup */
    r->last_byte_ns = t->now;
    t->active++;
    r->prev_active = NULL;
    r->next_active = t->active_list;
    if (t->active_list) t->active_list->prev_active = r;
    t->active_list = r;
    if (r->idle_ms > 0 && t->now + (uint64_t)r->idle_ms * 1000000u < t->idle_due)
        t->idle_due = t->now + (uint64_t)r->idle_ms * 1000000u;
}

/* Adopt queued additions and cancellations. Returns true when quitting. */
static bool take_queues(up_thread *t)
{
    pthread_mutex_lock(&t->mu);
    up_req *adds = t->adds, *cancels = t->cancels;
    t->adds = t->cancels = NULL;
    bool quit = t->quit;
    pthread_mutex_unlock(&t->mu);
    for (up_req *r = adds, *next; r; r = next) {
        next = r->next_add;
        if (atomic_load(&r->cancelled) || quit) {
            r->ended = true;
            r->cb.on_end(r->ctx, CURLE_ABORTED_BY_CALLBACK, 0, "");
            up_unref(r);
            continue;
        }
        adopt(t, r);
    }
    for (up_req *r = cancels, *next; r; r = next) {
        next = r->next_cancel;
        if (!r->ended && r->easy) finish(t, r, CURLE_ABORTED_BY_CALLBACK);
        up_unref(r); /* the cancel queue's reference */
    }
    return quit;
}

static void drain_done(up_thread *t)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(t->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        up_req *r;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(t, r, msg->data.result);
    }
}

static void abort_all(up_thread *t)
{
    while (t->active_list) {
        up_req *r = t->active_list;
        atomic_store(&r->cancelled, true);
        finish(t, r, CURLE_ABORTED_BY_CALLBACK);
    }
}

/* End requests that received nothing for their idle time (the time to
 * the first byte counts too: a backend that accepts and never answers),
 * and note when the next one could expire. */
static void idle_sweep(up_thread *t)
{
    uint64_t due = NEVER;
    for (up_req *r = t->active_list, *next; r; r = next) {
        next = r->next_active;
        if (r->idle_ms <= 0) continue;
        uint64_t expiry = r->last_byte_ns + (uint64_t)r->idle_ms * 1000000u;
        if (t->now > expiry) {
            r->idle_expired = true;
            finish(t, r, CURLE_OPERATION_TIMEDOUT);
        } else if (expiry < due) {
            due = expiry;
        }
    }
    t->idle_due = due;
}

/* ---- libcurl's sockets and timer on our epoll set ------------------------------- */

/* socketp is NULL until curl_multi_assign marks the socket as in our epoll
 * set (libcurl forgets the mark when it says REMOVE), so a new socket costs
 * one EPOLL_CTL_ADD and a change one EPOLL_CTL_MOD. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    up_thread *t = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, s, NULL); /* ENOENT if closed already: fine */
        return 0;
    }
    struct epoll_event ev = {.events = 0, .data.fd = s};
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(t->ep, op, s, &ev);
    if (rc < 0 && (errno == ENOENT || errno == EEXIST)) /* out of step: never expected */
        rc = epoll_ctl(t->ep, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (rc < 0) {
        log_warn("upstream: cannot watch a socket", "fd=%d errno=%d", (int)s, errno);
        return 0;
    }
    if (!socketp) curl_multi_assign(t->multi, s, t);
    return 0;
}

static int on_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    up_thread *t = userp;
    t->curl_due = ms < 0 ? NEVER : ms == 0 ? 0 : mono_ns() + (uint64_t)ms * 1000000u;
    return 0;
}

static void run_curl_timer(up_thread *t)
{
    if (t->curl_due > t->now) return;
    t->curl_due = NEVER; /* one-shot: libcurl sets the next one */
    int running;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

static void on_ready(up_thread *t, const struct epoll_event *ev)
{
    int flags = 0;
    if (ev->events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
    if (ev->events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (ev->events & EPOLLERR) flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(t->multi, ev->data.fd, flags, &running);
}

static uint64_t next_due(const up_thread *t)
{
    return t->curl_due < t->idle_due ? t->curl_due : t->idle_due;
}

/* epoll_wait's timeout: the nearer of libcurl's timer and the idle expiry. */
static int wait_ms(up_thread *t)
{
    uint64_t now = mono_ns();
    uint64_t due = next_due(t), cap = now + (uint64_t)MAX_SLEEP_MS * 1000000u;
    t->sleep_due = due < cap ? due : cap;
    if (due <= now) return 0;
    return due < cap ? (int)((due - now + 999999u) / 1000000u) : MAX_SLEEP_MS;
}

static void batch_begin(up_thread *t)
{
    if (t->batch_begin) t->batch_begin();
}

static void batch_end(up_thread *t)
{
    if (t->batch_end) t->batch_end();
}

/* One wakeup: ready sockets, queued work, due timers, finished transfers.
 * Returns true when quitting. */
static bool up_step(up_thread *t, struct epoll_event *evs)
{
    int timeout = wait_ms(t);
    pthread_mutex_unlock(&t->loop_mu);
    int n = epoll_wait(t->ep, evs, MAX_EVENTS, timeout);
    pthread_mutex_lock(&t->loop_mu);
    t->now = mono_ns();
    bool woken = false;
    batch_begin(t);
    for (int i = 0; i < n; i++) {
        if (i && i % BATCH_EVENTS == 0) { /* what is relayed so far leaves now */
            batch_end(t);
            batch_begin(t);
        }
        if (evs[i].data.fd == t->wake_fd) {
            uint64_t v;
            woken = true;
            if (read(t->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                log_warn("upstream: wake read failed", "errno=%d", errno);
            continue;
        }
        on_ready(t, &evs[i]);
    }
    bool quit = woken && take_queues(t);
    if (!quit) {
        run_curl_timer(t);
        drain_done(t);
        if (t->idle_due <= t->now) idle_sweep(t);
    }
    batch_end(t);
    return quit;
}

static void *up_main(void *arg)
{
    up_thread *t = arg;
    struct epoll_event evs[MAX_EVENTS];
    if (util_set_slice_us(t->slice_us) < 0)
        log_debug("upstream: the kernel keeps its own time slice", "errno=%d", errno);
    pthread_mutex_lock(&t->loop_mu);
    t->now = mono_ns();
    while (!up_step(t, evs)) continue;
    abort_all(t);
    take_queues(t); /* requests queued during shutdown end as cancelled */
    pthread_mutex_unlock(&t->loop_mu);
    return NULL;
}

static void wake(up_thread *t)
{
    uint64_t one = 1;
    if (write(t->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn("upstream: wake failed", "errno=%d", errno);
}

/* ---- start and stop ---------------------------------------------------------------- */

static bool thread_init(up_thread *t)
{
    t->curl_due = t->idle_due = t->sleep_due = NEVER;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->multi = curl_multi_init();
    if (t->ep < 0 || t->wake_fd < 0 || !t->multi) return false;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->wake_fd};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->wake_fd, &ev) < 0) return false;
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    return true;
}

static void thread_free(up_thread *t)
{
    if (t->multi) curl_multi_cleanup(t->multi);
    for (int i = 0; i < t->nspare; i++) curl_easy_cleanup(t->spare[i]);
    if (t->wake_fd >= 0) close(t->wake_fd);
    if (t->ep >= 0) close(t->ep);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->loop_mu);
    free(t);
}

up_thread *up_thread_start(int slice_us, char *err, size_t errlen)
{
    up_thread *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->slice_us = slice_us;
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->loop_mu, NULL);
    if (!thread_init(t) || pthread_create(&t->thread, NULL, up_main, t) != 0) {
        snprintf(err, errlen, "cannot start the upstream thread");
        thread_free(t);
        return NULL;
    }
    return t;
}

void up_thread_stop(up_thread *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_mutex_unlock(&t->mu);
    wake(t);
    pthread_join(t->thread, NULL);
    thread_free(t);
}

void up_thread_set_hooks(up_thread *t, void (*begin)(void), void (*end)(void))
{
    pthread_mutex_lock(&t->loop_mu);
    t->batch_begin = begin;
    t->batch_end = end;
    pthread_mutex_unlock(&t->loop_mu);
}

int up_thread_active(up_thread *t)
{
    return t ? t->active : 0;
}

/* ---- queueing from any thread --------------------------------------------------- */

/* Only the push that finds the queues empty wakes the thread: it takes
 * everything queued under the same mutex, so later pushes ride along. */
static void push_add(up_thread *t, up_req *r)
{
    pthread_mutex_lock(&t->mu);
    bool first = !t->adds && !t->cancels;
    r->next_add = t->adds;
    t->adds = r;
    pthread_mutex_unlock(&t->mu);
    if (first) wake(t);
}

/* Start r on the calling thread when the upstream thread sleeps with no
 * transfer running (see the top of the file); false when it is busy, has
 * transfers or is stopping. With transfers running, a token may arrive
 * while the caller holds loop_mu, and a caller preempted there (a worker,
 * one of several per core) would hold up every stream for its whole time
 * slice: 12 ms stalls of all 1,000 streams were seen at the end of a
 * ramp of 1,000 chats. So under load the upstream thread starts requests
 * itself; the shortcut is for the first token of an idle server. */
static bool start_here(up_thread *t, up_req *r)
{
    if (pthread_mutex_trylock(&t->loop_mu) != 0) return false;
    if (t->active > 0) {
        pthread_mutex_unlock(&t->loop_mu);
        return false;
    }
    pthread_mutex_lock(&t->mu);
    bool quit = t->quit;
    pthread_mutex_unlock(&t->mu);
    if (!quit) {
        t->now = mono_ns();
        adopt(t, r);
        run_curl_timer(t);
        drain_done(t);
        /* wake the thread only if it would sleep past a new deadline (an
         * idle timeout shorter than MAX_SLEEP_MS): a wakeup now would take
         * a CPU from the backend answering this request */
        if (next_due(t) < t->sleep_due) wake(t);
    }
    pthread_mutex_unlock(&t->loop_mu);
    return !quit;
}

up_req *up_start(llm *l, const up_opts *o, const up_callbacks *cb, void *ctx)
{
    up_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    atomic_init(&r->refs, 2); /* caller + upstream thread */
    r->cb = *cb;
    r->ctx = ctx;
    r->thread = l->up;
    if (o->body && !(r->body = strdup(o->body))) abort();
    r->easy = make_easy(l->up, r, o);
    if (!r->easy) {
        r->ended = true;
        r->thread = NULL; /* nothing to cancel */
        cb->on_end(ctx, CURLE_FAILED_INIT, 0, "");
        up_unref(r);
        return r;
    }
    if (!start_here(l->up, r)) push_add(l->up, r);
    return r;
}

void up_cancel(up_req *r)
{
    if (!r || !r->thread || atomic_exchange(&r->cancelled, true)) return;
    up_thread *t = r->thread;
    atomic_fetch_add(&r->refs, 1); /* the cancel queue's */
    pthread_mutex_lock(&t->mu);
    bool first = !t->adds && !t->cancels;
    r->next_cancel = t->cancels;
    t->cancels = r;
    pthread_mutex_unlock(&t->mu);
    if (first) wake(t);
}

/* ---- blocking fetch ------------------------------------------------------- */

typedef struct fetch_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int curl_code;
    long http;
    char *body;
    size_t len, cap;
    char errbody[ERRBODY_MAX];
} fetch_ctx;

static bool fetch_line(void *p, const char *line, size_t len)
{
    fetch_ctx *f = p;
    if (f->len + len + 2 > f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4096;
        while (cap < f->len + len + 2) cap *= 2;
        if (!(f->body = realloc(f->body, cap))) abort();
        f->cap = cap;
    }
    memcpy(f->body + f->len, line, len);
    f->len += len;
    f->body[f->len++] = '\n';
    f->body[f->len] = 0;
    return true;
}

static void fetch_end(void *p, int curl_code, long http, const char *body)
{
    fetch_ctx *f = p;
    pthread_mutex_lock(&f->mu);
    f->curl_code = curl_code;
    f->http = http;
    snprintf(f->errbody, sizeof f->errbody, "%s", body);
    f->done = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

int up_fetch(llm *l, const up_opts *o, char **body, long *http, char *err, size_t errlen)
{
    fetch_ctx f = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    up_callbacks cb = {fetch_line, fetch_end};
    up_req *r = up_start(l, o, &cb, &f);
    pthread_mutex_lock(&f.mu);
    while (!f.done) pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    up_unref(r);
    *http = f.http;
    *body = f.body;
    if (f.curl_code != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror((CURLcode)f.curl_code));
        free(f.body);
        *body = NULL;
        return -1;
    }
    if (f.http < 200 || f.http >= 300) {
        snprintf(err, errlen, "HTTP %ld: %.200s", f.http, f.errbody);
        free(f.body);
        *body = NULL;
        return -1;
    }
    if (!*body && !(*body = strdup(""))) abort();
    return 0;
}
