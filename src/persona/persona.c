/*
 * persona.c - the persona registry (see persona.h).
 *
 * A vector of heap personas in `seq` order behind a pthread rwlock. Lookups
 * are linear: a deployment has tens to a few thousand personas, and a scan
 * of a few thousand ids costs less than one SQLite query. Create and delete
 * are a write job on the store's writer thread followed, after commit, by
 * the same change in RAM; the registry is therefore never ahead of the
 * database.
 */
#include "persona/persona.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"
#include "lib/json.h"
#include "lib/jw.h"
#include "memory/mem_score.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

struct persona_reg {
    pthread_rwlock_t lock;
    persona **items;
    size_t count, cap;
};

static char *dup_text(const unsigned char *s)
{
    char *d = strdup(s ? (const char *)s : "");
    if (!d) abort();
    return d;
}

static void copy_text(char *dst, size_t n, const unsigned char *s)
{
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

static void persona_free(persona *p)
{
    if (!p) return;
    free(p->name);
    free(p->description);
    free(p->traits_json);
    free(p->topics_json);
    free(p->social_rank);
    free(p);
}

static void reg_append(persona_reg *r, persona *p)
{
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->items = realloc(r->items, r->cap * sizeof *r->items);
        if (!r->items) abort();
    }
    r->items[r->count++] = p;
}

static const char SQL_LOAD[] =
    "SELECT p.seq, p.id, p.name, p.description, p.personality_traits, p.topic_preferences,"
    " p.charisma, p.intelligence, p.social_rank, p.created_at,"
    " coalesce(s.interest_level, 50), coalesce(s.interaction_fatigue, 0),"
    " coalesce(s.current_priority, 'none'), coalesce(s.available_time, 300),"
    " coalesce(s.social_energy, 100), coalesce(s.cooldown_until, 0), coalesce(s.last_updated, '')"
    " FROM personas p LEFT JOIN persona_interaction_states s ON s.persona_id = p.id"
    " ORDER BY p.seq";

static persona *row_to_persona(sqlite3_stmt *st)
{
    persona *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->seq = sqlite3_column_int64(st, 0);
    copy_text(p->id, sizeof p->id, sqlite3_column_text(st, 1));
    p->name = dup_text(sqlite3_column_text(st, 2));
    p->description = dup_text(sqlite3_column_text(st, 3));
    p->traits_json = dup_text(sqlite3_column_text(st, 4));
    p->topics_json = dup_text(sqlite3_column_text(st, 5));
    p->charisma = sqlite3_column_int(st, 6);
    p->intelligence = sqlite3_column_int(st, 7);
    p->social_rank = dup_text(sqlite3_column_text(st, 8));
    copy_text(p->created_at, sizeof p->created_at, sqlite3_column_text(st, 9));
    p->interest_level = sqlite3_column_int(st, 10);
    p->interaction_fatigue = sqlite3_column_int(st, 11);
    copy_text(p->priority, sizeof p->priority, sqlite3_column_text(st, 12));
    p->available_time = sqlite3_column_int(st, 13);
    p->social_energy = sqlite3_column_int(st, 14);
    p->cooldown_until = sqlite3_column_double(st, 15);
    copy_text(p->last_updated, sizeof p->last_updated, sqlite3_column_text(st, 16));
    return p;
}

int persona_reg_load(persona_reg **out, store *st)
{
    persona_reg *r = calloc(1, sizeof *r);
    if (!r) abort();
    pthread_rwlock_init(&r->lock, NULL);
    store_conn *c = store_pool_get(st);
    if (!c) {
        log_error("persona registry: no database connection", NULL);
        persona_reg_free(r);
        return -1;
    }
    sqlite3_stmt *q = store_conn_stmt(c, SQL_LOAD);
    int rc = SQLITE_ERROR;
    if (q) {
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) reg_append(r, row_to_persona(q));
        sqlite3_reset(q);
    }
    store_pool_put(st, c);
    if (rc != SQLITE_DONE) {
        log_error("persona registry: load failed", "rc=%d", rc);
        persona_reg_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void persona_reg_free(persona_reg *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->count; i++) persona_free(r->items[i]);
    free(r->items);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

int persona_reg_reload(persona_reg *r, store *st)
{
    persona_reg *fresh;
    if (persona_reg_load(&fresh, st) < 0) return -1;
    pthread_rwlock_wrlock(&r->lock);
    persona **items = r->items;
    size_t count = r->count, cap = r->cap;
    r->items = fresh->items;
    r->count = fresh->count;
    r->cap = fresh->cap;
    fresh->items = items;
    fresh->count = count;
    fresh->cap = cap;
    pthread_rwlock_unlock(&r->lock);
    persona_reg_free(fresh); /* now holds the old personas */
    return 0;
}

void persona_reg_rdlock(persona_reg *r)
{
    pthread_rwlock_rdlock(&r->lock);
}

void persona_reg_unlock(persona_reg *r)
{
    pthread_rwlock_unlock(&r->lock);
}

size_t persona_reg_count(persona_reg *r)
{
    return r->count;
}

const persona *persona_reg_at(persona_reg *r, size_t i)
{
    return i < r->count ? r->items[i] : NULL;
}

const persona *persona_reg_find(persona_reg *r, const char *id)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->items[i]->id, id) == 0) return r->items[i];
    return NULL;
}

const persona *persona_reg_resolve(persona_reg *r, const char *id_or_name)
{
    const persona *p = persona_reg_find(r, id_or_name);
    for (size_t i = 0; !p && i < r->count; i++)
        if (strcasecmp(r->items[i]->name, id_or_name) == 0) p = r->items[i];
    return p;
}

bool persona_available(const persona *p, double now)
{
    return now >= p->cooldown_until && p->available_time > 30 && p->social_energy > 10;
}

double persona_cooldown_remaining(const persona *p, double now)
{
    double left = p->cooldown_until - now;
    return left > 0 ? left : 0;
}

/* ---- writes ---------------------------------------------------------------- */

typedef struct create_job {
    const persona_new *in;
    persona *p; /* built by the job, adopted by the registry after commit */
} create_job;

static const char SQL_INSERT_PERSONA[] =
    "INSERT INTO personas (id, name, description, personality_traits, topic_preferences,"
    " charisma, intelligence, social_rank, created_at) VALUES (?,?,?,?,?,?,?,?,?)";
static const char SQL_INSERT_STATE[] =
    "INSERT INTO persona_interaction_states (persona_id, last_updated) VALUES (?, ?)";

static int create_fn(store_conn *c, void *ctx)
{
    create_job *j = ctx;
    persona *p = j->p;
    sqlite3_stmt *s = store_conn_stmt(c, SQL_INSERT_PERSONA);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, p->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, p->traits_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, p->topics_json, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 6, p->charisma);
    sqlite3_bind_int(s, 7, p->intelligence);
    sqlite3_bind_text(s, 8, p->social_rank, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, p->created_at, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return rc;
    p->seq = sqlite3_last_insert_rowid(store_conn_db(c));
    s = store_conn_stmt(c, SQL_INSERT_STATE);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->last_updated, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static persona *persona_from_new(const persona_new *in)
{
    persona *p = calloc(1, sizeof *p);
    if (!p) abort();
    persona_uuid4(p->id);
    p->name = dup_text((const unsigned char *)in->name);
    p->description = dup_text((const unsigned char *)in->description);
    p->traits_json = dup_text((const unsigned char *)in->traits_json);
    p->topics_json = dup_text((const unsigned char *)in->topics_json);
    p->social_rank = dup_text((const unsigned char *)in->social_rank);
    p->charisma = in->charisma;
    p->intelligence = in->intelligence;
    store_now_iso(p->created_at);
    memcpy(p->last_updated, p->created_at, sizeof p->last_updated);
    p->interest_level = 50;
    snprintf(p->priority, sizeof p->priority, "none");
    p->available_time = 300;
    p->social_energy = 100;
    return p;
}

int persona_create(persona_reg *r, store *st, const persona_new *in, char id_out[40])
{
    create_job j = {.in = in, .p = persona_from_new(in)};
    int rc = store_write(st, create_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        persona_free(j.p);
        return rc;
    }
    memcpy(id_out, j.p->id, 40);
    pthread_rwlock_wrlock(&r->lock);
    reg_append(r, j.p);
    pthread_rwlock_unlock(&r->lock);
    return 0;
}

static const char SQL_DELETE[] = "DELETE FROM personas WHERE id = ?";

typedef struct delete_job {
    const char *id;
    int changes;
} delete_job;

static int delete_fn(store_conn *c, void *ctx)
{
    delete_job *j = ctx;
    sqlite3_stmt *s = store_conn_stmt(c, SQL_DELETE);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    j->changes = sqlite3_changes(store_conn_db(c));
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int persona_delete(persona_reg *r, store *st, const char *id, char *name_out, size_t name_len)
{
    delete_job j = {.id = id};
    int rc = store_write(st, delete_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    pthread_rwlock_wrlock(&r->lock);
    int found = 0;
    for (size_t i = 0; i < r->count; i++) {
        if (strcmp(r->items[i]->id, id) != 0) continue;
        snprintf(name_out, name_len, "%s", r->items[i]->name);
        persona_free(r->items[i]);
        memmove(&r->items[i], &r->items[i + 1], (r->count - i - 1) * sizeof *r->items);
        r->count--;
        found = 1;
        break;
    }
    pthread_rwlock_unlock(&r->lock);
    return (found || j.changes) ? 0 : 1;
}

/* ---- output ---------------------------------------------------------------- */

void persona_write_profile(jw *w, const persona *p)
{
    jw_obj_begin(w);
    jw_kstr(w, "id", p->id);
    jw_kstr(w, "name", p->name);
    jw_kstr(w, "description", p->description);
    jw_key(w, "personality_traits");
    jw_raw(w, p->traits_json, strlen(p->traits_json));
    jw_key(w, "topic_preferences");
    jw_raw(w, p->topics_json, strlen(p->topics_json));
    jw_kint(w, "charisma", p->charisma);
    jw_kint(w, "intelligence", p->intelligence);
    jw_kstr(w, "social_rank", p->social_rank);
    jw_kstr(w, "created_at", p->created_at);
    jw_obj_end(w);
}

void persona_write_state(jw *w, const persona *p, double now)
{
    jw_obj_begin(w);
    jw_kint(w, "interest_level", p->interest_level);
    jw_kint(w, "interaction_fatigue", p->interaction_fatigue);
    jw_kstr(w, "current_priority", p->priority);
    jw_kint(w, "available_time", p->available_time);
    jw_kint(w, "social_energy", p->social_energy);
    jw_kdouble(w, "cooldown_until", p->cooldown_until);
    jw_kbool(w, "is_available", persona_available(p, now));
    jw_obj_end(w);
}

void persona_uuid4(char out[40])
{
    util_uuid4(out);
}

const mem_interest *persona_interest(persona_reg *r, const char *id, jarena *a)
{
    persona_reg_rdlock(r);
    const persona *p = persona_reg_find(r, id);
    jv *topics = NULL, *traits = NULL;
    json_error err;
    if (p) {
        topics = json_parse(a, p->topics_json, strlen(p->topics_json), 0, 8, &err);
        traits = json_parse(a, p->traits_json, strlen(p->traits_json), 0, 64, &err);
    }
    persona_reg_unlock(r);
    if (!topics || topics->type != JV_OBJECT) return NULL;
    mem_interest *in = jarena_alloc(a, sizeof *in);
    memset(in, 0, sizeof *in);
    const char **names = jarena_alloc(a, sizeof *names * (topics->len + 1));
    int *prefs = jarena_alloc(a, sizeof *prefs * (topics->len + 1));
    for (uint32_t i = 0; i < topics->len; i++) {
        const jv *v = &topics->u.members[i].val;
        names[in->ntopics] = topics->u.members[i].key;
        prefs[in->ntopics++] = jv_is_num(v) ? (int)jv_num(v) : 0;
    }
    in->topics = names;
    in->prefs = prefs;
    in->has_traits = traits && traits->type == JV_OBJECT && traits->len > 0;
    in->trait_curious = jv_get(traits, "curious") != NULL;
    in->trait_social = jv_get(traits, "social") != NULL;
    return in;
}

typedef struct state_job {
    const char *id;
    const persona_state_patch *p;
    char now[40];
    int changes;
} state_job;

static const char SQL_STATE[] =
    "UPDATE persona_interaction_states SET interaction_fatigue = ?2, available_time = ?3,"
    " social_energy = ?4, cooldown_until = ?5, last_updated = ?6 WHERE persona_id = ?1";

static int state_fn(store_conn *c, void *ctx)
{
    state_job *j = ctx;
    sqlite3_stmt *s = store_conn_stmt(c, SQL_STATE);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, j->p->interaction_fatigue);
    sqlite3_bind_int(s, 3, j->p->available_time);
    sqlite3_bind_int(s, 4, j->p->social_energy);
    sqlite3_bind_double(s, 5, j->p->cooldown_until);
    sqlite3_bind_text(s, 6, j->now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    j->changes = sqlite3_changes(store_conn_db(c));
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int persona_set_state(persona_reg *r, store *st, const char *id, const persona_state_patch *p)
{
    state_job j = {.id = id, .p = p};
    store_now_iso(j.now);
    int rc = store_write(st, state_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    if (!j.changes) return 1;
    pthread_rwlock_wrlock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        persona *q = r->items[i];
        if (strcmp(q->id, id) != 0) continue;
        q->interaction_fatigue = p->interaction_fatigue;
        q->available_time = p->available_time;
        q->social_energy = p->social_energy;
        q->cooldown_until = p->cooldown_until;
        memcpy(q->last_updated, j.now, sizeof q->last_updated);
    }
    pthread_rwlock_unlock(&r->lock);
    return 0;
}

void persona_write_prompt(jw *w, const persona_prompt *p, jarena *a)
{
    char line[512];
    snprintf(line, sizeof line, "You are %s. ", p->name);
    jw_puts(w, line);
    jw_puts(w, p->description);
    json_error err;
    jv *t = json_parse(a, p->traits_json, strlen(p->traits_json), 0, 16, &err);
    if (t && t->type == JV_OBJECT && t->len) {
        jw_puts(w, "\n\nYour personality traits:");
        for (uint32_t i = 0; i < t->len; i++) {
            jw_puts(w, "\n- ");
            jw_append(w, t->u.members[i].key, t->u.members[i].klen);
            jw_puts(w, ": ");
            const jv *v = &t->u.members[i].val;
            if (v->type == JV_STRING)
                jw_append(w, v->u.s, v->len);
            else
                jw_value(w, v);
        }
    }
    snprintf(line, sizeof line,
             "\n\nCurrent situation:\n- Energy level: %d/200\n- Current priority: %s\n"
             "- Interest in conversation: %d/100\n- Available time: %d seconds",
             p->social_energy, p->priority, p->interest_level, p->available_time);
    jw_puts(w, line);
}
