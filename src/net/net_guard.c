/*
 * net_guard.c - who may talk to us. Checked on every WebSocket upgrade and
 * HTTP request before anything else runs:
 *   - Host: when bound to loopback, the Host header must name loopback
 *     (localhost, 127.0.0.1, [::1]); this defeats DNS rebinding, where a web
 *     page re-points its own name at 127.0.0.1.
 *   - Origin: absent (non-browser clients) or a loopback origin, or one
 *     listed in --allowed-origins.
 *   - Bearer token: when --auth-token is set, "Authorization: Bearer <t>",
 *     compared in constant time.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net/net.h"
#include "net/net_internal.h"

/* Exactly "localhost", "::1", "[::1]" or a dotted IPv4 address in
 * 127.0.0.0/8 - not a name that merely starts with "127." (such as
 * 127.0.0.1.evil.example, which a rebinding attacker controls). */
bool net_host_is_loopback_name(const char *host)
{
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
        strcmp(host, "[::1]") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* The names a browser or client on this machine uses for us: localhost,
 * 127.0.0.1, [::1], and the address we are bound to. Other 127/8
 * addresses are loopback too, but no page of ours lives there. */
static bool local_name(const app *a, const char *name)
{
    return strcasecmp(name, "localhost") == 0 || strcmp(name, "127.0.0.1") == 0 ||
           strcmp(name, "[::1]") == 0 || strcmp(name, "::1") == 0 ||
           strcasecmp(name, a->cfg.host) == 0;
}

/* "name", "name:port", "[v6]" or "[v6]:port" (port: 1-5 digits, nothing
 * else: no userinfo, path or stray characters) -> is the name ours? */
static bool hostport_is_loopback(const app *a, const char *hp)
{
    char name[256];
    const char *rest;
    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (!end) return false;
        snprintf(name, sizeof name, "%.*s", (int)(end - hp + 1), hp);
        rest = end + 1;
    } else {
        size_t n = strcspn(hp, ":");
        snprintf(name, sizeof name, "%.*s", (int)n, hp);
        rest = hp + n;
    }
    if (*rest == ':') {
        size_t digits = strspn(rest + 1, "0123456789");
        if (digits < 1 || digits > 5 || rest[1 + digits]) return false;
    } else if (*rest) {
        return false;
    }
    return local_name(a, name);
}

static bool origin_allowed(app *a, const char *origin)
{
    const char *rest = NULL;
    if (strncasecmp(origin, "http://", 7) == 0) rest = origin + 7;
    if (strncasecmp(origin, "https://", 8) == 0) rest = origin + 8;
    if (rest && !strchr(rest, '/') && hostport_is_loopback(a, rest)) return true;
    const char *list = a->cfg.allowed_origins;
    size_t n = strlen(origin);
    while (*list) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        if (len == n && strncasecmp(list, origin, n) == 0) return true;
        list += len + (comma ? 1 : 0);
    }
    return false;
}

static bool token_ok(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++) diff |= (unsigned char)(want[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

int net_guard_check(app *a, struct lws *wsi, bool need_auth, const char **why)
{
    char buf[512];
    if (net_host_is_loopback_name(a->cfg.host)) {
        if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HOST) <= 0 ||
            !hostport_is_loopback(a, buf)) {
            *why = "Host header must name a loopback address";
            return 403;
        }
    }
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_ORIGIN) > 0 && !origin_allowed(a, buf)) {
        *why = "Origin not allowed";
        return 403;
    }
    if (need_auth && a->cfg.auth_token[0]) {
        int n = lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION);
        if (n <= 7 || strncasecmp(buf, "Bearer ", 7) != 0 ||
            !token_ok(buf + 7, a->cfg.auth_token)) {
            *why = "missing or wrong bearer token";
            return 401;
        }
    }
    return 0;
}
