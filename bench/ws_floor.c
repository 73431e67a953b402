/*
 * ws_floor.c - the least a WebSocket server can do per persona.status request,
 * to put the server-CPU target of issue 2 (1/8 of the Python server's CPU per
 * request) against what the kernel alone costs on this machine.
 *
 * One thread, poll() over every socket like libwebsockets' default loop; per
 * request exactly one recv and one send: the masked frame is unmasked, the
 * request's "id" copied into a canned persona.status answer of the same shape
 * and size as persona-mcp's, and sent. No JSON parsing, no validation, no
 * database, no allocation - not a server, a floor.
 *
 *   cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE bench/ws_floor.c -lcrypto -o ws_floor
 *   ./ws_floor PORT_FILE &
 *   build-rel/bench/bench_wsload --port $(cat PORT_FILE) --path /mcp --conns 16 --seconds 5 \
 *       --persona 3f7c1d2e-8a9b-4c5d-9e0f-112233445566
 *
 * and read its CPU from /proc/PID/stat as bench/ws.sh does. Listens on an
 * ephemeral port of 127.0.0.1 and writes the port to PORT_FILE.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAXC = 1024 };

static struct pollfd g_pfd[MAXC + 1];
static int g_upgraded[MAXC + 1];

static const char RESULT[] =
    "\"result\":{\"persona\":{\"id\":\"3f7c1d2e-8a9b-4c5d-9e0f-112233445566\",\"name\":\"Aria\","
    "\"description\":\"A vibrant elven bard with sparkling eyes and an infectious laugh.\","
    "\"social_rank\":\"performer\",\"charisma\":18,\"intelligence\":14},\"interaction_state\":{"
    "\"interest_level\":50,\"interaction_fatigue\":0,\"current_priority\":\"social\","
    "\"available_time\":600,\"social_energy\":150},\"memory_count\":0,\"relationships\":0}";

static void base64(const unsigned char *in, int n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int o = 0;
    for (int i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static int handshake(int fd, char *req)
{
    char *k = strcasestr(req, "Sec-WebSocket-Key:");
    if (!k) return -1;
    k += 18;
    while (*k == ' ') k++;
    char key[128];
    int n = 0;
    while (k[n] && k[n] != '\r' && n < 60) key[n] = k[n], n++;
    strcpy(key + n, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    unsigned char h[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)key, strlen(key), h);
    char accept[64], resp[256];
    base64(h, SHA_DIGEST_LENGTH, accept);
    int m = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    return send(fd, resp, (size_t)m, 0) == m ? 0 : -1;
}

/* One whole masked frame per recv (strict request/response keeps it so). */
static int answer(int fd, unsigned char *p, size_t n)
{
    if (n < 6) return -1;
    size_t len = p[1] & 127, h = 2;
    if (len == 126) {
        len = (size_t)p[2] << 8 | p[3];
        h = 4;
    }
    const unsigned char *mask = p + h;
    h += 4;
    if (len > 126 * 1024 || h + len > n) return -1;
    char *msg = (char *)p + h;
    for (size_t i = 0; i < len; i++) msg[i] = (char)(msg[i] ^ mask[i & 3]);
    msg[len] = 0;
    char *id = strstr(msg, "\"id\":");
    if (!id) return -1;
    static unsigned char out[2048];
    int m = snprintf((char *)out + 4, sizeof out - 4, "{\"jsonrpc\":\"2.0\",%s,\"id\":%llu}",
                     RESULT, strtoull(id + 5, NULL, 10));
    out[0] = 0x81;
    out[1] = 126;
    out[2] = (unsigned char)(m >> 8);
    out[3] = (unsigned char)m;
    return send(fd, out, (size_t)m + 4, 0) == m + 4 ? 0 : -1;
}

static int listen_loopback(const char *port_file)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024) ||
        getsockname(ls, (struct sockaddr *)&a, &al))
        return -1;
    FILE *f = fopen(port_file, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", ntohs(a.sin_port));
    return fclose(f) == 0 ? ls : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ws_floor PORT_FILE\n");
        return 2;
    }
    int ls = listen_loopback(argv[1]), one = 1, n = 1;
    if (ls < 0) return 1;
    g_pfd[0] = (struct pollfd){ls, POLLIN, 0};
    static unsigned char buf[128 * 1024];
    for (;;) {
        if (poll(g_pfd, (nfds_t)n, -1) < 0) continue;
        if (g_pfd[0].revents) {
            int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
            if (c >= 0 && n <= MAXC) {
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                g_pfd[n] = (struct pollfd){c, POLLIN, 0};
                g_upgraded[n++] = 0;
            } else if (c >= 0) {
                close(c);
            }
        }
        for (int i = 1; i < n; i++) {
            if (!g_pfd[i].revents) continue;
            ssize_t r = recv(g_pfd[i].fd, buf, sizeof buf - 1, 0);
            int bad = r <= 0;
            if (!bad && g_upgraded[i]) bad = answer(g_pfd[i].fd, buf, (size_t)r);
            if (!bad && !g_upgraded[i]) {
                buf[r] = 0;
                bad = handshake(g_pfd[i].fd, (char *)buf);
                g_upgraded[i] = 1;
            }
            if (bad) {
                close(g_pfd[i].fd);
                g_pfd[i] = g_pfd[--n];
                g_upgraded[i] = g_upgraded[n];
                i--;
            }
        }
    }
}
