/*
 * api_maint.c - memory maintenance methods: memory.prune, memory.prune_all,
 * memory.prune_recommendations, memory.prune_stats, memory.decay_start,
 * memory.decay_stop, memory.decay_stats, memory.decay_force (spec §2.5,
 * algorithms §6.2-6.3). Unlike the original, these really delete and update
 * rows, and what they report is what they did.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "lib/jw.h"
#include "memory/memory.h"

static int maint_persona(rpc_call *c, char *out, size_t n)
{
    const char *given;
    if (rpc_param_str(c, "persona_id", false, &given) < 0) return -1;
    if (given && *given) {
        snprintf(out, n, "%s", given);
        return 0;
    }
    char cur[40];
    if (!rpc_session_current(c->sess, cur))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA,
                        "No persona specified and no current persona selected");
    snprintf(out, n, "%s", cur);
    return 0;
}

static double r3(double v)
{
    return round(v * 1000.0) / 1000.0;
}

int api_memory_prune(rpc_call *c)
{
    char pid[256];
    bool force, dry;
    if (maint_persona(c, pid, sizeof pid) < 0 || rpc_param_bool(c, "force", false, &force) < 0 ||
        rpc_param_bool(c, "dry_run", false, &dry) < 0)
        return -1;
    mem_prune_result r;
    mem_err e = {0};
    if (mem_prune(c->app->memory, pid, force, dry, &r, &e) < 0)
        return rpc_fail(c, e.code, "%s", e.msg);
    if (!dry && r.removed) app_changed(c->app, APP_CHANGED_MEMORIES, pid);
    jw *w = c->out;
    jw_obj_begin(w);
    if (!r.pruned) {
        jw_kstr(w, "status", "no_pruning_needed");
        jw_kstr(w, "persona_id", pid);
        jw_kint(w, "current_memory_count", r.before);
        jw_kstr(w, "message", "Memory collection is within acceptable limits");
    } else {
        jw_kstr(w, "status", dry ? "dry_run" : "pruning_completed");
        jw_kstr(w, "persona_id", pid);
        jw_kint(w, "memories_before", r.before);
        jw_kint(w, "memories_after", r.after);
        jw_kint(w, dry ? "would_prune" : "memories_pruned", r.removed);
        jw_kdouble(w, "processing_time", r3(r.seconds));
        jw_kdouble(w, "average_importance_pruned", r3(r.avg_importance_pruned));
        jw_kdouble(w, "average_importance_kept", r3(r.avg_importance_kept));
    }
    jw_obj_end(w);
    return 0;
}

int api_memory_prune_all(rpc_call *c)
{
    int64_t before, after;
    int errors;
    double secs;
    int n = mem_prune_all(c->app->memory, &before, &after, &errors, &secs);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "status", "global_pruning_completed");
    jw_kint(w, "personas_processed", n);
    jw_kint(w, "total_memories_before", before);
    jw_kint(w, "total_memories_after", after);
    jw_kint(w, "total_memories_pruned", before - after);
    jw_kdouble(w, "processing_time", r3(secs));
    jw_kint(w, "errors_encountered", errors);
    jw_obj_end(w);
    return 0;
}

int api_memory_prune_recommendations(rpc_call *c)
{
    char pid[256];
    if (maint_persona(c, pid, sizeof pid) < 0) return -1;
    mem_prune_result r;
    mem_err e = {0};
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "persona_id", pid);
    jw_key(w, "recommendations");
    jw_obj_begin(w);
    int target = mem_get_config(c->app->memory)->prune.target;
    if (mem_prune(c->app->memory, pid, false, true, &r, &e) < 0) {
        jw_kstr(w, "error", e.msg);
    } else if (!r.pruned || r.removed == 0) {
        jw_kbool(w, "needs_pruning", false);
        jw_kint(w, "current_count", r.before);
        jw_kint(w, "target_count", target);
        jw_kstr(w, "recommendation", "No pruning needed");
    } else {
        jw_kbool(w, "needs_pruning", true);
        jw_kint(w, "current_count", r.before);
        jw_kint(w, "target_count", target);
        jw_kint(w, "would_prune", r.removed);
        jw_kdouble(w, "average_importance_to_prune", r3(r.avg_importance_pruned));
        jw_key(w, "importance_range_to_prune");
        jw_arr_begin(w);
        jw_double(w, r3(r.min_pruned));
        jw_double(w, r3(r.max_pruned));
        jw_arr_end(w);
        char text[160];
        snprintf(text, sizeof text, "Would prune %lld memories with average importance %.3f",
                 (long long)r.removed, r.avg_importance_pruned);
        jw_kstr(w, "recommendation", text);
    }
    jw_obj_end(w);
    jw_obj_end(w);
    return 0;
}

int api_memory_prune_stats(rpc_call *c)
{
    jw_obj_begin(c->out);
    jw_key(c->out, "pruning_statistics");
    mem_write_prune_stats(c->app->memory, c->out);
    jw_obj_end(c->out);
    return 0;
}

int api_memory_decay_start(rpc_call *c)
{
    bool started = mem_decay_start(c->app->memory);
    const decay_config *d = &mem_get_config(c->app->memory)->decay;
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "status", "background_decay_started");
    jw_kbool(w, "already_running", !started);
    jw_kdouble(w, "interval_hours", d->interval_hours);
    jw_kstr(w, "mode", decay_mode_name(d->mode));
    jw_kbool(w, "auto_pruning", d->auto_pruning);
    jw_obj_end(w);
    return 0;
}

int api_memory_decay_stop(rpc_call *c)
{
    bool was = mem_decay_stop(c->app->memory);
    jw_obj_begin(c->out);
    jw_kstr(c->out, "status", "background_decay_stopped");
    jw_kbool(c->out, "was_running", was);
    jw_obj_end(c->out);
    return 0;
}

int api_memory_decay_stats(rpc_call *c)
{
    jw_obj_begin(c->out);
    jw_key(c->out, "decay_statistics");
    mem_write_decay_stats(c->app->memory, c->out);
    jw_obj_end(c->out);
    return 0;
}

int api_memory_decay_force(rpc_call *c)
{
    const char *given;
    double factor;
    if (rpc_param_str(c, "persona_id", false, &given) < 0 ||
        rpc_param_num(c, "decay_factor", 0, 1, 0.1, &factor) < 0)
        return -1;
    char pid[256] = "";
    if (given && *given)
        snprintf(pid, sizeof pid, "%s", given);
    else
        rpc_session_current(c->sess, pid);
    mem_decay_result r;
    mem_err e = {0};
    jw *w = c->out;
    if (pid[0]) {
        if (mem_decay_force(c->app->memory, pid, factor, &r, &e) < 0)
            return rpc_fail(c, e.code, "%s", e.msg);
        if (r.decayed) app_changed(c->app, APP_CHANGED_MEMORIES, pid);
        jw_obj_begin(w);
        jw_kstr(w, "status", "persona_decay_completed");
        jw_kstr(w, "persona_id", pid);
        jw_kdouble(w, "decay_factor", factor);
        jw_kint(w, "memories_processed", r.processed);
        jw_kint(w, "memories_decayed", r.decayed);
        jw_obj_end(w);
        return 0;
    }
    if (mem_decay_cycle(c->app->memory, &r, &e) < 0) return rpc_fail(c, e.code, "%s", e.msg);
    jw_obj_begin(w);
    jw_kstr(w, "status", "global_decay_cycle_completed");
    jw_kint(w, "personas_processed", r.personas);
    jw_kint(w, "memories_decayed", r.decayed);
    jw_kint(w, "auto_prunes_triggered", r.auto_prunes);
    jw_kdouble(w, "processing_time", r3(r.seconds));
    jw_obj_end(w);
    return 0;
}
