/*
 * llm_internal.h - shared by the files of src/llm/ only: the upstream
 * thread's generic HTTP request (llm_http.c) used by the providers
 * (llm_provider.c).
 */
#ifndef PMCP_LLM_INTERNAL_H
#define PMCP_LLM_INTERNAL_H

#include "llm/llm.h"

typedef struct up_req up_req;

typedef struct up_callbacks {
    /* A complete body line (without "\n" / "\r\n"), only for 2xx answers.
     * Returning false aborts the transfer. */
    bool (*on_line)(void *ctx, const char *line, size_t len);
    /* The end. curl_code 0 = transfer complete; http = status (0 if none,
     * -1 when connected but the idle timeout passed before any answer);
     * body = the first bytes of a non-2xx body (NUL-terminated). */
    void (*on_end)(void *ctx, int curl_code, long http, const char *body);
} up_callbacks;

typedef struct up_opts {
    const char *url;
    const char *body; /* JSON to POST; NULL = GET */
    const char *bearer;
    int connect_ms, idle_ms, total_ms;
} up_opts;

/* Queue a request on the upstream thread. The returned handle is
 * refcounted (one reference for the caller). */
up_req *up_start(llm *l, const up_opts *o, const up_callbacks *cb, void *ctx);
void up_cancel(up_req *r);
void up_unref(up_req *r);

/* Blocking GET/POST returning the whole body (worker threads only). */
int up_fetch(llm *l, const up_opts *o, char **body, long *http, char *err, size_t errlen);

/* slice_us: the scheduler slice the thread asks for (0: the kernel's). */
struct up_thread *up_thread_start(int slice_us, char *err, size_t errlen);
void up_thread_stop(struct up_thread *t);
int up_thread_active(struct up_thread *t);
void up_thread_set_hooks(struct up_thread *t, void (*begin)(void), void (*end)(void));

struct llm {
    llm_config cfg;
    struct up_thread *up;
    _Atomic int available; /* -1 unknown, 0 no, 1 yes */
    _Atomic long long probed_ms;
    _Atomic bool probing;
    _Atomic unsigned long long requests, errors, cancelled, tokens;
    _Atomic int active;
};

#endif
