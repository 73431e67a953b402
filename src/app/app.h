/*
 * app.h - the process: configuration and the handful of long-lived objects
 * every layer needs (store, worker queue, persona registry, lws context).
 *
 * There is exactly one `app`, created in main.c. Handlers receive it through
 * their call context rather than a global, so unit tests can build their own.
 * Configuration is resolved once at start-up (defaults < environment <
 * flags) and read-only afterwards.
 */
#ifndef PMCP_APP_H
#define PMCP_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "lib/log.h"
#include "llm/llm.h"
#include "memory/memory.h"

typedef struct app_config {
    char host[256];
    int port;
    char port_file[1024];
    char data_dir[1024];
    char db_path[1024]; /* DATABASE_PATH, default <data_dir>/personas.db */
    log_level log_level;
    size_t max_message_bytes;
    int max_connections;
    int max_inflight;
    int idle_timeout_secs;
    int ping_interval_secs;
    int workers;
    int pool_size, pool_overflow;
    bool chat_inline; /* start chats on the service thread when idle (--chat-on-workers: no) */
    int io_slice_us;  /* scheduler slice of the service and upstream threads; 0 = kernel's */
    char auth_token[256];
    char allowed_origins[1024]; /* comma-separated extra origins */
    llm_config llm;             /* chat backend: provider, URL, model, key, timeouts */
    mem_config mem;             /* memory: embedder dimension, budget, scoring, pruning, decay */
    bool stdio;                 /* --stdio: MCP on stdin/stdout, no port */
    /* embedder: "builtin", "ollama" or "openai" (remote: URL and model) */
    char embedder[16];
    char embed_url[512];
    char embed_model[128];
    /* one-shot commands: reembed, export FILE, import FILE, --simulate */
    char command[16];
    char command_arg[1024];
    char reembed_persona[256];
    bool reembed_all;
    double simulate_minutes; /* > 0: --simulate */
    double tick_seconds;
    bool mcp_fixtures; /* --conformance-fixtures */
    bool show_help, show_version;
} app_config;

/* Fill defaults, then environment, then argv. Returns 0, or -1 with a
 * message in err (unknown flag, bad number). */
int app_config_load(app_config *c, int argc, char **argv, char *err, size_t errlen);
void app_config_usage(FILE *out);

struct store;
struct workq;
struct persona_reg;
struct lws_context;
struct mem_store;
struct llm;
struct engine;

typedef struct app {
    app_config cfg;
    struct store *store;
    struct workq *workers;
    struct persona_reg *personas;
    struct mem_store *memory;
    struct llm *llm;
    struct engine *engine; /* conversation engine (engine/engine.h); NULL until used */
    struct lws_context *lws;
    /* Called after a committed change, for MCP list-changed and
     * resource-updated notifications (NULL: nobody listens). what is
     * APP_CHANGED_PERSONAS or APP_CHANGED_MEMORIES. Any thread. */
    void (*on_change)(struct app *a, int what, const char *persona_id);
    bool mcp_fixtures; /* --conformance-fixtures (copied from cfg) */
    time_t started_at;
    atomic_int connections; /* open WebSocket connections */
    atomic_bool stopping;
} app;

enum { APP_CHANGED_PERSONAS = 1, APP_CHANGED_MEMORIES = 2 };
/* Tell listeners (MCP sessions) what changed. */
void app_changed(struct app *a, int what, const char *persona_id);

double app_now(void); /* wall clock, seconds since the epoch */
/* Current UTC time as ISO 8601 with microseconds; z selects "Z" over "+00:00". */
void app_iso_now(char out[40], bool z);

#endif
