/*
 * net.h - the service thread: one libwebsockets context on one port.
 *
 *   ws://HOST:PORT/mcp    JSON-RPC 2.0 (persona protocol) over WebSocket
 *   GET /, /health        JSON health
 *   GET /metrics          Prometheus text
 *
 * The service thread owns every socket and never blocks. A WebSocket
 * message is parsed there; methods marked RPC_INLINE are answered at once,
 * the rest become jobs on the worker queue. Other threads hand results back
 * with net_post(), which queues a callback for the service thread and wakes
 * it with lws_cancel_service() (the only thread-safe lws call).
 *
 * Per connection, requests are answered strictly in arrival order: while a
 * job is on a worker, later requests wait in the connection's pending queue
 * (bounded by --max-inflight; past it a request gets -32004 at once).
 */
#ifndef PMCP_NET_H
#define PMCP_NET_H

#include "app/app.h"

/* Create the context and start listening (writes --port-file). 0 or -1. */
int net_start(app *a);
/* Serve until net_request_stop(); then refuse new work, wait (bounded) for
 * in-flight jobs and queued responses, and return. */
void net_run(app *a);
/* Async-signal-safe: ask the loop to stop. */
void net_request_stop(app *a);
void net_destroy(app *a);

/* Run fn(arg) on the service thread soon. Thread-safe. */
typedef void (*net_post_fn)(app *a, void *arg);
void net_post(app *a, net_post_fn fn, void *arg);
/* Between hold and release (they nest), this thread's posts queue without
 * waking the service thread; release wakes it once if they need it. For a
 * thread that posts a burst at a time (the upstream thread relaying the
 * tokens of one wakeup): one wakeup instead of one per post. Meanwhile
 * other threads' posts may wait for the release too, so hold only around
 * work that is already at hand. */
void net_post_hold(void);
void net_post_release(void);

/* MCP over stdin/stdout instead of a port (--stdio). Returns at EOF or
 * when *stop becomes true, after the work in flight finished. */
#include <signal.h>
int net_stdio_run(app *a, volatile sig_atomic_t *stop);
/* A fresh rpc_session id. */
uint64_t net_next_session_id(void);

/* True for 127.x.x.x, localhost, ::1 and [::1]. */
bool net_host_is_loopback_name(const char *host);

#endif
