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
#include <sys/time.h>

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
    c->workers = 0; /* 0 = number of cores */
    c->pool_size = 5;
    c->pool_overflow = 10;
    copy(c->llm_provider, sizeof c->llm_provider, "ollama");
    copy(c->llm_model, sizeof c->llm_model, "llama3.1:8b");
}

enum {
    OPT_HOST = 1000, OPT_PORT, OPT_PORT_FILE, OPT_DATA_DIR, OPT_DB, OPT_LOG, OPT_MAXMSG, OPT_MAXCONN,
    OPT_INFLIGHT, OPT_IDLE, OPT_PING, OPT_WORKERS, OPT_POOL, OPT_OVERFLOW, OPT_TOKEN, OPT_ORIGINS,
    OPT_HELP, OPT_VERSION
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
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0},
};

void app_config_usage(FILE *out)
{
    fputs("usage: persona-mcp [options]\n"
          "  --host ADDR              listen address (env SERVER_HOST; default 127.0.0.1)\n"
          "  --port N                 listen port, 0 = any free port (env SERVER_PORT; default 8000)\n"
          "  --port-file FILE         write the bound port to FILE once listening\n"
          "  --data-dir DIR           data directory (env PERSONA_MCP_DATA_DIR; default ./data)\n"
          "  --db FILE                database file (env DATABASE_PATH; default DIR/personas.db)\n"
          "  --log-level LEVEL        debug|info|warn|error (env LOG_LEVEL; default info)\n"
          "  --max-message-bytes N    largest WebSocket message (default 4194304)\n"
          "  --max-connections N      open WebSocket connections (env MAX_CONNECTIONS; default 10240)\n"
          "  --max-inflight N         queued requests per connection (default 256)\n"
          "  --idle-timeout SECS      close connections idle this long (env WEBSOCKET_TIMEOUT; 300)\n"
          "  --ping-interval SECS     WebSocket ping on quiet connections (default 30; 0 = off)\n"
          "  --workers N              worker threads (default: number of cores)\n"
          "  --pool-size N            read connections kept open (default 5)\n"
          "  --pool-overflow N        extra read connections on demand (default 10)\n"
          "  --auth-token TOKEN       require 'Authorization: Bearer TOKEN' (env PERSONA_MCP_TOKEN);\n"
          "                           mandatory when --host is not a loopback address\n"
          "  --allowed-origins LIST   extra allowed Origin values, comma-separated\n"
          "  --help, --version\n",
          out);
}

static int set_num(const char *name, const char *v, long lo, long hi, long *out, char *err, size_t n)
{
    if (parse_long(v, lo, hi, out) < 0)
        return fail(err, n, "%s must be an integer between %ld and %ld, got '%s'", name, lo, hi, v);
    return 0;
}

static int apply(app_config *c, int key, const char *v, char *err, size_t n)
{
    long x = 0;
    switch (key) {
    case OPT_HOST: copy(c->host, sizeof c->host, v); return 0;
    case OPT_PORT:
        if (set_num("port", v, 0, 65535, &x, err, n)) return -1;
        c->port = (int)x;
        return 0;
    case OPT_PORT_FILE: copy(c->port_file, sizeof c->port_file, v); return 0;
    case OPT_DATA_DIR: copy(c->data_dir, sizeof c->data_dir, v); return 0;
    case OPT_DB: copy(c->db_path, sizeof c->db_path, v); return 0;
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
    case OPT_TOKEN: copy(c->auth_token, sizeof c->auth_token, v); return 0;
    case OPT_ORIGINS: copy(c->allowed_origins, sizeof c->allowed_origins, v); return 0;
    case OPT_HELP: c->show_help = true; return 0;
    case OPT_VERSION: c->show_version = true; return 0;
    }
    return fail(err, n, "unknown option");
}

static const struct {
    const char *env;
    int key;
} g_env[] = {
    {"SERVER_HOST", OPT_HOST},         {"SERVER_PORT", OPT_PORT},
    {"PERSONA_MCP_DATA_DIR", OPT_DATA_DIR}, {"DATABASE_PATH", OPT_DB},
    {"LOG_LEVEL", OPT_LOG},            {"MAX_CONNECTIONS", OPT_MAXCONN},
    {"WEBSOCKET_TIMEOUT", OPT_IDLE},   {"PERSONA_MCP_TOKEN", OPT_TOKEN},
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
    const char *m = getenv("DEFAULT_MODEL");
    if (m && *m) copy(c->llm_model, sizeof c->llm_model, m);
    return 0;
}

int app_config_load(app_config *c, int argc, char **argv, char *err, size_t errlen)
{
    defaults(c);
    if (load_env(c, err, errlen) < 0) return -1;
    optind = 1;
    opterr = 0;
    int key;
    while ((key = getopt_long(argc, argv, "", g_opts, NULL)) != -1) {
        if (key == '?' || key == ':')
            return fail(err, errlen, "unknown or incomplete option '%s'", argv[optind - 1]);
        if (apply(c, key, optarg, err, errlen) < 0) return -1;
    }
    if (optind < argc) return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (!c->db_path[0]) snprintf(c->db_path, sizeof c->db_path, "%s/personas.db", c->data_dir);
    return 0;
}

double app_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void app_iso_now(char out[40], bool z)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec, z ? "Z" : "+00:00");
}
