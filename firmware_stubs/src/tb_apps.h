/* The app manager's apps and its apps file (/etc/testbed/apps, or --apps FILE):
 * one app a line, `NAME [data_kib=N] /COMMAND [ARGS...]`, `#` comments; data_kib defaults
 * to the MT3620-like limit (TB_APP_DATA_LIMIT_BYTES). */
#ifndef TB_APPS_H
#define TB_APPS_H

#include <stdint.h>
#include <sys/types.h>

#define MAX_APPS 16
#define MAX_ARGS 32

enum { ST_RUNNING, ST_WAIT_UPLOAD, ST_WAIT_BACKOFF };

typedef struct {
    char name[32];
    long data_kib;
    char *argv[MAX_ARGS + 1];
    pid_t pid;
    int state;
    int64_t started_ms;
    int64_t crash_ms;   /* when the crash happened (reporter's clock, or the reap) */
    int64_t restart_at; /* absolute mono ms */
    int held;           /* test-only: restart at restart_at whatever the upload does */
    const char *reason;
} app_t;

/* Read the apps file into apps (at most max); returns how many. Without the file: the default
 * app crashapp. Bad lines are logged and skipped. */
int tb_apps_load(const char *file, app_t *apps, int max);

#endif
