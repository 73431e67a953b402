/*
 * api_conversation.c - conversation.start, conversation.status,
 * conversation.end (spec §2.4) and conversation.turn (ours) over the
 * conversation engine (engine/engine.c).
 *
 * The spec's optional conversation_id fallback (the session's chat
 * conversation, which is never an engine conversation) could only ever
 * answer "not found", so conversation_id is required. Error codes:
 *   -32602  missing or mistyped parameters; "Conversation not found: <id>"
 *           (the id names no conversation the method can act on)
 *   -32000  "One or both personas not found"
 *   -32006  the persona is unavailable (cooldown, no time, no energy) or
 *           already in an active conversation: "Failed to start
 *           conversation: <why>" (RPC_PERSONA_UNAVAILABLE)
 *   -32005  the server is stopping
 * status also finds ended conversations (from the `conversations` table,
 * "active": false); turn and end act on active ones only.
 *
 * Every handler runs on a worker: start and end write (and wait for the
 * commit), status may read SQLite, turn waits for the LLM reply.
 */
#include <math.h>
#include <string.h>

#include "api/api.h"
#include "engine/engine.h"
#include "lib/jw.h"
#include "lib/util.h"

#define TOPIC_MAX_BYTES   200
#define REASON_MAX_BYTES  60
#define MESSAGE_MAX_BYTES (32 * 1024)

static int engine_error(rpc_call *c, const engine_err *err)
{
    return rpc_fail(c, err->code, "%s", err->msg);
}

static int stopping(rpc_call *c)
{
    return rpc_fail(c, RPC_SERVER_STOPPING, "Server is stopping");
}

static void write_time(jw *w, const char *key, double epoch)
{
    char iso[40];
    util_iso_time(epoch, iso, false);
    jw_kstr(w, key, iso);
}

static void write_participants(jw *w, const engine_conv_info *i)
{
    jw_key(w, "participants");
    jw_arr_begin(w);
    jw_str(w, i->participants[0]);
    jw_str(w, i->participants[1]);
    jw_arr_end(w);
}

/* The conversation.status object (spec §2.4 fields, then ours). */
static void write_status(jw *w, const engine_conv_info *i)
{
    jw_obj_begin(w);
    jw_kstr(w, "id", i->id);
    write_participants(w, i);
    jw_kstr(w, "topic", i->topic);
    jw_kint(w, "turn_count", i->turn_count);
    jw_kint(w, "duration", i->duration);
    jw_kint(w, "continue_score", i->continue_score);
    jw_kint(w, "tokens_remaining", i->token_budget);
    jw_kbool(w, "should_continue",
             i->active && engine_should_continue(i->continue_score, i->token_budget));
    jw_kbool(w, "active", i->active);
    jw_kint(w, "tokens_used", i->tokens_used);
    write_time(w, "started_at", i->started_at);
    if (i->active) {
        jw_kstr(w, "next_speaker", i->next_speaker);
    } else {
        write_time(w, "ended_at", i->ended_at);
        jw_kstr(w, "exit_reason", i->exit_reason);
    }
    jw_obj_end(w);
}

static int conversation_id(rpc_call *c, const char **id)
{
    return rpc_param_str(c, "conversation_id", true, id);
}

int api_conversation_start(rpc_call *c)
{
    const char *p1, *p2, *topic;
    int64_t budget;
    if (rpc_param_str(c, "persona1_id", false, &p1) < 0 ||
        rpc_param_str(c, "persona2_id", false, &p2) < 0)
        return -1;
    if (!p1 || !*p1 || !p2 || !*p2)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Both persona1_id and persona2_id are required");
    if (rpc_param_str(c, "topic", false, &topic) < 0 ||
        rpc_param_int(c, "token_budget", 1, 1000000, ENGINE_DEFAULT_BUDGET, &budget) < 0)
        return -1;
    if (!topic || !*topic) topic = "general";
    if (strlen(topic) > TOPIC_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'topic' is longer than %d bytes",
                        TOPIC_MAX_BYTES);
    if (strlen(p1) >= 40 || strlen(p2) >= 40)
        return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "One or both personas not found");
    engine *e = engine_acquire(c->app);
    if (!e) return stopping(c);
    engine_conv_info info;
    engine_err err;
    int rc = engine_conv_start(e, p1, p2, topic, (int)budget, &info, &err);
    engine_release(e);
    if (rc < 0) return engine_error(c, &err);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "conversation_id", info.id);
    write_participants(w, &info);
    jw_kstr(w, "topic", info.topic);
    jw_kbool(w, "started", true);
    jw_kint(w, "token_budget", info.token_budget);
    jw_kint(w, "continue_score", info.continue_score);
    jw_obj_end(w);
    return 0;
}

int api_conversation_status(rpc_call *c)
{
    const char *id;
    if (conversation_id(c, &id) < 0) return -1;
    engine *e = engine_acquire(c->app);
    if (!e) return stopping(c);
    engine_conv_info info;
    engine_err err;
    int rc = engine_conv_status(e, id, &info, &err);
    engine_release(e);
    if (rc < 0) return engine_error(c, &err);
    write_status(c->out, &info);
    return 0;
}

int api_conversation_end(rpc_call *c)
{
    const char *id, *reason;
    if (conversation_id(c, &id) < 0 || rpc_param_str(c, "reason", false, &reason) < 0) return -1;
    if (!reason || !*reason) reason = "user_request";
    if (strlen(reason) > REASON_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'reason' is longer than %d bytes",
                        REASON_MAX_BYTES);
    engine *e = engine_acquire(c->app);
    if (!e) return stopping(c);
    engine_conv_info info;
    engine_err err;
    int rc = engine_conv_end(e, id, reason, &info, &err);
    engine_release(e);
    if (rc < 0) return engine_error(c, &err);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "conversation_id", info.id);
    jw_kbool(w, "ended", true);
    jw_kstr(w, "reason", info.exit_reason);
    jw_key(w, "final_stats");
    jw_obj_begin(w);
    jw_kint(w, "duration", info.duration);
    jw_kint(w, "turns", info.turn_count);
    jw_kint(w, "tokens_used", info.tokens_used);
    jw_kint(w, "final_score", info.continue_score);
    jw_obj_end(w);
    jw_obj_end(w);
    return 0;
}

int api_conversation_turn(rpc_call *c)
{
    const char *id, *message;
    if (conversation_id(c, &id) < 0 || rpc_param_str(c, "message", false, &message) < 0) return -1;
    if (message && !*message) message = NULL;
    if (message && strlen(message) > MESSAGE_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'message' is longer than %d bytes",
                        MESSAGE_MAX_BYTES);
    engine *e = engine_acquire(c->app);
    if (!e) return stopping(c);
    engine_turn_result r;
    engine_err err;
    int rc = engine_conv_turn(e, id, message, &r, &err);
    engine_release(e);
    if (rc < 0) return engine_error(c, &err);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "conversation_id", r.conv.id);
    jw_kint(w, "turn_number", r.turn_number);
    jw_kstr(w, "speaker_id", r.speaker_id);
    jw_kstr(w, "speaker_name", r.speaker_name);
    jw_kstr(w, "listener_id", r.listener_id);
    jw_kstr(w, "listener_name", r.listener_name);
    jw_kstr(w, "response", r.text);
    jw_kstr(w, "response_type", engine_route_name(r.route));
    jw_kint(w, "continue_score", r.continue_score);
    jw_kint(w, "tokens_used", r.tokens_used);
    jw_kdouble(w, "processing_time", round(r.processing_time * 1000) / 1000);
    jw_kbool(w, "fallback", r.fallback);
    if (r.fallback) jw_kstr(w, "fallback_reason", r.fallback_reason);
    jw_kbool(w, "ended", r.ended);
    if (r.ended) jw_kstr(w, "exit_reason", r.conv.exit_reason);
    jw_key(w, "conversation");
    write_status(w, &r.conv);
    jw_obj_end(w);
    engine_turn_result_free(&r);
    return 0;
}
