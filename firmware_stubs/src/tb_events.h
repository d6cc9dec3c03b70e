/* Console events and diagnostics.
 *
 * An event is one line "@tb event=<name> key=value ..." on the console (docs/device-api.md);
 * its name, keys and reasons come from tb_contract.h. Build one with tb_ev_begin, add fields,
 * tb_ev_emit writes it with one write() so lines of several processes never interleave.
 */
#ifndef TB_EVENTS_H
#define TB_EVENTS_H

#include <stddef.h>

typedef struct {
    char line[1024];
    size_t n;
} tb_ev;

void tb_ev_begin(tb_ev *e, const char *name);
void tb_ev_str(tb_ev *e, const char *key, const char *value); /* NULL or "" prints "-" */
void tb_ev_int(tb_ev *e, const char *key, long long value);
void tb_ev_hex(tb_ev *e, const char *key, unsigned long long value); /* 0x... */
void tb_ev_emit(tb_ev *e);

/* The one printer of dump-skipped: reason (TB_SKIP_*), the app (NULL: left out), the
 * signature (NULL: left out), bytes (< 0: left out) and whether it came from the spool. */
void tb_event_dump_skipped(const char *reason, const char *app, const char *sig, long long bytes, int spooled);

/* Diagnostics on stderr (the console for daemons started by rc.d), prefixed by the program. */
void tb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_set_prog(const char *name);

#endif
