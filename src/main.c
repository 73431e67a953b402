/*
 * main.c - start-up and orderly stop.
 *
 * Start: configuration (defaults < env < flags), data directory, store
 * (pragmas, migrations, writer thread, read pool), persona registry, method
 * table, worker pool, listening socket. Stop (SIGINT/SIGTERM): the service
 * loop refuses new work and waits for in-flight requests; then workers
 * finish their queue, the writer commits everything queued, the database is
 * closed, and the process exits 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "api/api.h"
#include "app/app.h"
#include "lib/log.h"
#include "chat/chat.h"
#include "lib/workq.h"
#include "mcp/mcp.h"
#include "llm/llm.h"
#include "memory/memory.h"
#include "net/net.h"
#include "persona/persona.h"
#include "store/store.h"

static app g_app;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (!g_app.cfg.stdio) net_request_stop(&g_app);
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

static int open_data(app *a)
{
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
    char err[512];
    if (store_open(&a->store, &so, err, sizeof err) < 0) {
        log_error("cannot open database", "path=\"%s\" error=\"%s\"", so.path, err);
        return -1;
    }
    if (persona_reg_load(&a->personas, a->store) < 0) return -1;
    if (mem_open(&a->memory, a->store, &a->cfg.mem, err, sizeof err) < 0) {
        log_error("cannot open memory", "error=\"%s\"", err);
        return -1;
    }
    log_info("database ready", "path=\"%s\" personas=%zu", so.path,
             persona_reg_count(a->personas));
    return 0;
}

static int check_exposure(const app_config *c)
{
    if (net_host_is_loopback_name(c->host) || c->auth_token[0]) return 0;
    log_error("refusing to listen beyond loopback without --auth-token", "host=%s", c->host);
    return -1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void shutdown_all(app *a)
{
    workq_stop(a->workers); /* runs every queued job; their writes commit */
    a->workers = NULL;
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
    if (llm_start(&a->llm, &a->cfg.llm, err, sizeof err) < 0) {
        log_error("cannot start the LLM client", "error=\"%s\"", err);
        return 1;
    }
    log_info("llm backend", "provider=%s url=%s model=%s", llm_provider_name(a->cfg.llm.provider),
             a->cfg.llm.url, a->cfg.llm.model);
    api_init();
    a->mcp_fixtures = a->cfg.mcp_fixtures;
    mcp_init(a);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    a->workers = workq_start(a->cfg.workers > 0 ? a->cfg.workers : (int)(cores > 0 ? cores : 2));
    install_signals();
    if (a->cfg.stdio) {
        net_stdio_run(a, &g_stop);
    } else {
        if (net_start(a) < 0) {
            shutdown_all(a);
            return 1;
        }
        net_run(a);
    }
    shutdown_all(a);
    curl_global_cleanup();
    return 0;
}
