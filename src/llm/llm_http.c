/*
 * llm_http.c - the upstream thread: one libcurl multi handle that runs
 * every backend HTTP request, streaming or not.
 *
 * Other threads queue requests (and cancellations) under a mutex and wake
 * the thread with curl_multi_wakeup(); it never blocks on anything but
 * curl_multi_poll(). Response bytes are cut into lines here (a line may
 * arrive split across network reads, or several in one read) and handed to
 * the request's on_line callback; providers parse NDJSON or SSE from that.
 * Cancelling removes the easy handle from the multi at once, which closes
 * the connection, so the backend sees the abort immediately.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "llm/llm_internal.h"

#define ERRBODY_MAX    2048
#define LINE_MAX_BYTES (1 << 20)

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
    pthread_mutex_t mu;
    CURLM *multi;
    up_req *adds, *cancels;
    bool quit;
    int active;
    up_req *active_list; /* upstream thread only */
} up_thread;

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

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *p)
{
    up_req *r = p;
    size_t n = size * nmemb;
    r->last_byte_ns = mono_ns();
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

static void finish(up_thread *t, up_req *r, int curl_code)
{
    if (r->ended) return;
    r->ended = true;
    curl_multi_remove_handle(t->multi, r->easy);
    t->active--;
    if (r->prev_active)
        r->prev_active->next_active = r->next_active;
    else
        t->active_list = r->next_active;
    if (r->next_active) r->next_active->prev_active = r->prev_active;
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
    r->cb.on_end(r->ctx, curl_code, http, r->errbody);
    up_unref(r); /* the thread's reference */
}

static CURL *make_easy(up_req *r, const up_opts *o)
{
    CURL *e = curl_easy_init();
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

/* Adopt queued additions and cancellations (upstream thread). */
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
        curl_multi_add_handle(t->multi, r->easy);
        r->last_byte_ns = mono_ns();
        t->active++;
        r->prev_active = NULL;
        r->next_active = t->active_list;
        if (t->active_list) t->active_list->prev_active = r;
        t->active_list = r;
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
 * the first byte counts too: a backend that accepts and never answers). */
static void idle_sweep(up_thread *t)
{
    uint64_t now = mono_ns();
    for (up_req *r = t->active_list, *next; r; r = next) {
        next = r->next_active;
        if (r->idle_ms > 0 && now - r->last_byte_ns > (uint64_t)r->idle_ms * 1000000u) {
            r->idle_expired = true;
            finish(t, r, CURLE_OPERATION_TIMEDOUT);
        }
    }
}

static void *up_main(void *arg)
{
    up_thread *t = arg;
    for (;;) {
        if (take_queues(t)) break;
        int running;
        curl_multi_perform(t->multi, &running);
        drain_done(t);
        idle_sweep(t);
        curl_multi_poll(t->multi, NULL, 0, t->active ? 50 : 1000, NULL);
    }
    abort_all(t);
    take_queues(t); /* requests queued during shutdown end as cancelled */
    return NULL;
}

up_thread *up_thread_start(char *err, size_t errlen)
{
    up_thread *t = calloc(1, sizeof *t);
    if (!t) abort();
    pthread_mutex_init(&t->mu, NULL);
    t->multi = curl_multi_init();
    if (!t->multi || pthread_create(&t->thread, NULL, up_main, t) != 0) {
        snprintf(err, errlen, "cannot start the upstream thread");
        if (t->multi) curl_multi_cleanup(t->multi);
        free(t);
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
    curl_multi_wakeup(t->multi);
    pthread_join(t->thread, NULL);
    curl_multi_cleanup(t->multi);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int up_thread_active(up_thread *t)
{
    return t ? t->active : 0;
}

static void push_add(up_thread *t, up_req *r)
{
    pthread_mutex_lock(&t->mu);
    r->next_add = t->adds;
    t->adds = r;
    pthread_mutex_unlock(&t->mu);
    curl_multi_wakeup(t->multi);
}

up_req *up_start(llm *l, const up_opts *o, const up_callbacks *cb, void *ctx)
{
    up_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    atomic_init(&r->refs, 2); /* caller + upstream thread */
    r->cb = *cb;
    r->ctx = ctx;
    if (o->body && !(r->body = strdup(o->body))) abort();
    r->easy = make_easy(r, o);
    if (!r->easy) {
        r->ended = true;
        cb->on_end(ctx, CURLE_FAILED_INIT, 0, "");
        up_unref(r);
        return r;
    }
    r->thread = l->up;
    push_add(l->up, r);
    return r;
}

void up_cancel(up_req *r)
{
    if (!r || !r->thread || atomic_exchange(&r->cancelled, true)) return;
    up_thread *t = r->thread;
    atomic_fetch_add(&r->refs, 1); /* the cancel queue's */
    pthread_mutex_lock(&t->mu);
    r->next_cancel = t->cancels;
    t->cancels = r;
    pthread_mutex_unlock(&t->mu);
    curl_multi_wakeup(t->multi);
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
