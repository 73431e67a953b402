/*
 * api_social.c - relationship.*, emotional.*, persona.relationship and
 * visual.update (spec §2.2, §2.6, §2.7) on top of src/social.
 *
 * §12 fixes: one relationship schema on the [0, 1] scale (see social.h);
 * relationship.compatibility works; parameters are type-checked (-32602,
 * booleans are not numbers); an unknown persona is -32000 everywhere
 * instead of a success:false result or a row created for it; no current
 * persona is -32001. Message texts keep the original's wording where it
 * had one. Scores of relationship.compatibility are rounded to 3 decimals
 * like the original; relationship values are reported unrounded.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "lib/jw.h"
#include "persona/persona.h"
#include "social/social.h"

#define CONTEXT_MAX_BYTES 64
#define MINUTES_MAX       1e6

static int social_error(rpc_call *c, const social_err *e)
{
    return rpc_fail(c, e->code ? e->code : RPC_INTERNAL_ERROR, "%s", e->msg);
}

/* "" when never. */
static void write_opt_time(jw *w, const char *key, const char *iso)
{
    jw_key(w, key);
    if (iso && *iso)
        jw_str(w, iso);
    else
        jw_null(w);
}

/* persona1_id and persona2_id: both required strings. Ids of 40 bytes or
 * more cannot name a persona: -32000. */
static int pair_params(rpc_call *c, const char **a, const char **b)
{
    const jv *x = c->params ? jv_get(c->params, "persona1_id") : NULL;
    const jv *y = c->params ? jv_get(c->params, "persona2_id") : NULL;
    if (!x || !y || x->type == JV_NULL || y->type == JV_NULL)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: Both persona1_id and persona2_id are required");
    if (rpc_param_str(c, "persona1_id", true, a) < 0 ||
        rpc_param_str(c, "persona2_id", true, b) < 0)
        return -1;
    const char *bad = strlen(*a) >= 40 ? *a : strlen(*b) >= 40 ? *b : NULL;
    if (bad) return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %.64s", bad);
    return 0;
}

/* ---- relationship objects --------------------------------------------------- */

static void write_values(jw *w, const social_rel *r)
{
    jw_kdouble(w, "affinity", r->affinity);
    jw_kdouble(w, "trust", r->trust);
    jw_kdouble(w, "respect", r->respect);
    jw_kdouble(w, "intimacy", r->intimacy);
    jw_kstr(w, "relationship_type", r->type);
    jw_kint(w, "interaction_count", r->interaction_count);
}

static void write_scores(jw *w, const social_rel *r)
{
    jw_kdouble(w, "compatibility_score", social_rel_compat_score(r));
    jw_kdouble(w, "relationship_strength", social_rel_strength(r));
}

/* The members of the relationship.get object. */
static void write_rel_fields(jw *w, const social_rel *r)
{
    jw_kstr(w, "id", r->id);
    jw_kstr(w, "persona1_id", r->persona1_id);
    jw_kstr(w, "persona2_id", r->persona2_id);
    write_values(w, r);
    jw_kdouble(w, "total_interaction_time", r->total_interaction_time);
    write_scores(w, r);
    write_opt_time(w, "last_interaction", r->last_interaction);
    jw_kstr(w, "first_meeting", r->first_meeting);
}

/* A relationship.list item, seen from `self`. */
static void write_rel_item(jw *w, const social_rel *r, const char *self)
{
    jw_obj_begin(w);
    jw_kstr(w, "other_persona_id",
            strcmp(r->persona1_id, self) == 0 ? r->persona2_id : r->persona1_id);
    write_values(w, r);
    write_scores(w, r);
    write_opt_time(w, "last_interaction", r->last_interaction);
    jw_obj_end(w);
}

/* ---- relationship.get / list / stats ------------------------------------------ */

int api_relationship_get(rpc_call *c)
{
    const char *a, *b;
    if (pair_params(c, &a, &b) < 0) return -1;
    social_rel r;
    bool exists;
    social_err e = {0};
    if (social_rel_get(c->app->store, c->app->personas, a, b, c->arena, &r, &exists, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "relationship");
    if (exists) {
        jw_obj_begin(w);
        write_rel_fields(w, &r);
        jw_obj_end(w);
    } else {
        jw_null(w);
    }
    jw_kbool(w, "exists", exists);
    if (!exists) {
        char msg[160];
        snprintf(msg, sizeof msg, "No relationship found between %s and %s", a, b);
        jw_kstr(w, "message", msg);
    }
    jw_obj_end(w);
    return 0;
}

int api_relationship_list(rpc_call *c)
{
    char id[40];
    if (api_persona_param(c, id) < 0) return -1;
    social_rel *v;
    size_t n;
    social_err e = {0};
    if (social_rel_list(c->app->store, c->app->personas, id, c->arena, &v, &n, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "persona_id", id);
    jw_key(w, "relationships");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) write_rel_item(w, &v[i], id);
    jw_arr_end(w);
    jw_kint(w, "total_relationships", (int64_t)n);
    jw_obj_end(w);
    return 0;
}

static void write_stats(jw *w, const social_stats *s)
{
    jw_obj_begin(w);
    jw_kint(w, "total_relationships", s->total_relationships);
    jw_key(w, "relationship_types");
    jw_obj_begin(w);
    for (size_t i = 0; i < s->ntypes; i++) jw_kint(w, s->types[i].type, s->types[i].count);
    jw_obj_end(w);
    jw_kdouble(w, "average_compatibility", s->average_compatibility);
    jw_kint(w, "total_interactions", s->total_interactions);
    jw_key(w, "most_active_personas");
    jw_arr_begin(w);
    for (size_t i = 0; i < s->nactive; i++) {
        jw_obj_begin(w);
        jw_kstr(w, "persona_id", s->active[i].persona_id);
        jw_kint(w, "interactions", s->active[i].interactions);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj_end(w);
}

int api_relationship_stats(rpc_call *c)
{
    social_stats s;
    social_err e = {0};
    if (social_stats_get(c->app->store, c->arena, &s, &e) < 0) return social_error(c, &e);
    char ts[40];
    app_iso_now(ts, false);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "relationship_statistics");
    write_stats(w, &s);
    jw_kstr(w, "timestamp", ts);
    jw_obj_end(w);
    return 0;
}

/* ---- relationship.compatibility ----------------------------------------------- */

static void write_who(jw *w, const char *key, const social_profile *p)
{
    jw_key(w, key);
    jw_obj_begin(w);
    jw_kstr(w, "id", p->id);
    jw_kstr(w, "name", p->name);
    jw_obj_end(w);
}

static void write_analysis(jw *w, const social_compat *x)
{
    jw_key(w, "compatibility_analysis");
    jw_obj_begin(w);
    jw_kdouble(w, "overall", social_round3(x->overall));
    jw_kdouble(w, "personality", social_round3(x->personality));
    jw_kdouble(w, "social", social_round3(x->social));
    jw_kdouble(w, "interests", social_round3(x->interests));
    jw_kdouble(w, "history", social_round3(x->history));
    jw_kstr(w, "prediction", x->prediction);
    jw_obj_end(w);
}

static void write_suggestions(jw *w, const social_compat *x)
{
    jw_key(w, "interaction_suggestions");
    jw_obj_begin(w);
    jw_kstr(w, "interaction_style", x->style);
    jw_key(w, "recommended_topics");
    jw_arr_begin(w);
    for (int i = 0; i < x->ntopics; i++) jw_str(w, x->topics[i]);
    jw_arr_end(w);
    jw_key(w, "potential_challenges");
    jw_arr_begin(w);
    for (int i = 0; i < x->nchallenges; i++) jw_str(w, x->challenges[i]);
    jw_arr_end(w);
    jw_kstr(w, "relationship_potential", x->potential);
    jw_kstr(w, "interaction_frequency", x->frequency);
    jw_obj_end(w);
}

int api_relationship_compatibility(rpc_call *c)
{
    const char *a, *b;
    if (pair_params(c, &a, &b) < 0) return -1;
    social_profile pa, pb;
    social_compat x;
    bool existing;
    social_err e = {0};
    if (social_compatibility(c->app->store, c->app->personas, a, b, c->arena, &pa, &pb, &x,
                             &existing, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    write_who(w, "persona1", &pa);
    write_who(w, "persona2", &pb);
    write_analysis(w, &x);
    write_suggestions(w, &x);
    jw_kbool(w, "existing_relationship", existing);
    jw_obj_end(w);
    return 0;
}

/* ---- relationship.update ------------------------------------------------------ */

typedef struct update_params {
    const char *a, *b, *context;
    double q, minutes;
} update_params;

static int read_update(rpc_call *c, update_params *u)
{
    if (pair_params(c, &u->a, &u->b) < 0) return -1;
    const jv *q = jv_get(c->params, "interaction_quality");
    u->q = 0.0;
    if (q && q->type != JV_NULL) {
        if (!jv_is_num(q) || jv_num(q) < -1 || jv_num(q) > 1)
            return rpc_fail(c, RPC_INVALID_PARAMS,
                            "Invalid params: interaction_quality must be a number between -1.0 "
                            "and 1.0");
        u->q = jv_num(q);
    }
    if (rpc_param_num(c, "duration_minutes", 0, MINUTES_MAX, 5.0, &u->minutes) < 0 ||
        rpc_param_str(c, "context", false, &u->context) < 0)
        return -1;
    if (!u->context || !*u->context) u->context = "conversation";
    if (strlen(u->context) > CONTEXT_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'context' is longer than %d bytes",
                        CONTEXT_MAX_BYTES);
    return 0;
}

int api_relationship_update(rpc_call *c)
{
    update_params u;
    if (read_update(c, &u) < 0) return -1;
    social_rel r;
    social_err e = {0};
    if (social_rel_update(c->app->store, c->app->personas, u.a, u.b, u.q, u.minutes, u.context, &r,
                          &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kbool(w, "success", true);
    jw_kstr(w, "message", "Relationship updated successfully");
    jw_key(w, "interaction_processed");
    jw_obj_begin(w);
    jw_kdouble(w, "quality", u.q);
    jw_kdouble(w, "duration_minutes", u.minutes);
    jw_kstr(w, "context", u.context);
    jw_obj_end(w);
    jw_key(w, "updated_relationship");
    jw_obj_begin(w);
    write_values(w, &r);
    write_scores(w, &r);
    jw_obj_end(w);
    jw_obj_end(w);
    return 0;
}

/* ---- persona.relationship (legacy) -------------------------------------------- */

/* The full model object (§5.0.4): memorable moments come from the
 * interaction history (|quality| > 0.7); conflict history and compatibility
 * factors were never recorded by the original and are empty. */
static int write_full(rpc_call *c, const social_rel *r)
{
    social_moment *m;
    size_t n;
    social_err e = {0};
    if (social_rel_moments(c->app->store, r->persona1_id, r->persona2_id, c->arena, &m, &n, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    write_rel_fields(w, r);
    jw_key(w, "shared_experiences");
    jw_raw(w, r->shared_json, strlen(r->shared_json));
    jw_key(w, "memorable_moments");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(w);
        jw_kstr(w, "timestamp", m[i].timestamp);
        jw_kdouble(w, "quality", m[i].quality);
        jw_kstr(w, "context", m[i].context);
        jw_kdouble(w, "duration", m[i].duration);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_key(w, "conflict_history");
    jw_raw(w, "[]", 2);
    jw_kdouble(w, "recent_interaction_quality", r->recent_quality);
    jw_key(w, "compatibility_factors");
    jw_raw(w, "{}", 2);
    jw_obj_end(w);
    return 0;
}

static int relationship_with(rpc_call *c, const char *self, const char *target)
{
    social_rel r;
    bool exists = false;
    social_err e = {0};
    if (strcmp(self, target) != 0 && social_rel_get(c->app->store, c->app->personas, self, target,
                                                    c->arena, &r, &exists, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "current_persona", self);
    jw_kstr(w, "target_persona", target);
    jw_key(w, "relationship");
    if (!exists)
        jw_null(w);
    else if (write_full(c, &r) < 0)
        return -1;
    jw_obj_end(w);
    return 0;
}

static int relationships_of(rpc_call *c, const char *self)
{
    social_rel *v;
    size_t n;
    social_err e = {0};
    if (social_rel_list(c->app->store, c->app->personas, self, c->arena, &v, &n, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "current_persona", self);
    jw_key(w, "relationships");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++)
        if (write_full(c, &v[i]) < 0) return -1;
    jw_arr_end(w);
    jw_obj_end(w);
    return 0;
}

int api_persona_relationship(rpc_call *c)
{
    char self[40];
    const char *target;
    if (rpc_param_str(c, "target_persona", false, &target) < 0) return -1;
    if (!rpc_session_current(c->sess, self))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA, "No persona selected. Use persona.switch first");
    if (target && *target) {
        if (strlen(target) >= 40)
            return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %.64s", target);
        return relationship_with(c, self, target);
    }
    return relationships_of(c, self);
}

/* ---- emotional.* -------------------------------------------------------------- */

static void write_emotion(jw *w, const social_emotion *s)
{
    jw_obj_begin(w);
    jw_kdouble(w, "mood", s->mood);
    jw_kdouble(w, "energy_level", s->energy_level);
    jw_kdouble(w, "stress_level", s->stress_level);
    jw_kdouble(w, "curiosity", s->curiosity);
    jw_kdouble(w, "social_battery", s->social_battery);
    jw_kstr(w, "last_updated", s->last_updated);
    jw_obj_end(w);
}

int api_emotional_get_state(rpc_call *c)
{
    char id[40];
    if (api_persona_param(c, id) < 0) return -1;
    social_emotion s;
    social_err e = {0};
    if (social_emotion_get(c->app->store, c->app->personas, id, &s, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "persona_id", id);
    jw_key(w, "emotional_state");
    write_emotion(w, &s);
    jw_obj_end(w);
    return 0;
}

/* One optional numeric field (any finite number; clamped later). */
static int emotion_field(rpc_call *c, const char *key, bool *has, double *v)
{
    const jv *x = jv_get(c->params, key);
    *has = x && x->type != JV_NULL;
    if (!*has) return 0;
    return rpc_param_num(c, key, -1e300, 1e300, 0, v);
}

static int read_patch(rpc_call *c, social_emotion_patch *p)
{
    memset(p, 0, sizeof *p);
    if (emotion_field(c, "mood", &p->has_mood, &p->mood) < 0 ||
        emotion_field(c, "energy_level", &p->has_energy, &p->energy_level) < 0 ||
        emotion_field(c, "stress_level", &p->has_stress, &p->stress_level) < 0 ||
        emotion_field(c, "curiosity", &p->has_curiosity, &p->curiosity) < 0 ||
        emotion_field(c, "social_battery", &p->has_battery, &p->social_battery) < 0)
        return -1;
    return 0;
}

int api_emotional_update_state(rpc_call *c)
{
    char id[40];
    social_emotion_patch p;
    if (api_persona_param(c, id) < 0 || read_patch(c, &p) < 0) return -1;
    social_emotion s;
    social_err e = {0};
    if (social_emotion_update(c->app->store, c->app->personas, id, &p, &s, &e) < 0)
        return social_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kbool(w, "success", true);
    jw_kstr(w, "message", "Emotional state updated successfully");
    jw_kstr(w, "persona_id", id);
    jw_key(w, "updated_state");
    write_emotion(w, &s);
    jw_obj_end(w);
    return 0;
}

/* ---- visual.update ------------------------------------------------------------- */

int api_visual_update(rpc_call *c)
{
    const char *type;
    if (rpc_param_str(c, "type", false, &type) < 0) return -1;
    if (!type || !*type) type = "general";
    if (strlen(type) > CONTEXT_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'type' is longer than %d bytes",
                        CONTEXT_MAX_BYTES);
    char ts[40];
    app_iso_now(ts, false);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kbool(w, "visual_updated", true);
    jw_kstr(w, "update_type", type);
    jw_kstr(w, "timestamp", ts);
    jw_obj_end(w);
    return 0;
}
