/* syncd: the sync agent.
 *
 *   syncd [--interval SECONDS]   daemon: sync at start (when provisioned) and every SECONDS (default 30)
 *   syncd --now                  one sync now; prints the result; exit 0 on success
 *   syncd --status               print the stored sync state and whether consent is valid now
 *
 * Keeps opt-in, boundary, validity and throttled signatures in <state>/sync.state
 * and keeps core_pattern pointing at the crash reporter only while the opt-in is
 * valid on the board clock (checked every second, so `date -s` warps count).
 * Without an identity it idles. SIGUSR1 (sent by tb-provision after its own
 * sync) restarts the interval; SIGUSR2 asks for a sync now; SIGTERM stops it.
 * A failed sync is retried after min(interval, 5 s).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tb_api.h"
#include "tb_corepattern.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_policy.h"
#include "tb_spool.h"

static volatile sig_atomic_t got_usr1, got_usr2, got_term;
static void on_usr1(int s) { (void)s; got_usr1 = 1; }
static void on_usr2(int s) { (void)s; got_usr2 = 1; }
static void on_term(int s) { (void)s; got_term = 1; }

static int usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: syncd [--interval SECONDS] | syncd --now | syncd --status\n"
            "  sync agent of the testbed firmware: keeps the crash-dump opt-in fresh\n");
    return code;
}

static int do_status(void)
{
    tb_identity id;
    static tb_sync_state st;
    int prov = tb_identity_load(&id) == 0;
    tb_sync_load(&st);
    long long now = tb_wall_s();
    printf("provisioned=%d\nsynced=%d\nopt_in=%d\nboundary=%s\nvalidity=%lld\nlast_ok=%lld\nage=%lld\n"
           "throttled=%d\nspooled=%d\nconsent=%s\n",
           prov, st.synced, st.opt_in, st.boundary, st.validity, st.last_ok, st.synced ? now - st.last_ok : -1,
           st.nthrottled, tb_spool_count(), tb_action_reason(tb_decide(prov, &st, now, NULL, -1)));
    return 0;
}

static int sync_once(int quiet)
{
    tb_identity id;
    if (tb_identity_load(&id) != 0) {
        if (!quiet)
            fprintf(stderr, "syncd: not provisioned (run tb-provision first)\n");
        tb_core_pattern_refresh();
        return 2;
    }
    int r = tb_api_sync(&id, tb_mono_ms() + TB_DEADLINE_MS, quiet);
    if (r == 0) {
        static tb_sync_state st;
        tb_sync_load(&st);
        if (tb_consent_valid(1, &st, tb_wall_s()))
            tb_spool_retry(&id, &st);
    }
    return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    tb_set_prog("syncd");
    signal(SIGPIPE, SIG_IGN);
    long interval = 30;
    const char *env = getenv("TB_SYNC_INTERVAL");
    if (env && *env)
        interval = strtol(env, NULL, 10);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--now") == 0)
            return sync_once(0);
        if (strcmp(argv[i], "--status") == 0)
            return do_status();
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(0);
        if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            char *end;
            interval = strtol(argv[++i], &end, 10);
            if (*end != '\0') {
                fprintf(stderr, "syncd: --interval '%s' is not a number of seconds\n", argv[i]);
                return 2;
            }
            continue;
        }
        fprintf(stderr, "syncd: unknown argument '%s'\n", argv[i]);
        return usage(2);
    }
    if (interval < 1 || interval > 86400) {
        fprintf(stderr, "syncd: interval %ld out of range (1..86400 s)\n", interval);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char pidfile[512], pidtext[32];
    tb_mkdirs(tb_run_dir());
    tb_path(pidfile, sizeof pidfile, tb_run_dir(), "syncd.pid");
    int pl = snprintf(pidtext, sizeof pidtext, "%d\n", (int)getpid());
    tb_write_file_atomic(pidfile, pidtext, (size_t)pl);

    /* First sync: now, unless one succeeded within the interval (e.g. by tb-provision at boot). */
    long retry = interval < 5 ? interval : 5; /* after a failed sync, try again sooner */
    static tb_sync_state st;
    tb_sync_load(&st);
    long long since = tb_wall_s() - st.last_ok;
    int64_t next = tb_mono_ms();
    if (st.synced && st.last_ok == st.last_attempt && since >= 0 && since < interval)
        next += (interval - since) * 1000;
    while (!got_term) {
        if (got_usr1) {
            got_usr1 = 0;
            next = tb_mono_ms() + interval * 1000; /* tb-provision has just synced */
        }
        if (got_usr2) {
            got_usr2 = 0;
            next = tb_mono_ms(); /* sync now */
        }
        if (tb_mono_ms() >= next) {
            tb_identity id;
            int ok = 1;
            if (tb_identity_load(&id) == 0)
                ok = sync_once(1) == 0;
            next = tb_mono_ms() + (ok ? interval : retry) * 1000;
        }
        /* consent can lapse between syncs (board clock passing the validity): follow it */
        tb_core_pattern_refresh();
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL); /* interrupted by SIGUSR1 / SIGTERM */
    }
    unlink(pidfile);
    return 0;
}
