/*
 * api_state.c - state.save and state.load (spec §2.7; issue 6 item 4).
 *
 * The original's state.save persisted nothing and state.load changed
 * nothing. Here they are real: state.save exports the whole database to a
 * versioned, checksummed JSON-lines file inside the data directory and
 * state.load replaces the database with such a file (src/state/state.h,
 * docs/STATE.md). Client paths are confined to the data directory; a bad
 * path or a bad file is -32602 with a message naming the problem, an I/O
 * or database failure -32603.
 *
 *   state.save {"path"?: "x.jsonl"} -> {"state_saved": true, "path", "rows": {table: n},
 *                                       "total_rows", "bytes", "timestamp"}
 *   state.load {"path": "x.jsonl"}  -> {"state_loaded": true, "path", "rows": {table: n},
 *                                       "total_rows", "bytes", "created_at", "schema_version"}
 *
 * Both block (file and database I/O) and run on the worker pool.
 */
#include <string.h>

#include "api/api.h"
#include "lib/jw.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "state/state.h"

/* The "path" parameter; NULL when absent. Embedded NULs are refused. */
static int path_param(rpc_call *c, bool required, const char **out)
{
    if (rpc_param_str(c, "path", required, out) < 0) return -1;
    if (!*out) return 0;
    const jv *v = jv_get(c->params, "path");
    if (v->len == 0)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'path' must not be empty");
    if (strlen(*out) != v->len)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'path' contains a NUL character");
    return 0;
}

static void write_rows(jw *w, const state_result *r)
{
    jw_key(w, "rows");
    jw_obj_begin(w);
    for (size_t i = 0; i < r->ntables; i++) {
        jw_keyn(w, r->tables[i].name, strlen(r->tables[i].name));
        jw_int(w, (int64_t)r->tables[i].rows);
    }
    jw_obj_end(w);
    jw_kint(w, "total_rows", (int64_t)r->rows);
    jw_kint(w, "bytes", (int64_t)r->bytes);
}

int api_state_save(rpc_call *c)
{
    const char *path;
    if (path_param(c, false, &path) < 0) return -1;
    char def[64];
    if (!path) {
        state_default_name(app_now(), def);
        path = def;
    }
    state_opts o = {.confine_dir = c->app->cfg.data_dir};
    state_result *r = jarena_alloc(c->arena, sizeof *r);
    state_err e = {0};
    mem_access_flush(c->app->memory); /* the file carries current access counts */
    if (state_export(c->app->store, path, &o, r, &e) < 0)
        return rpc_fail(c, e.code ? e.code : RPC_INTERNAL_ERROR, "%s", e.msg);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kbool(w, "state_saved", true);
    jw_kstr(w, "path", r->path);
    write_rows(w, r);
    jw_kstr(w, "timestamp", r->created_at);
    jw_obj_end(w);
    return 0;
}

int api_state_load(rpc_call *c)
{
    const char *path;
    if (path_param(c, true, &path) < 0) return -1;
    state_opts o = {.confine_dir = c->app->cfg.data_dir};
    state_result *r = jarena_alloc(c->arena, sizeof *r);
    state_err e = {0};
    if (state_import(c->app->store, c->app->personas, c->app->memory, path, &o, r, &e) < 0)
        return rpc_fail(c, e.code ? e.code : RPC_INTERNAL_ERROR, "%s", e.msg);
    app_changed(c->app, APP_CHANGED_PERSONAS, NULL);
    /* The caller's current persona may be gone; other sessions find out
     * on their next call (every handler resolves ids in the registry). */
    char cur[40];
    if (rpc_session_current(c->sess, cur)) {
        persona_reg_rdlock(c->app->personas);
        bool exists = persona_reg_find(c->app->personas, cur) != NULL;
        persona_reg_unlock(c->app->personas);
        if (!exists) rpc_session_forget(c->sess, cur);
    }
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kbool(w, "state_loaded", true);
    jw_kstr(w, "path", r->path);
    write_rows(w, r);
    jw_kstr(w, "created_at", r->created_at);
    jw_kint(w, "schema_version", r->schema_version);
    jw_obj_end(w);
    return 0;
}
