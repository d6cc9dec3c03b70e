/* The spool (tb_spool.h): <state>/spool/<time>-<pid>.gz with a .meta beside it ("key=value" lines:
 * sig, class, component, time, upload_id; an entry without an upload id gets one when read). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb_events.h"
#include "tb_files.h"
#include "tb_policy.h"
#include "tb_spool.h"

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

/* The .gz and .meta paths of an entry. */
static void entry_paths(const char *name, char *gzp, char *meta, size_t n)
{
    char dir[512];
    spool_dir(dir, sizeof dir);
    snprintf(gzp, n, "%.511s/%.127s", dir, name);
    snprintf(meta, n, "%.511s/%.*s.meta", dir, (int)strlen(name) - 3, name);
}

static void spool_remove(const char *name)
{
    char gzp[700], meta[700];
    entry_paths(name, gzp, meta, sizeof gzp);
    unlink(gzp);
    unlink(meta);
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

static int write_meta(const char *path, const tb_dump *d)
{
    char text[512];
    int tl = snprintf(text, sizeof text, "sig=%s\nclass=%s\ncomponent=%s\ntime=%lld\nupload_id=%s\n", d->sig,
                      d->klass, d->component, d->crash_time, d->upload_id);
    return tb_write_file_atomic(path, text, (size_t)tl);
}

int tb_spool_put(const tb_dump *d, const unsigned char *gz, size_t len)
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
    char name[64], gzp[700], meta[700];
    snprintf(name, sizeof name, "%012lld-%d.gz", d->crash_time, (int)getpid());
    entry_paths(name, gzp, meta, sizeof gzp);
    if (write_meta(meta, d) != 0 || tb_write_file_atomic(gzp, gz, len) != 0) {
        unlink(meta);
        return -1;
    }
    return 0;
}

static int read_meta(const char *path, tb_dump *d)
{
    char *m = tb_read_file(path, NULL);
    if (m == NULL)
        return -1;
    char t[32] = "0";
    memset(d, 0, sizeof *d);
    snprintf(d->klass, sizeof d->klass, "%s", TB_CLASS_APP);
    tb_kv_get(m, "sig", d->sig, sizeof d->sig);
    tb_kv_get(m, "class", d->klass, sizeof d->klass);
    if (!tb_kv_get(m, "component", d->component, sizeof d->component))
        snprintf(d->component, sizeof d->component, "-");
    tb_kv_get(m, "time", t, sizeof t);
    d->crash_time = strtoll(t, NULL, 10);
    tb_kv_get(m, "upload_id", d->upload_id, sizeof d->upload_id);
    free(m);
    if (!tb_valid_upload_id(d->upload_id)) {
        /* an entry from before upload ids (or a damaged one): give it one now, and keep it */
        if (tb_dump_new_upload_id(d) != 0 || write_meta(path, d) != 0)
            tb_log("spool: could not give %s an upload id", path);
    }
    return 0;
}

int tb_spool_retry(const tb_identity *id, tb_sync_state *st)
{
    spool_entry e[64];
    int n = spool_list(e, 64), done = 0;
    for (int i = 0; i < n; i++) {
        char gzp[700], meta[700];
        entry_paths(e[i].name, gzp, meta, sizeof gzp);
        tb_dump d;
        size_t glen = 0;
        char *gz = tb_read_file(gzp, &glen);
        if (gz == NULL || read_meta(meta, &d) != 0) {
            free(gz);
            spool_remove(e[i].name);
            continue;
        }
        tb_action a = tb_decide(1, st, tb_wall_s(), d.sig, (long long)glen);
        if (a == TB_DECIDE_OPTOUT || a == TB_DECIDE_STALE) {
            free(gz);
            if (a == TB_DECIDE_OPTOUT)
                tb_spool_clear();
            return done; /* no consent: keep nothing for later (opt-out) or wait for a fresh sync */
        }
        if (a != TB_DECIDE_UPLOAD) {
            tb_event_dump_skipped(tb_action_reason(a), NULL, d.sig, -1, 1);
            spool_remove(e[i].name);
            free(gz);
            continue;
        }
        int64_t t0 = tb_mono_ms();
        int r = tb_api_upload(id, st, &d, (unsigned char *)gz, glen, t0, t0 + TB_DEADLINE_MS, 1);
        free(gz);
        if (r == TB_UP_RETRY)
            break; /* the service is still unreachable: try again after the next sync */
        spool_remove(e[i].name);
        if (r == TB_UP_OK)
            done++;
    }
    return done;
}
