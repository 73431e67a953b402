/*
 * llm_provider.c - Ollama and OpenAI-compatible chat over the upstream
 * thread: request bodies, stream parsing, error classification.
 *
 * Ollama streams NDJSON ({"message":{"content":"tok"},"done":false} ...
 * {"done":true}); OpenAI-compatible servers stream SSE ("data: {chunk}" ...
 * "data: [DONE]"). Either way each complete line arrives from llm_http.c;
 * tokens are handed to the caller as they come. The end is classified so
 * callers can tell an unreachable backend (fall back) from a backend that
 * failed (a specific error): refused or timed-out connects are
 * LLM_UNREACHABLE; error statuses LLM_HTTP_ERROR; a line that is not the
 * provider's format LLM_MALFORMED; a stream that stops before its final
 * chunk LLM_CUT_SHORT.
 */
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "llm/llm_internal.h"

struct llm_stream {
    atomic_int refs;
    llm *l;
    up_req *req;
    llm_callbacks cb;
    void *ctx;
    jarena arena;
    int tokens;
    bool saw_end;       /* the provider's final chunk arrived */
    llm_status failure; /* set while parsing */
    char detail[256];
    atomic_bool user_cancelled;
};

void llm_config_default(llm_config *c)
{
    memset(c, 0, sizeof *c);
    c->provider = LLM_NONE;
    snprintf(c->url, sizeof c->url, "http://127.0.0.1:11434");
    snprintf(c->model, sizeof c->model, "llama3.1:8b");
    c->connect_timeout_ms = 2000;
    c->idle_timeout_ms = 15000;
    c->total_timeout_ms = 300000;
    c->max_tokens = 512;
    c->temperature = 0.7;
}

static const char *const g_prov[] = {"none", "ollama", "openai"};

int llm_provider_parse(const char *s, llm_provider *out)
{
    for (int i = 0; i < 3; i++)
        if (strcasecmp(s, g_prov[i]) == 0) {
            *out = (llm_provider)i;
            return 0;
        }
    return -1;
}

const char *llm_provider_name(llm_provider p)
{
    return g_prov[p];
}

const char *llm_status_name(llm_status s)
{
    static const char *const n[] = {"ok",        "unreachable", "http_error", "malformed",
                                    "cut_short", "timeout",     "cancelled",  "not_configured"};
    return n[s];
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int llm_start(llm **out, const llm_config *cfg, char *err, size_t errlen)
{
    llm *l = calloc(1, sizeof *l);
    if (!l) abort();
    l->cfg = *cfg;
    atomic_init(&l->available, -1);
    if (!(l->up = up_thread_start(cfg->thread_slice_us, err, errlen))) {
        free(l);
        return -1;
    }
    *out = l;
    return 0;
}

void llm_stop(llm *l)
{
    if (!l) return;
    up_thread_stop(l->up);
    free(l);
}

void llm_set_batch_hooks(llm *l, void (*begin)(void), void (*end)(void))
{
    up_thread_set_hooks(l->up, begin, end);
}

const llm_config *llm_get_config(llm *l)
{
    return &l->cfg;
}

/* ---- request bodies ---------------------------------------------------------- */

static void endpoint(llm *l, const char *path, char *out, size_t n)
{
    size_t len = strlen(l->cfg.url);
    while (len && l->cfg.url[len - 1] == '/') len--;
    snprintf(out, n, "%.*s%s", (int)len, l->cfg.url, path);
}

static char *chat_body(llm *l, const llm_msg *msgs, size_t n, int max_tokens)
{
    jw w;
    jw_init(&w, 0, 1024);
    jw_obj_begin(&w);
    jw_kstr(&w, "model", l->cfg.model);
    jw_key(&w, "messages");
    jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(&w);
        jw_kstr(&w, "role", msgs[i].role);
        jw_kstr(&w, "content", msgs[i].content);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_kbool(&w, "stream", true);
    if (l->cfg.provider == LLM_OLLAMA) {
        jw_key(&w, "options");
        jw_obj_begin(&w);
        jw_kint(&w, "num_predict", max_tokens);
        jw_kdouble(&w, "temperature", l->cfg.temperature);
        jw_obj_end(&w);
    } else {
        jw_kint(&w, "max_tokens", max_tokens);
        jw_kdouble(&w, "temperature", l->cfg.temperature);
    }
    jw_obj_end(&w);
    jw_append(&w, "", 1);
    return jw_release(&w);
}

/* ---- stream parsing (upstream thread) ---------------------------------------- */

static void fail_stream(llm_stream *s, llm_status st, const char *fmt, const char *arg)
{
    if (s->failure != LLM_OK) return;
    s->failure = st;
    snprintf(s->detail, sizeof s->detail, fmt, arg);
}

static void token(llm_stream *s, const jv *content)
{
    if (!jv_is_str(content) || content->len == 0) return;
    s->tokens++;
    atomic_fetch_add(&s->l->tokens, 1);
    s->cb.on_token(s->ctx, content->u.s, content->len);
}

static void parse_ollama(llm_stream *s, const jv *o)
{
    const jv *e = jv_get(o, "error");
    if (jv_is_str(e)) {
        fail_stream(s, LLM_HTTP_ERROR, "backend error: %.200s", e->u.s);
        return;
    }
    const jv *msg = jv_get(o, "message");
    token(s, msg ? jv_get(msg, "content") : jv_get(o, "response"));
    const jv *done = jv_get(o, "done");
    if (done && done->type == JV_BOOL && done->u.b) s->saw_end = true;
}

static void parse_openai(llm_stream *s, const jv *o)
{
    const jv *e = jv_get(o, "error");
    if (e) {
        const jv *m = jv_get(e, "message");
        fail_stream(s, LLM_HTTP_ERROR, "backend error: %.200s", jv_is_str(m) ? m->u.s : "unknown");
        return;
    }
    const jv *choices = jv_get(o, "choices");
    if (!choices || choices->type != JV_ARRAY || choices->len == 0) return;
    const jv *c0 = &choices->u.items[0];
    const jv *delta = jv_get(c0, "delta");
    token(s, delta ? jv_get(delta, "content") : NULL);
    const jv *fin = jv_get(c0, "finish_reason");
    if (jv_is_str(fin)) s->saw_end = true;
}

static void parse_line(llm_stream *s, const char *line, size_t len)
{
    if (len == 0) return;
    bool sse = s->l->cfg.provider == LLM_OPENAI;
    if (sse) {
        if (line[0] == ':' || strncmp(line, "event:", 6) == 0 || strncmp(line, "id:", 3) == 0)
            return;
        if (strncmp(line, "data:", 5) != 0) {
            fail_stream(s, LLM_MALFORMED, "malformed SSE line from backend: %.80s", line);
            return;
        }
        line += 5;
        len -= 5;
        while (len && *line == ' ') line++, len--;
        if (len == 6 && memcmp(line, "[DONE]", 6) == 0) {
            s->saw_end = true;
            return;
        }
    }
    json_error err;
    jarena_reset(&s->arena);
    jv *o = json_parse(&s->arena, line, len, len, 32, &err);
    if (!o || o->type != JV_OBJECT) {
        fail_stream(s, LLM_MALFORMED, "malformed line from backend: %.80s", line);
        return;
    }
    if (sse)
        parse_openai(s, o);
    else
        parse_ollama(s, o);
}

static bool on_line(void *ctx, const char *line, size_t len)
{
    llm_stream *s = ctx;
    parse_line(s, line, len);
    return s->failure == LLM_OK; /* a failed stream is aborted at once */
}

static llm_status classify(llm_stream *s, int curl_code, long http, const char *body)
{
    if (s->failure != LLM_OK) return s->failure;
    if (atomic_load(&s->user_cancelled)) return LLM_CANCELLED;
    if (curl_code == CURLE_OPERATION_TIMEDOUT && (http == -1 || (http >= 200 && http < 300))) {
        snprintf(s->detail, sizeof s->detail,
                 "LLM backend timed out: nothing for %d ms (after %d tokens)",
                 s->l->cfg.idle_timeout_ms, s->tokens);
        return LLM_TIMEOUT;
    }
    if (http == 0 || curl_code == CURLE_COULDNT_CONNECT ||
        curl_code == CURLE_COULDNT_RESOLVE_HOST) {
        snprintf(s->detail, sizeof s->detail, "LLM backend unreachable: %s",
                 curl_easy_strerror((CURLcode)curl_code));
        return LLM_UNREACHABLE;
    }
    if (http < 200 || http >= 300) {
        snprintf(s->detail, sizeof s->detail, "LLM backend returned HTTP %ld: %.180s", http, body);
        return LLM_HTTP_ERROR;
    }
    if (curl_code != CURLE_OK || !s->saw_end) {
        snprintf(s->detail, sizeof s->detail,
                 "LLM backend closed the stream before it finished (%d tokens received)",
                 s->tokens);
        return LLM_CUT_SHORT;
    }
    return LLM_OK;
}

static void on_end(void *ctx, int curl_code, long http, const char *body)
{
    llm_stream *s = ctx;
    llm_status st = classify(s, curl_code, http, body);
    atomic_fetch_sub(&s->l->active, 1);
    if (st == LLM_CANCELLED)
        atomic_fetch_add(&s->l->cancelled, 1);
    else if (st != LLM_OK)
        atomic_fetch_add(&s->l->errors, 1);
    if (st == LLM_UNREACHABLE)
        atomic_store(&s->l->available, 0);
    else if (http >= 200 && http < 300)
        atomic_store(&s->l->available, 1);
    s->cb.on_done(s->ctx, st, s->detail, s->tokens);
    llm_stream_unref(s); /* the request's reference */
}

llm_stream *llm_chat(llm *l, const llm_msg *msgs, size_t n, int max_tokens, const llm_callbacks *cb,
                     void *ctx)
{
    llm_stream *s = calloc(1, sizeof *s);
    if (!s) abort();
    atomic_init(&s->refs, 2); /* caller + request */
    s->l = l;
    s->cb = *cb;
    s->ctx = ctx;
    jarena_init(&s->arena);
    atomic_fetch_add(&l->requests, 1);
    atomic_fetch_add(&l->active, 1);
    if (l->cfg.provider == LLM_NONE) {
        snprintf(s->detail, sizeof s->detail, "no LLM backend is configured");
        atomic_fetch_sub(&l->active, 1);
        cb->on_done(ctx, LLM_NOT_CONFIGURED, s->detail, 0);
        llm_stream_unref(s);
        return s;
    }
    char url[600];
    endpoint(l, l->cfg.provider == LLM_OLLAMA ? "/api/chat" : "/v1/chat/completions", url,
             sizeof url);
    char *body = chat_body(l, msgs, n, max_tokens > 0 ? max_tokens : l->cfg.max_tokens);
    up_opts o = {url,
                 body,
                 l->cfg.api_key,
                 l->cfg.connect_timeout_ms,
                 l->cfg.idle_timeout_ms,
                 l->cfg.total_timeout_ms};
    up_callbacks ucb = {on_line, on_end};
    s->req = up_start(l, &o, &ucb, s);
    free(body);
    return s;
}

void llm_cancel(llm_stream *s)
{
    if (!s) return;
    atomic_store(&s->user_cancelled, true);
    up_cancel(s->req);
}

void llm_stream_unref(llm_stream *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    up_unref(s->req);
    jarena_free(&s->arena);
    free(s);
}

/* ---- models and availability ----------------------------------------------- */

static int parse_models(llm *l, const char *body, char ***names)
{
    jarena a;
    jarena_init(&a);
    json_error err;
    jv *o = json_parse(&a, body, strlen(body), 0, 32, &err);
    const jv *list = jv_get(o, l->cfg.provider == LLM_OLLAMA ? "models" : "data");
    int n = 0;
    *names = NULL;
    if (list && list->type == JV_ARRAY) {
        *names = calloc(list->len + 1, sizeof **names);
        if (!*names) abort();
        for (uint32_t i = 0; i < list->len; i++) {
            const jv *nm = jv_get(&list->u.items[i], l->cfg.provider == LLM_OLLAMA ? "name" : "id");
            if (jv_is_str(nm) && !((*names)[n++] = strdup(nm->u.s))) abort();
        }
    }
    jarena_free(&a);
    return n;
}

int llm_models(llm *l, char ***names, char *err, size_t errlen)
{
    *names = NULL;
    if (l->cfg.provider == LLM_NONE) return 0;
    char url[600];
    endpoint(l, l->cfg.provider == LLM_OLLAMA ? "/api/tags" : "/v1/models", url, sizeof url);
    up_opts o = {url, NULL, l->cfg.api_key, l->cfg.connect_timeout_ms, 0, 5000};
    char *body;
    long http;
    if (up_fetch(l, &o, &body, &http, err, errlen) < 0) {
        atomic_store(&l->available, 0);
        return -1;
    }
    atomic_store(&l->available, 1);
    int n = parse_models(l, body, names);
    free(body);
    return n;
}

void llm_free_models(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static bool probe_line(void *ctx, const char *line, size_t len)
{
    (void)ctx, (void)line, (void)len;
    return true;
}

static void probe_end(void *ctx, int curl_code, long http, const char *body)
{
    llm *l = ctx;
    (void)body;
    atomic_store(&l->available, curl_code == CURLE_OK && http >= 200 && http < 300);
    atomic_store(&l->probing, false);
}

bool llm_available(llm *l)
{
    if (!l || l->cfg.provider == LLM_NONE) return false;
    long long now = now_ms();
    if (now - atomic_load(&l->probed_ms) > 5000 && !atomic_exchange(&l->probing, true)) {
        atomic_store(&l->probed_ms, now);
        char url[600];
        endpoint(l, l->cfg.provider == LLM_OLLAMA ? "/api/tags" : "/v1/models", url, sizeof url);
        up_opts o = {url, NULL, l->cfg.api_key, l->cfg.connect_timeout_ms, 0, 5000};
        up_callbacks cb = {probe_line, probe_end};
        up_unref(up_start(l, &o, &cb, l));
    }
    return atomic_load(&l->available) == 1;
}

void llm_get_stats(llm *l, llm_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!l) return;
    out->requests = atomic_load(&l->requests);
    out->errors = atomic_load(&l->errors);
    out->cancelled = atomic_load(&l->cancelled);
    out->tokens = atomic_load(&l->tokens);
    out->active = atomic_load(&l->active);
}

/* ---- embeddings ------------------------------------------------------------------ */

static char *embed_body(llm_provider p, const char *model, const char *const *texts, size_t n)
{
    jw w;
    jw_init(&w, 0, 256);
    jw_obj_begin(&w);
    jw_kstr(&w, "model", model);
    jw_key(&w, "input");
    jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++) jw_str(&w, texts[i]);
    jw_arr_end(&w);
    if (p == LLM_OPENAI) jw_kstr(&w, "encoding_format", "float");
    jw_obj_end(&w);
    jw_append(&w, "", 1);
    return jw_release(&w);
}

/* The i-th vector of an /api/embed or /v1/embeddings answer. */
static const jv *embed_vector(llm_provider p, const jv *o, size_t i)
{
    if (p == LLM_OLLAMA) {
        const jv *e = jv_get(o, "embeddings");
        return e && e->type == JV_ARRAY && i < e->len ? &e->u.items[i] : NULL;
    }
    const jv *d = jv_get(o, "data");
    return d && d->type == JV_ARRAY && i < d->len ? jv_get(&d->u.items[i], "embedding") : NULL;
}

static int embed_parse(llm_provider p, const char *body, size_t n, float *out, size_t cap, int *dim,
                       char *err, size_t errlen)
{
    jarena a;
    jarena_init(&a);
    json_error je;
    jv *o = json_parse(&a, body, strlen(body), 0, 16, &je);
    int rc = 0;
    *dim = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const jv *v = o ? embed_vector(p, o, i) : NULL;
        if (!v || v->type != JV_ARRAY || v->len == 0 || (*dim && (int)v->len != *dim) ||
            (i + 1) * v->len > cap) {
            snprintf(err, errlen, "embedding backend answered without a usable vector %zu", i);
            rc = -1;
            break;
        }
        *dim = (int)v->len;
        for (uint32_t k = 0; k < v->len; k++)
            out[i * v->len + k] = jv_is_num(&v->u.items[k]) ? (float)jv_num(&v->u.items[k]) : 0;
    }
    jarena_free(&a);
    return rc;
}

int llm_embed(llm *l, llm_provider provider, const char *url, const char *model,
              const char *api_key, const char *const *texts, size_t n, float *out, size_t cap,
              int *dim, char *err, size_t errlen)
{
    char full[600];
    size_t len = strlen(url);
    while (len && url[len - 1] == '/') len--;
    snprintf(full, sizeof full, "%.*s%s", (int)len, url,
             provider == LLM_OLLAMA ? "/api/embed" : "/v1/embeddings");
    char *body = embed_body(provider, model, texts, n);
    up_opts o = {full, body, api_key, l->cfg.connect_timeout_ms, 0, 60000};
    char *resp;
    long http;
    int rc = up_fetch(l, &o, &resp, &http, err, errlen);
    free(body);
    if (rc < 0) return -1;
    rc = embed_parse(provider, resp, n, out, cap, dim, err, errlen);
    free(resp);
    return rc;
}
