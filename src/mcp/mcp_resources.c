/*
 * mcp_resources.c - MCP resources, prompts and completion.
 *
 * Resources: every persona is persona://{id} (its profile, state and memory
 * statistics as JSON: the persona.status result) and
 * persona://{id}/memories (its most recent and most important memories,
 * bounded so a large memory set never floods a client's context). Both are
 * also resource templates. resources/list is paginated with an opaque
 * cursor (an offset). Subscriptions are per session; mcp_core.c sends
 * notifications/resources/updated when a subscribed resource changes.
 *
 * Prompts: "roleplay" lets the client's own model play a persona: it is
 * filled with the persona's profile and the memories most relevant to a
 * topic. Completion offers persona names and ids for prompt arguments and
 * template variables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"
#include "mcp/mcp_internal.h"
#include "memory/memory.h"
#include "persona/persona.h"

#define PAGE               50
#define MEMORIES_RECENT    20
#define MEMORIES_IMPORTANT 20

/* ---- listing ---------------------------------------------------------------- */

static void resource_entry(jw *w, const persona *p, bool memories)
{
    char uri[120], name[300];
    snprintf(uri, sizeof uri, "persona://%s%s", p->id, memories ? "/memories" : "");
    snprintf(name, sizeof name, "%s%s", p->name, memories ? " - memories" : "");
    jw_obj_begin(w);
    jw_kstr(w, "uri", uri);
    jw_kstr(w, "name", name);
    jw_kstr(w, "title", name);
    jw_kstr(w, "description", memories ? "Recent and most important memories" : p->description);
    jw_kstr(w, "mimeType", "application/json");
    jw_obj_end(w);
}

int mcp_resources_list(rpc_call *c)
{
    const char *cursor;
    if (rpc_param_str(c, "cursor", false, &cursor) < 0) return -1;
    long start = 0;
    if (cursor) {
        char *end;
        start = strtol(cursor, &end, 10);
        if (*end || start < 0) return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: bad cursor");
    }
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "resources");
    jw_arr_begin(w);
    persona_reg *r = c->app->personas;
    persona_reg_rdlock(r);
    size_t n = persona_reg_count(r) * 2, i = (size_t)start;
    for (; i < n && i < (size_t)start + PAGE; i++)
        resource_entry(w, persona_reg_at(r, i / 2), i % 2);
    persona_reg_unlock(r);
    if (start == 0) mcp_fixture_resources_list(c, w);
    jw_arr_end(w);
    if (i < n) {
        char next[32];
        snprintf(next, sizeof next, "%zu", i);
        jw_kstr(w, "nextCursor", next);
    }
    jw_obj_end(w);
    return 0;
}

int mcp_resources_templates(rpc_call *c)
{
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "resourceTemplates");
    jw_arr_begin(w);
    jw_raw(
        w,
        "{\"uriTemplate\":\"persona://{id}\",\"name\":\"persona\",\"title\":\"A persona\","
        "\"description\":\"Profile, state and memory statistics of a persona\","
        "\"mimeType\":\"application/json\"}",
        strlen("{\"uriTemplate\":\"persona://{id}\",\"name\":\"persona\",\"title\":\"A persona\","
               "\"description\":\"Profile, state and memory statistics of a persona\","
               "\"mimeType\":\"application/json\"}"));
    jw_raw(w,
           "{\"uriTemplate\":\"persona://{id}/memories\",\"name\":\"persona-memories\",\"title\":"
           "\"A persona's memories\",\"description\":\"Recent and most important memories\","
           "\"mimeType\":\"application/json\"}",
           strlen("{\"uriTemplate\":\"persona://{id}/memories\",\"name\":\"persona-memories\","
                  "\"title\":\"A persona's memories\",\"description\":\"Recent and most important "
                  "memories\",\"mimeType\":\"application/json\"}"));
    mcp_fixture_templates_list(c, w);
    jw_arr_end(w);
    jw_obj_end(w);
    return 0;
}

/* ---- reading ---------------------------------------------------------------- */

static void write_contents(jw *w, const char *uri, const char *json, size_t len)
{
    jw_obj_begin(w);
    jw_key(w, "contents");
    jw_arr_begin(w);
    jw_obj_begin(w);
    jw_kstr(w, "uri", uri);
    jw_kstr(w, "mimeType", "application/json");
    jw_key(w, "text");
    jw_strn(w, json, len);
    jw_obj_end(w);
    jw_arr_end(w);
    jw_obj_end(w);
}

static void write_memory_list(jw *w, const char *key, const mem_row *rows, size_t n)
{
    char iso[40];
    jw_key(w, key);
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(w);
        jw_kstr(w, "id", rows[i].id);
        jw_kstr(w, "content", rows[i].content);
        jw_kstr(w, "memory_type", rows[i].memory_type);
        jw_kdouble(w, "importance", rows[i].importance);
        jw_kstr(w, "visibility", rows[i].visibility);
        util_iso_time(rows[i].created_at, iso, false);
        jw_kstr(w, "created_at", iso);
        jw_obj_end(w);
    }
    jw_arr_end(w);
}

static int read_memories(rpc_call *c, const char *pid, jw *body)
{
    mem_row *recent, *important;
    size_t nr, ni;
    mem_err e = {0};
    if (mem_list(c->app->memory, pid, 0, MEMORIES_RECENT, c->arena, &recent, &nr, &e) < 0)
        return rpc_fail(c, RPC_MEMORY_ERROR, "%s", e.msg);
    mem_query q = {
        .persona_id = pid, .text = "important", .k = MEMORIES_IMPORTANT, .min_importance = 0.7};
    if (mem_search(c->app->memory, &q, c->arena, &important, &ni, &e) < 0) ni = 0;
    jw_obj_begin(body);
    jw_kstr(body, "persona_id", pid);
    write_memory_list(body, "recent", recent, nr);
    write_memory_list(body, "important", important, ni);
    jw_key(body, "stats");
    if (mem_write_stats(c->app->memory, pid, body, &e) < 0) jw_null(body);
    jw_obj_end(body);
    return 0;
}

static int read_persona(rpc_call *c, const char *pid, jw *body)
{
    const rpc_method *m = rpc_lookup("persona.status", NULL);
    jw args;
    jw_init(&args, 0, 64);
    jw_obj_begin(&args);
    jw_kstr(&args, "persona_id", pid);
    jw_obj_end(&args);
    json_error err;
    jv *params = json_parse(c->arena, jw_data(&args), jw_size(&args), 0, 4, &err);
    jw_free(&args);
    rpc_call sub = {.app = c->app,
                    .sess = c->sess,
                    .method = "persona.status",
                    .params = params,
                    .out = body,
                    .arena = c->arena,
                    .method_index = -1};
    if (m->fn(&sub) != 0)
        return rpc_fail(c, sub.err_code == RPC_PERSONA_NOT_FOUND ? -32002 : sub.err_code,
                        "Resource not found: persona://%s", pid);
    return 0;
}

int mcp_resources_read(rpc_call *c)
{
    const char *uri;
    if (rpc_param_str(c, "uri", true, &uri) < 0) return -1;
    int fx = mcp_fixture_resource_read(c, uri);
    if (fx) return fx < 0 ? -1 : 0;
    if (strncmp(uri, "persona://", 10) != 0)
        return rpc_fail(c, -32002, "Resource not found: %s", uri);
    char pid[64];
    const char *rest = uri + 10, *slash = strchr(rest, '/');
    size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (len == 0 || len >= sizeof pid || (slash && strcmp(slash, "/memories") != 0))
        return rpc_fail(c, -32002, "Resource not found: %s", uri);
    memcpy(pid, rest, len);
    pid[len] = 0;
    jw body;
    jw_init(&body, 0, 2048);
    int rc = slash ? read_memories(c, pid, &body) : read_persona(c, pid, &body);
    if (rc == 0 && slash) {
        persona_reg_rdlock(c->app->personas);
        bool known = persona_reg_find(c->app->personas, pid) != NULL;
        persona_reg_unlock(c->app->personas);
        if (!known) rc = rpc_fail(c, -32002, "Resource not found: %s", uri);
    }
    if (rc == 0) write_contents(c->out, uri, jw_data(&body), jw_size(&body));
    jw_free(&body);
    return rc;
}

/* ---- subscriptions ------------------------------------------------------------- */

static int subscribe(rpc_call *c, bool on)
{
    const char *uri;
    if (rpc_param_str(c, "uri", true, &uri) < 0) return -1;
    mcp_sess *m = mcp_sess_of(c->sess);
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->nsubs && strcmp(m->subs[i], uri) != 0) i++;
    if (on && i == m->nsubs && m->nsubs < 1024) {
        m->subs = realloc(m->subs, (m->nsubs + 1) * sizeof *m->subs);
        if (!m->subs || !(m->subs[m->nsubs++] = strdup(uri))) abort();
    } else if (!on && i < m->nsubs) {
        free(m->subs[i]);
        m->subs[i] = m->subs[--m->nsubs];
    }
    pthread_mutex_unlock(&m->mu);
    jw_obj_begin(c->out);
    jw_obj_end(c->out);
    return 0;
}

int mcp_resources_subscribe(rpc_call *c)
{
    return subscribe(c, true);
}

int mcp_resources_unsubscribe(rpc_call *c)
{
    return subscribe(c, false);
}

/* ---- prompts ---------------------------------------------------------------------- */

int mcp_prompts_list(rpc_call *c)
{
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "prompts");
    jw_arr_begin(w);
    jw_puts(w,
            "{\"name\":\"roleplay\",\"title\":\"Play a persona\",\"description\":\"Let your model "
            "play a persona, with its profile and the memories most relevant to a "
            "topic\",\"arguments\":[{\"name\":\"persona\",\"description\":\"Persona id or "
            "name\",\"required\":true},{\"name\":\"topic\",\"description\":\"What the "
            "conversation is about (selects relevant memories)\",\"required\":false}]}");
    mcp_fixture_prompts_list(c, w);
    jw_arr_end(w);
    jw_obj_end(w);
    return 0;
}

static void roleplay_text(rpc_call *c, const persona *p, const char *topic, jw *t)
{
    jw_puts(t, "You are ");
    jw_puts(t, p->name);
    jw_puts(t, ". ");
    jw_puts(t, p->description);
    jw_puts(t, "\n\nPersonality traits: ");
    jw_puts(t, p->traits_json);
    jw_puts(t, "\nTopics you care about (0-100): ");
    jw_puts(t, p->topics_json);
    char line[200];
    snprintf(line, sizeof line, "\nEnergy %d/200, priority %s.", p->social_energy, p->priority);
    jw_puts(t, line);
    if (!topic || !*topic) return;
    mem_query q = {.persona_id = p->id, .text = topic, .k = 8};
    mem_row *rows;
    size_t n = 0;
    mem_err e;
    if (mem_search(c->app->memory, &q, c->arena, &rows, &n, &e) < 0 || !n) return;
    jw_puts(t, "\n\nWhat you remember about ");
    jw_puts(t, topic);
    jw_puts(t, ":");
    for (size_t i = 0; i < n; i++) {
        jw_puts(t, "\n- ");
        jw_puts(t, rows[i].content);
    }
}

int mcp_prompts_get(rpc_call *c)
{
    const char *name;
    const jv *args;
    if (rpc_param_str(c, "name", true, &name) < 0 || rpc_param_obj(c, "arguments", &args) < 0)
        return -1;
    int fx = mcp_fixture_prompt_get(c, name, args);
    if (fx) return fx < 0 ? -1 : 0;
    if (strcmp(name, "roleplay") != 0)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: unknown prompt '%s'", name);
    const jv *who = jv_get(args, "persona"), *topic = jv_get(args, "topic");
    if (!jv_is_str(who))
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: argument 'persona' is required");
    /* Copy the persona out of the lock: the memory search below may block. */
    persona_reg_rdlock(c->app->personas);
    const persona *p = persona_reg_resolve(c->app->personas, who->u.s);
    persona copy = p ? *p : (persona){0};
    char *fields[4] = {p ? strdup(p->name) : NULL, p ? strdup(p->description) : NULL,
                       p ? strdup(p->traits_json) : NULL, p ? strdup(p->topics_json) : NULL};
    persona_reg_unlock(c->app->personas);
    if (!p) return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: no persona '%s'", who->u.s);
    copy.name = fields[0];
    copy.description = fields[1];
    copy.traits_json = fields[2];
    copy.topics_json = fields[3];
    jw text;
    jw_init(&text, 0, 2048);
    roleplay_text(c, &copy, jv_is_str(topic) ? topic->u.s : NULL, &text);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "description", "Play the persona in the conversation that follows");
    jw_key(w, "messages");
    jw_arr_begin(w);
    jw_obj_begin(w);
    jw_kstr(w, "role", "user");
    jw_key(w, "content");
    jw_obj_begin(w);
    jw_kstr(w, "type", "text");
    jw_key(w, "text");
    jw_strn(w, jw_data(&text), jw_size(&text));
    jw_obj_end(w);
    jw_obj_end(w);
    jw_arr_end(w);
    jw_obj_end(w);
    jw_free(&text);
    for (int i = 0; i < 4; i++) free(fields[i]);
    return 0;
}

/* ---- completion ------------------------------------------------------------------- */

int mcp_complete(rpc_call *c)
{
    const jv *ref, *arg;
    if (rpc_param_obj(c, "ref", &ref) < 0 || rpc_param_obj(c, "argument", &arg) < 0) return -1;
    if (!ref || !arg)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'ref' and 'argument' are required");
    int fx = mcp_fixture_complete(c, ref, arg);
    if (fx) return fx < 0 ? -1 : 0;
    const jv *val = jv_get(arg, "value"), *aname = jv_get(arg, "name");
    const char *prefix = jv_is_str(val) ? val->u.s : "";
    bool ids = jv_is_str(aname) && strcmp(aname->u.s, "id") == 0;
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "completion");
    jw_obj_begin(w);
    jw_key(w, "values");
    jw_arr_begin(w);
    int n = 0, total = 0;
    persona_reg_rdlock(c->app->personas);
    for (size_t i = 0; i < persona_reg_count(c->app->personas); i++) {
        const persona *p = persona_reg_at(c->app->personas, i);
        const char *v = ids ? p->id : p->name;
        if (strncasecmp(v, prefix, strlen(prefix)) != 0) continue;
        total++;
        if (n < 100) {
            jw_str(w, v);
            n++;
        }
    }
    persona_reg_unlock(c->app->personas);
    jw_arr_end(w);
    jw_kint(w, "total", total);
    jw_kbool(w, "hasMore", total > n);
    jw_obj_end(w);
    jw_obj_end(w);
    return 0;
}
