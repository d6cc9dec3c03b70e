/* The device API calls (docs/device-api.md), gzip through busybox, and the spool. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb.h"

static void auth_header(const tb_identity *id, char *out, size_t n)
{
    snprintf(out, n, "Authorization: Device %s:%s\r\n", id->device_id, id->secret);
}

static void add_sig(const char *s, void *ctx)
{
    tb_sync_add_throttled((tb_sync_state *)ctx, s);
}

/* One sync; updates the state, core_pattern and spool. Returns 0 on success. */
int tb_api_sync(const tb_identity *id, int64_t deadline_ms, int quiet)
{
    tb_sync_state st;
    tb_sync_load(&st);
    long long now = tb_wall_s();
    st.last_attempt = now;
    char headers[512], body[256];
    auth_header(id, headers, sizeof headers);
    strncat(headers, "Content-Type: application/json\r\n", sizeof headers - strlen(headers) - 1);
    int n = snprintf(body, sizeof body, "{\"firmwareVersion\": \"%s\", \"deviceTime\": %lld, \"spooled\": %d}",
                     TB_VERSION, now, tb_spool_count());
    tb_http_result res;
    int r = tb_http_request(id->host, id->port, "POST", "/device/v1/sync", headers, body, (size_t)n, deadline_ms,
                            &res);
    const char *reason = NULL;
    if (r != 0)
        reason = res.reason;
    else if (res.status != 200)
        reason = res.reason;
    tb_sync_state fresh;
    tb_sync_defaults(&fresh);
    int opt_in;
    long long validity;
    if (reason == NULL) {
        if (tb_json_bool(res.body, "optIn", &opt_in) != 0 || tb_json_int(res.body, "validitySeconds", &validity) != 0 ||
            validity <= 0) {
            reason = "bad-response";
        } else {
            fresh.synced = 1;
            fresh.opt_in = opt_in;
            fresh.validity = validity;
            fresh.last_ok = now;
            fresh.last_attempt = now;
            tb_json_str(res.body, "regionalDataBoundary", fresh.boundary, sizeof fresh.boundary);
            tb_json_int(res.body, "serverTime", &fresh.server_time);
            tb_json_int(res.body, "maxUploadBytes", &fresh.max_upload);
            tb_json_int(res.body, "maxInflatedBytes", &fresh.max_inflated);
            tb_json_str(res.body, "deviceGroupId", fresh.group, sizeof fresh.group);
            tb_json_str_array(res.body, "throttledSignatures", add_sig, &fresh);
        }
    }
    tb_http_free(&res);
    if (reason != NULL) {
        tb_sync_persist_attempt(now); /* a failed sync never extends consent */
        tb_event("sync-fail reason=%s", reason);
        if (!quiet)
            printf("sync failed: %s\n", reason);
        tb_core_pattern_refresh();
        return -1;
    }
    int lock = tb_state_lock();
    tb_sync_save(&fresh);
    tb_state_unlock(lock);
    if (!fresh.opt_in)
        tb_spool_clear(); /* an opt-out empties the spool */
    tb_core_pattern_refresh();
    tb_event("sync-ok optin=%d boundary=%s validity=%lld throttled=%d", fresh.opt_in, fresh.boundary, fresh.validity,
             fresh.nthrottled);
    if (!quiet)
        printf("sync ok: optIn=%s boundary=%s validity=%llds throttled=%d\n", fresh.opt_in ? "true" : "false",
               fresh.boundary, fresh.validity, fresh.nthrottled);
    return 0;
}

static int retryable(const char *reason)
{
    return strcmp(reason, "connect") == 0 || strcmp(reason, "timeout") == 0 || strncmp(reason, "http-5", 6) == 0 ||
           strcmp(reason, "bad-response") == 0;
}

/* Intent, then the body. Prints the outcome event. */
int tb_api_upload(const tb_identity *id, tb_sync_state *st, const char *sig, const char *klass, const char *component,
                  long long crash_time, const unsigned char *gz, size_t gzlen, int64_t t0_ms, int64_t deadline_ms,
                  int from_spool)
{
    char auth[512], headers[1024], body[512], comp[64];
    const char *spooled = from_spool ? " spooled=1" : "";
    auth_header(id, auth, sizeof auth);
    tb_json_escape(component, comp, sizeof comp);
    int n = snprintf(body, sizeof body,
                     "{\"signature\": \"%s\", \"size\": %zu, \"componentClass\": \"%s\", \"component\": \"%s\"}", sig,
                     gzlen, klass, comp);
    snprintf(headers, sizeof headers, "%sContent-Type: application/json\r\n", auth);
    tb_http_result res;
    int r = tb_http_request(id->host, id->port, "POST", "/device/v1/crashdumps/intent", headers, body, (size_t)n,
                            deadline_ms, &res);
    if (r != 0 || res.status != 200) {
        char reason[16];
        snprintf(reason, sizeof reason, "%s", res.reason);
        int status = res.status;
        tb_http_free(&res);
        if (status == 429) {
            tb_event("dump-skipped reason=ratelimit sig=%s%s", sig, spooled);
            return TB_UP_SKIPPED;
        }
        if (status == 403) {
            tb_event("dump-skipped reason=optout sig=%s%s", sig, spooled);
            return TB_UP_SKIPPED;
        }
        tb_event("upload-fail reason=%s stage=intent sig=%s ms=%lld%s", reason, sig,
                 (long long)(tb_mono_ms() - t0_ms), spooled);
        return retryable(reason) ? TB_UP_RETRY : TB_UP_FAILED;
    }
    char action[16] = "", why[32] = "";
    tb_json_str(res.body, "action", action, sizeof action);
    tb_json_str(res.body, "reason", why, sizeof why);
    tb_http_free(&res);
    if (strcmp(action, "upload") != 0) {
        if (strcmp(why, "throttled") == 0) {
            tb_sync_add_throttled(st, sig);
            tb_sync_persist_throttled(sig);
        }
        tb_event("dump-skipped reason=%s sig=%s%s", why[0] ? why : "intent", sig, spooled);
        return TB_UP_SKIPPED;
    }

    char klass_h[16], comp_h[64];
    snprintf(klass_h, sizeof klass_h, "%s", klass);
    snprintf(comp_h, sizeof comp_h, "%s", component);
    for (char *p = comp_h; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = '_';
    snprintf(headers, sizeof headers,
             "%sContent-Type: application/gzip\r\nX-Crash-Signature: %s\r\nX-Component-Class: %s\r\n"
             "X-Component-Name: %s\r\nX-Crash-Time: %lld\r\n",
             auth, sig, klass_h, comp_h, crash_time);
    r = tb_http_request(id->host, id->port, "POST", "/device/v1/crashdumps", headers, gz, gzlen, deadline_ms, &res);
    long long ms = (long long)(tb_mono_ms() - t0_ms);
    if (r == 0 && res.status == 201) {
        char dump_id[80] = "-", region[32] = "-";
        tb_json_str(res.body, "id", dump_id, sizeof dump_id);
        tb_json_str(res.body, "region", region, sizeof region);
        tb_http_free(&res);
        tb_event("upload-ok id=%s region=%s bytes=%zu ms=%lld sig=%s%s", dump_id, region, gzlen, ms, sig, spooled);
        return TB_UP_OK;
    }
    if (r == 0 && res.status == 200) {
        tb_http_free(&res);
        tb_sync_add_throttled(st, sig);
        tb_sync_persist_throttled(sig);
        tb_event("dump-skipped reason=throttled sig=%s%s", sig, spooled);
        return TB_UP_SKIPPED;
    }
    int status = r == 0 ? res.status : 0;
    char reason[16];
    snprintf(reason, sizeof reason, "%s", res.reason);
    tb_http_free(&res);
    if (status == 403) {
        tb_event("dump-skipped reason=optout sig=%s%s", sig, spooled);
        return TB_UP_SKIPPED;
    }
    if (status == 413) {
        tb_event("dump-skipped reason=too-large sig=%s%s", sig, spooled);
        return TB_UP_SKIPPED;
    }
    if (status == 429) {
        tb_event("dump-skipped reason=ratelimit sig=%s%s", sig, spooled);
        return TB_UP_SKIPPED;
    }
    tb_event("upload-fail reason=%s stage=body sig=%s ms=%lld%s", reason, sig, ms, spooled);
    return retryable(reason) ? TB_UP_RETRY : TB_UP_FAILED;
}

/* ---- gzip: the image's busybox gzip, fed and drained through pipes within the deadline ---- */

int tb_gzip(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen, int64_t deadline_ms)
{
    int to[2], from[2];
    if (pipe(to) != 0)
        return -1;
    if (pipe(from) != 0) {
        close(to[0]);
        close(to[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        const char *gz = tb_gzip_path();
        execlp(gz, gz, "-c", (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    fcntl(to[1], F_SETFL, O_NONBLOCK);
    fcntl(from[0], F_SETFL, O_NONBLOCK);
    size_t cap = 64 * 1024, n = 0, sent = 0;
    unsigned char *buf = malloc(cap);
    int ok = buf != NULL, wfd = to[1];
    if (len == 0 && wfd >= 0) {
        close(wfd);
        wfd = -1;
    }
    while (ok) {
        struct pollfd p[2] = {{from[0], POLLIN, 0}, {wfd, POLLOUT, 0}};
        int64_t left = deadline_ms - tb_mono_ms();
        if (left <= 0) {
            ok = 0;
            break;
        }
        int r = poll(p, wfd >= 0 ? 2 : 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = 0;
            break;
        }
        if (wfd >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(wfd, in + sent, len - sent);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                ok = 0;
            if (sent == len || !ok) {
                close(wfd);
                wfd = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (n == cap) {
                unsigned char *nb = realloc(buf, cap * 2);
                if (nb == NULL) {
                    ok = 0;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            ssize_t rr = read(from[0], buf + n, cap - n);
            if (rr > 0)
                n += (size_t)rr;
            else if (rr == 0)
                break;
            else if (errno != EAGAIN && errno != EINTR)
                ok = 0;
        }
    }
    if (wfd >= 0)
        close(wfd);
    close(from[0]);
    if (!ok)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || n < 18) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* ---- spool: <state>/spool/<time>-<pid>.gz with a .meta beside it ---- */

static void spool_dir(char *out, size_t n) { tb_path(out, n, tb_state_dir(), "spool"); }

typedef struct {
    char name[128];
    long long size;
} spool_entry;

static int spool_list(spool_entry *e, int max)
{
    char dir[512];
    spool_dir(dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < max) {
        size_t l = strlen(de->d_name);
        if (l < 4 || l >= sizeof e[0].name || strcmp(de->d_name + l - 3, ".gz") != 0)
            continue;
        snprintf(e[n].name, sizeof e[n].name, "%.127s", de->d_name);
        char p[700];
        snprintf(p, sizeof p, "%.511s/%.127s", dir, de->d_name);
        struct stat sb;
        e[n].size = stat(p, &sb) == 0 ? sb.st_size : 0;
        n++;
    }
    closedir(d);
    /* oldest first: names start with the crash time, zero-padded */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(e[j - 1].name, e[j].name) > 0; j--) {
            spool_entry t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    return n;
}

static void spool_remove(const char *name)
{
    char dir[512], p[700];
    spool_dir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    size_t l = strlen(p);
    snprintf(p + l - 3, sizeof p - l + 3, ".meta");
    unlink(p);
}

int tb_spool_count(void)
{
    spool_entry e[64];
    return spool_list(e, 64);
}

void tb_spool_clear(void)
{
    spool_entry e[64];
    int n = spool_list(e, 64);
    for (int i = 0; i < n; i++)
        spool_remove(e[i].name);
}

int tb_spool_put(const char *sig, const char *klass, const char *component, long long crash_time,
                 const unsigned char *gz, size_t len)
{
    if (len > TB_SPOOL_MAX_BYTES)
        return -1;
    char dir[512];
    spool_dir(dir, sizeof dir);
    if (tb_mkdirs(dir) != 0)
        return -1;
    /* make room: drop the oldest until both bounds hold with the new one */
    for (;;) {
        spool_entry e[64];
        int n = spool_list(e, 64);
        long long total = (long long)len;
        for (int i = 0; i < n; i++)
            total += e[i].size;
        if (n + 1 <= TB_SPOOL_MAX_FILES && total <= TB_SPOOL_MAX_BYTES)
            break;
        if (n == 0)
            return -1;
        spool_remove(e[0].name);
    }
    char base[700], meta[800], gzp[800], text[256];
    snprintf(base, sizeof base, "%s/%012lld-%d", dir, crash_time, (int)getpid());
    snprintf(gzp, sizeof gzp, "%s.gz", base);
    snprintf(meta, sizeof meta, "%s.meta", base);
    int tl = snprintf(text, sizeof text, "sig=%s\nclass=%s\ncomponent=%s\ntime=%lld\n", sig, klass, component,
                      crash_time);
    if (tb_write_file_atomic(meta, text, (size_t)tl) != 0 || tb_write_file_atomic(gzp, gz, len) != 0) {
        unlink(meta);
        return -1;
    }
    return 0;
}

/* Retry the spooled dumps oldest first; consent and throttling are checked again for each. */
int tb_spool_retry(const tb_identity *id, tb_sync_state *st)
{
    spool_entry e[64];
    int n = spool_list(e, 64), done = 0;
    char dir[512];
    spool_dir(dir, sizeof dir);
    for (int i = 0; i < n; i++) {
        char gzp[800], meta[800];
        snprintf(gzp, sizeof gzp, "%.511s/%.127s", dir, e[i].name);
        snprintf(meta, sizeof meta, "%s", gzp);
        snprintf(meta + strlen(meta) - 3, 8, ".meta");
        char *m = tb_read_file(meta, NULL);
        size_t glen = 0;
        char *gz = tb_read_file(gzp, &glen);
        if (m == NULL || gz == NULL) {
            free(m);
            free(gz);
            spool_remove(e[i].name);
            continue;
        }
        char sig[64] = "", klass[16] = "App", comp[64] = "-";
        long long t = 0;
        for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "sig=", 4) == 0)
                snprintf(sig, sizeof sig, "%s", line + 4);
            else if (strncmp(line, "class=", 6) == 0)
                snprintf(klass, sizeof klass, "%s", line + 6);
            else if (strncmp(line, "component=", 10) == 0)
                snprintf(comp, sizeof comp, "%s", line + 10);
            else if (strncmp(line, "time=", 5) == 0)
                t = strtoll(line + 5, NULL, 10);
        }
        free(m);
        tb_action a = tb_decide(1, st, tb_wall_s(), sig, (long long)glen);
        if (a == TB_SKIP_OPTOUT || a == TB_SKIP_STALE) {
            free(gz);
            if (a == TB_SKIP_OPTOUT)
                tb_spool_clear();
            return done; /* no consent: keep nothing for later (opt-out) or wait for a fresh sync */
        }
        if (a != TB_UPLOAD) {
            tb_event("dump-skipped reason=%s sig=%s spooled=1", tb_action_reason(a), sig);
            spool_remove(e[i].name);
            free(gz);
            continue;
        }
        int64_t t0 = tb_mono_ms();
        int r = tb_api_upload(id, st, sig, klass, comp, t, (unsigned char *)gz, glen, t0, t0 + TB_DEADLINE_MS, 1);
        free(gz);
        if (r == TB_UP_RETRY)
            break; /* the service is still unreachable: try again after the next sync */
        spool_remove(e[i].name);
        if (r == TB_UP_OK)
            done++;
    }
    return done;
}
