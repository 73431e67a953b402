/*
 * engine.c - the conversation engine's state and turn processing (see
 * engine.h; the arithmetic is in engine_model.c, the chatroom in
 * engine_sim.c).
 *
 * Active conversations live in a list behind e->mu, which guards every
 * field of every conversation and is held only for short copies. A
 * conversation also has turn_mu, held for a whole turn (LLM reply
 * included) or an end, so turns of one conversation are serialised while
 * other conversations proceed in parallel; status never waits for it. The
 * list holds one reference to each conversation and every caller one more,
 * so ending (unlinking) never frees a conversation someone is still using.
 *
 * Persona interaction state (energy, fatigue, available time, cooldown) is
 * read-modify-written under e->state_mu by turns, ends and the
 * regeneration pass, so none of them loses another's update; the registry
 * itself is only read under its read lock and written by
 * persona_set_state(), which commits first.
 *
 * Lock order: turn_mu -> state_mu -> registry; e->mu is innermost and never
 * held across a blocking call. g_mu guards app->engine, each engine's
 * in-flight count and its closing flag.
 *
 * Persistence: the `conversations` row (kind 'persona') is inserted at
 * start, updated with each turn (one write job with the turn row) and at
 * the end. Rows a previous process left without ended_at are closed with
 * exit_reason 'server_restart' when the engine is created.
 */
#include "engine/engine.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "lib/json.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "lib/util.h"
#include "llm/llm.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "rpc/rpc.h"
#include "social/social.h"
#include "store/store.h"

#define RECENT_TURNS        6    /* earlier lines of the conversation in the prompt */
#define LLM_WAIT_SECONDS    60.0 /* a reply not complete by then is cancelled: fallback */
#define LISTENER_IMPORTANCE 0.8

/* ---- types ------------------------------------------------------------------------ */

typedef struct conv {
    char id[40];
    char p[2][40];
    char topic[256];
    int topic_drift_count, duration, token_budget, tokens_used, continue_score, turn_count;
    int *scores;
    int nscores, capscores;
    double started_at, ended_at;
    char exit_reason[64];
    bool ended;
    char *last_text[2]; /* each participant's last line */
    struct {
        int who;
        char *text;
    } recent[RECENT_TURNS];
    int nrecent;
    int refs; /* under e->mu */
    pthread_mutex_t turn_mu;
    struct conv *next;
} conv;

typedef struct regen_rec {
    char id[40];
    double anchor; /* when it last regenerated (epoch seconds) */
    engine_carry carry;
    int time_cap;
    bool seen;
} regen_rec;

struct engine {
    app *a;
    pthread_mutex_t mu;
    conv *convs; /* newest first */
    pthread_mutex_t state_mu;
    regen_rec *recs; /* under state_mu */
    size_t nrecs, caprecs;
    int inflight; /* under g_mu */
    bool closing;
    bool tick_running, tick_stop;
    pthread_t tick;
    pthread_mutex_t tick_mu;
    pthread_cond_t tick_cv;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static int fail(engine_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(engine_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

unsigned engine_random(void)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (unsigned)rand();
    return r;
}

double engine_random01(void)
{
    return engine_random() / 4294967296.0;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

/* ---- persona snapshots -------------------------------------------------------------- */

typedef struct snap {
    char id[40];
    char name[128];
    char priority[16];
    char rank[64];
    const char *description, *traits_json; /* in the arena */
    int charisma, interest_level, topic_pref;
    engine_vitals v;
} snap;

static int topic_pref_of(const char *topics_json, const char *topic, jarena *ar)
{
    json_error jerr;
    jv *t = json_parse(ar, topics_json, strlen(topics_json), 0, 8, &jerr);
    if (!t || t->type != JV_OBJECT || !topic) return -1;
    for (uint32_t i = 0; i < t->len; i++) {
        const jv *v = &t->u.members[i].val;
        if (strcasecmp(t->u.members[i].key, topic) == 0 && jv_is_num(v)) {
            double x = jv_num(v);
            return x < 0 ? 0 : x > 100 ? 100 : (int)x;
        }
    }
    return -1;
}

static void vitals_of(const persona *p, engine_vitals *v)
{
    v->social_energy = p->social_energy;
    v->interaction_fatigue = p->interaction_fatigue;
    v->available_time = p->available_time;
    v->cooldown_until = p->cooldown_until;
}

/* Copy what the engine needs of a persona; false when it does not exist. */
static bool snap_take(persona_reg *r, const char *id, const char *topic, jarena *ar, snap *s)
{
    persona_reg_rdlock(r);
    const persona *p = persona_reg_find(r, id);
    if (p) {
        snprintf(s->id, sizeof s->id, "%s", p->id);
        snprintf(s->name, sizeof s->name, "%s", p->name);
        snprintf(s->priority, sizeof s->priority, "%s", p->priority);
        snprintf(s->rank, sizeof s->rank, "%s", p->social_rank);
        s->description = jarena_strndup(ar, p->description, strlen(p->description));
        s->traits_json = jarena_strndup(ar, p->traits_json, strlen(p->traits_json));
        s->charisma = p->charisma;
        s->interest_level = p->interest_level;
        s->topic_pref = topic_pref_of(p->topics_json, topic, ar);
        vitals_of(p, &s->v);
    }
    persona_reg_unlock(r);
    return p != NULL;
}

static bool vitals_take(persona_reg *r, const char *id, engine_vitals *v)
{
    persona_reg_rdlock(r);
    const persona *p = persona_reg_find(r, id);
    if (p) vitals_of(p, v);
    persona_reg_unlock(r);
    return p != NULL;
}

static engine_party party_of(const snap *s)
{
    return (engine_party){.priority = s->priority,
                          .topic_pref = s->topic_pref,
                          .charisma = s->charisma,
                          .social_rank = s->rank,
                          .interaction_fatigue = s->v.interaction_fatigue,
                          .available_time = s->v.available_time,
                          .social_energy = s->v.social_energy};
}

static int set_vitals(engine *e, const char *id, const engine_vitals *v)
{
    persona_state_patch p = {.interaction_fatigue = v->interaction_fatigue,
                             .available_time = v->available_time,
                             .social_energy = v->social_energy,
                             .cooldown_until = v->cooldown_until};
    int rc = persona_set_state(e->a->personas, e->a->store, id, &p);
    if (rc != 0 && rc != 1) log_warn("engine: persona state not saved", "persona=%s rc=%d", id, rc);
    return rc;
}

/* ---- relationships ------------------------------------------------------------------ */

/* §6.8.1's compatibility was written for the model's signed scale (-1..1,
 * 0 = neutral, intimacy 0..1 from 0). Relationships are kept on one [0, 1]
 * scale with 0.5 neutral (social.h), so values are mapped back, v -> 2v - 1
 * (intimacy: max(0, 2v - 1)), before the formula: a pair that never met and
 * a fresh pair are both neutral (history -2.5, the spec's example). */
static double compat_signed(const social_rel *r)
{
    social_rel s = *r;
    s.affinity = 2 * r->affinity - 1;
    s.trust = 2 * r->trust - 1;
    s.respect = 2 * r->respect - 1;
    s.intimacy = fmax(0, 2 * r->intimacy - 1);
    return social_rel_compat_score(&s);
}

/* The pair's relationship (rel filled when it exists) and compatibility. */
static double pair_compat(engine *e, const char *a, const char *b, social_rel *rel, bool *exists)
{
    jarena ar;
    jarena_init(&ar);
    social_err err;
    bool ex = false;
    social_rel r;
    memset(&r, 0, sizeof r);
    double compat = 0;
    if (social_rel_get(e->a->store, e->a->personas, a, b, &ar, &r, &ex, &err) == 0 && ex)
        compat = compat_signed(&r);
    r.shared_json = NULL; /* lived in the arena */
    jarena_free(&ar);
    if (rel) *rel = r;
    if (exists) *exists = ex;
    return compat;
}

double engine_history_term(engine *e, const char *a, const char *b)
{
    return engine_history_from_compat(pair_compat(e, a, b, NULL, NULL));
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static const char SQL_ORPHANS[] =
    "UPDATE conversations SET ended_at = ?1, exit_reason = 'server_restart'"
    " WHERE kind = 'persona' AND ended_at IS NULL";

static int orphans_fn(store_conn *sc, void *ctx)
{
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_ORPHANS);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_double(q, 1, *(double *)ctx);
    int rc = sqlite3_step(q);
    int n = sqlite3_changes(store_conn_db(sc));
    sqlite3_reset(q);
    if (n > 0) log_info("engine: closed conversations left active", "count=%d", n);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static engine *engine_new(app *a)
{
    double now = app_now();
    int rc = store_write(a->store, orphans_fn, &now);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        log_error("engine: cannot close stale conversations", "rc=%d", rc);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) abort();
    e->a = a;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->state_mu, NULL);
    pthread_mutex_init(&e->tick_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->tick_cv, &ca);
    pthread_condattr_destroy(&ca);
    return e;
}

engine *engine_acquire(app *a)
{
    pthread_mutex_lock(&g_mu);
    engine *e = a->engine;
    if (!e && !atomic_load(&a->stopping) && a->store && a->personas) e = a->engine = engine_new(a);
    if (e && e->closing) e = NULL;
    if (e) e->inflight++;
    pthread_mutex_unlock(&g_mu);
    return e;
}

void engine_release(engine *e)
{
    pthread_mutex_lock(&g_mu);
    if (--e->inflight == 0 && e->closing) pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void *tick_main(void *arg)
{
    engine *e = arg;
    pthread_mutex_lock(&e->tick_mu);
    while (!e->tick_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)ENGINE_TICK_SECONDS;
        int rc = 0;
        while (!e->tick_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&e->tick_cv, &e->tick_mu, &ts);
        if (e->tick_stop) break;
        pthread_mutex_unlock(&e->tick_mu);
        engine_regen_pass(e);
        pthread_mutex_lock(&e->tick_mu);
    }
    pthread_mutex_unlock(&e->tick_mu);
    return NULL;
}

int engine_start(app *a)
{
    engine *e = engine_acquire(a);
    if (!e) {
        log_error("engine: cannot start", NULL);
        return -1;
    }
    engine_regen_pass(e); /* catch up on the time the server was down */
    int rc = 0;
    pthread_mutex_lock(&e->tick_mu);
    if (!e->tick_running) {
        e->tick_stop = false;
        if (pthread_create(&e->tick, NULL, tick_main, e) == 0) {
            e->tick_running = true;
            log_info("conversation engine started", "tick_seconds=%g", ENGINE_TICK_SECONDS);
        } else {
            log_error("engine: cannot start the regeneration tick", NULL);
            rc = -1;
        }
    }
    pthread_mutex_unlock(&e->tick_mu);
    engine_release(e);
    return rc;
}

static void conv_free(conv *c)
{
    free(c->scores);
    free(c->last_text[0]);
    free(c->last_text[1]);
    for (int i = 0; i < c->nrecent; i++) free(c->recent[i].text);
    pthread_mutex_destroy(&c->turn_mu);
    free(c);
}

static void conv_unref(engine *e, conv *c)
{
    pthread_mutex_lock(&e->mu);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (last) conv_free(c);
}

static conv *conv_get(engine *e, const char *id)
{
    pthread_mutex_lock(&e->mu);
    conv *c = e->convs;
    while (c && strcmp(c->id, id) != 0) c = c->next;
    if (c) c->refs++;
    pthread_mutex_unlock(&e->mu);
    return c;
}

static void conv_finish(engine *e, conv *c, const char *reason, bool cooldown);

void engine_stop(app *a)
{
    pthread_mutex_lock(&g_mu);
    engine *e = a->engine;
    if (!e) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    e->closing = true;
    while (e->inflight > 0) pthread_cond_wait(&g_cv, &g_mu);
    a->engine = NULL;
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_lock(&e->tick_mu);
    bool joined = e->tick_running;
    e->tick_stop = true;
    pthread_cond_broadcast(&e->tick_cv);
    pthread_mutex_unlock(&e->tick_mu);
    if (joined) pthread_join(e->tick, NULL);
    char(*ids)[40] = NULL;
    size_t n = engine_active_ids(e, &ids);
    for (size_t i = 0; i < n; i++) {
        conv *c = conv_get(e, ids[i]);
        if (!c) continue;
        pthread_mutex_lock(&c->turn_mu);
        if (!c->ended) conv_finish(e, c, "server_shutdown", false);
        pthread_mutex_unlock(&c->turn_mu);
        conv_unref(e, c);
    }
    free(ids);
    free(e->recs);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->state_mu);
    pthread_mutex_destroy(&e->tick_mu);
    pthread_cond_destroy(&e->tick_cv);
    free(e);
    log_info("conversation engine stopped", NULL);
}

/* ---- active set ----------------------------------------------------------------------- */

bool engine_persona_busy(engine *e, const char *id)
{
    bool busy = false;
    pthread_mutex_lock(&e->mu);
    for (conv *c = e->convs; c && !busy; c = c->next)
        busy = strcmp(c->p[0], id) == 0 || strcmp(c->p[1], id) == 0;
    pthread_mutex_unlock(&e->mu);
    return busy;
}

size_t engine_active_ids(engine *e, char (**ids)[40])
{
    pthread_mutex_lock(&e->mu);
    size_t n = 0;
    for (conv *c = e->convs; c; c = c->next) n++;
    char(*out)[40] = calloc(n ? n : 1, sizeof *out);
    if (!out) abort();
    size_t i = n;
    for (conv *c = e->convs; c; c = c->next) memcpy(out[--i], c->id, 40); /* oldest first */
    pthread_mutex_unlock(&e->mu);
    *ids = out;
    return n;
}

static void info_fill(const conv *c, engine_conv_info *o)
{
    memset(o, 0, sizeof *o);
    memcpy(o->id, c->id, sizeof o->id);
    memcpy(o->participants, c->p, sizeof o->participants);
    snprintf(o->topic, sizeof o->topic, "%s", c->topic);
    o->active = !c->ended;
    o->turn_count = c->turn_count;
    o->duration = c->duration;
    o->token_budget = c->token_budget;
    o->tokens_used = c->tokens_used;
    o->continue_score = c->continue_score;
    o->started_at = c->started_at;
    o->ended_at = c->ended_at;
    snprintf(o->exit_reason, sizeof o->exit_reason, "%s", c->exit_reason);
    if (!c->ended) memcpy(o->next_speaker, c->p[c->turn_count % 2], sizeof o->next_speaker);
    o->score_history_len = c->nscores;
}

/* ---- persistence ------------------------------------------------------------------------ */

typedef struct row_job {
    engine_conv_info info;
    const char *score_history; /* JSON array */
    bool insert;
    /* the turn, when turn_id is set */
    const char *turn_id, *speaker_id, *content, *response_type;
    int turn_number, turn_score, turn_tokens;
    double processing_time, created_at;
} row_job;

static const char SQL_CONV_INSERT[] =
    "INSERT INTO conversations (id, kind, participants, topic, token_budget, continue_score,"
    " started_at) VALUES (?1, 'persona', json_array(?2, ?3), ?4, ?5, ?6, ?7)";
static const char SQL_CONV_UPDATE[] =
    "UPDATE conversations SET duration = ?2, token_budget = ?3, tokens_used = ?4,"
    " continue_score = ?5, score_history = ?6, turn_count = ?7, ended_at = ?8, exit_reason = ?9"
    " WHERE id = ?1";
static const char SQL_TURN_INSERT[] =
    "INSERT INTO conversation_turns (id, conversation_id, speaker_id, turn_number, content,"
    " response_type, continue_score, tokens_used, processing_time, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

static int step_reset(sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int row_fn(store_conn *sc, void *ctx)
{
    row_job *j = ctx;
    const engine_conv_info *i = &j->info;
    sqlite3_stmt *q;
    int rc;
    if (j->insert) {
        if (!(q = store_conn_stmt(sc, SQL_CONV_INSERT))) return SQLITE_ERROR;
        sqlite3_bind_text(q, 1, i->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, i->participants[0], -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, i->participants[1], -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, i->topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 5, i->token_budget);
        sqlite3_bind_int(q, 6, i->continue_score);
        sqlite3_bind_double(q, 7, i->started_at);
        return step_reset(q);
    }
    if (j->turn_id) {
        if (!(q = store_conn_stmt(sc, SQL_TURN_INSERT))) return SQLITE_ERROR;
        sqlite3_bind_text(q, 1, j->turn_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, i->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, j->speaker_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 4, j->turn_number);
        sqlite3_bind_text(q, 5, j->content, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 6, j->response_type, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 7, j->turn_score);
        sqlite3_bind_int(q, 8, j->turn_tokens);
        sqlite3_bind_double(q, 9, j->processing_time);
        sqlite3_bind_double(q, 10, j->created_at);
        if ((rc = step_reset(q)) != SQLITE_OK) return rc;
    }
    if (!(q = store_conn_stmt(sc, SQL_CONV_UPDATE))) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, i->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, i->duration);
    sqlite3_bind_int(q, 3, i->token_budget);
    sqlite3_bind_int(q, 4, i->tokens_used);
    sqlite3_bind_int(q, 5, i->continue_score);
    sqlite3_bind_text(q, 6, j->score_history, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 7, i->turn_count);
    if (i->active) {
        sqlite3_bind_null(q, 8);
        sqlite3_bind_null(q, 9);
    } else {
        sqlite3_bind_double(q, 8, i->ended_at);
        sqlite3_bind_text(q, 9, i->exit_reason, -1, SQLITE_STATIC);
    }
    return step_reset(q);
}

/* Snapshot the conversation (under e->mu) into a job and write it. */
static int conv_persist(engine *e, conv *c, row_job *j)
{
    jw h;
    jw_init(&h, 0, 64);
    pthread_mutex_lock(&e->mu);
    info_fill(c, &j->info);
    jw_arr_begin(&h);
    for (int i = 0; i < c->nscores; i++) jw_int(&h, c->scores[i]);
    pthread_mutex_unlock(&e->mu);
    jw_arr_end(&h);
    jw_append(&h, "", 1);
    j->score_history = jw_data(&h);
    int rc = store_write(e->a->store, row_fn, j);
    jw_free(&h);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        log_warn("engine: conversation not saved", "id=%s rc=%d", c->id, rc);
        return rc;
    }
    return SQLITE_OK;
}

/* ---- start, status, end ---------------------------------------------------------------- */

static bool available(const snap *s, double now, char *why, size_t n)
{
    if (now < s->v.cooldown_until)
        snprintf(why, n, "%s is cooling down for %.0f more seconds", s->name,
                 ceil(s->v.cooldown_until - now));
    else if (s->v.available_time <= 30)
        snprintf(why, n, "%s has no time left (available_time %d)", s->name, s->v.available_time);
    else if (s->v.social_energy <= 10)
        snprintf(why, n, "%s is out of social energy (%d)", s->name, s->v.social_energy);
    else
        return true;
    return false;
}

int engine_conv_start(engine *e, const char *p1, const char *p2, const char *topic, int budget,
                      engine_conv_info *out, engine_err *err)
{
    if (strcmp(p1, p2) == 0)
        return fail(err, RPC_INVALID_PARAMS,
                    "persona1_id and persona2_id must be different personas");
    jarena ar;
    jarena_init(&ar);
    snap s1, s2;
    if (!snap_take(e->a->personas, p1, topic, &ar, &s1) ||
        !snap_take(e->a->personas, p2, topic, &ar, &s2)) {
        jarena_free(&ar);
        return fail(err, RPC_PERSONA_NOT_FOUND, "One or both personas not found");
    }
    double now = app_now();
    char why[200];
    if (!available(&s1, now, why, sizeof why) || !available(&s2, now, why, sizeof why)) {
        jarena_free(&ar);
        return fail(err, ENGINE_ERR_UNAVAILABLE, "Failed to start conversation: %s", why);
    }
    engine_party a = party_of(&s1), b = party_of(&s2);
    engine_ctx ctx = {.duration = 0, .token_budget = budget};
    int score = engine_continue_score(&a, &b, &ctx, pair_compat(e, p1, p2, NULL, NULL), NULL);
    conv *c = calloc(1, sizeof *c);
    if (!c) abort();
    util_uuid4(c->id);
    memcpy(c->p[0], s1.id, 40);
    memcpy(c->p[1], s2.id, 40);
    snprintf(c->topic, sizeof c->topic, "%s", topic);
    c->token_budget = budget;
    c->continue_score = score;
    c->started_at = now;
    c->refs = 1; /* the list's */
    pthread_mutex_init(&c->turn_mu, NULL);
    const char *busy = NULL;
    pthread_mutex_lock(&e->mu);
    for (conv *o = e->convs; o && !busy; o = o->next) {
        if (strcmp(o->p[0], p1) == 0 || strcmp(o->p[1], p1) == 0) busy = s1.name;
        if (strcmp(o->p[0], p2) == 0 || strcmp(o->p[1], p2) == 0) busy = busy ? busy : s2.name;
    }
    if (!busy) {
        c->next = e->convs;
        e->convs = c;
        c->refs++; /* ours, until persisted */
    }
    pthread_mutex_unlock(&e->mu);
    if (busy) {
        fail(err, ENGINE_ERR_UNAVAILABLE,
             "Failed to start conversation: %s is already in a conversation", busy);
        jarena_free(&ar);
        conv_free(c);
        return -1;
    }
    row_job j = {.insert = true};
    int rc = conv_persist(e, c, &j);
    if (rc != SQLITE_OK) {
        pthread_mutex_lock(&e->mu);
        for (conv **pp = &e->convs; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                c->refs--;
                break;
            }
        pthread_mutex_unlock(&e->mu);
        conv_unref(e, c);
        jarena_free(&ar);
        return fail(err, RPC_INTERNAL_ERROR, "Internal error: conversation not saved (%d)", rc);
    }
    pthread_mutex_lock(&e->mu);
    info_fill(c, out);
    pthread_mutex_unlock(&e->mu);
    conv_unref(e, c);
    log_info("conversation started", "id=%s persona1=%s persona2=%s topic=\"%s\" score=%d", out->id,
             p1, p2, topic, score);
    jarena_free(&ar);
    return 0;
}

static const char SQL_STATUS[] =
    "SELECT json_extract(participants, '$[0]'), json_extract(participants, '$[1]'), topic,"
    " turn_count, duration, token_budget, tokens_used, continue_score, started_at, ended_at,"
    " exit_reason, json_array_length(score_history)"
    " FROM conversations WHERE id = ?1 AND kind = 'persona'";

static void col_text(char *dst, size_t n, sqlite3_stmt *q, int i)
{
    const unsigned char *s = sqlite3_column_text(q, i);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

/* An ended (or orphaned) conversation from the table: 1 found, 0 not, -1 error. */
static int status_stored(engine *e, const char *id, engine_conv_info *o)
{
    store_conn *sc = store_pool_get(e->a->store);
    if (!sc) return -1;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_STATUS);
    int found = -1;
    if (q) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
        if (found == 1) {
            memset(o, 0, sizeof *o);
            snprintf(o->id, sizeof o->id, "%s", id);
            col_text(o->participants[0], sizeof o->participants[0], q, 0);
            col_text(o->participants[1], sizeof o->participants[1], q, 1);
            col_text(o->topic, sizeof o->topic, q, 2);
            o->turn_count = sqlite3_column_int(q, 3);
            o->duration = sqlite3_column_int(q, 4);
            o->token_budget = sqlite3_column_int(q, 5);
            o->tokens_used = sqlite3_column_int(q, 6);
            o->continue_score = sqlite3_column_int(q, 7);
            o->started_at = sqlite3_column_double(q, 8);
            o->ended_at = sqlite3_column_double(q, 9);
            col_text(o->exit_reason, sizeof o->exit_reason, q, 10);
            o->score_history_len = sqlite3_column_int(q, 11);
            o->active = false;
        }
        sqlite3_reset(q);
    }
    store_pool_put(e->a->store, sc);
    return found;
}

int engine_conv_status(engine *e, const char *id, engine_conv_info *out, engine_err *err)
{
    conv *c = conv_get(e, id);
    if (c) {
        pthread_mutex_lock(&e->mu);
        info_fill(c, out);
        pthread_mutex_unlock(&e->mu);
        conv_unref(e, c);
        return 0;
    }
    int found = strlen(id) < 40 ? status_stored(e, id, out) : 0;
    if (found < 0) return fail(err, RPC_INTERNAL_ERROR, "Internal error: database unavailable");
    if (found == 0) return fail(err, RPC_INVALID_PARAMS, "Conversation not found: %.100s", id);
    return 0;
}

/* Cooldown of §6.7 for both participants. Caller holds c->turn_mu. */
static void apply_cooldowns(engine *e, conv *c, double now)
{
    pthread_mutex_lock(&e->state_mu);
    engine_vitals v[2];
    bool have[2];
    for (int i = 0; i < 2; i++) have[i] = vitals_take(e->a->personas, c->p[i], &v[i]);
    pthread_mutex_lock(&e->mu);
    int score = c->continue_score;
    pthread_mutex_unlock(&e->mu);
    double cd = engine_cooldown_seconds(score, have[0] ? v[0].interaction_fatigue : 0);
    for (int i = 0; i < 2; i++) {
        if (!have[i]) continue;
        v[i].cooldown_until = now + cd;
        set_vitals(e, c->p[i], &v[i]);
    }
    pthread_mutex_unlock(&e->state_mu);
}

/* Mark ended, unlink, persist. Caller holds c->turn_mu and a reference. */
static void conv_finish(engine *e, conv *c, const char *reason, bool cooldown)
{
    double now = app_now();
    if (cooldown) apply_cooldowns(e, c, now);
    pthread_mutex_lock(&e->mu);
    c->ended = true;
    c->ended_at = now;
    snprintf(c->exit_reason, sizeof c->exit_reason, "%s", reason);
    for (conv **pp = &e->convs; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            c->refs--; /* the list's; the caller still holds one */
            break;
        }
    pthread_mutex_unlock(&e->mu);
    row_job j = {0};
    conv_persist(e, c, &j);
    log_info("conversation ended", "id=%s reason=%s turns=%d tokens=%d", c->id, reason,
             c->turn_count, c->tokens_used);
}

int engine_conv_end(engine *e, const char *id, const char *reason, engine_conv_info *out,
                    engine_err *err)
{
    conv *c = conv_get(e, id);
    if (!c) return fail(err, RPC_INVALID_PARAMS, "Conversation not found: %.100s", id);
    pthread_mutex_lock(&c->turn_mu);
    int rc = 0;
    if (c->ended) {
        rc = fail(err, RPC_INVALID_PARAMS, "Conversation not found: %.100s", id);
    } else {
        conv_finish(e, c, reason, true);
        pthread_mutex_lock(&e->mu);
        info_fill(c, out);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&c->turn_mu);
    conv_unref(e, c);
    return rc;
}

/* ---- the LLM reply -------------------------------------------------------------------- */

typedef struct reply_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    jw text;
    llm_status status;
    char detail[200];
} reply_wait;

static void wait_unref(reply_wait *w)
{
    pthread_mutex_lock(&w->mu);
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (!last) return;
    jw_free(&w->text);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void on_token(void *ctx, const char *t, size_t n)
{
    reply_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    jw_append(&w->text, t, n);
    pthread_mutex_unlock(&w->mu);
}

static void on_done(void *ctx, llm_status st, const char *detail, int tokens)
{
    (void)tokens;
    reply_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->status = st;
    snprintf(w->detail, sizeof w->detail, "%s", detail ? detail : "");
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    wait_unref(w);
}

/* Stream a chat and wait for all of it (at most LLM_WAIT_SECONDS, then it is
 * cancelled). Returns the text (malloc) or NULL with the reason in why. */
static char *llm_reply(app *a, const llm_msg *msgs, size_t n, int max_tokens, char *why,
                       size_t whylen)
{
    llm *l = a->llm;
    if (!l) {
        snprintf(why, whylen, "no LLM client");
        return NULL;
    }
    reply_wait *w = calloc(1, sizeof *w);
    if (!w) abort();
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2;
    jw_init(&w->text, 0, 256);
    llm_callbacks cb = {on_token, on_done};
    llm_stream *ls = llm_chat(l, msgs, n, max_tokens, &cb, w);
    /* Wake every 100 ms to notice a stopping server: a turn must not hold
     * up shutdown for the whole LLM wait. */
    struct timespec start, ts;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_mutex_lock(&w->mu);
    bool stop = false;
    double waited = 0;
    while (!w->done && waited < LLM_WAIT_SECONDS && !(stop = atomic_load(&a->stopping))) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        waited = (double)(ts.tv_sec - start.tv_sec) + (ts.tv_nsec - start.tv_nsec) / 1e9;
    }
    if (!w->done) {
        pthread_mutex_unlock(&w->mu);
        llm_cancel(ls); /* on_done follows at once */
        pthread_mutex_lock(&w->mu);
        while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
        w->status = LLM_TIMEOUT;
        if (stop)
            snprintf(w->detail, sizeof w->detail, "the server is stopping");
        else
            snprintf(w->detail, sizeof w->detail, "no complete reply within %.0f s",
                     LLM_WAIT_SECONDS);
    }
    char *text = NULL;
    if (w->status == LLM_OK) {
        size_t len = jw_size(&w->text);
        const char *s = jw_data(&w->text);
        while (len && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\t' ||
                       s[len - 1] == '\r'))
            len--;
        if (len) {
            if (!(text = malloc(len + 1))) abort();
            memcpy(text, s, len);
            text[len] = 0;
        } else {
            snprintf(why, whylen, "empty reply");
        }
    } else {
        snprintf(why, whylen, "%s: %s", llm_status_name(w->status), w->detail);
    }
    pthread_mutex_unlock(&w->mu);
    llm_stream_unref(ls);
    wait_unref(w);
    return text;
}

/* The prompt of spec §4.3 for speaker s, with the routing constraints. */
static void build_system(jw *w, const snap *s, const snap *l, const char *topic, int turn_count,
                         const engine_plan *plan, jarena *ar)
{
    persona_prompt pp = {
        s->name,           s->description,     s->traits_json, s->priority, s->v.social_energy,
        s->interest_level, s->v.available_time};
    persona_write_prompt(w, &pp, ar);
    jw_puts(w, "\n");
    char line[512];
    if (strcmp(topic, "general") != 0) {
        jw_puts(w, "\nCurrent topic: ");
        jw_puts(w, topic);
    }
    if (turn_count > 0) {
        snprintf(line, sizeof line, "\nThis is turn %d in the conversation.", turn_count + 1);
        jw_puts(w, line);
    }
    jw_puts(w, "\n\nResponse guidelines:");
    snprintf(line, sizeof line, "\n- Keep response under %d words", plan->max_length);
    jw_puts(w, line);
    if (plan->concise) jw_puts(w, "\n- Style: concise");
    if (plan->prepare_exit) jw_puts(w, "\n- Prepare to end the conversation politely");
    snprintf(line, sizeof line, "\n\nYou are talking with %s. ", l->name);
    jw_puts(w, line);
    jw_puts(w, l->description);
    snprintf(line, sizeof line, "\nReply as %s, in character, with what you say next.", s->name);
    jw_puts(w, line);
    jw_append(w, "", 1);
}

/* ---- turns -------------------------------------------------------------------------- */

static void recent_push(conv *c, int who, const char *text)
{
    if (c->nrecent == RECENT_TURNS) {
        free(c->recent[0].text);
        memmove(c->recent, c->recent + 1, sizeof c->recent[0] * (RECENT_TURNS - 1));
        c->nrecent--;
    }
    c->recent[c->nrecent].who = who;
    c->recent[c->nrecent++].text = xstrdup(text);
}

/* The speaker's reply by route: a template line, or the LLM (with the §4.4
 * fallback when it fails). */
static char *generate(engine *e, conv *c, int who, const snap *s, const snap *l,
                      const engine_plan *plan, const char *input, bool defaulted, int turn_count,
                      engine_turn_result *r, jarena *ar)
{
    if (plan->route == ENGINE_TEMPLATE)
        return xstrdup(engine_template_line(s->priority, s->v.social_energy,
                                            s->v.interaction_fatigue, engine_random()));
    jw sys;
    jw_init(&sys, 0, 2048);
    build_system(&sys, s, l, c->topic, turn_count, plan, ar);
    llm_msg msgs[RECENT_TURNS + 2];
    size_t n = 0;
    msgs[n++] = (llm_msg){"system", jw_data(&sys)};
    pthread_mutex_lock(&e->mu);
    int k = c->nrecent;
    if (defaulted && k > 0 && c->recent[k - 1].who != who) k--; /* that line is the input */
    for (int i = 0; i < k; i++) {
        const char *t = c->recent[i].text;
        msgs[n++] = (llm_msg){c->recent[i].who == who ? "assistant" : "user",
                              jarena_strndup(ar, t, strlen(t))};
    }
    pthread_mutex_unlock(&e->mu);
    msgs[n++] = (llm_msg){"user", input};
    char why[256] = "";
    char *text = llm_reply(e->a, msgs, n, plan->max_tokens, why, sizeof why);
    jw_free(&sys);
    if (text) return text;
    r->fallback = true;
    snprintf(r->fallback_reason, sizeof r->fallback_reason, "%s", why);
    return xstrdup(engine_fallback_line(s->priority, s->v.social_energy, engine_random()));
}

/* §6.5.1: what each side remembers of the turn. */
static void remember(engine *e, const conv *c, const snap *s, const snap *l,
                     const engine_turn_result *r, const social_rel *rel, bool has_rel, jarena *ar)
{
    mem_store *m = e->a->memory;
    if (!m) return;
    const mem_config *cfg = mem_get_config(m);
    const mem_interest *is = persona_interest(e->a->personas, s->id, ar);
    const mem_interest *il = persona_interest(e->a->personas, l->id, ar);
    jw meta;
    jw_init(&meta, 0, 256);
    jw_obj_begin(&meta);
    jw_kstr(&meta, "conversation_id", c->id);
    jw_kint(&meta, "turn_number", r->turn_number);
    jw_kstr(&meta, "topic", c->topic);
    jw_kstr(&meta, "response_type", engine_route_name(r->route));
    jw_obj_end(&meta);
    jw_append(&meta, "", 1);
    size_t len = strlen(r->text) + 300;
    char *said = jarena_alloc(ar, len), *heard = jarena_alloc(ar, len);
    snprintf(said, len, "I said to %s: %s", l->name, r->text);
    snprintf(heard, len, "%s said to me: %s", s->name, r->text);
    char rel_s[64], rel_l[64];
    snprintf(rel_s, sizeof rel_s, "[\"%s\"]", l->id);
    snprintf(rel_l, sizeof rel_l, "[\"%s\"]", s->id);
    mem_score_ctx sc = {.speaker = is,
                        .listener = il,
                        .has_context = true,
                        .continue_score = r->continue_score,
                        .topic = c->topic,
                        .has_turn = true,
                        .turn_continue_score = r->continue_score,
                        .response_type = engine_route_name(r->route),
                        .has_relationship = has_rel,
                        .affinity = rel->affinity,
                        .trust = rel->trust,
                        .memory_type = "conversation"};
    double imp_s = mem_importance(said, &sc, &cfg->weights);
    sc.speaker = il;
    sc.listener = is;
    double imp_l = mem_importance(heard, &sc, &cfg->weights) * LISTENER_IMPORTANCE;
    double valence = fmax(-1, fmin(1, (r->continue_score - 50) / 50.0));
    mem_item items[2] = {
        {.persona_id = s->id,
         .content = said,
         .memory_type = "conversation",
         .importance = fmin(1, fmax(0, imp_s)),
         .speaker = is,
         .emotional_valence = valence,
         .related_json = rel_s,
         .visibility = "private",
         .metadata_json = jw_data(&meta)},
        {.persona_id = l->id,
         .content = heard,
         .memory_type = "conversation",
         .importance = fmin(1, fmax(0, imp_l)),
         .speaker = il,
         .emotional_valence = valence,
         .related_json = rel_l,
         .visibility = "private",
         .metadata_json = jw_data(&meta)},
    };
    mem_added added[2];
    mem_err err;
    if (mem_add(m, items, 2, added, &err) != 0)
        log_warn("engine: turn memories not stored", "conversation=%s error=\"%s\"", c->id,
                 err.msg);
    jw_free(&meta);
}

/* §6.6 effects on both participants, on their current state. */
static void turn_effects(engine *e, const char *speaker, const char *listener, int d)
{
    pthread_mutex_lock(&e->state_mu);
    engine_vitals v;
    if (vitals_take(e->a->personas, speaker, &v)) {
        engine_apply_turn(&v, d);
        set_vitals(e, speaker, &v);
    }
    if (vitals_take(e->a->personas, listener, &v)) {
        engine_apply_turn(&v, d / 2);
        set_vitals(e, listener, &v);
    }
    pthread_mutex_unlock(&e->state_mu);
}

static const char *opening_line(const char *listener, const char *topic, char *buf, size_t n)
{
    if (strcmp(topic, "general") == 0)
        snprintf(buf, n, "%s greets you warmly. \"Hello! How have you been?\"", listener);
    else
        snprintf(buf, n, "%s greets you. \"Hello! What do you think about %s?\"", listener, topic);
    return buf;
}

/* Apply a played turn to the context (under e->mu). */
static void context_update(engine *e, conv *c, int who, const engine_turn_result *r, int d)
{
    pthread_mutex_lock(&e->mu);
    c->turn_count++;
    if (c->nscores == c->capscores) {
        c->capscores = c->capscores ? c->capscores * 2 : 16;
        if (!(c->scores = realloc(c->scores, sizeof *c->scores * (size_t)c->capscores))) abort();
    }
    c->scores[c->nscores++] = r->continue_score;
    c->continue_score = r->continue_score;
    c->tokens_used += r->tokens_used;
    c->duration += d;
    c->token_budget = c->token_budget > r->tokens_used ? c->token_budget - r->tokens_used : 0;
    free(c->last_text[who]);
    c->last_text[who] = xstrdup(r->text);
    recent_push(c, who, r->text);
    pthread_mutex_unlock(&e->mu);
}

static int play(engine *e, conv *c, const char *input, engine_turn_result *r, engine_err *err,
                jarena *ar)
{
    pthread_mutex_lock(&e->mu);
    int who = c->turn_count % 2, turn_count = c->turn_count;
    engine_ctx ctx = {.duration = c->duration,
                      .token_budget = c->token_budget,
                      .topic_drift_count = c->topic_drift_count};
    char *last_other = c->last_text[1 - who] ? jarena_strndup(ar, c->last_text[1 - who],
                                                              strlen(c->last_text[1 - who]))
                                             : NULL;
    pthread_mutex_unlock(&e->mu);
    snap s, l;
    if (!snap_take(e->a->personas, c->p[who], c->topic, ar, &s) ||
        !snap_take(e->a->personas, c->p[1 - who], c->topic, ar, &l)) {
        conv_finish(e, c, "participant_deleted", false);
        return fail(err, RPC_PERSONA_NOT_FOUND,
                    "Persona not found: a participant of conversation %s was deleted", c->id);
    }
    social_rel rel;
    bool has_rel = false;
    double compat = pair_compat(e, s.id, l.id, &rel, &has_rel);
    engine_party ps = party_of(&s), pl = party_of(&l);
    int score = engine_continue_score(&ps, &pl, &ctx, compat, NULL);
    engine_plan plan = engine_route_for(score);
    bool defaulted = !input;
    char open[600];
    if (!input) input = last_other ? last_other : opening_line(l.name, c->topic, open, sizeof open);
    double t0 = app_now();
    r->text = generate(e, c, who, &s, &l, &plan, input, defaulted, turn_count, r, ar);
    r->processing_time = app_now() - t0;
    r->route = plan.route;
    r->continue_score = score;
    r->tokens_used = engine_estimate_tokens(r->text, plan.route);
    r->turn_number = turn_count + 1;
    memcpy(r->speaker_id, s.id, 40);
    memcpy(r->listener_id, l.id, 40);
    snprintf(r->speaker_name, sizeof r->speaker_name, "%s", s.name);
    snprintf(r->listener_name, sizeof r->listener_name, "%s", l.name);
    int d = engine_turn_seconds(r->processing_time);
    context_update(e, c, who, r, d);
    turn_effects(e, s.id, l.id, d);
    remember(e, c, &s, &l, r, &rel, has_rel, ar);
    char turn_id[40];
    util_uuid4(turn_id);
    row_job j = {.turn_id = turn_id,
                 .speaker_id = s.id,
                 .content = r->text,
                 .response_type = engine_route_name(plan.route),
                 .turn_number = r->turn_number,
                 .turn_score = score,
                 .turn_tokens = r->tokens_used,
                 .processing_time = r->processing_time,
                 .created_at = app_now()};
    conv_persist(e, c, &j);
    /* §6.8 with the intended arguments (§12 item 27): a quality in [-1, 1]
     * from the score (50 is neutral, as for the memories' valence) and the
     * turn's real length in minutes. */
    social_rel upd;
    social_err serr;
    double q = fmax(-1, fmin(1, (score - 50) / 50.0));
    if (social_rel_update(e->a->store, e->a->personas, s.id, l.id, q, d / 60.0, "conversation",
                          &upd, &serr) < 0)
        log_warn("engine: relationship not updated", "conversation=%s error=\"%s\"", c->id,
                 serr.msg);
    pthread_mutex_lock(&e->mu);
    int budget = c->token_budget;
    pthread_mutex_unlock(&e->mu);
    if (!engine_should_continue(score, budget)) {
        conv_finish(e, c, "natural_conclusion", true);
        r->ended = true;
    }
    pthread_mutex_lock(&e->mu);
    info_fill(c, &r->conv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int engine_conv_turn(engine *e, const char *id, const char *input, engine_turn_result *r,
                     engine_err *err)
{
    memset(r, 0, sizeof *r);
    conv *c = conv_get(e, id);
    if (!c) return fail(err, RPC_INVALID_PARAMS, "Conversation not found: %.100s", id);
    pthread_mutex_lock(&c->turn_mu);
    int rc;
    if (c->ended) {
        rc = fail(err, RPC_INVALID_PARAMS, "Conversation not found: %.100s", id);
    } else {
        jarena ar;
        jarena_init(&ar);
        rc = play(e, c, input, r, err, &ar);
        jarena_free(&ar);
    }
    pthread_mutex_unlock(&c->turn_mu);
    conv_unref(e, c);
    if (rc < 0) engine_turn_result_free(r);
    return rc;
}

void engine_turn_result_free(engine_turn_result *r)
{
    free(r->text);
    r->text = NULL;
}

/* ---- regeneration ------------------------------------------------------------------- */

/* "2025-10-15T10:30:00.123456+00:00" (UTC) -> epoch seconds; 0 if unreadable. */
static double parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    double sec = 0;
    if (sscanf(s, "%d-%d-%dT%d:%d:%lf", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = (int)sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (double)t + (sec - (int)sec);
}

static regen_rec *rec_find(engine *e, const char *id, const char *last_updated, int avail,
                           double now)
{
    for (size_t i = 0; i < e->nrecs; i++)
        if (strcmp(e->recs[i].id, id) == 0) return &e->recs[i];
    if (e->nrecs == e->caprecs) {
        e->caprecs = e->caprecs ? e->caprecs * 2 : 16;
        if (!(e->recs = realloc(e->recs, sizeof *e->recs * e->caprecs))) abort();
    }
    regen_rec *r = &e->recs[e->nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    double t = parse_iso(last_updated);
    r->anchor = t > 0 && t <= now ? t : now; /* real time since the state last changed */
    r->time_cap = avail > ENGINE_AVAILABLE_TIME_BASE ? avail : ENGINE_AVAILABLE_TIME_BASE;
    return r;
}

typedef struct regen_item {
    char id[40];
    char last_updated[40];
    engine_vitals v;
} regen_item;

static void end_orphans(engine *e)
{
    char(*ids)[40] = NULL;
    size_t n = engine_active_ids(e, &ids);
    for (size_t i = 0; i < n; i++) {
        conv *c = conv_get(e, ids[i]);
        if (!c) continue;
        persona_reg *r = e->a->personas;
        persona_reg_rdlock(r);
        bool gone = !persona_reg_find(r, c->p[0]) || !persona_reg_find(r, c->p[1]);
        persona_reg_unlock(r);
        if (gone) {
            pthread_mutex_lock(&c->turn_mu);
            if (!c->ended) conv_finish(e, c, "participant_deleted", false);
            pthread_mutex_unlock(&c->turn_mu);
        }
        conv_unref(e, c);
    }
    free(ids);
}

void engine_regen_pass(engine *e)
{
    persona_reg *reg = e->a->personas;
    pthread_mutex_lock(&e->state_mu);
    persona_reg_rdlock(reg);
    size_t n = persona_reg_count(reg);
    regen_item *items = calloc(n ? n : 1, sizeof *items);
    if (!items) abort();
    for (size_t i = 0; i < n; i++) {
        const persona *p = persona_reg_at(reg, i);
        memcpy(items[i].id, p->id, 40);
        memcpy(items[i].last_updated, p->last_updated, 40);
        vitals_of(p, &items[i].v);
    }
    persona_reg_unlock(reg);
    double now = app_now();
    for (size_t i = 0; i < e->nrecs; i++) e->recs[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        regen_rec *r =
            rec_find(e, items[i].id, items[i].last_updated, items[i].v.available_time, now);
        r->seen = true;
        if (items[i].v.available_time > r->time_cap) r->time_cap = items[i].v.available_time;
        engine_vitals v = items[i].v;
        engine_regenerate(&v, &r->carry, now - r->anchor, r->time_cap);
        r->anchor = now;
        if (v.social_energy != items[i].v.social_energy ||
            v.interaction_fatigue != items[i].v.interaction_fatigue ||
            v.available_time != items[i].v.available_time)
            set_vitals(e, items[i].id, &v);
    }
    size_t k = 0; /* forget deleted personas */
    for (size_t i = 0; i < e->nrecs; i++)
        if (e->recs[i].seen) e->recs[k++] = e->recs[i];
    e->nrecs = k;
    pthread_mutex_unlock(&e->state_mu);
    free(items);
    end_orphans(e);
}

int engine_active_count(app *a)
{
    int n = 0;
    pthread_mutex_lock(&g_mu);
    engine *e = a->engine;
    if (e && !e->closing) {
        pthread_mutex_lock(&e->mu);
        for (conv *c = e->convs; c; c = c->next) n += !c->ended;
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&g_mu);
    return n;
}
