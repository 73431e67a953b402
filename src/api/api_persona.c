/*
 * api_persona.c - persona.list, persona.create, persona.switch,
 * persona.status, persona.delete (spec §2.2 with the §12 fixes: strict
 * parameter validation, per-connection current persona, specific codes).
 */
#include <string.h>

#include "api/api.h"
#include "lib/jw.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "store/store.h"

#define NAME_MAX_BYTES 200
#define TEXT_MAX_BYTES 16384

int api_persona_list(rpc_call *c)
{
    persona_reg *r = c->app->personas;
    double now = app_now();
    int available = 0;
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "personas");
    jw_arr_begin(w);
    persona_reg_rdlock(r);
    size_t n = persona_reg_count(r);
    for (size_t i = 0; i < n; i++) {
        const persona *p = persona_reg_at(r, i);
        bool av = persona_available(p, now);
        available += av;
        jw_obj_begin(w);
        jw_kstr(w, "id", p->id);
        jw_kstr(w, "name", p->name);
        jw_kstr(w, "description", p->description);
        jw_kbool(w, "available", av);
        jw_kint(w, "social_energy", p->social_energy);
        jw_kstr(w, "current_priority", p->priority);
        jw_kdouble(w, "cooldown_remaining", persona_cooldown_remaining(p, now));
        jw_obj_end(w);
    }
    persona_reg_unlock(r);
    jw_arr_end(w);
    jw_kint(w, "total_count", (int64_t)n);
    jw_kint(w, "available_count", available);
    jw_obj_end(w);
    return 0;
}

/* Serialize an object parameter compactly; topic preferences must hold
 * integers 0..100 (spec §5.0.2). */
static int object_json(rpc_call *c, const char *key, bool int_values, jw *tmp)
{
    const jv *o;
    if (rpc_param_obj(c, key, &o) < 0) return -1;
    if (!o) {
        jw_append(tmp, "{}", 2);
        return 0;
    }
    if (!int_values) {
        jw_value(tmp, o);
        return 0;
    }
    jw_obj_begin(tmp);
    for (uint32_t i = 0; i < o->len; i++) {
        const jv *v = &o->u.members[i].val;
        bool ok = jv_is_num(v) && jv_num(v) >= 0 && jv_num(v) <= 100 &&
                  jv_num(v) == (double)(int)jv_num(v);
        if (!ok)
            return rpc_fail(c, RPC_INVALID_PARAMS,
                            "Invalid params: '%s.%s' must be an integer between 0 and 100", key,
                            o->u.members[i].key);
        jw_keyn(tmp, o->u.members[i].key, o->u.members[i].klen);
        jw_int(tmp, (int64_t)jv_num(v)); /* 50.0 is stored as 50 */
    }
    jw_obj_end(tmp);
    return 0;
}

static int check_len(rpc_call *c, const char *key, const char *s, size_t max)
{
    if (s && strlen(s) > max)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' is longer than %zu bytes", key,
                        max);
    return 0;
}

static int read_new_persona(rpc_call *c, persona_new *in, jw *traits, jw *topics)
{
    int64_t cha, intel;
    if (rpc_param_str(c, "name", true, &in->name) < 0 ||
        check_len(c, "name", in->name, NAME_MAX_BYTES) < 0 ||
        rpc_param_str(c, "description", false, &in->description) < 0 ||
        check_len(c, "description", in->description, TEXT_MAX_BYTES) < 0 ||
        rpc_param_str(c, "social_rank", false, &in->social_rank) < 0 ||
        check_len(c, "social_rank", in->social_rank, NAME_MAX_BYTES) < 0 ||
        rpc_param_int(c, "charisma", 1, 20, 10, &cha) < 0 ||
        rpc_param_int(c, "intelligence", 1, 20, 10, &intel) < 0 ||
        object_json(c, "personality_traits", false, traits) < 0 ||
        object_json(c, "topic_preferences", true, topics) < 0)
        return -1;
    if (jw_size(traits) > TEXT_MAX_BYTES || jw_size(topics) > TEXT_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: personality_traits/topic_preferences over %d bytes",
                        TEXT_MAX_BYTES);
    if (!in->description) in->description = "";
    if (!in->social_rank) in->social_rank = "commoner";
    in->charisma = (int)cha;
    in->intelligence = (int)intel;
    return 0;
}

int api_persona_create(rpc_call *c)
{
    persona_new in = {0};
    jw traits, topics;
    jw_init(&traits, 0, 256);
    jw_init(&topics, 0, 256);
    int rc = read_new_persona(c, &in, &traits, &topics);
    char id[40];
    if (rc == 0) {
        jw_append(&traits, "", 1); /* NUL-terminate */
        jw_append(&topics, "", 1);
        in.traits_json = jw_data(&traits);
        in.topics_json = jw_data(&topics);
        int err = persona_create(c->app->personas, c->app->store, &in, id);
        if (err)
            rc = rpc_fail(c, RPC_INTERNAL_ERROR, "Failed to save persona (SQLite error %d)", err);
    }
    if (rc == 0) {
        jw_obj_begin(c->out);
        jw_kstr(c->out, "persona_id", id);
        jw_kstr(c->out, "name", in.name);
        jw_kbool(c->out, "created", true);
        jw_obj_end(c->out);
    }
    jw_free(&traits);
    jw_free(&topics);
    return rc;
}

int api_persona_switch(rpc_call *c)
{
    const char *key;
    if (rpc_param_str(c, "persona_id", true, &key) < 0) return -1;
    persona_reg *r = c->app->personas;
    double now = app_now();
    persona_reg_rdlock(r);
    const persona *p = persona_reg_resolve(r, key);
    int rc = 0;
    if (!p) {
        rc = rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %s", key);
    } else if (!persona_available(p, now)) {
        rc = rpc_fail(c, RPC_PERSONA_UNAVAILABLE, "Persona %s is not available for interaction",
                      p->name);
    } else {
        rpc_session_set_current(c->sess, p->id);
        jw *w = c->out;
        jw_obj_begin(w);
        jw_kstr(w, "persona_id", p->id);
        jw_kstr(w, "name", p->name);
        jw_kstr(w, "description", p->description);
        jw_kstr(w, "status", "active");
        jw_kint(w, "social_energy", p->social_energy);
        jw_kint(w, "available_time", p->available_time);
        jw_kstr(w, "current_priority", p->priority);
        jw_obj_end(w);
    }
    persona_reg_unlock(r);
    return rc;
}

int api_persona_param(rpc_call *c, char id_out[40])
{
    const char *given;
    if (rpc_param_str(c, "persona_id", false, &given) < 0) return -1;
    if (given && *given) {
        snprintf(id_out, 40, "%s", given);
        if (strlen(given) >= 40)
            return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %.64s", given);
        return 0;
    }
    if (!rpc_session_current(c->sess, id_out))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA,
                        "No persona selected: pass persona_id or call persona.switch first");
    return 0;
}

int api_persona_status(rpc_call *c)
{
    char id[40];
    if (api_persona_param(c, id) < 0) return -1;
    persona_reg *r = c->app->personas;
    persona_reg_rdlock(r);
    const persona *p = persona_reg_find(r, id);
    int rc = 0;
    if (!p) {
        rc = rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %s", id);
    } else {
        jw *w = c->out;
        jw_obj_begin(w);
        jw_key(w, "persona");
        persona_write_profile(w, p);
        jw_key(w, "interaction_state");
        persona_write_state(w, p, app_now());
        jw_key(w, "memory_stats");
    }
    persona_reg_unlock(r);
    if (rc) return rc;
    mem_err e = {0};
    if (mem_write_stats(c->app->memory, id, c->out, &e) < 0)
        return rpc_fail(c, e.code ? e.code : RPC_MEMORY_ERROR, "%s", e.msg);
    jw_obj_end(c->out);
    return 0;
}

int api_persona_delete(rpc_call *c)
{
    const char *id;
    if (rpc_param_str(c, "persona_id", true, &id) < 0) return -1;
    char name[NAME_MAX_BYTES + 1] = "";
    int rc = strlen(id) < 40
                 ? persona_delete(c->app->personas, c->app->store, id, name, sizeof name)
                 : 1;
    if (rc == 1) return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "Persona not found: %.64s", id);
    if (rc != 0)
        return rpc_fail(c, RPC_INTERNAL_ERROR, "Failed to delete persona %s (SQLite error %d)", id,
                        rc);
    rpc_session_forget(c->sess, id);
    app_changed(c->app, APP_CHANGED_PERSONAS, id);
    mem_forget_persona(c->app->memory, id); /* its rows went with the persona (trigger) */
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "persona_id", id);
    jw_kstr(w, "name", name);
    jw_kbool(w, "deleted", true);
    char msg[NAME_MAX_BYTES + 80];
    snprintf(msg, sizeof msg, "Persona '%s' and all associated data deleted successfully", name);
    jw_kstr(w, "message", msg);
    jw_obj_end(w);
    return 0;
}
