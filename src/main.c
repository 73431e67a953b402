/*
 * main.c - start-up, the one-shot commands, and orderly stop.
 *
 * Start: configuration (defaults < env < flags), data directory, store
 * (pragmas, migrations, writer thread, read pool), persona registry,
 * memory, LLM client (upstream thread), method tables, worker pool,
 * conversation engine, then the transport: the port (WebSocket + HTTP +
 * MCP) or stdio. Stop (SIGINT/SIGTERM): the transport refuses new work and
 * waits for what is in flight; workers finish their queue; chats still
 * streaming are ended; the writer commits everything queued; the database
 * is closed; the process exits 0.
 *
 * Commands instead of serving: reembed, export FILE, import FILE,
 * --simulate MINUTES (they open the same data, do one thing, and exit).
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "app/app.h"
#include "chat/chat.h"
#include "engine/engine.h"
#include "lib/log.h"
#include "lib/workq.h"
#include "llm/llm.h"
#include "mcp/mcp.h"
#include "memory/memory.h"
#include "net/net.h"
#include "persona/persona.h"
#include "state/state.h"
#include "store/store.h"

static app g_app;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    atomic_store(&g_app.stopping, true);
    if (!g_app.cfg.stdio && g_app.lws) net_request_stop(&g_app);
}

static int make_dirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0700) < 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(buf, 0700) < 0 && errno != EEXIST) ? -1 : 0;
}

/* The remote embedder (Ollama or OpenAI-compatible) through the upstream thread. */
static int remote_embed(void *ctx, const char *const *texts, size_t n, float *out, size_t cap,
                        int *dim, char *err, size_t errlen)
{
    app *a = ctx;
    llm_provider p = strcmp(a->cfg.embedder, "openai") == 0 ? LLM_OPENAI : LLM_OLLAMA;
    return llm_embed(a->llm, p, a->cfg.embed_url, a->cfg.embed_model, a->cfg.llm.api_key, texts, n,
                     out, cap, dim, err, errlen);
}

static int open_data(app *a)
{
    char err[512];
    if (make_dirs(a->cfg.data_dir) < 0) {
        log_error("cannot create data directory", "path=\"%s\" error=\"%s\"", a->cfg.data_dir,
                  strerror(errno));
        return -1;
    }
    store_opts so;
    store_opts_default(&so);
    so.path = a->cfg.db_path;
    so.pool_size = a->cfg.pool_size;
    so.pool_overflow = a->cfg.pool_overflow;
    if (store_open(&a->store, &so, err, sizeof err) < 0) {
        log_error("cannot open database", "path=\"%s\" error=\"%s\"", so.path, err);
        return -1;
    }
    if (persona_reg_load(&a->personas, a->store) < 0) return -1;
    if (mem_open(&a->memory, a->store, &a->cfg.mem, err, sizeof err) < 0) {
        log_error("cannot open memory", "error=\"%s\"", err);
        return -1;
    }
    if (llm_start(&a->llm, &a->cfg.llm, err, sizeof err) < 0) {
        log_error("cannot start the LLM client", "error=\"%s\"", err);
        return -1;
    }
    llm_set_batch_hooks(a->llm, net_post_hold, net_post_release); /* one wakeup per batch */
    if (strcmp(a->cfg.embedder, "builtin") != 0) {
        char model[200];
        snprintf(model, sizeof model, "%s:%s", a->cfg.embedder, a->cfg.embed_model);
        mem_set_embedder(a->memory, model, remote_embed, a);
    }
    log_info("database ready", "path=\"%s\" personas=%zu embedder=%s", so.path,
             persona_reg_count(a->personas), mem_model(a->memory));
    return 0;
}

static int check_exposure(const app_config *c)
{
    if (c->stdio || net_host_is_loopback_name(c->host) || c->auth_token[0]) return 0;
    log_error("refusing to listen beyond loopback without --auth-token", "host=%s", c->host);
    return -1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void shutdown_all(app *a)
{
    workq_stop(a->workers); /* runs every queued job; their writes commit */
    a->workers = NULL;
    engine_stop(a);
    chat_shutdown(); /* chats still streaming now finish on the upstream thread */
    mcp_shutdown();
    llm_stop(a->llm); /* aborts them: each ends (cancelled) and is answered */
    a->llm = NULL;
    mem_close(a->memory); /* stops background decay before the store goes */
    a->memory = NULL;
    if (a->store) store_close(a->store);
    net_destroy(a);
    persona_reg_free(a->personas);
    log_info("stopped", NULL);
}

/* ---- one-shot commands ------------------------------------------------------- */

static int cmd_state(app *a, bool do_export)
{
    state_bar bar;
    state_bar_init(&bar, stderr);
    state_opts o = {.progress = state_bar_progress, .progress_ctx = &bar};
    state_result r;
    state_err e;
    int rc = do_export
                 ? state_export(a->store, a->cfg.command_arg, &o, &r, &e)
                 : state_import(a->store, a->personas, a->memory, a->cfg.command_arg, &o, &r, &e);
    state_bar_finish(&bar);
    if (rc < 0) {
        fprintf(stderr, "persona-mcp %s: %s\n", a->cfg.command, e.msg);
        return 1;
    }
    fprintf(stderr, "%s %s: %llu rows, %llu bytes\n", do_export ? "exported" : "imported", r.path,
            (unsigned long long)r.rows, (unsigned long long)r.bytes);
    return 0;
}

static int cmd_reembed(app *a)
{
    state_bar bar;
    state_bar_init(&bar, stderr);
    int64_t changed = 0;
    mem_err e;
    const char *pid = a->cfg.reembed_persona[0] ? a->cfg.reembed_persona : NULL;
    int rc =
        mem_reembed(a->memory, pid, a->cfg.reembed_all, state_bar_progress, &bar, &changed, &e);
    state_bar_finish(&bar);
    if (rc < 0) {
        fprintf(stderr, "persona-mcp reembed: %s\n", e.msg);
        return 1;
    }
    fprintf(stderr, "re-embedded %lld memories with %s\n", (long long)changed,
            mem_model(a->memory));
    return 0;
}

static int run_command(app *a)
{
    if (!strcmp(a->cfg.command, "export")) return cmd_state(a, true);
    if (!strcmp(a->cfg.command, "import")) return cmd_state(a, false);
    if (!strcmp(a->cfg.command, "reembed")) return cmd_reembed(a);
    return engine_simulate(a, a->cfg.simulate_minutes, a->cfg.tick_seconds, stdout) < 0 ? 1 : 0;
}

/* ---- serving ---------------------------------------------------------------------- */

static int serve(app *a)
{
    if (a->cfg.stdio) return net_stdio_run(a, &g_stop);
    if (net_start(a) < 0) return 1;
    net_run(a);
    return 0;
}

int main(int argc, char **argv)
{
    app *a = &g_app;
    char err[512];
    if (app_config_load(&a->cfg, argc, argv, err, sizeof err) < 0) {
        fprintf(stderr, "persona-mcp: %s\n", err);
        app_config_usage(stderr);
        return 2;
    }
    if (a->cfg.show_help) {
        app_config_usage(stdout);
        return 0;
    }
    if (a->cfg.show_version) {
        printf("persona-mcp %s\n", PMCP_VERSION);
        return 0;
    }
    log_set_level(a->cfg.log_level);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once, before any thread */
    a->started_at = time(NULL);
    if (check_exposure(&a->cfg) < 0 || open_data(a) < 0) return 1;
    api_init();
    a->mcp_fixtures = a->cfg.mcp_fixtures;
    mcp_init(a);
    /* Four workers per core: a worker storing a memory sleeps until the
     * writer's group commit, and the more of them wait, the more stores
     * share one commit (docs/BENCHMARKS.md, issue 3 stores). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nworkers = a->cfg.workers > 0 ? a->cfg.workers : 4 * (int)(cores > 0 ? cores : 2);
    a->workers = workq_start(nworkers > 64 && a->cfg.workers <= 0 ? 64 : nworkers);
    install_signals();
    int rc;
    if (a->cfg.command[0] || a->cfg.simulate_minutes > 0) {
        rc = run_command(a);
    } else {
        log_info("llm backend", "provider=%s url=%s model=%s",
                 llm_provider_name(a->cfg.llm.provider), a->cfg.llm.url, a->cfg.llm.model);
        rc = engine_start(a) < 0 ? 1 : serve(a);
    }
    shutdown_all(a);
    curl_global_cleanup();
    return rc;
}
