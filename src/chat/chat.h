/*
 * chat.h - a persona answering a user through the LLM, token by token.
 *
 * The prompt is the persona (spec §4.3: profile, traits, situation), its
 * memories most relevant to the message (top-k vector search), and the
 * recent turns of this connection's conversation with it. Tokens are
 * relayed as the backend produces them. When the reply is complete the
 * exchange is stored - two conversation turns and one memory with a scored
 * importance - and only then reported as done, so a reply the client saw
 * finish is durable. A backend that cannot be reached yields the spec's
 * §4.4 fallback reply, marked as such; other backend failures are errors.
 *
 * This is the domain function behind persona.chat, persona.chat_stream and
 * the MCP chat tool: each adapter turns the events into its own frames.
 *
 * Threads: chat_begin() blocks (memory search) and runs on a worker, or on
 * the service thread when the server is idle (api_chat_inline_if).
 * on_token runs on the upstream thread; on_end runs once, on a worker (or
 * the upstream thread during shutdown). chat_cancel() is thread-safe.
 */
#ifndef PMCP_CHAT_H
#define PMCP_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "llm/llm.h"
#include "rpc/rpc.h"

typedef struct chat chat;

typedef struct chat_result {
    llm_status status; /* LLM_OK; or LLM_UNREACHABLE/NOT_CONFIGURED with fallback */
    bool fallback;
    const char *fallback_reason;
    const char *text; /* the whole reply (the fallback text when fallback) */
    size_t len;       /* bytes */
    size_t chars;     /* Unicode characters */
    int chunks, tokens_used;
    double seconds;
    const char *detail;    /* why it failed, for errors */
    const char *memory_id; /* the stored memory, "" if none */
    const char *persona_id, *persona_name;
} chat_result;

typedef struct chat_events {
    /* total_chars: characters of the reply so far */
    void (*on_token)(void *ctx, const char *tok, size_t len, int chunk_no, size_t total_chars);
    void (*on_end)(void *ctx, const chat_result *r);
    /* Optional: the backend request has been handed over (sent, or queued for the
     * upstream thread). Called on chat_begin's thread, once, and only if on_end has
     * not started yet; it may run after on_token (a fast backend). For work that
     * should not delay the request, like a stream_start frame. */
    void (*on_sent)(void *ctx);
} chat_events;

typedef struct chat_req {
    const char *persona_id;
    rpc_session *sess; /* whose recent turns to use and extend; may be NULL */
    const char *message;
    int max_tokens;         /* token budget; <= 0: the backend default */
    const char *stream_id;  /* for persona.chat_cancel */
    const char *request_id; /* JSON text of the request id, for cancel by request */
    uint64_t t0;            /* when the request arrived (monotonic ns), for TTFT */
} chat_req;

/* Start. Returns -1 with an RPC error code and message when the persona
 * does not exist (-32000); 0 when started, and then on_end will be called
 * exactly once (possibly before chat_begin returns). Cancel with
 * chat_cancel_matching(): the chat object itself is never exposed. */
int chat_begin(app *a, const chat_req *r, const chat_events *ev, void *ctx, int *code, char *err,
               size_t errlen);
/* Cancel the chats of a session matching a stream id or a request id
 * (either may be NULL). Returns how many. */
int chat_cancel_matching(uint64_t session, const char *stream_id, const char *request_id);
void chat_shutdown(void);           /* from now on, finish on the calling thread */
int chat_active(void);              /* chats waiting for or receiving tokens */
void chat_count_inline_start(void); /* a chat starts on the service thread */
void chat_write_metrics(struct jw *w);
void chat_write_status(struct jw *w); /* active streams, ttft, tokens for system.status */

#endif
