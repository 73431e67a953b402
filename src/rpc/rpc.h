/*
 * rpc.h - the JSON-RPC 2.0 envelope, shared by every transport.
 *
 * A transport parses a message into a jv tree and calls rpc_execute(); the
 * envelope validates it (object shape, "jsonrpc", id type, method, params),
 * looks the method up in the table the API layer registered, runs the
 * handler and writes the complete response text (or nothing, for
 * notifications and all-notification batches). A batch yields one array.
 *
 * Responses carry "result" or "error", never both (spec §12 item 8). Ids are
 * echoed with their JSON type. Handlers report failures through rpc_fail()
 * with a specific code and message; the partial result is discarded.
 *
 * Threads: rpc_execute() runs on the service thread for RPC_INLINE methods
 * and on a worker for the rest; rpc_message_where() tells which. A session
 * is shared between them and guarded by its own mutex.
 */
#ifndef PMCP_RPC_H
#define PMCP_RPC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "app/app.h"
#include "lib/json.h"
#include "lib/jw.h"

enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
    RPC_PERSONA_NOT_FOUND = -32000,
    RPC_NO_ACTIVE_PERSONA = -32001,
    RPC_MEMORY_ERROR = -32002,
    RPC_LLM_ERROR = -32003,
    RPC_TOO_MANY_INFLIGHT = -32004,
    RPC_SERVER_STOPPING = -32005,
};

struct rpc_table;

/* Per-connection state. Refcounted: the connection and every queued job
 * hold a reference. */
typedef struct rpc_session {
    pthread_mutex_t mu;
    atomic_int refs;
    uint64_t id;
    char current_persona[40]; /* "" = none */
    /* The chat module's per-connection state (recent turns), freed with the
     * session. Guarded by mu. */
    void *chat;
    void (*chat_free)(void *chat);
    /* The method table this connection speaks (NULL: the persona protocol)
     * and the MCP face's per-session state. Set before any request. */
    const struct rpc_table *table;
    void *mcp;
    void (*mcp_free)(void *mcp);
    /* A message with "result"/"error" and no "method" (a client's answer to
     * a server request, MCP sampling) goes here; NULL: -32600. */
    void (*on_response)(struct rpc_session *s, const jv *msg);
} rpc_session;

rpc_session *rpc_session_new(uint64_t id);
void rpc_session_ref(rpc_session *s);
void rpc_session_unref(rpc_session *s);
/* Copy the current persona id into out (size 40); returns false when none. */
bool rpc_session_current(rpc_session *s, char out[40]);
void rpc_session_set_current(rpc_session *s, const char *id);
/* Clear the current persona if it is `id`. */
void rpc_session_forget(rpc_session *s, const char *id);

/* ---- sinks and deferred responses -----------------------------------------
 * A transport gives each connection a sink: a way to send complete frames
 * to that client from any thread. A handler that cannot answer before it
 * returns (an LLM reply, a stream of events) calls rpc_defer() and answers
 * later through the rpc_deferred. An ordered deferral keeps the
 * connection's later requests waiting until rpc_deferred_end(), so
 * responses stay in request order; an unordered one (a stream) lets them
 * through while it runs. */
typedef struct rpc_sink rpc_sink;
typedef struct rpc_deferred rpc_deferred;

typedef struct rpc_sink_ops {
    void (*send)(rpc_sink *s, jw *frame); /* takes frame's buffer; any thread */
    void (*finish)(rpc_sink *s);          /* an ordered deferral ended; any thread */
    void (*ref)(rpc_sink *s);
    void (*unref)(rpc_sink *s);
    /* Track open deferrals so a closing connection can cancel them. */
    void (*watch)(rpc_sink *s, rpc_deferred *d);
    void (*unwatch)(rpc_sink *s, rpc_deferred *d);
} rpc_sink_ops;

struct rpc_sink {
    const rpc_sink_ops *ops;
    size_t headroom; /* bytes a frame buffer keeps in front (LWS_PRE) */
};

typedef struct rpc_call {
    app *app;
    rpc_sink *sink; /* NULL when the transport cannot defer */
    bool can_defer; /* false inside batches */
    bool deferred;  /* set by rpc_defer() */
    bool ordered;
    rpc_deferred *def;
    int method_index;
    uint64_t t0;
    const jv *req_id;
    rpc_session *sess;
    const char *method;
    const jv *params; /* an object, or NULL when absent/null */
    jw *out;          /* the handler writes exactly one JSON value: the result */
    jarena *arena;    /* scratch memory for the handler, freed after the response */
    int err_code;
    char err_msg[512];
} rpc_call;

typedef int (*rpc_handler)(rpc_call *c); /* 0 = result written, -1 = rpc_fail() called */

/* RPC_WORKER_CONCURRENT: a worker method whose calls commute with each
 * other (e.g. independent stores), so a transport may run several of one
 * connection's pipelined calls at once and keep only the answers in order.
 * Never for methods that change connection state or defer an ordered
 * answer. rpc_message_where() reports it as RPC_WORKER. */
typedef enum { RPC_INLINE, RPC_WORKER, RPC_WORKER_CONCURRENT } rpc_where;

/* For RPC_WORKER methods that can sometimes be answered from RAM: return
 * true when this call would not block (e.g. its data is cached). Called on
 * the service thread; must itself be cheap and non-blocking. */
typedef bool (*rpc_inline_if)(app *a, rpc_session *s, const jv *params);

typedef struct rpc_method {
    const char *name;
    rpc_handler fn;
    rpc_where where;
    rpc_inline_if inline_if; /* optional */
} rpc_method;

/* A method table, sorted once for bsearch. metrics_base offsets its method
 * indexes in the request metrics so several tables can share them. */
typedef struct rpc_table {
    const rpc_method *methods;
    int count;
    int *sorted;
    int metrics_base;
} rpc_table;

void rpc_table_init(rpc_table *t, const rpc_method *methods, int count, int metrics_base);
const rpc_method *rpc_table_lookup(const rpc_table *t, const char *name, int *index);

/* The default table (the persona protocol), used by sessions whose table
 * is NULL. Kept by pointer; must outlive the server. */
void rpc_set_methods(const rpc_method *methods, int count);
const rpc_method *rpc_lookup(const char *name, int *index);

int rpc_fail(rpc_call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Take over the response: returns NULL when this call cannot be deferred
 * (then answer synchronously). After a successful rpc_defer the handler
 * returns 0 and writes nothing. */
rpc_deferred *rpc_defer(rpc_call *c, bool ordered, const jv *id);
/* Send {"jsonrpc":"2.0","result":<result>,"id":<id>} (result = JSON text). */
void rpc_deferred_result(rpc_deferred *d, const char *result, size_t len);
/* The same, written in place (one buffer per frame, no copy: streamed
 * tokens): write exactly one JSON value into the returned writer, then
 * hand it to rpc_deferred_result_end, which sends it and owns it. A writer
 * never ended must be jw_free'd. */
jw rpc_deferred_result_begin(rpc_deferred *d);
void rpc_deferred_result_end(rpc_deferred *d, jw *w);
/* Send an error frame; data (JSON text) may be NULL. */
void rpc_deferred_error(rpc_deferred *d, int code, const char *msg, const char *data);
/* Send any complete JSON-RPC message (a notification, a server request)
 * on the deferral's sink. */
void rpc_deferred_send_raw(rpc_deferred *d, const char *json, size_t len);
/* The same for a synchronous handler: a message sent before its response
 * (no-op when the transport has no sink). */
void rpc_send_raw(rpc_call *c, const char *json, size_t len);
rpc_sink *rpc_deferred_sink(rpc_deferred *d);
/* Called (once, on the service thread) if the client goes away first. */
void rpc_deferred_on_close(rpc_deferred *d, void (*fn)(void *ctx), void *ctx);
/* The id as JSON text ("null" if none). */
const char *rpc_deferred_id(rpc_deferred *d);
uint64_t rpc_deferred_session(rpc_deferred *d);
/* The end: releases the sink; for ordered deferrals, lets the connection go
 * on. ok feeds the request metrics. */
void rpc_deferred_end(rpc_deferred *d, bool ok);
/* Transport side: the connection closed; run on-close hooks. */
void rpc_deferred_closed(rpc_deferred *d);

/* True when msg is a single call (not a batch) of a `concurrent` method. */
bool rpc_message_concurrent(rpc_session *s, const jv *msg);
rpc_where rpc_message_where(app *a, rpc_session *s, const jv *msg);
/* Execute one parsed message; append the response (if any) to out.
 * Returns RPC_EXEC_ORDERED when a handler took an ordered deferral. */
enum { RPC_EXEC_DONE = 0, RPC_EXEC_ORDERED = 1 };
int rpc_execute(app *a, rpc_session *s, rpc_sink *sink, const jv *msg, jw *out, jarena *scratch,
                uint64_t t_received_ns);
/* Append a complete error response. id may be NULL (written as null). */
void rpc_write_error(jw *out, const jv *id, int code, const char *message, const char *data);

/* ---- parameter helpers ----------------------------------------------------
 * Each returns 0 and sets *out (default when absent or null), or calls
 * rpc_fail(-32602) with a message naming the field and returns -1. */
int rpc_param_str(rpc_call *c, const char *key, bool required, const char **out);
int rpc_param_int(rpc_call *c, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out);
int rpc_param_num(rpc_call *c, const char *key, double lo, double hi, double def, double *out);
int rpc_param_bool(rpc_call *c, const char *key, bool def, bool *out);
int rpc_param_obj(rpc_call *c, const char *key, const jv **out);
int rpc_param_arr(rpc_call *c, const char *key, const jv **out);

#endif
