/* The sync state and the lock over the state files (tb_state.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "tb_events.h"
#include "tb_files.h"
#include "tb_state.h"

#define SYNC_FILE "sync.state"
#define LOCK_FILE ".lock"

void tb_sync_defaults(tb_sync_state *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->boundary, sizeof st->boundary, "None");
    st->validity = TB_VALIDITY_SECONDS;
    st->max_upload = TB_MAX_UPLOAD_BYTES;
    st->max_inflated = TB_MAX_INFLATED_BYTES;
}

static long long kv_ll(const char *text, const char *key, long long dflt)
{
    char v[32];
    if (!tb_kv_get(text, key, v, sizeof v))
        return dflt;
    return strtoll(v, NULL, 10);
}

int tb_sync_load(tb_sync_state *st)
{
    char path[512];
    tb_sync_defaults(st);
    tb_path(path, sizeof path, tb_state_dir(), SYNC_FILE);
    char *text = tb_read_file(path, NULL);
    if (text == NULL)
        return 0;
    st->synced = (int)kv_ll(text, "synced", 0);
    st->opt_in = (int)kv_ll(text, "opt_in", 0);
    tb_kv_get(text, "boundary", st->boundary, sizeof st->boundary);
    st->validity = kv_ll(text, "validity", TB_VALIDITY_SECONDS);
    st->last_ok = kv_ll(text, "last_ok", 0);
    st->last_attempt = kv_ll(text, "last_attempt", 0);
    st->server_time = kv_ll(text, "server_time", 0);
    st->max_upload = kv_ll(text, "max_upload", TB_MAX_UPLOAD_BYTES);
    st->max_inflated = kv_ll(text, "max_inflated", TB_MAX_INFLATED_BYTES);
    tb_kv_get(text, "group", st->group, sizeof st->group);
    const char *p = strstr(text, "\nthrottled=");
    if (p) {
        p += strlen("\nthrottled=");
        while (*p && *p != '\n' && st->nthrottled < TB_MAX_THROTTLED) {
            size_t l = strcspn(p, ",\n");
            if (l == TB_SIG_HEX) {
                memcpy(st->throttled[st->nthrottled], p, TB_SIG_HEX);
                st->throttled[st->nthrottled][TB_SIG_HEX] = '\0';
                st->nthrottled++;
            }
            p += l;
            if (*p == ',')
                p++;
        }
    }
    free(text);
    return 0;
}

int tb_sync_save(const tb_sync_state *st)
{
    char path[512];
    if (tb_mkdirs(tb_state_dir()) != 0) {
        tb_log("cannot create %s", tb_state_dir());
        return -1;
    }
    tb_path(path, sizeof path, tb_state_dir(), SYNC_FILE);
    size_t cap = 1024 + (size_t)st->nthrottled * (TB_SIG_HEX + 1);
    char *text = malloc(cap);
    if (text == NULL)
        return -1;
    int n = snprintf(text, cap,
                     "synced=%d\nopt_in=%d\nboundary=%s\nvalidity=%lld\nlast_ok=%lld\nlast_attempt=%lld\n"
                     "server_time=%lld\nmax_upload=%lld\nmax_inflated=%lld\ngroup=%s\nthrottled=",
                     st->synced, st->opt_in, st->boundary, st->validity, st->last_ok, st->last_attempt,
                     st->server_time, st->max_upload, st->max_inflated, st->group);
    for (int i = 0; i < st->nthrottled; i++)
        n += snprintf(text + n, cap - (size_t)n, "%s%s", i ? "," : "", st->throttled[i]);
    n += snprintf(text + n, cap - (size_t)n, "\n");
    int r = tb_write_file_atomic(path, text, (size_t)n);
    free(text);
    if (r != 0)
        tb_log("cannot write %s: %s", path, strerror(errno));
    return r;
}

int tb_sync_remove(void)
{
    char path[512];
    tb_path(path, sizeof path, tb_state_dir(), SYNC_FILE);
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int tb_sync_is_throttled(const tb_sync_state *st, const char *sig)
{
    for (int i = 0; i < st->nthrottled; i++)
        if (strcmp(st->throttled[i], sig) == 0)
            return 1;
    return 0;
}

void tb_sync_add_throttled(tb_sync_state *st, const char *sig)
{
    if (strlen(sig) != TB_SIG_HEX || tb_sync_is_throttled(st, sig) || st->nthrottled >= TB_MAX_THROTTLED)
        return;
    memcpy(st->throttled[st->nthrottled++], sig, TB_SIG_HEX + 1);
}

/* A daemon retries every second: say a lock failure once, until the lock works again. */
static int lock_failed;

static int lock_fail(const char *what, const char *path)
{
    if (!lock_failed)
        tb_log("state lock: %s %s: %s", what, path, strerror(errno));
    lock_failed = 1;
    return -1;
}

int tb_state_lock(void)
{
    char path[512];
    if (tb_mkdirs(tb_state_dir()) != 0)
        return lock_fail("cannot create", tb_state_dir());
    tb_path(path, sizeof path, tb_state_dir(), LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return lock_fail("cannot open", path);
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return lock_fail("cannot flock", path);
        }
    }
    lock_failed = 0;
    return fd;
}

void tb_state_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the lock */
}

/* The sync state is ~33 KiB (the throttled list): on the heap, never in .bss, which would
 * count against every program's data limit. */
int tb_sync_persist_throttled(const char *sig)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return -1;
    int fd = tb_state_lock(), r = -1;
    if (fd >= 0) {
        tb_sync_load(st);
        r = 0;
        if (st->synced && !tb_sync_is_throttled(st, sig)) {
            tb_sync_add_throttled(st, sig);
            r = tb_sync_save(st);
        }
        tb_state_unlock(fd);
    }
    free(st);
    return r;
}

int tb_sync_persist_attempt(long long when)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return -1;
    int fd = tb_state_lock(), r = -1;
    if (fd >= 0) {
        tb_sync_load(st);
        st->last_attempt = when;
        r = tb_sync_save(st);
        tb_state_unlock(fd);
    }
    free(st);
    return r;
}

int tb_sync_persist(const tb_sync_state *st)
{
    int fd = tb_state_lock();
    if (fd < 0)
        return -1;
    int r = tb_sync_save(st);
    tb_state_unlock(fd);
    return r;
}
