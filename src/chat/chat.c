/*
 * chat.c - see chat.h. Life of a chat:
 *
 *   worker:    chat_begin: persona snapshot, memory search, prompt, llm_chat,
 *              on_sent, then the hits' access count (after the request left)
 *   upstream:  on_token (append, relay) ... on_done
 *   worker:    finish: store turns + memory (committed), then on_end
 *
 * Live chats are kept in a list so persona.chat_cancel can find them by
 * stream id or request id; the list is also the "active streams" gauge.
 */
#include "chat/chat.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "lib/workq.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "store/store.h"

#define HISTORY_MESSAGES 20 /* recent messages (10 exchanges) in the prompt */
#define MEMORY_K         5

struct chat {
    atomic_int refs; /* the life cycle + chat_begin until llm_chat returned */
    app *a;
    chat_events ev;
    void *ctx;
    char persona_id[40];
    char *persona_name;
    char stream_id[40];
    char *request_id;
    uint64_t session;
    rpc_session *sess;
    char *message;
    jw text;
    size_t chars; /* Unicode characters in text (the protocol counts characters) */
    int chunks;
    uint64_t t0, t_first;
    double started;
    llm_stream *ls;
    bool urgent;
    int energy;
    llm_status status;
    char detail[256];
    int tokens;
    char memory_id[40];
    atomic_bool cancel;
    bool ended; /* under G.mu: finish has begun (on_sent must not run any more) */
    struct chat *prev, *next;
};

/* ---- registry and metrics ------------------------------------------------------ */

static struct {
    pthread_mutex_t mu;
    chat *live;
    int active;
    atomic_bool shutting_down;
    metrics_hist ttft;
    atomic_uint_fast64_t tokens, streams, errors, fallbacks, cancels, inline_starts;
    atomic_uint_fast64_t stream_ns; /* first token to last, summed */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void reg_add(chat *c)
{
    pthread_mutex_lock(&G.mu);
    c->next = G.live;
    if (G.live) G.live->prev = c;
    G.live = c;
    G.active++;
    pthread_mutex_unlock(&G.mu);
}

static void reg_remove(chat *c)
{
    pthread_mutex_lock(&G.mu);
    c->ended = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        G.live = c->next;
    if (c->next) c->next->prev = c->prev;
    G.active--;
    pthread_mutex_unlock(&G.mu);
}

/* Caller holds G.mu (c->ls is set under it). */
static void chat_cancel(chat *c)
{
    if (atomic_exchange(&c->cancel, true)) return;
    if (c->ls) llm_cancel(c->ls); /* else chat_begin cancels once it has the stream */
}

int chat_cancel_matching(uint64_t session, const char *stream_id, const char *request_id)
{
    int n = 0;
    pthread_mutex_lock(&G.mu);
    for (chat *c = G.live; c; c = c->next) {
        if (c->session != session) continue;
        bool hit = (stream_id && strcmp(c->stream_id, stream_id) == 0) ||
                   (request_id && c->request_id && strcmp(c->request_id, request_id) == 0);
        if (hit && !atomic_load(&c->cancel)) {
            chat_cancel(c);
            n++;
        }
    }
    pthread_mutex_unlock(&G.mu);
    return n;
}

void chat_shutdown(void)
{
    atomic_store(&G.shutting_down, true);
}

/* ---- per-connection history ------------------------------------------------------ */

typedef struct history {
    char persona_id[40];
    char conversation_id[40];
    int turns; /* turn numbers used so far */
    int n;
    char *role[HISTORY_MESSAGES];
    char *content[HISTORY_MESSAGES];
} history;

static void history_free(void *p)
{
    history *h = p;
    for (int i = 0; i < h->n; i++) {
        free(h->role[i]);
        free(h->content[i]);
    }
    free(h);
}

/* Caller holds sess->mu. Resets when the persona changed. */
static history *history_of(rpc_session *s, const char *persona_id)
{
    history *h = s->chat;
    if (h && strcmp(h->persona_id, persona_id) != 0) {
        history_free(h);
        h = s->chat = NULL;
    }
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h) abort();
        snprintf(h->persona_id, sizeof h->persona_id, "%s", persona_id);
        util_uuid4(h->conversation_id);
        s->chat = h;
        s->chat_free = history_free;
    }
    return h;
}

static void history_push(history *h, const char *role, const char *content)
{
    if (h->n == HISTORY_MESSAGES) {
        free(h->role[0]);
        free(h->content[0]);
        memmove(h->role, h->role + 1, sizeof h->role[0] * (HISTORY_MESSAGES - 1));
        memmove(h->content, h->content + 1, sizeof h->content[0] * (HISTORY_MESSAGES - 1));
        h->n--;
    }
    if (!(h->role[h->n] = strdup(role)) || !(h->content[h->n] = strdup(content))) abort();
    h->n++;
}

/* ---- prompt ---------------------------------------------------------------------- */

/* The hits are counted as accesses by chat_begin once the backend request
 * is on its way (*rows, *n): that write must not delay the first token. */
static void append_memories(app *a, jw *w, const char *pid, const char *message, jarena *ar,
                            mem_row **rows, size_t *n)
{
    mem_query q = {.persona_id = pid, .text = message, .k = MEMORY_K, .record_access = false};
    mem_err e;
    *n = 0;
    if (mem_search(a->memory, &q, ar, rows, n, &e) < 0 || *n == 0) return;
    jw_puts(w, "\n\nThings you remember that may be relevant:");
    for (size_t i = 0; i < *n; i++) {
        jw_puts(w, "\n- ");
        jw_puts(w, (*rows)[i].content);
    }
}

/* The system prompt of spec §4.3 (situation, traits) plus memories (their
 * rows in *hits, *nhits). Reads the persona under the registry lock.
 * Returns false when it is unknown. */
static bool build_system(chat *c, jw *w, jarena *ar, mem_row **hits, size_t *nhits)
{
    persona_reg *r = c->a->personas;
    persona_reg_rdlock(r);
    const persona *p = persona_reg_find(r, c->persona_id);
    if (!p) {
        persona_reg_unlock(r);
        return false;
    }
    if (!(c->persona_name = strdup(p->name))) abort();
    c->urgent = strcmp(p->priority, "urgent") == 0;
    c->energy = p->social_energy;
    persona_prompt pp = {p->name,          p->description,    p->traits_json,   p->priority,
                         p->social_energy, p->interest_level, p->available_time};
    persona_write_prompt(w, &pp, ar);
    persona_reg_unlock(r);
    char line[512];
    append_memories(c->a, w, c->persona_id, c->message, ar, hits, nhits);
    snprintf(line, sizeof line, "\n\nStay in character as %s and answer the user's last message.",
             c->persona_name);
    jw_puts(w, line);
    jw_append(w, "", 1);
    return true;
}

/* ---- stream callbacks ------------------------------------------------------------ */

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static void on_token(void *ctx, const char *tok, size_t len)
{
    chat *c = ctx;
    if (!c->chunks) {
        c->t_first = metrics_now_ns();
        metrics_hist_observe(&G.ttft, c->t_first - c->t0);
    }
    jw_append(&c->text, tok, len);
    c->chars += utf8_chars(tok, len);
    c->chunks++;
    atomic_fetch_add(&G.tokens, 1);
    c->ev.on_token(c->ctx, tok, len, c->chunks, c->chars);
}

static void finish(void *arg);

static void on_done(void *ctx, llm_status st, const char *detail, int tokens)
{
    chat *c = ctx;
    c->status = st;
    c->tokens = tokens;
    snprintf(c->detail, sizeof c->detail, "%s", detail ? detail : "");
    if (atomic_load(&G.shutting_down))
        finish(c);
    else
        workq_push(c->a->workers, finish, c);
}

/* ---- storing the exchange ------------------------------------------------------- */

typedef struct turn_job {
    chat *c;
    const char *conv_id;
    int turn;
    double now;
} turn_job;

static const char SQL_CONV[] =
    "INSERT INTO conversations (id, kind, participants, topic, started_at)"
    " VALUES (?1, 'user', json_array(?2, 'user'), 'user_conversation', ?3)"
    " ON CONFLICT (id) DO NOTHING";
static const char SQL_TURN[] =
    "INSERT INTO conversation_turns (id, conversation_id, speaker_id, turn_number, content,"
    " response_type, tokens_used, processing_time, created_at) VALUES (?,?,?,?,?,'direct',?,?,?)";
static const char SQL_CONV_UPD[] =
    "UPDATE conversations SET turn_count = turn_count + 2, tokens_used = tokens_used + ?2"
    " WHERE id = ?1";

static int insert_turn(store_conn *sc, turn_job *j, const char *speaker, int n, const char *text,
                       int tokens, double secs)
{
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_TURN);
    if (!q) return SQLITE_ERROR;
    char id[40];
    util_uuid4(id);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, j->conv_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, speaker, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 4, n);
    sqlite3_bind_text(q, 5, text, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 6, tokens);
    sqlite3_bind_double(q, 7, secs);
    sqlite3_bind_double(q, 8, j->now);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int turns_fn(store_conn *sc, void *ctx)
{
    turn_job *j = ctx;
    chat *c = j->c;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_CONV);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, j->conv_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->persona_id, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 3, j->now);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return rc;
    double secs = (double)(metrics_now_ns() - c->t0) / 1e9;
    int words_tokens = (int)(c->tokens > 0 ? c->tokens : 0);
    if ((rc = insert_turn(sc, j, "user", j->turn + 1, c->message, 0, 0)) != SQLITE_OK ||
        (rc = insert_turn(sc, j, c->persona_id, j->turn + 2, jw_data(&c->text), words_tokens,
                          secs)) != SQLITE_OK)
        return rc;
    q = store_conn_stmt(sc, SQL_CONV_UPD);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, j->conv_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, words_tokens);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Turns, then the memory; extends the connection's history. */
static int store_exchange(chat *c)
{
    char conv[40];
    int turn = 0;
    if (c->sess) {
        pthread_mutex_lock(&c->sess->mu);
        history *h = history_of(c->sess, c->persona_id);
        memcpy(conv, h->conversation_id, sizeof conv);
        turn = h->turns;
        h->turns += 2;
        pthread_mutex_unlock(&c->sess->mu);
    } else {
        util_uuid4(conv);
    }
    turn_job j = {c, conv, turn, app_now()};
    int rc = store_write(c->a->store, turns_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    jarena ar;
    jarena_init(&ar);
    size_t len = strlen(c->message) + jw_size(&c->text) + 64;
    char *content = jarena_alloc(&ar, len);
    snprintf(content, len, "User said: %s. I responded: %s", c->message, jw_data(&c->text));
    mem_item it = {.persona_id = c->persona_id,
                   .content = content,
                   .memory_type = "conversation",
                   .auto_importance = true,
                   .user_chat = true,
                   .visibility = "private",
                   .related_json = "[]",
                   .metadata_json = "{\"source\":\"chat\"}"};
    it.speaker = persona_interest(c->a->personas, c->persona_id, &ar);
    mem_added added;
    mem_err e;
    int mrc = mem_add(c->a->memory, &it, 1, &added, &e);
    if (mrc == 0) {
        memcpy(c->memory_id, added.id, sizeof c->memory_id);
        app_changed(c->a, APP_CHANGED_MEMORIES, c->persona_id);
    }
    jarena_free(&ar);
    if (c->sess) {
        pthread_mutex_lock(&c->sess->mu);
        history *h = history_of(c->sess, c->persona_id);
        history_push(h, "user", c->message);
        history_push(h, "assistant", jw_data(&c->text));
        pthread_mutex_unlock(&c->sess->mu);
    }
    return mrc == 0 ? SQLITE_OK : SQLITE_ERROR;
}

/* ---- the end ------------------------------------------------------------------------ */

static const char *fallback_text(const chat *c)
{
    static const char *const pool[] = {
        "I'm having trouble finding the right words right now.",
        "Let me think about that for a moment.",
        "That's an interesting point to consider.",
        "I appreciate you bringing that up.",
    };
    if (c->urgent) return "I really need to focus on urgent matters right now.";
    if (c->energy < 30) return "I'm feeling a bit drained from all this conversation.";
    unsigned r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = 0;
    return pool[r % 4];
}

static void chat_unref(chat *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    llm_stream_unref(c->ls);
    if (c->sess) rpc_session_unref(c->sess);
    jw_free(&c->text);
    free(c->persona_name);
    free(c->request_id);
    free(c->message);
    free(c);
}

static void finish(void *arg)
{
    chat *c = arg;
    chat_result r = {.status = c->status,
                     .persona_id = c->persona_id,
                     .persona_name = c->persona_name,
                     .detail = c->detail,
                     .memory_id = ""};
    bool unreachable = c->status == LLM_UNREACHABLE || c->status == LLM_NOT_CONFIGURED;
    if (unreachable && c->chunks == 0) {
        r.fallback = true;
        r.fallback_reason = c->detail;
        jw_reset(&c->text);
        jw_puts(&c->text, fallback_text(c));
        atomic_fetch_add(&G.fallbacks, 1);
    } else if (c->status == LLM_OK) {
        /* store_exchange reads the reply as a C string: terminate it (not counted) */
        jw_append(&c->text, "", 1);
        jw_truncate(&c->text, jw_size(&c->text) - 1);
        if (store_exchange(c) != SQLITE_OK) {
            r.status = LLM_HTTP_ERROR; /* reported as an error: not durable */
            snprintf(c->detail, sizeof c->detail, "the reply could not be stored");
        }
        r.memory_id = c->memory_id;
    } else if (c->status == LLM_CANCELLED) {
        atomic_fetch_add(&G.cancels, 1);
    } else {
        atomic_fetch_add(&G.errors, 1);
    }
    if (c->t_first) atomic_fetch_add(&G.stream_ns, metrics_now_ns() - c->t_first);
    jw_append(&c->text, "", 1); /* NUL for text users; len excludes it */
    r.text = jw_data(&c->text);
    r.len = jw_size(&c->text) - 1;
    r.chars = utf8_chars(r.text, r.len);
    r.chunks = c->chunks;
    r.tokens_used = c->tokens ? c->tokens : c->chunks;
    r.seconds = (double)(metrics_now_ns() - c->t0) / 1e9;
    reg_remove(c);
    c->ev.on_end(c->ctx, &r);
    chat_unref(c);
}

/* ---- start ----------------------------------------------------------------------- */

static size_t history_messages(chat *c, llm_msg *msgs, jarena *ar)
{
    size_t n = 0;
    if (!c->sess) return 0;
    pthread_mutex_lock(&c->sess->mu);
    history *h = c->sess->chat;
    if (h && strcmp(h->persona_id, c->persona_id) == 0)
        for (int i = 0; i < h->n; i++) {
            msgs[n].role = jarena_strndup(ar, h->role[i], strlen(h->role[i]));
            msgs[n++].content = jarena_strndup(ar, h->content[i], strlen(h->content[i]));
        }
    pthread_mutex_unlock(&c->sess->mu);
    return n;
}

int chat_begin(app *a, const chat_req *r, const chat_events *ev, void *ctx, int *code, char *err,
               size_t errlen)
{
    chat *c = calloc(1, sizeof *c);
    if (!c) abort();
    atomic_init(&c->refs, 2);
    c->a = a;
    c->ev = *ev;
    c->ctx = ctx;
    snprintf(c->persona_id, sizeof c->persona_id, "%s", r->persona_id);
    snprintf(c->stream_id, sizeof c->stream_id, "%s", r->stream_id ? r->stream_id : "");
    if (r->request_id && !(c->request_id = strdup(r->request_id))) abort();
    if (!(c->message = strdup(r->message))) abort();
    c->t0 = r->t0 ? r->t0 : metrics_now_ns();
    c->started = app_now();
    if ((c->sess = r->sess)) {
        rpc_session_ref(c->sess);
        c->session = c->sess->id;
    }
    jw_init(&c->text, 0, 256);
    jarena ar;
    jarena_init(&ar);
    jw sys;
    jw_init(&sys, 0, 2048);
    mem_row *hits = NULL;
    size_t nhits = 0;
    if (!build_system(c, &sys, &ar, &hits, &nhits)) {
        *code = -32000;
        snprintf(err, errlen, "Persona not found: %s", r->persona_id);
        jw_free(&sys);
        jarena_free(&ar);
        atomic_store(&c->refs, 1);
        chat_unref(c);
        return -1;
    }
    llm_msg *msgs = jarena_alloc(&ar, sizeof *msgs * (HISTORY_MESSAGES + 2));
    msgs[0] = (llm_msg){"system", jw_data(&sys)};
    size_t n = 1 + history_messages(c, msgs + 1, &ar);
    msgs[n++] = (llm_msg){"user", c->message};
    reg_add(c);
    atomic_fetch_add(&G.streams, 1);
    llm_callbacks cb = {on_token, on_done};
    llm_stream *ls = llm_chat(a->llm, msgs, n, r->max_tokens, &cb, c);
    mem_record_access(a->memory, hits, nhits);
    jw_free(&sys);
    jarena_free(&ar);
    pthread_mutex_lock(&G.mu); /* c->ls under the lock cancels read it under */
    c->ls = ls;
    bool cancelled = atomic_load(&c->cancel);
    if (!c->ended && c->ev.on_sent) c->ev.on_sent(c->ctx); /* before on_end, or never */
    pthread_mutex_unlock(&G.mu);
    if (cancelled) llm_cancel(ls);
    chat_unref(c); /* finish may already have run; this frees c then */
    return 0;
}

/* ---- metrics ------------------------------------------------------------------------ */

void chat_count_inline_start(void)
{
    atomic_fetch_add(&G.inline_starts, 1);
}

int chat_active(void)
{
    pthread_mutex_lock(&G.mu);
    int n = G.active;
    pthread_mutex_unlock(&G.mu);
    return n;
}

void chat_write_metrics(jw *w)
{
    char buf[2048];
    int active = chat_active();
    int n = snprintf(
        buf, sizeof buf,
        "# HELP pmcp_chat_active_streams Chats waiting for or receiving tokens\n"
        "# TYPE pmcp_chat_active_streams gauge\npmcp_chat_active_streams %d\n"
        "# HELP pmcp_chat_total Chats started\n# TYPE pmcp_chat_total counter\n"
        "pmcp_chat_total %llu\n"
        "# HELP pmcp_chat_tokens_total Tokens relayed to clients\n"
        "# TYPE pmcp_chat_tokens_total counter\npmcp_chat_tokens_total %llu\n"
        "# HELP pmcp_chat_stream_seconds_total Time from first to last token\n"
        "# TYPE pmcp_chat_stream_seconds_total counter\n"
        "pmcp_chat_stream_seconds_total %.6f\n"
        "# HELP pmcp_chat_errors_total Chats that ended in a backend error\n"
        "# TYPE pmcp_chat_errors_total counter\npmcp_chat_errors_total %llu\n"
        "# HELP pmcp_chat_fallbacks_total Chats answered by the fallback reply\n"
        "# TYPE pmcp_chat_fallbacks_total counter\npmcp_chat_fallbacks_total %llu\n"
        "# HELP pmcp_chat_cancelled_total Chats cancelled\n"
        "# TYPE pmcp_chat_cancelled_total counter\npmcp_chat_cancelled_total %llu\n"
        "# HELP pmcp_chat_inline_starts_total Chats started on the service thread (idle server)\n"
        "# TYPE pmcp_chat_inline_starts_total counter\npmcp_chat_inline_starts_total %llu\n",
        active, (unsigned long long)atomic_load(&G.streams),
        (unsigned long long)atomic_load(&G.tokens), (double)atomic_load(&G.stream_ns) / 1e9,
        (unsigned long long)atomic_load(&G.errors), (unsigned long long)atomic_load(&G.fallbacks),
        (unsigned long long)atomic_load(&G.cancels),
        (unsigned long long)atomic_load(&G.inline_starts));
    if (n < 0 || n >= (int)sizeof buf) abort(); /* the text above outgrew buf */
    jw_append(w, buf, (size_t)n);
    jw_puts(w, "# HELP pmcp_chat_ttft_seconds Request received to first token relayed\n"
               "# TYPE pmcp_chat_ttft_seconds histogram\n");
    metrics_hist_render(w, "pmcp_chat_ttft_seconds", "", &G.ttft);
}

void chat_write_status(jw *w)
{
    int active = chat_active();
    uint64_t cnt = atomic_load(&G.ttft.count);
    double ttft = cnt ? (double)atomic_load(&G.ttft.sum_ns) / (double)cnt / 1e9 : 0;
    double secs = (double)atomic_load(&G.stream_ns) / 1e9;
    jw_obj_begin(w);
    jw_kint(w, "active_streams", active);
    jw_kint(w, "total_chats", (int64_t)atomic_load(&G.streams));
    jw_kint(w, "tokens_relayed", (int64_t)atomic_load(&G.tokens));
    jw_kdouble(w, "average_ttft_seconds", round(ttft * 1e6) / 1e6);
    jw_kdouble(w, "tokens_per_second",
               secs > 0 ? round((double)atomic_load(&G.tokens) / secs * 10) / 10 : 0);
    jw_kint(w, "backend_errors", (int64_t)atomic_load(&G.errors));
    jw_kint(w, "fallbacks", (int64_t)atomic_load(&G.fallbacks));
    jw_obj_end(w);
}
