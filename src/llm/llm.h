/*
 * llm.h - talking to LLM backends: one upstream thread, one libcurl multi
 * handle, every backend request (streamed chat, model list, embeddings).
 *
 * Providers: Ollama (/api/chat NDJSON stream, /api/tags, /api/embed) and
 * OpenAI-compatible servers (/v1/chat/completions SSE stream, /v1/models,
 * /v1/embeddings): llama.cpp server, vLLM, LM Studio, OpenAI.
 *
 * Threads: llm_chat() may be called from any thread and returns at once: it
 * sends the request itself when the upstream thread sleeps, else queues it
 * for that thread (eventfd wakeup). The callbacks run on the upstream
 * thread, or on the caller's inside llm_chat, never two at a time; they
 * must not block: they copy what they need and post it onward.
 * llm_cancel() is thread-safe and aborts the
 * HTTP request at once. The blocking helpers (models, embed) wait on a
 * condition variable and are for worker threads only.
 *
 * Ownership: an llm_stream is refcounted; the caller holds one reference
 * from llm_chat() and drops it with llm_stream_unref() after on_done.
 */
#ifndef PMCP_LLM_H
#define PMCP_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LLM_NONE, LLM_OLLAMA, LLM_OPENAI } llm_provider;

typedef struct llm_config {
    llm_provider provider;
    char url[512]; /* base URL, e.g. http://127.0.0.1:11434 */
    char model[128];
    char api_key[256];      /* OpenAI-compatible: bearer token (from the environment) */
    int connect_timeout_ms; /* default 2000 */
    int idle_timeout_ms;    /* no byte for this long ends a stream; default 15000 */
    int total_timeout_ms;   /* whole request; default 300000 */
    int max_tokens;         /* default per request when the client gives none; 512 */
    double temperature;     /* 0.7 */
    int thread_slice_us; /* the upstream thread's scheduler slice (util_set_slice_us); 0 = kernel's
                          */
} llm_config;

void llm_config_default(llm_config *c);
int llm_provider_parse(const char *s, llm_provider *out);
const char *llm_provider_name(llm_provider p);

typedef struct llm llm;

int llm_start(llm **out, const llm_config *cfg, char *err, size_t errlen);
void llm_stop(llm *l); /* aborts every request (their on_done runs), joins */
const llm_config *llm_get_config(llm *l);

/* ---- streamed chat --------------------------------------------------------- */

typedef struct llm_msg {
    const char *role; /* system | user | assistant */
    const char *content;
} llm_msg;

typedef enum {
    LLM_OK = 0,
    LLM_UNREACHABLE, /* connect failed / refused / DNS / connect timeout */
    LLM_HTTP_ERROR,  /* the backend answered with an error status */
    LLM_MALFORMED,   /* a line that is not the provider's format */
    LLM_CUT_SHORT,   /* the stream ended before the final chunk */
    LLM_TIMEOUT,     /* idle or total timeout while streaming */
    LLM_CANCELLED,
    LLM_NOT_CONFIGURED,
} llm_status;

const char *llm_status_name(llm_status s);

typedef struct llm_callbacks {
    void (*on_token)(void *ctx, const char *text, size_t len);
    /* status LLM_OK on a normal end; detail explains any other status. */
    void (*on_done)(void *ctx, llm_status status, const char *detail, int tokens);
} llm_callbacks;

typedef struct llm_stream llm_stream;

/* Start a streamed chat. Never NULL: a failure to start is reported
 * through on_done (possibly before llm_chat returns, on this thread). */
llm_stream *llm_chat(llm *l, const llm_msg *msgs, size_t n, int max_tokens, const llm_callbacks *cb,
                     void *ctx);
void llm_cancel(llm_stream *s);
void llm_stream_unref(llm_stream *s);

/* ---- blocking helpers (worker threads) ---------------------------------- */

/* Model names; returns count (>= 0) or -1 with err. Caller frees each and
 * the array with llm_free_models(). */
int llm_models(llm *l, char ***names, char *err, size_t errlen);
void llm_free_models(char **names, int n);
/* Was the backend reachable at the last probe (cached; probes at most every
 * few seconds). Non-blocking. */
bool llm_available(llm *l);

/* Embeddings from a backend (blocking; worker threads). provider OLLAMA
 * posts /api/embed {"model","input":[...]}, OPENAI posts /v1/embeddings.
 * Writes n vectors of *dim floats into out (capacity cap floats); *dim is
 * what the backend returned. 0, or -1 with err. */
int llm_embed(llm *l, llm_provider provider, const char *url, const char *model,
              const char *api_key, const char *const *texts, size_t n, float *out, size_t cap,
              int *dim, char *err, size_t errlen);

/* Optional hooks the upstream thread calls around each batch of callbacks
 * (the data of one wakeup, at most BATCH_EVENTS ready sockets): begin, the
 * callbacks, end. The server passes net_post_hold/net_post_release, so the
 * tokens of one batch cost one wakeup of the service thread. Set them
 * before the first request. */
void llm_set_batch_hooks(llm *l, void (*begin)(void), void (*end)(void));

/* ---- metrics ------------------------------------------------------------------ */
typedef struct llm_stats {
    uint64_t requests, errors, cancelled, tokens;
    int active;
} llm_stats;
void llm_get_stats(llm *l, llm_stats *out);

#endif
