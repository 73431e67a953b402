/*
 * state_progress.c - the progress bar `persona-mcp export` and `import`
 * draw on stderr (state.h):
 *
 *   export [##############................] 47% 47000/100000 rows
 *   verify [##############################] 100% 251.3/251.3 MB   (kB below 1 MB)
 *
 * state_bar_format() only formats, so it can be tested. state_bar_progress()
 * is a state_progress_fn: on a terminal it redraws one line in place with
 * '\r', at most every 50 ms unless the percentage changed or the phase
 * ended; a phase change ends the line. When the output is not a terminal
 * (a log file, CI) it prints a plain line every 10 % instead, so logs stay
 * short. It may be called from any one thread at a time (the import calls
 * it from the store's writer thread).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "state/state.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int state_bar_format(char *buf, size_t n, const char *phase, uint64_t done, uint64_t total,
                     int width)
{
    if (width < 1) width = 30;
    if (width > 200) width = 200;
    if (done > total) total = done;
    int pct = total ? (int)(done * 100 / total) : 100;
    int fill = total ? (int)(done * (uint64_t)width / total) : width;
    char bar[204];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = 0;
    bool bytes = phase && strcmp(phase, "verify") == 0;
    const char *sep = phase && *phase ? " " : "";
    if (bytes) {
        double unit = total >= 1000000 ? 1e6 : 1e3;
        return snprintf(buf, n, "%s%s[%s] %d%% %.1f/%.1f %s", phase, sep, bar, pct,
                        (double)done / unit, (double)total / unit, unit > 1e3 ? "MB" : "kB");
    }
    return snprintf(buf, n, "%s%s[%s] %d%% %" PRIu64 "/%" PRIu64 " rows", phase ? phase : "", sep,
                    bar, pct, done, total);
}

void state_bar_init(state_bar *b, FILE *out)
{
    memset(b, 0, sizeof *b);
    b->out = out ? out : stderr;
    b->tty = isatty(fileno(b->out)) == 1;
    b->width = 30;
    b->last_pct = -1;
}

void state_bar_finish(state_bar *b)
{
    if (b->open) fputc('\n', b->out);
    b->open = false;
    fflush(b->out);
}

void state_bar_progress(void *bar, const char *phase, uint64_t done, uint64_t total)
{
    state_bar *b = bar;
    if (!phase) phase = "";
    if (strncmp(b->phase, phase, sizeof b->phase - 1) != 0) {
        state_bar_finish(b);
        snprintf(b->phase, sizeof b->phase, "%s", phase);
        b->last_pct = -1;
        b->last_ns = 0;
    }
    int pct = total ? (int)((done > total ? total : done) * 100 / total) : 100;
    char line[320];
    if (!b->tty) {
        if (pct / 10 == b->last_pct / 10 && b->last_pct >= 0) return;
        b->last_pct = pct;
        state_bar_format(line, sizeof line, phase, done, total, b->width);
        fprintf(b->out, "%s\n", line);
        fflush(b->out);
        return;
    }
    if (!b->open && b->last_pct == 100 && pct == 100) return; /* already drawn complete */
    uint64_t now = mono_ns();
    if (pct == b->last_pct && now - b->last_ns < 50000000u && done < total) return;
    b->last_pct = pct;
    b->last_ns = now;
    state_bar_format(line, sizeof line, phase, done, total, b->width);
    fprintf(b->out, "\r%s", line);
    b->open = true;
    if (total && done >= total) state_bar_finish(b);
    fflush(b->out);
}
