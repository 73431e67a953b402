/*
 * social.c - the store-backed part of social.h: relationships, interaction
 * history, statistics and emotional state in SQLite (schema v4).
 *
 * Writes are one store_write() job each, doing read-modify-write on the
 * writer connection so that concurrent updates of the same pair or persona
 * serialize and never lose an update. Every job re-checks inside its
 * transaction that the personas exist (the registry pre-check only saves a
 * write for obviously unknown ids; the in-job check and the foreign keys
 * are what guarantee no row is ever created for a missing persona).
 * Reads check out a pooled read-only connection and return it at once.
 * SQL texts are static arrays: store_conn_stmt() caches by pointer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "persona/persona.h"
#include "social/social.h"
#include "store/store.h"

#define REL_COLS                                                                                   \
    "id, persona1_id, persona2_id, affinity, trust, respect, intimacy, relationship_type,"         \
    " interaction_count, total_interaction_time, recent_interaction_quality, first_meeting,"       \
    " last_interaction, created_at, updated_at, shared_experiences"

static const char SQL_REL_GET[] =
    "SELECT " REL_COLS " FROM relationships WHERE persona1_id = ?1 AND persona2_id = ?2";
static const char SQL_REL_LIST[] = "SELECT " REL_COLS " FROM relationships"
                                   " WHERE persona1_id = ?1 OR persona2_id = ?1"
                                   " ORDER BY updated_at DESC, id";
static const char SQL_REL_PUT[] =
    "INSERT INTO relationships (id, persona1_id, persona2_id, affinity, trust, respect, intimacy,"
    " relationship_type, interaction_count, total_interaction_time, recent_interaction_quality,"
    " first_meeting, last_interaction, created_at, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    " ON CONFLICT (persona1_id, persona2_id) DO UPDATE SET affinity = excluded.affinity,"
    " trust = excluded.trust, respect = excluded.respect, intimacy = excluded.intimacy,"
    " relationship_type = excluded.relationship_type,"
    " interaction_count = excluded.interaction_count,"
    " total_interaction_time = excluded.total_interaction_time,"
    " recent_interaction_quality = excluded.recent_interaction_quality,"
    " last_interaction = excluded.last_interaction, updated_at = excluded.updated_at";
static const char SQL_HISTORY_ADD[] =
    "INSERT INTO interaction_history (persona1_id, persona2_id, interaction_quality,"
    " duration_minutes, context, emotional_impact, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char SQL_MOMENTS[] =
    "SELECT timestamp, interaction_quality, context, duration_minutes FROM interaction_history"
    " WHERE ((persona1_id = ?1 AND persona2_id = ?2) OR (persona1_id = ?2 AND persona2_id = ?1))"
    " AND abs(interaction_quality) > 0.7 ORDER BY timestamp, id";
static const char SQL_PERSONA_COUNT[] = "SELECT count(*) FROM personas WHERE id IN (?1, ?2)";
static const char SQL_STATS_REL[] =
    "SELECT count(*), coalesce(avg((affinity + trust + respect + intimacy) / 4.0), 0.0)"
    " FROM relationships";
static const char SQL_STATS_TYPES[] = "SELECT relationship_type, count(*) FROM relationships"
                                      " GROUP BY relationship_type ORDER BY relationship_type";
static const char SQL_STATS_HISTORY[] = "SELECT count(*) FROM interaction_history";
static const char SQL_STATS_ACTIVE[] =
    "SELECT persona1_id, count(*) AS n FROM interaction_history GROUP BY persona1_id"
    " ORDER BY n DESC, persona1_id LIMIT 5";
static const char SQL_EMO_GET[] =
    "SELECT mood, energy_level, stress_level, curiosity, social_battery, last_updated"
    " FROM emotional_states WHERE persona_id = ?1";
static const char SQL_EMO_PUT[] =
    "INSERT INTO emotional_states (persona_id, mood, energy_level, stress_level, curiosity,"
    " social_battery, last_updated, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"
    " ON CONFLICT (persona_id) DO UPDATE SET mood = excluded.mood,"
    " energy_level = excluded.energy_level, stress_level = excluded.stress_level,"
    " curiosity = excluded.curiosity, social_battery = excluded.social_battery,"
    " last_updated = excluded.last_updated";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

/* ---- helpers ---------------------------------------------------------------- */

static int fail(social_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(social_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int not_found(social_err *e, const char *id)
{
    return fail(e, -32000, "Persona not found: %.64s", id);
}

static int db_error(social_err *e, const char *what, int rc)
{
    return fail(e, -32603, "%s failed (SQLite error %d)", what, rc);
}

static int busy(social_err *e)
{
    return fail(e, -32002, "database busy: no read connection available");
}

static bool persona_known(persona_reg *reg, const char *id)
{
    persona_reg_rdlock(reg);
    bool ok = persona_reg_find(reg, id) != NULL;
    persona_reg_unlock(reg);
    return ok;
}

/* Both personas in the registry, distinct; fills e otherwise. */
static int check_pair(persona_reg *reg, const char *a, const char *b, social_err *e)
{
    if (strcmp(a, b) == 0)
        return fail(e, -32602, "Invalid params: persona1_id and persona2_id must differ");
    if (!persona_known(reg, a)) return not_found(e, a);
    if (!persona_known(reg, b)) return not_found(e, b);
    return 0;
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, n, "%s", t ? (const char *)t : "");
}

static const char *col_dup(sqlite3_stmt *s, int i, jarena *ar)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return jarena_strndup(ar, t ? (const char *)t : "", (size_t)sqlite3_column_bytes(s, i));
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- relationship rows -------------------------------------------------------- */

/* Decode a REL_COLS row; shared_experiences only when ar is given. */
static void rel_decode(sqlite3_stmt *s, jarena *ar, social_rel *r)
{
    memset(r, 0, sizeof *r);
    col_text(s, 0, r->id, sizeof r->id);
    col_text(s, 1, r->persona1_id, sizeof r->persona1_id);
    col_text(s, 2, r->persona2_id, sizeof r->persona2_id);
    r->affinity = sqlite3_column_double(s, 3);
    r->trust = sqlite3_column_double(s, 4);
    r->respect = sqlite3_column_double(s, 5);
    r->intimacy = sqlite3_column_double(s, 6);
    col_text(s, 7, r->type, sizeof r->type);
    r->interaction_count = sqlite3_column_int64(s, 8);
    r->total_interaction_time = sqlite3_column_double(s, 9);
    r->recent_quality = sqlite3_column_double(s, 10);
    col_text(s, 11, r->first_meeting, sizeof r->first_meeting);
    col_text(s, 12, r->last_interaction, sizeof r->last_interaction);
    col_text(s, 13, r->created_at, sizeof r->created_at);
    col_text(s, 14, r->updated_at, sizeof r->updated_at);
    r->shared_json = ar ? col_dup(s, 15, ar) : "[]";
}

/* Load a canonical pair; *found false when there is no row. */
static int rel_load(store_conn *c, const char *p1, const char *p2, jarena *ar, social_rel *r,
                    bool *found)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_REL_GET);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, p1, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p2, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (*found) rel_decode(s, ar, r);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int rel_save(store_conn *c, const social_rel *r)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_REL_PUT);
    if (!s) return SQLITE_ERROR;
    const char *text[] = {r->id, r->persona1_id, r->persona2_id};
    for (int i = 0; i < 3; i++) sqlite3_bind_text(s, i + 1, text[i], -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 4, r->affinity);
    sqlite3_bind_double(s, 5, r->trust);
    sqlite3_bind_double(s, 6, r->respect);
    sqlite3_bind_double(s, 7, r->intimacy);
    sqlite3_bind_text(s, 8, r->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, r->interaction_count);
    sqlite3_bind_double(s, 10, r->total_interaction_time);
    sqlite3_bind_double(s, 11, r->recent_quality);
    sqlite3_bind_text(s, 12, r->first_meeting, -1, SQLITE_STATIC);
    if (r->last_interaction[0]) sqlite3_bind_text(s, 13, r->last_interaction, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 14, r->created_at, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 15, r->updated_at, -1, SQLITE_STATIC);
    return step_done(s);
}

/* ---- relationship update (writer job) ----------------------------------------- */

typedef struct rel_job {
    const char *a, *b; /* caller's order: a is the initiator */
    double q, minutes;
    const char *context;
    char now[40];
    bool missing;
    social_rel r;
} rel_job;

static int personas_exist(store_conn *c, const char *a, const char *b, bool *ok)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_PERSONA_COUNT);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, b, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    *ok = n == (strcmp(a, b) == 0 ? 1 : 2);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The history row; emotional_impact records how much each value moved. */
static int history_add(store_conn *c, const rel_job *j, const social_rel *before)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_HISTORY_ADD);
    if (!s) return SQLITE_ERROR;
    char impact[256];
    snprintf(impact, sizeof impact,
             "{\"affinity\":%.17g,\"trust\":%.17g,\"respect\":%.17g,\"intimacy\":%.17g}",
             j->r.affinity - before->affinity, j->r.trust - before->trust,
             j->r.respect - before->respect, j->r.intimacy - before->intimacy);
    sqlite3_bind_text(s, 1, j->a, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, j->b, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 3, j->r.recent_quality);
    sqlite3_bind_double(s, 4, j->minutes);
    sqlite3_bind_text(s, 5, j->context, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, impact, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 7, j->now, -1, SQLITE_STATIC);
    return step_done(s);
}

static int rel_update_fn(store_conn *c, void *ctx)
{
    rel_job *j = ctx;
    bool ok, found;
    int rc = personas_exist(c, j->a, j->b, &ok);
    if (rc != SQLITE_OK || !ok) {
        j->missing = !ok;
        return rc;
    }
    const char *p1 = j->a, *p2 = j->b;
    social_pair_order(&p1, &p2);
    if ((rc = rel_load(c, p1, p2, NULL, &j->r, &found)) != SQLITE_OK) return rc;
    if (!found) social_rel_init(&j->r, p1, p2, j->now);
    social_rel before = j->r;
    social_rel_apply(&j->r, j->q, j->minutes, j->context, j->now);
    if ((rc = rel_save(c, &j->r)) != SQLITE_OK) return rc;
    return history_add(c, j, &before);
}

int social_rel_update(store *st, persona_reg *reg, const char *a, const char *b, double q,
                      double minutes, const char *context, social_rel *out, social_err *e)
{
    if (check_pair(reg, a, b, e) < 0) return -1;
    rel_job j = {.a = a, .b = b, .q = q, .minutes = minutes, .context = context};
    if (!j.context) j.context = "conversation";
    store_now_iso(j.now);
    int rc = store_write(st, rel_update_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return db_error(e, "relationship update", rc);
    if (j.missing) return fail(e, -32000, "Persona not found: %.64s or %.64s", a, b);
    *out = j.r;
    out->shared_json = "[]";
    return 0;
}

/* ---- relationship reads ----------------------------------------------------------- */

int social_rel_get(store *st, persona_reg *reg, const char *a, const char *b, jarena *ar,
                   social_rel *r, bool *exists, social_err *e)
{
    if (check_pair(reg, a, b, e) < 0) return -1;
    social_pair_order(&a, &b);
    store_conn *c = store_pool_get(st);
    if (!c) return busy(e);
    int rc = rel_load(c, a, b, ar, r, exists);
    store_pool_put(st, c);
    if (!*exists) memset(r, 0, sizeof *r);
    return rc == SQLITE_OK ? 0 : db_error(e, "relationship read", rc);
}

static int rel_collect(store_conn *c, const char *persona, jarena *ar, social_rel **out, size_t *n)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_REL_LIST);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, persona, -1, SQLITE_STATIC);
    size_t cap = 16;
    social_rel *v = jarena_alloc(ar, cap * sizeof *v);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            social_rel *bigger = jarena_alloc(ar, 2 * cap * sizeof *v);
            memcpy(bigger, v, cap * sizeof *v);
            v = bigger;
            cap *= 2;
        }
        rel_decode(s, ar, &v[(*n)++]);
    }
    sqlite3_reset(s);
    *out = v;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int social_rel_list(store *st, persona_reg *reg, const char *persona, jarena *ar, social_rel **out,
                    size_t *n, social_err *e)
{
    *out = NULL;
    *n = 0;
    if (!persona_known(reg, persona)) return not_found(e, persona);
    store_conn *c = store_pool_get(st);
    if (!c) return busy(e);
    int rc = rel_collect(c, persona, ar, out, n);
    store_pool_put(st, c);
    return rc == SQLITE_OK ? 0 : db_error(e, "relationship list", rc);
}

static int moments_collect(store_conn *c, const char *a, const char *b, jarena *ar,
                           social_moment **out, size_t *n)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_MOMENTS);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, b, -1, SQLITE_STATIC);
    size_t cap = 8;
    social_moment *v = jarena_alloc(ar, cap * sizeof *v);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            social_moment *bigger = jarena_alloc(ar, 2 * cap * sizeof *v);
            memcpy(bigger, v, cap * sizeof *v);
            v = bigger;
            cap *= 2;
        }
        social_moment *m = &v[(*n)++];
        m->timestamp = col_dup(s, 0, ar);
        m->quality = sqlite3_column_double(s, 1);
        m->context = col_dup(s, 2, ar);
        m->duration = sqlite3_column_double(s, 3);
    }
    sqlite3_reset(s);
    *out = v;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int social_rel_moments(store *st, const char *a, const char *b, jarena *ar, social_moment **out,
                       size_t *n, social_err *e)
{
    *out = NULL;
    *n = 0;
    store_conn *c = store_pool_get(st);
    if (!c) return busy(e);
    int rc = moments_collect(c, a, b, ar, out, n);
    store_pool_put(st, c);
    return rc == SQLITE_OK ? 0 : db_error(e, "interaction history read", rc);
}

/* ---- statistics ----------------------------------------------------------------- */

static int stats_counts(store_conn *c, social_stats *out)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_STATS_REL);
    if (!s) return SQLITE_ERROR;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->total_relationships = sqlite3_column_int64(s, 0);
        out->average_compatibility = social_round3(sqlite3_column_double(s, 1));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return rc;
    s = store_conn_stmt(c, SQL_STATS_HISTORY);
    if (!s) return SQLITE_ERROR;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) out->total_interactions = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int stats_types(store_conn *c, jarena *ar, social_stats *out)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_STATS_TYPES);
    if (!s) return SQLITE_ERROR;
    /* at most the 10 types the schema's CHECK allows */
    out->types = jarena_alloc(ar, 16 * sizeof *out->types);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && out->ntypes < 16) {
        out->types[out->ntypes].type = col_dup(s, 0, ar);
        out->types[out->ntypes++].count = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int stats_active(store_conn *c, jarena *ar, social_stats *out)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_STATS_ACTIVE);
    if (!s) return SQLITE_ERROR;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && out->nactive < SOCIAL_TOP_ACTIVE) {
        out->active[out->nactive].persona_id = col_dup(s, 0, ar);
        out->active[out->nactive++].interactions = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int social_stats_get(store *st, jarena *ar, social_stats *out, social_err *e)
{
    memset(out, 0, sizeof *out);
    store_conn *c = store_pool_get(st);
    if (!c) return busy(e);
    /* one read transaction: the figures agree with each other */
    int rc = store_conn_exec(c, SQL_BEGIN);
    if (rc == SQLITE_OK) rc = stats_counts(c, out);
    if (rc == SQLITE_OK) rc = stats_types(c, ar, out);
    if (rc == SQLITE_OK) rc = stats_active(c, ar, out);
    store_conn_exec(c, rc == SQLITE_OK ? SQL_COMMIT : SQL_ROLLBACK);
    store_pool_put(st, c);
    if (rc != SQLITE_OK) memset(out, 0, sizeof *out);
    return rc == SQLITE_OK ? 0 : db_error(e, "relationship statistics", rc);
}

/* ---- compatibility ------------------------------------------------------------- */

static const jv *parse_obj(jarena *ar, const char *text)
{
    json_error err;
    jv *v = json_parse(ar, text, strlen(text), 0, 16, &err);
    return v && v->type == JV_OBJECT ? v : NULL;
}

/* Copy what the engine needs out of the registry (valid after unlock). */
static void profile_from(const persona *p, jarena *ar, social_profile *out)
{
    out->id = jarena_strndup(ar, p->id, strlen(p->id));
    out->name = jarena_strndup(ar, p->name, strlen(p->name));
    out->social_rank = jarena_strndup(ar, p->social_rank, strlen(p->social_rank));
    out->traits = parse_obj(ar, p->traits_json);
    out->topics = parse_obj(ar, p->topics_json);
    out->charisma = p->charisma;
    out->intelligence = p->intelligence;
}

static int load_profiles(persona_reg *reg, const char *a, const char *b, jarena *ar,
                         social_profile *pa, social_profile *pb, social_err *e)
{
    persona_reg_rdlock(reg);
    const persona *x = persona_reg_find(reg, a), *y = persona_reg_find(reg, b);
    if (x && y) {
        profile_from(x, ar, pa);
        profile_from(y, ar, pb);
    }
    persona_reg_unlock(reg);
    if (!x || !y) return fail(e, -32000, "One or both personas not found: %.64s", x ? b : a);
    return 0;
}

int social_compatibility(store *st, persona_reg *reg, const char *a, const char *b, jarena *ar,
                         social_profile *pa, social_profile *pb, social_compat *out, bool *existing,
                         social_err *e)
{
    if (strcmp(a, b) == 0)
        return fail(e, -32602, "Invalid params: persona1_id and persona2_id must differ");
    if (load_profiles(reg, a, b, ar, pa, pb, e) < 0) return -1;
    social_rel rel;
    if (social_rel_get(st, reg, a, b, ar, &rel, existing, e) < 0) return -1;
    social_compat_compute(pa, pb, *existing ? &rel : NULL, out);
    return 0;
}

/* ---- emotional state --------------------------------------------------------- */

static int emo_load(store_conn *c, const char *persona, social_emotion *out, bool *found)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_EMO_GET);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, persona, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (*found) {
        out->mood = sqlite3_column_double(s, 0);
        out->energy_level = sqlite3_column_double(s, 1);
        out->stress_level = sqlite3_column_double(s, 2);
        out->curiosity = sqlite3_column_double(s, 3);
        out->social_battery = sqlite3_column_double(s, 4);
        col_text(s, 5, out->last_updated, sizeof out->last_updated);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int emo_save(store_conn *c, const char *persona, const social_emotion *v)
{
    sqlite3_stmt *s = store_conn_stmt(c, SQL_EMO_PUT);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, persona, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 2, v->mood);
    sqlite3_bind_double(s, 3, v->energy_level);
    sqlite3_bind_double(s, 4, v->stress_level);
    sqlite3_bind_double(s, 5, v->curiosity);
    sqlite3_bind_double(s, 6, v->social_battery);
    sqlite3_bind_text(s, 7, v->last_updated, -1, SQLITE_STATIC);
    return step_done(s);
}

typedef struct emo_job {
    const char *persona;
    const social_emotion_patch *patch; /* NULL: create the row if missing, else just read */
    char now[40];
    bool missing;
    social_emotion s;
} emo_job;

static int emo_fn(store_conn *c, void *ctx)
{
    emo_job *j = ctx;
    bool ok, found;
    int rc = personas_exist(c, j->persona, j->persona, &ok);
    if (rc != SQLITE_OK || !ok) {
        j->missing = !ok;
        return rc;
    }
    if ((rc = emo_load(c, j->persona, &j->s, &found)) != SQLITE_OK) return rc;
    if (found && !j->patch) return SQLITE_OK;
    if (!found) social_emotion_defaults(&j->s);
    if (j->patch) social_emotion_apply(&j->s, j->patch);
    snprintf(j->s.last_updated, sizeof j->s.last_updated, "%s", j->now);
    return emo_save(c, j->persona, &j->s);
}

static int emo_write(store *st, emo_job *j, social_emotion *out, social_err *e)
{
    store_now_iso(j->now);
    int rc = store_write(st, emo_fn, j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return db_error(e, "emotional state write", rc);
    if (j->missing) return not_found(e, j->persona);
    *out = j->s;
    return 0;
}

int social_emotion_get(store *st, persona_reg *reg, const char *persona, social_emotion *out,
                       social_err *e)
{
    store_conn *c = store_pool_get(st);
    if (!c) return busy(e);
    bool found;
    int rc = emo_load(c, persona, out, &found);
    store_pool_put(st, c);
    if (rc != SQLITE_OK) return db_error(e, "emotional state read", rc);
    if (found) return 0;
    if (!persona_known(reg, persona)) return not_found(e, persona);
    emo_job j = {.persona = persona};
    return emo_write(st, &j, out, e);
}

int social_emotion_update(store *st, persona_reg *reg, const char *persona,
                          const social_emotion_patch *p, social_emotion *out, social_err *e)
{
    if (!persona_known(reg, persona)) return not_found(e, persona);
    emo_job j = {.persona = persona, .patch = p};
    return emo_write(st, &j, out, e);
}
