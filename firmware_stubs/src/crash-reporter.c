/* crash-reporter: the kernel's core_pattern pipe handler.
 *
 *   core_pattern = |/usr/sbin/crash-reporter %P %e %s %t
 *
 * Reads the whole ELF core from stdin (the kernel holds the crashed process
 * until stdin is closed), closes it at once so the app can be reaped, then:
 * signature -> consent / freshness / throttling -> gzip -> intent -> upload,
 * all within one deadline of 5 s from its start (= the crash). Prints one
 * console event per outcome and tells appmgr when it is done.
 *
 * Also: crash-reporter --check-core FILE (parse a core file, print what it says).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb.h"

#define MAX_CORE (8 * 1024 * 1024)

/* App or OS: appmgr registers its apps' pids in <run>/apps/<pid>. */
static void classify(int pid, const char *exe, char *klass, size_t kn, char *name, size_t nn)
{
    char dir[512], path[600];
    tb_path(dir, sizeof dir, tb_run_dir(), "apps");
    snprintf(path, sizeof path, "%s/%d", dir, pid);
    char *app = tb_read_file(path, NULL);
    if (app != NULL) {
        app[strcspn(app, "\n")] = '\0';
        snprintf(klass, kn, "App");
        snprintf(name, nn, "%s", app[0] ? app : exe);
        free(app);
        return;
    }
    snprintf(klass, kn, "OS");
    snprintf(name, nn, "%s", exe);
}

static int finish(int pid, int code)
{
    char msg[64];
    snprintf(msg, sizeof msg, "done %d", pid);
    tb_notify_appmgr(msg);
    return code;
}

int main(int argc, char **argv)
{
    int64_t t0 = tb_mono_ms();
    int64_t deadline = t0 + TB_DEADLINE_MS;
    tb_set_prog("crash-reporter");
    signal(SIGPIPE, SIG_IGN);
    /* The kernel starts us with only stdin (the core); keep 1 and 2 taken so no pipe or
     * socket we open later lands on them. */
    int nullfd;
    while ((nullfd = open("/dev/null", O_RDWR)) >= 0 && nullfd < 3)
        ;
    if (nullfd >= 3)
        close(nullfd);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: crash-reporter PID EXE SIGNAL TIME   (core on stdin; the kernel's core_pattern pipe handler)\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: crash-reporter PID [EXE SIGNAL TIME] < core\n");
        return 2;
    }
    char *end;
    long pid = strtol(argv[1], &end, 10);
    if (*end != '\0' || pid <= 0) {
        fprintf(stderr, "crash-reporter: PID '%s' is not a positive number\n", argv[1]);
        return 2;
    }
    const char *exe_arg = argc > 2 ? argv[2] : "";
    long long crash_time = argc > 4 ? strtoll(argv[4], NULL, 10) : tb_wall_s();
    if (crash_time <= 0)
        crash_time = tb_wall_s();

    char msg[64];
    snprintf(msg, sizeof msg, "crash %ld %lld", pid, (long long)t0);
    tb_notify_appmgr(msg);

    /* classify before the app can be reaped (and its registration removed) */
    char klass[8], comp[64];
    classify((int)pid, exe_arg, klass, sizeof klass, comp, sizeof comp);

    unsigned char *core_buf = NULL;
    size_t core_len = 0;
    int truncated = 0;
    int rr = tb_read_all_fd(0, MAX_CORE, &core_buf, &core_len, &truncated);
    close(0); /* lets the kernel finish the crashed process: appmgr can reap it now */
    if (open("/dev/null", O_RDONLY) != 0) /* keep fd 0 taken (gzip's pipes must not land there) */
        tb_log("cannot reopen stdin on /dev/null");
    if (rr != 0) {
        tb_event("crash app=%s class=%s pid=%ld signal=%s sig=-", comp, klass, pid, argc > 3 ? argv[3] : "-");
        tb_event("dump-skipped reason=read-error app=%s", comp);
        return finish((int)pid, 1);
    }
    static tb_core core;
    char err[128], sig[TB_SIG_HEX + 1] = "-";
    int parsed = tb_core_parse(core_buf, core_len, &core, err, sizeof err) == 0;
    if (parsed)
        tb_core_signature(&core, sig);
    if (!parsed || comp[0] == '\0')
        snprintf(comp, sizeof comp, "%s", parsed && core.exe[0] ? core.exe : (exe_arg[0] ? exe_arg : "unknown"));
    tb_event("crash app=%s class=%s pid=%ld signal=%d sig=%s pc=0x%llx", comp, klass, pid,
             parsed ? core.signal : (argc > 3 ? atoi(argv[3]) : 0), sig, parsed ? (unsigned long long)core.pc : 0ULL);
    if (!parsed) {
        tb_log("core not readable: %s", err);
        tb_event("dump-skipped reason=bad-core app=%s", comp);
        return finish((int)pid, 1);
    }

    tb_identity id;
    int provisioned = tb_identity_load(&id) == 0;
    tb_sync_state st;
    tb_sync_load(&st);
    tb_action a = tb_decide(provisioned, &st, tb_wall_s(), sig, -1);
    if (a == TB_UPLOAD && truncated)
        a = TB_SKIP_TOO_LARGE;
    if (a != TB_UPLOAD) {
        tb_event("dump-skipped reason=%s app=%s sig=%s", tb_action_reason(a), comp, sig);
        return finish((int)pid, 0);
    }
    unsigned char *gz = NULL;
    size_t gzlen = 0;
    if (tb_gzip(core_buf, core_len, &gz, &gzlen, deadline) != 0) {
        tb_event("upload-fail reason=%s app=%s sig=%s", tb_mono_ms() >= deadline ? "timeout" : "gzip", comp, sig);
        return finish((int)pid, 1);
    }
    free(core_buf);
    a = tb_decide(provisioned, &st, tb_wall_s(), sig, (long long)gzlen);
    if (a != TB_UPLOAD) {
        tb_event("dump-skipped reason=%s app=%s sig=%s bytes=%zu", tb_action_reason(a), comp, sig, gzlen);
        return finish((int)pid, 0);
    }
    int r = tb_api_upload(&id, &st, sig, klass, comp, crash_time, gz, gzlen, t0, deadline, 0);
    /* appmgr restarts the app now; spooling happens after that */
    finish((int)pid, 0);
    if (r == TB_UP_RETRY) {
        if (tb_spool_put(sig, klass, comp, crash_time, gz, gzlen) == 0)
            tb_log("dump kept in the spool for the next sync");
    }
    free(gz);
    return r == TB_UP_OK || r == TB_UP_SKIPPED ? 0 : 1;
}
