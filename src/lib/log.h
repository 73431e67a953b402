/*
 * log.h - structured logs to stderr, one logfmt line per event:
 *   ts=2026-11-25T12:00:00.123Z level=info msg="listening" port=8000
 * Thread-safe (one write(2) per line). The level is set once at start-up.
 */
#ifndef PMCP_LOG_H
#define PMCP_LOG_H

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_set_level(log_level lv);
int log_parse_level(const char *s, log_level *out); /* 0 ok, -1 unknown */
log_level log_get_level(void);

/* fmt holds the key=value pairs after msg, e.g. log_info("listening", "port=%d", p).
 * Pass NULL for none. */
void log_write(log_level lv, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
