/* Paths, console events, files, identity, sync state, decisions, core_pattern. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tb.h"

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

const char *tb_state_dir(void) { return env_or("TB_STATE_DIR", "/var/lib/testbed"); }
const char *tb_run_dir(void) { return env_or("TB_RUN_DIR", "/run/testbed"); }
const char *tb_console_path(void) { return env_or("TB_CONSOLE", "/dev/console"); }
const char *tb_core_pattern_path(void) { return env_or("TB_CORE_PATTERN_FILE", "/proc/sys/kernel/core_pattern"); }
const char *tb_reporter_path(void) { return env_or("TB_REPORTER", "/usr/sbin/crash-reporter"); }
const char *tb_gzip_path(void) { return env_or("TB_GZIP", "gzip"); }

void tb_path(char *out, size_t n, const char *dir, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static char prog[32] = "tb";
void tb_set_prog(const char *name) { snprintf(prog, sizeof prog, "%s", name); }

/* One event, one line, one write() so lines from several processes do not interleave. */
void tb_event(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "@tb event=");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    int fd = open(tb_console_path(), O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC | O_CREAT, 0644);
    if (fd < 0)
        fd = dup(2);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
}

/* Diagnostics: stderr (the console for daemons started by rc.d). */
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

int64_t tb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tb_wall_s(void) { return (int64_t)time(NULL); }

int tb_mkdirs(const char *path)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int tb_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int tb_read_all_fd(int fd, size_t cap, unsigned char **out, size_t *len, int *truncated)
{
    size_t size = 64 * 1024, n = 0;
    unsigned char *buf = malloc(size);
    if (buf == NULL)
        return -1;
    *truncated = 0;
    for (;;) {
        if (n == size) {
            if (size >= cap) {
                /* keep draining so the writer (the kernel) is not held */
                unsigned char sink[4096];
                ssize_t r;
                while ((r = read(fd, sink, sizeof sink)) != 0) {
                    if (r < 0 && errno != EINTR)
                        break;
                    if (r > 0)
                        *truncated = 1;
                }
                break;
            }
            size_t nsize = size * 2 > cap ? cap : size * 2;
            unsigned char *nb = realloc(buf, nsize + 1);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
            size = nsize;
        }
        ssize_t r = read(fd, buf + n, size - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

char *tb_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    unsigned char *buf = NULL;
    size_t n = 0;
    int trunc = 0;
    int r = tb_read_all_fd(fd, 16 * 1024 * 1024, &buf, &n, &trunc);
    close(fd);
    if (r != 0)
        return NULL;
    unsigned char *nb = realloc(buf, n + 1);
    if (nb == NULL) {
        free(buf);
        return NULL;
    }
    nb[n] = '\0';
    if (len)
        *len = n;
    return (char *)nb;
}

/* ---- identity ---- */

int tb_parse_service(const char *s, char *host, size_t hostlen, int *port, char *err, size_t errlen)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        snprintf(err, errlen, "service address '%s' is not HOST:PORT", s);
        return -1;
    }
    size_t hl = (size_t)(colon - s);
    char h[64];
    if (hl >= sizeof h || hl >= hostlen) {
        snprintf(err, errlen, "service host too long");
        return -1;
    }
    memcpy(h, s, hl);
    h[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*(colon + 1) == '\0' || *end != '\0' || p < 1 || p > 65535) {
        snprintf(err, errlen, "service port '%s' is not a number from 1 to 65535", colon + 1);
        return -1;
    }
    int a, b, c, d;
    char extra;
    int ok = sscanf(h, "%d.%d.%d.%d%c", &a, &b, &c, &d, &extra) == 4 && a >= 0 && a <= 255 && b >= 0 &&
             b <= 255 && c >= 0 && c <= 255 && d >= 0 && d <= 255;
    for (const char *q = h; ok && *q; q++)
        if (!isdigit((unsigned char)*q) && *q != '.')
            ok = 0;
    if (!ok || !((a == 10 && b == 0 && c == 2 && d == 2) || a == 127)) {
        snprintf(err, errlen,
                 "service address '%s' refused: a board dials only 10.0.2.2 (the host's loopback) or 127.x.y.z",
                 h);
        return -1;
    }
    snprintf(host, hostlen, "%s", h);
    *port = (int)p;
    return 0;
}

int tb_valid_device_id(const char *id)
{
    size_t n = strlen(id);
    if (n != 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isdigit((unsigned char)id[i]) || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

int tb_valid_secret(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.' || s[i] == '~'))
            return 0;
    return 1;
}

static const char *kv_get(const char *text, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t vl = strcspn(v, "\n");
            if (vl >= n)
                vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

int tb_identity_load(tb_identity *id)
{
    char path[512], svc[128];
    memset(id, 0, sizeof *id);
    tb_path(path, sizeof path, tb_state_dir(), "identity");
    char *text = tb_read_file(path, NULL);
    if (text == NULL)
        return -1;
    char err[200];
    int ok = kv_get(text, "device_id", id->device_id, sizeof id->device_id) &&
             kv_get(text, "secret", id->secret, sizeof id->secret) && kv_get(text, "service", svc, sizeof svc) &&
             tb_valid_device_id(id->device_id) &&
             tb_parse_service(svc, id->host, sizeof id->host, &id->port, err, sizeof err) == 0;
    free(text);
    return ok ? 0 : -1;
}

int tb_identity_save(const tb_identity *id)
{
    char path[512], text[512];
    if (tb_mkdirs(tb_state_dir()) != 0)
        return -1;
    tb_path(path, sizeof path, tb_state_dir(), "identity");
    int n = snprintf(text, sizeof text, "device_id=%s\nsecret=%s\nservice=%s:%d\n", id->device_id, id->secret,
                     id->host, id->port);
    return tb_write_file_atomic(path, text, (size_t)n);
}

/* ---- sync state ---- */

void tb_sync_defaults(tb_sync_state *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->boundary, sizeof st->boundary, "None");
    st->validity = 172800;
    st->max_upload = 262144;
    st->max_inflated = 4194304;
}

static long long kv_ll(const char *text, const char *key, long long dflt)
{
    char v[32];
    if (!kv_get(text, key, v, sizeof v))
        return dflt;
    return strtoll(v, NULL, 10);
}

int tb_sync_load(tb_sync_state *st)
{
    char path[512];
    tb_sync_defaults(st);
    tb_path(path, sizeof path, tb_state_dir(), "sync.state");
    char *text = tb_read_file(path, NULL);
    if (text == NULL)
        return 0;
    st->synced = (int)kv_ll(text, "synced", 0);
    st->opt_in = (int)kv_ll(text, "opt_in", 0);
    kv_get(text, "boundary", st->boundary, sizeof st->boundary);
    st->validity = kv_ll(text, "validity", 172800);
    st->last_ok = kv_ll(text, "last_ok", 0);
    st->last_attempt = kv_ll(text, "last_attempt", 0);
    st->server_time = kv_ll(text, "server_time", 0);
    st->max_upload = kv_ll(text, "max_upload", 262144);
    st->max_inflated = kv_ll(text, "max_inflated", 4194304);
    kv_get(text, "group", st->group, sizeof st->group);
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
    if (tb_mkdirs(tb_state_dir()) != 0)
        return -1;
    tb_path(path, sizeof path, tb_state_dir(), "sync.state");
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
    return r;
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

/* ---- decisions ---- */

int tb_consent_valid(int provisioned, const tb_sync_state *st, long long now)
{
    return tb_decide(provisioned, st, now, NULL, -1) == TB_UPLOAD;
}

tb_action tb_decide(int provisioned, const tb_sync_state *st, long long now, const char *sig, long long size)
{
    if (!provisioned || !st->synced || !st->opt_in)
        return TB_SKIP_OPTOUT;
    long long age = now - st->last_ok;
    /* Older than the validity, or a clock set back before the last sync: freshness cannot be shown. */
    if (age > st->validity || age < 0)
        return TB_SKIP_STALE;
    if (sig != NULL && tb_sync_is_throttled(st, sig))
        return TB_SKIP_THROTTLED;
    if (size >= 0 && size > st->max_upload)
        return TB_SKIP_TOO_LARGE;
    return TB_UPLOAD;
}

const char *tb_action_reason(tb_action a)
{
    switch (a) {
    case TB_UPLOAD: return "upload";
    case TB_SKIP_OPTOUT: return "optout";
    case TB_SKIP_STALE: return "stale-sync";
    case TB_SKIP_THROTTLED: return "throttled";
    case TB_SKIP_TOO_LARGE: return "too-large";
    }
    return "?";
}

/* ---- core_pattern ---- */

/* With consent: the reporter as pipe handler. Without: a path in a directory that
 * does not exist (and the apps run with RLIMIT_CORE 0), so the kernel writes nothing. */
#define TB_NO_CORE_PATTERN "/nonexistent-testbed-no-consent/core"

int tb_core_pattern_apply(int consent)
{
    char want[300];
    if (consent)
        snprintf(want, sizeof want, "|%s %%P %%e %%s %%t", tb_reporter_path());
    else
        snprintf(want, sizeof want, "%s", TB_NO_CORE_PATTERN);
    const char *path = tb_core_pattern_path();
    char *cur = tb_read_file(path, NULL);
    if (cur != NULL) {
        size_t l = strlen(cur);
        while (l > 0 && (cur[l - 1] == '\n' || cur[l - 1] == ' '))
            cur[--l] = '\0';
        int same = strcmp(cur, want) == 0;
        free(cur);
        if (same)
            return 0;
    }
    int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tb_log("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t l = strlen(want);
    want[l] = '\n';
    ssize_t w = write(fd, want, l + 1);
    close(fd);
    if (w != (ssize_t)(l + 1)) {
        tb_log("cannot write %s", path);
        return -1;
    }
    return 1;
}

int tb_state_lock(void)
{
    char path[512];
    tb_mkdirs(tb_state_dir());
    tb_path(path, sizeof path, tb_state_dir(), ".lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

void tb_state_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the lock */
}

/* The sync state is ~33 KiB (the throttled list): on the heap, never in .bss, which would
 * count against every program's data limit (crashapp links this file too). */
void tb_sync_persist_throttled(const char *sig)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return;
    int fd = tb_state_lock();
    tb_sync_load(st);
    if (st->synced && !tb_sync_is_throttled(st, sig)) {
        tb_sync_add_throttled(st, sig);
        tb_sync_save(st);
    }
    tb_state_unlock(fd);
    free(st);
}

void tb_sync_persist_attempt(long long when)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return;
    int fd = tb_state_lock();
    tb_sync_load(st);
    st->last_attempt = when;
    tb_sync_save(st);
    tb_state_unlock(fd);
    free(st);
}

int tb_core_pattern_refresh(void)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return -1;
    int fd = tb_state_lock();
    tb_identity id;
    int prov = tb_identity_load(&id) == 0;
    tb_sync_load(st);
    int consent = tb_consent_valid(prov, st, tb_wall_s());
    tb_core_pattern_apply(consent);
    tb_state_unlock(fd);
    free(st);
    return consent;
}

/* ---- appmgr notifications ---- */

void tb_notify_appmgr(const char *msg)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/appmgr.sock", tb_run_dir());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t r = sendto(fd, msg, strlen(msg), MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
    (void)r;
    close(fd);
}
