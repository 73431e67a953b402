/*
 * test_persona.c - the persona registry (src/persona/persona.c) on a real
 * store.
 *
 * Every test opens a fresh SQLite store in its own temporary directory
 * (fixture setup/teardown) and loads the registry from it, so the seeded
 * personas of schema v1 (Aria, then Kira) are always present. Persistence is
 * checked by closing store and registry and loading both again from the
 * same file; database effects of a delete are checked with direct SQL on a
 * pooled read connection. The availability rule (spec §6.6) is checked on
 * hand-built persona structs at its exact boundaries. UUIDs are checked for
 * the RFC 4122 version/variant nibbles and for uniqueness over 10k draws.
 * The one concurrency test runs a reader thread against creates; the
 * reader only counts anomalies (cmocka assertions stay on the test thread).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"
#include "lib/json.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "persona/persona.h"
#include "store/store.h"

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    char dir[64];
    char path[128];
    store *st;
    persona_reg *reg;
} fx;

static void fx_open(fx *f)
{
    store_opts o;
    store_opts_default(&o);
    o.path = f->path;
    char err[256];
    if (store_open(&f->st, &o, err, sizeof err) != 0) fail_msg("store_open: %s", err);
    assert_int_equal(persona_reg_load(&f->reg, f->st), 0);
    assert_non_null(f->reg);
}

static void fx_close(fx *f)
{
    persona_reg_free(f->reg);
    f->reg = NULL;
    store_close(f->st);
    f->st = NULL;
}

static void fx_reopen(fx *f)
{
    fx_close(f);
    fx_open(f);
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pmcp-persona-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/personas.db", f->dir);
    fx_open(f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    fx_close(f);
    char p[160];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static bool is_uuid4(const char *s)
{
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
        } else if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return false;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

/* 2025-10-15T10:30:00.123456+00:00 */
static bool is_iso_utc(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddddd+00:00";
    if (strlen(s) != sizeof pat - 1) return false;
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i]) return false;
    }
    return true;
}

static int64_t sql_count(fx *f, const char *sql, const char *arg)
{
    store_conn *c = store_pool_get(f->st);
    assert_non_null(c);
    sqlite3_stmt *q = store_conn_stmt(c, sql);
    assert_non_null(q);
    if (arg) sqlite3_bind_text(q, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    store_pool_put(f->st, c);
    return n;
}

static const char SQL_COUNT_PERSONAS[] = "SELECT count(*) FROM personas";
static const char SQL_COUNT_PERSONA_ID[] = "SELECT count(*) FROM personas WHERE id = ?";
static const char SQL_COUNT_STATE_ID[] =
    "SELECT count(*) FROM persona_interaction_states WHERE persona_id = ?";

static int create(fx *f, const char *name, char id[40])
{
    persona_new in = {.name = name,
                      .description = "",
                      .social_rank = "commoner",
                      .traits_json = "{}",
                      .topics_json = "{}",
                      .charisma = 10,
                      .intelligence = 10};
    return persona_create(f->reg, f->st, &in, id);
}

/* ---- load ---------------------------------------------------------------- */

static void test_load_seeded_in_order(void **state)
{
    fx *f = *state;
    assert_int_equal(persona_reg_count(f->reg), 2);
    const persona *aria = persona_reg_at(f->reg, 0);
    const persona *kira = persona_reg_at(f->reg, 1);
    assert_null(persona_reg_at(f->reg, 2));
    assert_string_equal(aria->name, "Aria");
    assert_string_equal(kira->name, "Kira");
    assert_true(aria->seq < kira->seq);
    assert_true(is_uuid4(aria->id));
    assert_true(is_uuid4(kira->id));
    assert_string_not_equal(aria->id, kira->id);

    assert_string_equal(aria->description,
                        "A vibrant elven bard with sparkling eyes and an infectious laugh. She "
                        "loves stories, music, and meeting new people.");
    assert_int_equal(aria->charisma, 18);
    assert_int_equal(aria->intelligence, 14);
    assert_string_equal(aria->social_rank, "performer");
    assert_string_equal(aria->priority, "social");
    assert_int_equal(aria->social_energy, 150);
    assert_int_equal(aria->available_time, 600);
    assert_int_equal(aria->interest_level, 50);
    assert_int_equal(aria->interaction_fatigue, 0);
    assert_true(aria->cooldown_until == 0);
    assert_true(is_iso_utc(aria->created_at));
    assert_true(is_iso_utc(aria->last_updated));

    assert_int_equal(kira->charisma, 12);
    assert_int_equal(kira->intelligence, 18);
    assert_string_equal(kira->social_rank, "scholar");
    assert_string_equal(kira->priority, "academic");
    assert_int_equal(kira->social_energy, 80);
    assert_int_equal(kira->available_time, 300);

    /* Stored JSON objects parse and hold the seeded values. */
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *t = json_parse(&ar, aria->traits_json, strlen(aria->traits_json), 0, 64, &err);
    assert_non_null(t);
    assert_int_equal(t->type, JV_OBJECT);
    assert_int_equal(jv_get(t, "extroverted")->u.i, 90);
    jv *k = json_parse(&ar, kira->topics_json, strlen(kira->topics_json), 0, 64, &err);
    assert_non_null(k);
    assert_int_equal(k->len, 8);
    assert_int_equal(jv_get(k, "research")->u.i, 95);
    assert_int_equal(jv_get(k, "small_talk")->u.i, 25);
    jarena_free(&ar);
}

static void test_reload_keeps_ids(void **state)
{
    fx *f = *state;
    char a[40], k[40];
    snprintf(a, sizeof a, "%s", persona_reg_at(f->reg, 0)->id);
    snprintf(k, sizeof k, "%s", persona_reg_at(f->reg, 1)->id);
    fx_reopen(f);
    assert_int_equal(persona_reg_count(f->reg), 2); /* not re-seeded */
    assert_string_equal(persona_reg_at(f->reg, 0)->id, a);
    assert_string_equal(persona_reg_at(f->reg, 1)->id, k);
}

/* ---- create -------------------------------------------------------------- */

static void test_create_appends_with_defaults_and_persists(void **state)
{
    fx *f = *state;
    persona_new in = {.name = "Zed \"the\" Bold",
                      .description = "A wandering knight",
                      .social_rank = "knight",
                      .traits_json = "{\"brave\":80,\"tags\":[\"a\",\"b\"]}",
                      .topics_json = "{\"swords\":100,\"poetry\":0}",
                      .charisma = 5,
                      .intelligence = 20};
    char id[40] = "";
    assert_int_equal(persona_create(f->reg, f->st, &in, id), 0);
    assert_true(is_uuid4(id));
    assert_int_equal(persona_reg_count(f->reg), 3);

    for (int pass = 0; pass < 2; pass++) {
        const persona *p = persona_reg_at(f->reg, 2);
        assert_non_null(p);
        assert_string_equal(p->id, id);
        assert_string_equal(p->name, "Zed \"the\" Bold");
        assert_string_equal(p->description, "A wandering knight");
        assert_string_equal(p->social_rank, "knight");
        assert_string_equal(p->traits_json, "{\"brave\":80,\"tags\":[\"a\",\"b\"]}");
        assert_string_equal(p->topics_json, "{\"swords\":100,\"poetry\":0}");
        assert_int_equal(p->charisma, 5);
        assert_int_equal(p->intelligence, 20);
        assert_true(p->seq > persona_reg_at(f->reg, 1)->seq);
        /* interaction state defaults, spec §5.0.2 */
        assert_int_equal(p->interest_level, 50);
        assert_int_equal(p->interaction_fatigue, 0);
        assert_string_equal(p->priority, "none");
        assert_int_equal(p->available_time, 300);
        assert_int_equal(p->social_energy, 100);
        assert_true(p->cooldown_until == 0);
        assert_true(is_iso_utc(p->created_at));
        assert_string_equal(p->last_updated, p->created_at);
        assert_true(persona_available(p, 1e9));
        /* earlier personas untouched */
        assert_string_equal(persona_reg_at(f->reg, 0)->name, "Aria");
        assert_string_equal(persona_reg_at(f->reg, 1)->name, "Kira");
        if (pass == 0) fx_reopen(f); /* second pass: the same from the database */
    }
    assert_int_equal(persona_reg_count(f->reg), 3);
    assert_int_equal(sql_count(f, SQL_COUNT_STATE_ID, id), 1);
}

static void test_create_order_and_empty_strings(void **state)
{
    fx *f = *state;
    char ids[5][40];
    const char *names[5] = {"One", "Two", "Three", "Four", "Five"};
    for (int i = 0; i < 5; i++) assert_int_equal(create(f, names[i], ids[i]), 0);
    fx_reopen(f);
    assert_int_equal(persona_reg_count(f->reg), 7);
    for (int i = 0; i < 5; i++) {
        const persona *p = persona_reg_at(f->reg, (size_t)i + 2);
        assert_string_equal(p->name, names[i]);
        assert_string_equal(p->id, ids[i]);
        assert_string_equal(p->description, "");
    }
}

static void test_create_rejected_by_database_leaves_registry(void **state)
{
    fx *f = *state;
    /* The schema refuses an empty name and charisma outside 1..20. */
    char id[40] = "untouched";
    assert_int_not_equal(create(f, "", id), 0);
    persona_new in = {.name = "X",
                      .description = "",
                      .social_rank = "r",
                      .traits_json = "{}",
                      .topics_json = "{}",
                      .charisma = 0,
                      .intelligence = 10};
    assert_int_not_equal(persona_create(f->reg, f->st, &in, id), 0);
    assert_string_equal(id, "untouched");
    assert_int_equal(persona_reg_count(f->reg), 2);
    assert_int_equal(sql_count(f, SQL_COUNT_PERSONAS, NULL), 2);
    /* The store still works after the failed jobs. */
    assert_int_equal(create(f, "Fine", id), 0);
    assert_int_equal(persona_reg_count(f->reg), 3);
}

/* ---- resolve ------------------------------------------------------------- */

static void test_find_and_resolve(void **state)
{
    fx *f = *state;
    const persona *aria = persona_reg_at(f->reg, 0);
    const persona *kira = persona_reg_at(f->reg, 1);
    persona_reg_rdlock(f->reg);
    assert_ptr_equal(persona_reg_find(f->reg, aria->id), aria);
    assert_ptr_equal(persona_reg_find(f->reg, kira->id), kira);
    assert_null(persona_reg_find(f->reg, "Aria")); /* find is by id only */
    assert_null(persona_reg_find(f->reg, ""));
    assert_ptr_equal(persona_reg_resolve(f->reg, aria->id), aria);
    assert_ptr_equal(persona_reg_resolve(f->reg, "Aria"), aria);
    assert_ptr_equal(persona_reg_resolve(f->reg, "aria"), aria);
    assert_ptr_equal(persona_reg_resolve(f->reg, "ARIA"), aria);
    assert_ptr_equal(persona_reg_resolve(f->reg, "kIrA"), kira);
    assert_null(persona_reg_resolve(f->reg, "Ari"));
    assert_null(persona_reg_resolve(f->reg, "Aria "));
    assert_null(persona_reg_resolve(f->reg, "nobody"));
    assert_null(persona_reg_resolve(f->reg, ""));
    /* An id in upper case is not an id match (ids are exact). */
    char upper[40];
    snprintf(upper, sizeof upper, "%s", aria->id);
    for (char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
    assert_null(persona_reg_resolve(f->reg, upper));
    persona_reg_unlock(f->reg);
}

static void test_resolve_prefers_id_then_first_name(void **state)
{
    fx *f = *state;
    char aria_id[40], t1[40], t2[40], trick[40];
    snprintf(aria_id, sizeof aria_id, "%s", persona_reg_at(f->reg, 0)->id);
    assert_int_equal(create(f, "Twin", t1), 0);
    assert_int_equal(create(f, "twin", t2), 0);
    /* A persona whose name is another persona's id: the id wins. */
    assert_int_equal(create(f, aria_id, trick), 0);
    persona_reg_rdlock(f->reg);
    assert_string_equal(persona_reg_resolve(f->reg, "TWIN")->id, t1);
    assert_string_equal(persona_reg_resolve(f->reg, "twin")->id, t1);
    assert_string_equal(persona_reg_resolve(f->reg, t2)->id, t2);
    assert_string_equal(persona_reg_resolve(f->reg, aria_id)->name, "Aria");
    assert_string_equal(persona_reg_resolve(f->reg, trick)->id, trick);
    persona_reg_unlock(f->reg);
}

/* ---- delete -------------------------------------------------------------- */

static void test_delete_removes_from_ram_and_db(void **state)
{
    fx *f = *state;
    char kira[40], aria[40], a[40], b[40];
    snprintf(aria, sizeof aria, "%s", persona_reg_at(f->reg, 0)->id);
    snprintf(kira, sizeof kira, "%s", persona_reg_at(f->reg, 1)->id);
    assert_int_equal(create(f, "A", a), 0);
    assert_int_equal(create(f, "B", b), 0);

    char name[64] = "";
    assert_int_equal(persona_delete(f->reg, f->st, kira, name, sizeof name), 0);
    assert_string_equal(name, "Kira");
    assert_int_equal(persona_reg_count(f->reg), 3);
    assert_null(persona_reg_find(f->reg, kira));
    assert_null(persona_reg_resolve(f->reg, "kira"));
    /* order of the rest is kept */
    assert_string_equal(persona_reg_at(f->reg, 0)->id, aria);
    assert_string_equal(persona_reg_at(f->reg, 1)->id, a);
    assert_string_equal(persona_reg_at(f->reg, 2)->id, b);
    /* the row and its interaction state (ON DELETE CASCADE) are gone */
    assert_int_equal(sql_count(f, SQL_COUNT_PERSONA_ID, kira), 0);
    assert_int_equal(sql_count(f, SQL_COUNT_STATE_ID, kira), 0);
    assert_int_equal(sql_count(f, SQL_COUNT_PERSONAS, NULL), 3);

    /* last element and first element */
    assert_int_equal(persona_delete(f->reg, f->st, b, name, sizeof name), 0);
    assert_string_equal(name, "B");
    assert_int_equal(persona_delete(f->reg, f->st, aria, name, sizeof name), 0);
    assert_string_equal(name, "Aria");
    assert_int_equal(persona_reg_count(f->reg), 1);
    assert_string_equal(persona_reg_at(f->reg, 0)->id, a);

    fx_reopen(f); /* deleted seeds stay deleted */
    assert_int_equal(persona_reg_count(f->reg), 1);
    assert_string_equal(persona_reg_at(f->reg, 0)->id, a);
}

static void test_delete_unknown_returns_1(void **state)
{
    fx *f = *state;
    char name[16] = "keep";
    assert_int_equal(
        persona_delete(f->reg, f->st, "00000000-0000-4000-8000-000000000000", name, sizeof name),
        1);
    assert_string_equal(name, "keep");
    assert_int_equal(persona_delete(f->reg, f->st, "Aria", name, sizeof name), 1); /* id only */
    assert_int_equal(persona_delete(f->reg, f->st, "", name, sizeof name), 1);
    assert_int_equal(persona_reg_count(f->reg), 2);
    assert_int_equal(sql_count(f, SQL_COUNT_PERSONAS, NULL), 2);

    char id[40];
    snprintf(id, sizeof id, "%s", persona_reg_at(f->reg, 0)->id);
    assert_int_equal(persona_delete(f->reg, f->st, id, name, sizeof name), 0);
    assert_string_equal(name, "Aria"); /* truncated safely into 16 bytes */
    assert_int_equal(persona_delete(f->reg, f->st, id, name, sizeof name), 1); /* twice */
}

static void test_delete_name_truncated_to_buffer(void **state)
{
    fx *f = *state;
    char id[40], name[5];
    assert_int_equal(create(f, "Bartholomew", id), 0);
    assert_int_equal(persona_delete(f->reg, f->st, id, name, sizeof name), 0);
    assert_string_equal(name, "Bart");
}

/* ---- availability -------------------------------------------------------- */

static void test_availability_rule(void **state)
{
    (void)state;
    persona p;
    memset(&p, 0, sizeof p);
    p.available_time = 300;
    p.social_energy = 100;
    p.cooldown_until = 0;
    const double now = 1700000000.0;
    assert_true(persona_available(&p, now));

    p.cooldown_until = now + 1;
    assert_false(persona_available(&p, now));
    assert_true(persona_cooldown_remaining(&p, now) == 1.0);
    p.cooldown_until = now; /* now >= cooldown_until: available again */
    assert_true(persona_available(&p, now));
    assert_true(persona_cooldown_remaining(&p, now) == 0.0);
    p.cooldown_until = now - 100;
    assert_true(persona_available(&p, now));
    assert_true(persona_cooldown_remaining(&p, now) == 0.0);
    p.cooldown_until = 0;

    p.available_time = 30; /* must be > 30 */
    assert_false(persona_available(&p, now));
    p.available_time = 31;
    assert_true(persona_available(&p, now));
    p.available_time = 0;
    assert_false(persona_available(&p, now));
    p.available_time = 300;

    p.social_energy = 10; /* must be > 10 */
    assert_false(persona_available(&p, now));
    p.social_energy = 11;
    assert_true(persona_available(&p, now));
    p.social_energy = 0;
    assert_false(persona_available(&p, now));
    p.social_energy = 200;
    assert_true(persona_available(&p, now));

    p.cooldown_until = now + 42.5;
    assert_true(persona_cooldown_remaining(&p, now) == 42.5);
}

/* ---- output -------------------------------------------------------------- */

static void test_write_profile_and_state(void **state)
{
    fx *f = *state;
    persona_new in = {.name = "Nyx",
                      .description = "line1\nline2",
                      .social_rank = "rogue",
                      .traits_json = "{\"sly\":true,\"score\":0.5}",
                      .topics_json = "{\"locks\":77}",
                      .charisma = 3,
                      .intelligence = 19};
    char id[40];
    assert_int_equal(persona_create(f->reg, f->st, &in, id), 0);
    persona_reg_rdlock(f->reg);
    const persona *p = persona_reg_find(f->reg, id);
    assert_non_null(p);
    jw w;
    jw_init(&w, 0, 256);
    jw_arr_begin(&w);
    persona_write_profile(&w, p);
    persona_write_state(&w, p, app_now());
    jw_arr_end(&w);
    persona_reg_unlock(f->reg);

    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *v = json_parse(&ar, jw_data(&w), jw_size(&w), 0, 64, &err);
    if (!v) fail_msg("output is not JSON: %s", err.msg);
    assert_int_equal(v->len, 2);
    const jv *prof = &v->u.items[0], *st = &v->u.items[1];
    assert_string_equal(jv_get(prof, "id")->u.s, id);
    assert_string_equal(jv_get(prof, "name")->u.s, "Nyx");
    assert_string_equal(jv_get(prof, "description")->u.s, "line1\nline2");
    const jv *tr = jv_get(prof, "personality_traits");
    assert_int_equal(tr->type, JV_OBJECT);
    assert_int_equal(jv_get(tr, "sly")->type, JV_BOOL);
    assert_true(jv_get(tr, "score")->u.d == 0.5);
    const jv *tp = jv_get(prof, "topic_preferences");
    assert_int_equal(tp->type, JV_OBJECT);
    assert_int_equal(jv_get(tp, "locks")->u.i, 77);
    assert_int_equal(jv_get(prof, "charisma")->u.i, 3);
    assert_int_equal(jv_get(prof, "intelligence")->u.i, 19);
    assert_string_equal(jv_get(prof, "social_rank")->u.s, "rogue");

    assert_int_equal(st->len, 7);
    assert_int_equal(jv_get(st, "interest_level")->u.i, 50);
    assert_int_equal(jv_get(st, "interaction_fatigue")->u.i, 0);
    assert_string_equal(jv_get(st, "current_priority")->u.s, "none");
    assert_int_equal(jv_get(st, "available_time")->u.i, 300);
    assert_int_equal(jv_get(st, "social_energy")->u.i, 100);
    assert_true(jv_is_num(jv_get(st, "cooldown_until")));
    assert_true(jv_num(jv_get(st, "cooldown_until")) == 0);
    assert_int_equal(jv_get(st, "is_available")->type, JV_BOOL);
    assert_true(jv_get(st, "is_available")->u.b);
    jarena_free(&ar);
    jw_free(&w);
}

/* ---- uuid ---------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_uuid4_format_and_uniqueness(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[40] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    bool variant_seen[4] = {false};
    for (int i = 0; i < N; i++) {
        persona_uuid4(ids[i]);
        if (!is_uuid4(ids[i])) fail_msg("not a lower-case UUID4: '%s'", ids[i]);
        variant_seen[strchr("89ab", ids[i][19]) - "89ab"] = true;
    }
    /* all four variant nibbles occur (each with probability 1 - (3/4)^10000) */
    for (int i = 0; i < 4; i++) assert_true(variant_seen[i]);
    qsort(ids, N, sizeof *ids, cmp_id);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0) fail_msg("duplicate uuid %s", ids[i]);
    free(ids);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct reader_ctx {
    persona_reg *reg;
    atomic_bool stop;
    atomic_int anomalies;
    atomic_long rounds;
} reader_ctx;

static void *reader_main(void *arg)
{
    reader_ctx *r = arg;
    while (!atomic_load(&r->stop)) {
        persona_reg_rdlock(r->reg);
        size_t n = persona_reg_count(r->reg);
        for (size_t i = 0; i < n; i++) {
            const persona *p = persona_reg_at(r->reg, i);
            if (!p || !p->name || !p->name[0] || strlen(p->id) != 36 ||
                persona_reg_find(r->reg, p->id) != p)
                atomic_fetch_add(&r->anomalies, 1);
        }
        if (persona_reg_at(r->reg, n)) atomic_fetch_add(&r->anomalies, 1);
        persona_reg_unlock(r->reg);
        atomic_fetch_add(&r->rounds, 1);
    }
    return NULL;
}

static void test_readers_during_writes(void **state)
{
    fx *f = *state;
    reader_ctx r = {.reg = f->reg};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r), 0);
    char ids[30][40];
    for (int i = 0; i < 30; i++) {
        char name[16];
        snprintf(name, sizeof name, "P%02d", i);
        assert_int_equal(create(f, name, ids[i]), 0);
    }
    char name[32];
    for (int i = 0; i < 30; i += 2)
        assert_int_equal(persona_delete(f->reg, f->st, ids[i], name, sizeof name), 0);
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&r.anomalies), 0);
    assert_true(atomic_load(&r.rounds) > 0);
    assert_int_equal(persona_reg_count(f->reg), 2 + 15);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_load_seeded_in_order),
        T(test_reload_keeps_ids),
        T(test_create_appends_with_defaults_and_persists),
        T(test_create_order_and_empty_strings),
        T(test_create_rejected_by_database_leaves_registry),
        T(test_find_and_resolve),
        T(test_resolve_prefers_id_then_first_name),
        T(test_delete_removes_from_ram_and_db),
        T(test_delete_unknown_returns_1),
        T(test_delete_name_truncated_to_buffer),
        cmocka_unit_test(test_availability_rule),
        T(test_write_profile_and_state),
        cmocka_unit_test(test_uuid4_format_and_uniqueness),
        T(test_readers_during_writes),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
