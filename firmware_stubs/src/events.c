/* Console events and diagnostics (tb_events.h). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tb_contract.h"
#include "tb_events.h"
#include "tb_files.h"

static char prog[32] = "tb";
void tb_set_prog(const char *name) { snprintf(prog, sizeof prog, "%s", name); }

/* Room kept at the end of the line for "\r\n". */
#define EV_ROOM(e) (sizeof (e)->line - (e)->n - 2)

static void ev_add(tb_ev *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ev_add(tb_ev *e, const char *fmt, ...)
{
    if (e->n >= sizeof e->line - 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(e->line + e->n, EV_ROOM(e), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    e->n += (size_t)m < EV_ROOM(e) ? (size_t)m : EV_ROOM(e) - 1;
}

void tb_ev_begin(tb_ev *e, const char *name)
{
    e->n = 0;
    e->line[0] = '\0';
    ev_add(e, "%s%s", TB_EVENT_PREFIX, name);
}

void tb_ev_str(tb_ev *e, const char *key, const char *value)
{
    size_t at = e->n;
    ev_add(e, " %s=%s", key, value && value[0] ? value : "-");
    /* a value is one word: whitespace would split it */
    for (size_t i = at + 2 + strlen(key); i < e->n; i++)
        if (e->line[i] == ' ' || e->line[i] == '\t' || e->line[i] == '\r' || e->line[i] == '\n')
            e->line[i] = '_';
}

void tb_ev_int(tb_ev *e, const char *key, long long value) { ev_add(e, " %s=%lld", key, value); }

void tb_ev_hex(tb_ev *e, const char *key, unsigned long long value) { ev_add(e, " %s=0x%llx", key, value); }

void tb_ev_emit(tb_ev *e)
{
    e->line[e->n++] = '\r';
    e->line[e->n++] = '\n';
    int fd = open(tb_console_path(), O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC | O_CREAT, 0644);
    if (fd < 0)
        fd = dup(2);
    if (fd >= 0) {
        ssize_t w = write(fd, e->line, e->n);
        (void)w;
        close(fd);
    }
    e->n -= 2;
    e->line[e->n] = '\0';
}

void tb_event_dump_skipped(const char *reason, const char *app, const char *sig, long long bytes, int spooled)
{
    tb_ev e;
    tb_ev_begin(&e, TB_EV_DUMP_SKIPPED);
    tb_ev_str(&e, TB_K_REASON, reason);
    if (app != NULL)
        tb_ev_str(&e, TB_K_APP, app);
    if (sig != NULL)
        tb_ev_str(&e, TB_K_SIG, sig);
    if (bytes >= 0)
        tb_ev_int(&e, TB_K_BYTES, bytes);
    if (spooled)
        tb_ev_int(&e, TB_K_SPOOLED, 1);
    tb_ev_emit(&e);
}

void tb_log(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: ", prog);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(2, line, (size_t)n);
    (void)w;
}
