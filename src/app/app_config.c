/*
 * app_config.c - flags and environment. Precedence: built-in default, then
 * the original's environment variables (spec §9: SERVER_HOST, SERVER_PORT,
 * DATABASE_PATH, LOG_LEVEL, MAX_CONNECTIONS, WEBSOCKET_TIMEOUT, ...), then
 * command-line flags. Numbers are parsed strictly: "12abc" is an error, not 12.
 */
#include "app/app.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "lib/util.h"

static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src);
}

static void defaults(app_config *c)
{
    memset(c, 0, sizeof *c);
    copy(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8000;
    copy(c->data_dir, sizeof c->data_dir, "data");
    c->log_level = LOG_INFO;
    c->max_message_bytes = 4u << 20;
    c->max_connections = 10240;
    c->max_inflight = 256;
    c->idle_timeout_secs = 300;
    c->ping_interval_secs = 30;
    c->workers = 0; /* 0 = four per core (at most 64) */
    c->pool_size = 5;
    c->pool_overflow = 10;
    c->chat_inline = true;
    c->io_slice_us = 100;
    llm_config_default(&c->llm);
    c->llm.provider = LLM_OLLAMA; /* the original's backend, at its default address */
    mem_config_default(&c->mem);
    copy(c->embedder, sizeof c->embedder, "builtin");
    c->tick_seconds = 30;
}

enum {
    OPT_HOST = 1000,
    OPT_PORT,
    OPT_PORT_FILE,
    OPT_DATA_DIR,
    OPT_DB,
    OPT_LOG,
    OPT_MAXMSG,
    OPT_MAXCONN,
    OPT_INFLIGHT,
    OPT_IDLE,
    OPT_PING,
    OPT_WORKERS,
    OPT_POOL,
    OPT_OVERFLOW,
    OPT_IO_SLICE,
    OPT_TOKEN,
    OPT_ORIGINS,
    OPT_HELP,
    OPT_VERSION,
    OPT_EMBED_DIM,
    OPT_MEM_BUDGET,
    OPT_ACCESS_FLUSH,
    OPT_DECAY,
    OPT_DECAY_MODE,
    OPT_DECAY_HOURS,
    OPT_DECAY_MINUTES,
    OPT_DECAY_FLOOR,
    OPT_PRUNE_TARGET,
    OPT_PRUNE_THRESHOLD,
    OPT_PRUNE_STRATEGY,
    OPT_AUTO_PRUNE,
    OPT_AUTO_PRUNE_AT,
    OPT_AUTO_PRUNE_IMP,
    OPT_IMP_MIN,
    OPT_IMP_MAX,
    OPT_LLM_PROVIDER,
    OPT_LLM_URL,
    OPT_LLM_MODEL,
    OPT_LLM_KEY,
    OPT_LLM_CONNECT,
    OPT_LLM_IDLE,
    OPT_LLM_MAXTOK,
    OPT_STDIO,
    OPT_FIXTURES,
    OPT_CHAT_ON_WORKERS,
    OPT_EMBEDDER,
    OPT_EMBED_URL,
    OPT_EMBED_MODEL,
    OPT_PERSONA,
    OPT_ALL,
    OPT_SIMULATE,
    OPT_TICK
};

static const struct option g_opts[] = {
    {"host", required_argument, 0, OPT_HOST},
    {"port", required_argument, 0, OPT_PORT},
    {"port-file", required_argument, 0, OPT_PORT_FILE},
    {"data-dir", required_argument, 0, OPT_DATA_DIR},
    {"db", required_argument, 0, OPT_DB},
    {"log-level", required_argument, 0, OPT_LOG},
    {"max-message-bytes", required_argument, 0, OPT_MAXMSG},
    {"max-connections", required_argument, 0, OPT_MAXCONN},
    {"max-inflight", required_argument, 0, OPT_INFLIGHT},
    {"idle-timeout", required_argument, 0, OPT_IDLE},
    {"ping-interval", required_argument, 0, OPT_PING},
    {"workers", required_argument, 0, OPT_WORKERS},
    {"pool-size", required_argument, 0, OPT_POOL},
    {"pool-overflow", required_argument, 0, OPT_OVERFLOW},
    {"auth-token", required_argument, 0, OPT_TOKEN},
    {"allowed-origins", required_argument, 0, OPT_ORIGINS},
    {"embed-dim", required_argument, 0, OPT_EMBED_DIM},
    {"memory-budget-mb", required_argument, 0, OPT_MEM_BUDGET},
    {"access-flush-ms", required_argument, 0, OPT_ACCESS_FLUSH},
    {"decay", no_argument, 0, OPT_DECAY},
    {"decay-mode", required_argument, 0, OPT_DECAY_MODE},
    {"decay-interval-hours", required_argument, 0, OPT_DECAY_HOURS},
    {"prune-target", required_argument, 0, OPT_PRUNE_TARGET},
    {"prune-threshold", required_argument, 0, OPT_PRUNE_THRESHOLD},
    {"prune-strategy", required_argument, 0, OPT_PRUNE_STRATEGY},
    {"llm-provider", required_argument, 0, OPT_LLM_PROVIDER},
    {"llm-url", required_argument, 0, OPT_LLM_URL},
    {"llm-model", required_argument, 0, OPT_LLM_MODEL},
    {"llm-connect-timeout-ms", required_argument, 0, OPT_LLM_CONNECT},
    {"llm-idle-timeout-ms", required_argument, 0, OPT_LLM_IDLE},
    {"llm-max-tokens", required_argument, 0, OPT_LLM_MAXTOK},
    {"stdio", no_argument, 0, OPT_STDIO},
    {"embedder", required_argument, 0, OPT_EMBEDDER},
    {"embed-url", required_argument, 0, OPT_EMBED_URL},
    {"embed-model", required_argument, 0, OPT_EMBED_MODEL},
    {"persona", required_argument, 0, OPT_PERSONA},
    {"all", no_argument, 0, OPT_ALL},
    {"simulate", required_argument, 0, OPT_SIMULATE},
    {"tick-seconds", required_argument, 0, OPT_TICK},
    {"conformance-fixtures", no_argument, 0, OPT_FIXTURES},
    {"chat-on-workers", no_argument, 0, OPT_CHAT_ON_WORKERS},
    {"io-slice-us", required_argument, 0, OPT_IO_SLICE},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0},
};

void app_config_usage(FILE *out)
{
    fputs(
        "usage: persona-mcp [options]                 serve WebSocket + HTTP (+ MCP) on a port\n"
        "       persona-mcp --stdio [options]         serve MCP on stdin/stdout\n"
        "       persona-mcp --simulate MINUTES        run the persona chatroom, print a "
        "transcript\n"
        "       persona-mcp reembed [--persona ID] [--all]  rebuild embeddings\n"
        "       persona-mcp export FILE | import FILE  save or restore everything\n"
        "options:\n"
        "  --host ADDR              listen address (env SERVER_HOST; default 127.0.0.1)\n"
        "  --port N                 listen port, 0 = any free port (env SERVER_PORT; default "
        "8000)\n"
        "  --port-file FILE         write the bound port to FILE once listening\n"
        "  --data-dir DIR           data directory (env PERSONA_MCP_DATA_DIR; default ./data)\n"
        "  --db FILE                database file (env DATABASE_PATH; default DIR/personas.db)\n"
        "  --log-level LEVEL        debug|info|warn|error (env LOG_LEVEL; default info)\n"
        "  --max-message-bytes N    largest WebSocket message (default 4194304)\n"
        "  --max-connections N      open WebSocket connections (env MAX_CONNECTIONS; default "
        "10240)\n"
        "  --max-inflight N         queued requests per connection (default 256)\n"
        "  --idle-timeout SECS      close connections idle this long (env WEBSOCKET_TIMEOUT; 300)\n"
        "  --ping-interval SECS     WebSocket ping on quiet connections (default 30; 0 = off)\n"
        "  --workers N              worker threads (default: 4 per core, at most 64)\n"
        "  --chat-on-workers        start every chat on a worker (default: on the service\n"
        "                           thread when no other chat runs and no job waits)\n"
        "  --io-slice-us N          scheduler time slice asked for the service and upstream\n"
        "                           threads (default 100; 0 = the kernel's; Linux 6.12+)\n"
        "  --pool-size N            read connections kept open (default 5)\n"
        "  --pool-overflow N        extra read connections on demand (default 10)\n"
        "  --auth-token TOKEN       require 'Authorization: Bearer TOKEN' (env "
        "PERSONA_MCP_TOKEN);\n"
        "                           mandatory when --host is not a loopback address\n"
        "  --allowed-origins LIST   extra allowed Origin values, comma-separated\n"
        "  --embed-dim N            built-in embedder dimension (env MEMORY_EMBED_DIM; 384)\n"
        "  --memory-budget-mb N     RAM for loaded collections (env MEMORY_BUDGET_MB; 1024)\n"
        "  --access-flush-ms N      search hits reach the database, and new memories the\n"
        "                           full-text index, within N ms (1000)\n"
        "  --decay                  start background decay at boot (env MEMORY_DECAY_ENABLED)\n"
        "  --decay-mode MODE        none|linear|exponential|logarithmic|access_based\n"
        "                           (env MEMORY_DECAY_MODE; default access_based)\n"
        "  --decay-interval-hours H hours between decay cycles (default 6; env\n"
        "                           MEMORY_DECAY_INTERVAL_MINUTES in minutes)\n"
        "  --prune-target N         memories kept by pruning (env MEMORY_PRUNE_TARGET; 800)\n"
        "  --prune-threshold N      prune at this many (env PRUNING_THRESHOLD; 900)\n"
        "  --prune-strategy S       importance_only|importance_access|importance_access_age\n"
        "  --llm-provider P         none|ollama|openai (env LLM_PROVIDER; default ollama)\n"
        "  --llm-url URL            backend base URL (env LLM_URL, OLLAMA_HOST or\n"
        "                           OPENAI_BASE_URL; default http://127.0.0.1:11434)\n"
        "  --llm-model NAME         model (env DEFAULT_MODEL; default llama3.1:8b)\n"
        "                           API key for openai: env OPENAI_API_KEY or LLM_API_KEY\n"
        "  --llm-connect-timeout-ms N  give up connecting after N ms (default 2000)\n"
        "  --llm-idle-timeout-ms N  end a stream silent for N ms (default 15000)\n"
        "  --llm-max-tokens N       tokens per reply when the client sets none (512)\n"
        "  --stdio                  speak MCP on stdin/stdout instead of listening\n"
        "  --embedder E             builtin|ollama|openai (env MEMORY_EMBEDDER; builtin)\n"
        "  --embed-url URL          remote embedder base URL (env EMBED_URL; default the LLM URL)\n"
        "  --embed-model NAME       remote embedding model (env EMBED_MODEL)\n"
        "  --simulate MINUTES       run the multi-persona chatroom for MINUTES and exit\n"
        "  --tick-seconds S         simulation tick (default 30)\n"
        "  --persona ID, --all      reembed: one persona / every memory\n"
        "  --conformance-fixtures   add the MCP conformance suite's test_* tools,\n"
        "                           test:// resources and test prompts (testing only)\n"
        "  --help, --version\n",
        out);
}

static int set_num(const char *name, const char *v, long lo, long hi, long *out, char *err,
                   size_t n)
{
    if (parse_long(v, lo, hi, out) < 0)
        return fail(err, n, "%s must be an integer between %ld and %ld, got '%s'", name, lo, hi, v);
    return 0;
}

static int set_real(const char *name, const char *v, double lo, double hi, double *out, char *err,
                    size_t n)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        return fail(err, n, "%s must be a number between %g and %g, got '%s'", name, lo, hi, v);
    *out = d;
    return 0;
}

static int set_bool(const char *name, const char *v, bool *out, char *err, size_t n)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = false;
    else
        return fail(err, n, "%s must be true or false, got '%s'", name, v);
    return 0;
}

/* Memory settings (flags and the original's MEMORY_* variables). */
static int apply_memory(mem_config *m, int key, const char *v, char *err, size_t n)
{
    long x = 0;
    double d = 0;
    switch (key) {
    case OPT_EMBED_DIM:
        if (set_num("embed-dim", v, 8, 8192, &x, err, n)) return -1;
        m->dim = (int)x;
        return 0;
    case OPT_MEM_BUDGET:
        if (set_num("memory-budget-mb", v, 1, 1L << 20, &x, err, n)) return -1;
        m->budget_bytes = (size_t)x << 20;
        return 0;
    case OPT_ACCESS_FLUSH:
        if (set_num("access-flush-ms", v, 1, 3600000, &x, err, n)) return -1;
        m->access_flush_ms = (int)x;
        return 0;
    case OPT_DECAY:
        return v ? set_bool("decay", v, &m->decay_autostart, err, n)
                 : (m->decay_autostart = true, 0);
    case OPT_DECAY_MODE:
        if (decay_mode_parse(v, &m->decay.mode) < 0)
            return fail(err, n, "unknown decay mode '%s'", v);
        return 0;
    case OPT_DECAY_HOURS:
        if (set_real("decay-interval-hours", v, 0.001, 8760, &d, err, n)) return -1;
        m->decay.interval_hours = d;
        return 0;
    case OPT_DECAY_MINUTES:
        if (set_real("decay interval minutes", v, 0.06, 525600, &d, err, n)) return -1;
        m->decay.interval_hours = d / 60.0;
        return 0;
    case OPT_DECAY_FLOOR:
        return set_real("decay floor", v, 0, 1, &m->decay.floor, err, n);
    case OPT_PRUNE_TARGET:
        if (set_num("prune-target", v, 0, 100000000, &x, err, n)) return -1;
        m->prune.target = (int)x;
        return 0;
    case OPT_PRUNE_THRESHOLD:
        if (set_num("prune-threshold", v, 1, 100000000, &x, err, n)) return -1;
        m->prune.threshold = (int)x;
        return 0;
    case OPT_PRUNE_STRATEGY:
        if (prune_strategy_parse(v, &m->prune.strategy) < 0)
            return fail(err, n, "unknown prune strategy '%s'", v);
        return 0;
    case OPT_AUTO_PRUNE:
        return set_bool("auto pruning", v, &m->decay.auto_pruning, err, n);
    case OPT_AUTO_PRUNE_AT:
        if (set_num("auto prune threshold", v, 1, 100000000, &x, err, n)) return -1;
        m->decay.auto_prune_threshold = (int)x;
        return 0;
    case OPT_AUTO_PRUNE_IMP:
        return set_real("auto prune importance", v, 0, 1, &m->decay.auto_prune_importance, err, n);
    case OPT_IMP_MIN:
        return set_real("importance min", v, 0, 1, &m->weights.min, err, n);
    case OPT_IMP_MAX:
        return set_real("importance max", v, 0, 1, &m->weights.max, err, n);
    }
    return fail(err, n, "unknown option");
}

static int apply_llm(llm_config *l, int key, const char *v, char *err, size_t n)
{
    long x = 0;
    switch (key) {
    case OPT_LLM_PROVIDER:
        if (llm_provider_parse(v, &l->provider) < 0)
            return fail(err, n, "unknown LLM provider '%s' (none, ollama, openai)", v);
        return 0;
    case OPT_LLM_URL:
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
            return fail(err, n, "LLM URL must start with http:// or https://, got '%s'", v);
        copy(l->url, sizeof l->url, v);
        return 0;
    case OPT_LLM_MODEL:
        copy(l->model, sizeof l->model, v);
        return 0;
    case OPT_LLM_KEY:
        copy(l->api_key, sizeof l->api_key, v);
        return 0;
    case OPT_LLM_CONNECT:
        if (set_num("llm-connect-timeout-ms", v, 10, 600000, &x, err, n)) return -1;
        l->connect_timeout_ms = (int)x;
        return 0;
    case OPT_LLM_IDLE:
        if (set_num("llm-idle-timeout-ms", v, 100, 3600000, &x, err, n)) return -1;
        l->idle_timeout_ms = (int)x;
        return 0;
    case OPT_LLM_MAXTOK:
        if (set_num("llm-max-tokens", v, 1, 1000000, &x, err, n)) return -1;
        l->max_tokens = (int)x;
        return 0;
    }
    return fail(err, n, "unknown option");
}

static int apply_command(app_config *c, int key, const char *v, char *err, size_t n)
{
    double d = 0;
    switch (key) {
    case OPT_EMBEDDER:
        if (strcmp(v, "builtin") && strcmp(v, "ollama") && strcmp(v, "openai"))
            return fail(err, n, "unknown embedder '%s' (builtin, ollama, openai)", v);
        copy(c->embedder, sizeof c->embedder, v);
        return 0;
    case OPT_EMBED_URL:
        copy(c->embed_url, sizeof c->embed_url, v);
        return 0;
    case OPT_EMBED_MODEL:
        copy(c->embed_model, sizeof c->embed_model, v);
        return 0;
    case OPT_PERSONA:
        copy(c->reembed_persona, sizeof c->reembed_persona, v);
        return 0;
    case OPT_ALL:
        c->reembed_all = true;
        return 0;
    case OPT_SIMULATE:
        if (set_real("simulate", v, 0.001, 100000, &d, err, n)) return -1;
        c->simulate_minutes = d;
        return 0;
    case OPT_TICK:
        if (set_real("tick-seconds", v, 0.01, 3600, &d, err, n)) return -1;
        c->tick_seconds = d;
        return 0;
    }
    return fail(err, n, "unknown option");
}

static int apply(app_config *c, int key, const char *v, char *err, size_t n)
{
    long x = 0;
    if (key == OPT_STDIO) return (c->stdio = true), 0;
    if (key >= OPT_EMBEDDER) return apply_command(c, key, v, err, n);
    if (key == OPT_FIXTURES) return (c->mcp_fixtures = true), 0;
    if (key == OPT_CHAT_ON_WORKERS) return (c->chat_inline = false), 0;
    if (key >= OPT_LLM_PROVIDER) return apply_llm(&c->llm, key, v, err, n);
    if (key >= OPT_EMBED_DIM) return apply_memory(&c->mem, key, v, err, n);
    switch (key) {
    case OPT_HOST:
        copy(c->host, sizeof c->host, v);
        return 0;
    case OPT_PORT:
        if (set_num("port", v, 0, 65535, &x, err, n)) return -1;
        c->port = (int)x;
        return 0;
    case OPT_PORT_FILE:
        copy(c->port_file, sizeof c->port_file, v);
        return 0;
    case OPT_DATA_DIR:
        copy(c->data_dir, sizeof c->data_dir, v);
        return 0;
    case OPT_DB:
        copy(c->db_path, sizeof c->db_path, v);
        return 0;
    case OPT_LOG:
        if (log_parse_level(v, &c->log_level) < 0) return fail(err, n, "unknown log level '%s'", v);
        return 0;
    case OPT_MAXMSG:
        if (set_num("max-message-bytes", v, 1024, 1L << 30, &x, err, n)) return -1;
        c->max_message_bytes = (size_t)x;
        return 0;
    case OPT_MAXCONN:
        if (set_num("max-connections", v, 1, 1000000, &x, err, n)) return -1;
        c->max_connections = (int)x;
        return 0;
    case OPT_INFLIGHT:
        if (set_num("max-inflight", v, 1, 100000, &x, err, n)) return -1;
        c->max_inflight = (int)x;
        return 0;
    case OPT_IDLE:
        if (set_num("idle-timeout", v, 1, 86400 * 7, &x, err, n)) return -1;
        c->idle_timeout_secs = (int)x;
        return 0;
    case OPT_PING:
        if (set_num("ping-interval", v, 0, 3600, &x, err, n)) return -1;
        c->ping_interval_secs = (int)x;
        return 0;
    case OPT_IO_SLICE:
        if (set_num("io-slice-us", v, 0, 100000, &x, err, n)) return -1;
        c->io_slice_us = (int)x;
        return 0;
    case OPT_WORKERS:
        if (set_num("workers", v, 0, 256, &x, err, n)) return -1;
        c->workers = (int)x;
        return 0;
    case OPT_POOL:
        if (set_num("pool-size", v, 1, 256, &x, err, n)) return -1;
        c->pool_size = (int)x;
        return 0;
    case OPT_OVERFLOW:
        if (set_num("pool-overflow", v, 0, 256, &x, err, n)) return -1;
        c->pool_overflow = (int)x;
        return 0;
    case OPT_TOKEN:
        copy(c->auth_token, sizeof c->auth_token, v);
        return 0;
    case OPT_ORIGINS:
        copy(c->allowed_origins, sizeof c->allowed_origins, v);
        return 0;
    case OPT_HELP:
        c->show_help = true;
        return 0;
    case OPT_VERSION:
        c->show_version = true;
        return 0;
    }
    return fail(err, n, "unknown option");
}

static const struct {
    const char *env;
    int key;
} g_env[] = {
    {"SERVER_HOST", OPT_HOST},
    {"SERVER_PORT", OPT_PORT},
    {"PERSONA_MCP_DATA_DIR", OPT_DATA_DIR},
    {"DATABASE_PATH", OPT_DB},
    {"LOG_LEVEL", OPT_LOG},
    {"MAX_CONNECTIONS", OPT_MAXCONN},
    {"WEBSOCKET_TIMEOUT", OPT_IDLE},
    {"PERSONA_MCP_TOKEN", OPT_TOKEN},
    {"MEMORY_EMBED_DIM", OPT_EMBED_DIM},
    {"MEMORY_BUDGET_MB", OPT_MEM_BUDGET},
    {"MEMORY_DECAY_ENABLED", OPT_DECAY},
    {"MEMORY_DECAY_MODE", OPT_DECAY_MODE},
    {"MEMORY_DECAY_INTERVAL_MINUTES", OPT_DECAY_MINUTES},
    {"MEMORY_DECAY_MIN_IMPORTANCE", OPT_DECAY_FLOOR},
    {"MEMORY_PRUNE_TARGET", OPT_PRUNE_TARGET},
    {"PRUNING_THRESHOLD", OPT_PRUNE_THRESHOLD},
    {"MEMORY_PRUNE_STRATEGY", OPT_PRUNE_STRATEGY},
    {"MEMORY_ENABLE_AUTO_PRUNING", OPT_AUTO_PRUNE},
    {"MEMORY_AUTO_PRUNE_THRESHOLD", OPT_AUTO_PRUNE_AT},
    {"MEMORY_AUTO_PRUNE_IMPORTANCE_THRESHOLD", OPT_AUTO_PRUNE_IMP},
    {"MEMORY_IMPORTANCE_MIN", OPT_IMP_MIN},
    {"MEMORY_IMPORTANCE_MAX", OPT_IMP_MAX},
    {"MEMORY_EMBEDDER", OPT_EMBEDDER},
    {"EMBED_URL", OPT_EMBED_URL},
    {"EMBED_MODEL", OPT_EMBED_MODEL},
    {"TICK_INTERVAL_SECONDS", OPT_TICK},
    {"LLM_PROVIDER", OPT_LLM_PROVIDER},
    {"OLLAMA_HOST", OPT_LLM_URL},
    {"OPENAI_BASE_URL", OPT_LLM_URL},
    {"LLM_URL", OPT_LLM_URL},
    {"DEFAULT_MODEL", OPT_LLM_MODEL},
    {"OPENAI_API_KEY", OPT_LLM_KEY},
    {"LLM_API_KEY", OPT_LLM_KEY},
};

static int load_env(app_config *c, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof g_env / sizeof g_env[0]; i++) {
        const char *v = getenv(g_env[i].env);
        if (!v || !*v) continue;
        char inner[256];
        if (apply(c, g_env[i].key, v, inner, sizeof inner) < 0)
            return fail(err, n, "environment %s: %s", g_env[i].env, inner);
    }
    return 0;
}

/* A leading command word (reembed, export FILE, import FILE) is taken off
 * argv before the flags are parsed. */
static int take_command(app_config *c, int *argc, char ***argv, char *err, size_t errlen)
{
    if (*argc < 2 || (*argv)[1][0] == '-') return 0;
    const char *cmd = (*argv)[1];
    bool file = !strcmp(cmd, "export") || !strcmp(cmd, "import");
    if (!file && strcmp(cmd, "reembed") != 0)
        return fail(err, errlen, "unknown command '%s' (reembed, export, import)", cmd);
    copy(c->command, sizeof c->command, cmd);
    int used = 1;
    if (file) {
        if (*argc < 3 || (*argv)[2][0] == '-')
            return fail(err, errlen, "%s needs a FILE argument", cmd);
        copy(c->command_arg, sizeof c->command_arg, (*argv)[2]);
        used = 2;
    }
    (*argv)[used] = (*argv)[0]; /* keep a program name in front of the flags */
    *argv += used;
    *argc -= used;
    return 0;
}

int app_config_load(app_config *c, int argc, char **argv, char *err, size_t errlen)
{
    defaults(c);
    if (load_env(c, err, errlen) < 0) return -1;
    if (take_command(c, &argc, &argv, err, errlen) < 0) return -1;
    bool data_dir_flag = false, db_flag = false;
    optind = 0; /* 0, not 1: a full getopt reset in glibc */
    opterr = 0;
    int key;
    while ((key = getopt_long(argc, argv, "", g_opts, NULL)) != -1) {
        if (key == '?' || key == ':') {
            if (optopt > 0 && optopt < 256)
                return fail(err, errlen, "unknown or incomplete option '-%c'", optopt);
            return fail(err, errlen, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (apply(c, key, optarg, err, errlen) < 0) return -1;
        data_dir_flag |= key == OPT_DATA_DIR;
        db_flag |= key == OPT_DB;
    }
    if (optind < argc) return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    /* Flags win over the environment: --data-dir given on the command line
     * places the database there unless --db is given too. */
    if (data_dir_flag && !db_flag) c->db_path[0] = 0;
    if (!c->db_path[0]) snprintf(c->db_path, sizeof c->db_path, "%s/personas.db", c->data_dir);
    if (c->mem.weights.min > c->mem.weights.max)
        return fail(err, errlen, "MEMORY_IMPORTANCE_MIN must not exceed MEMORY_IMPORTANCE_MAX");
    if (!c->embed_url[0]) copy(c->embed_url, sizeof c->embed_url, c->llm.url);
    c->llm.thread_slice_us = c->io_slice_us;
    if (!c->embed_model[0])
        copy(c->embed_model, sizeof c->embed_model,
             strcmp(c->embedder, "openai") == 0 ? "text-embedding-3-small" : "nomic-embed-text");
    if (c->mem.prune.target > c->mem.prune.threshold)
        return fail(err, errlen, "prune target must not exceed the prune threshold");
    return 0;
}

double app_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The date and time up to the seconds are kept per thread: a streamed token is
 * stamped with this, thousands of times a second. */
void app_iso_now(char out[40], bool z)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    util_iso_time((double)tv.tv_sec + (double)tv.tv_usec / 1e6, out, z);
}

void app_changed(app *a, int what, const char *persona_id)
{
    if (a && a->on_change) a->on_change(a, what, persona_id);
}
