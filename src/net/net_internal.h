/*
 * net_internal.h - pieces shared by the files of src/net/ only.
 */
#ifndef PMCP_NET_INTERNAL_H
#define PMCP_NET_INTERNAL_H

#include <libwebsockets.h>
#include <stdbool.h>

#include "app/app.h"
#include "lib/jw.h"

/* Per-wsi user data (lws allocates it for every connection). */
typedef struct net_conn net_conn;
typedef struct mh_req mh_req;
typedef struct net_pss {
    net_conn *conn; /* WebSocket connections */
    char *body;     /* HTTP: response body with LWS_PRE headroom */
    size_t body_len;
    mh_req *mcp; /* MCP Streamable HTTP request on this connection */
} net_pss;

/* True on the thread that runs the lws service loop (net_run), where a
 * stream can be written to without a net_post() hand-off. */
bool net_on_service_thread(void);

/* net_mcp_http.c: MCP Streamable HTTP on /mcp (POST, GET, DELETE). */
int net_mcp_http_request(app *a, struct lws *wsi, net_pss *pss);
int net_mcp_http_body(app *a, struct lws *wsi, net_pss *pss, const void *in, size_t len);
int net_mcp_http_body_done(app *a, struct lws *wsi, net_pss *pss);
int net_mcp_http_writeable(struct lws *wsi, net_pss *pss);
void net_mcp_http_closed(net_pss *pss);
void net_mcp_http_shutdown(void);

/* Reply with a JSON-RPC error body {"jsonrpc":"2.0","error":{...},"id":null}. */
int net_http_rpc_error(struct lws *wsi, net_pss *pss, unsigned status, int code, const char *msg);

/* net_guard.c: request admission. Returns 0 when allowed, else the HTTP
 * status to refuse with (403 bad Origin/Host, 401 missing token) and a reason. */
int net_guard_check(app *a, struct lws *wsi, bool need_auth, const char **why);

/* net_http.c: plain HTTP routes. Returns the lws callback result. */
int net_http_request(app *a, struct lws *wsi, net_pss *pss, const char *uri);
int net_http_writeable(struct lws *wsi, net_pss *pss);
void net_http_drop(net_pss *pss);

/* Shared response helper: status + JSON/text body, written on WRITEABLE. */
int net_http_reply(struct lws *wsi, net_pss *pss, unsigned status, const char *ctype,
                   const char *body, size_t len);
/* The same with extra headers, e.g. "mcp-session-id:" (name with colon). */
typedef struct net_header {
    const char *name, *value;
} net_header;
int net_http_reply_h(struct lws *wsi, net_pss *pss, unsigned status, const char *ctype,
                     const char *body, size_t len, const net_header *extra, int nextra);

#endif
