/* crash-reporter: the kernel's core_pattern pipe handler.
 *
 *   core_pattern = |/usr/sbin/crash-reporter %P %e %s %t   (tb_corepattern.h names the arguments)
 *
 * Reads the start of the ELF core from stdin, only as far as the signature needs (the
 * notes and the executable's first page, which the kernel writes first), and decides:
 * consent / freshness / throttling on the device. A skip closes stdin at once, so the
 * kernel stops writing the rest and the app can be reaped. Otherwise it reads the rest,
 * closes stdin (the kernel holds the crashed process until then), and goes on: gzip ->
 * size check -> upload id -> intent -> upload, all within one deadline of TB_DEADLINE_MS
 * from its start (= the crash). Prints one console event per outcome and tells appmgr
 * when it is done. A failure that may pass (connect, timeout, including a gzip cut short by
 * the deadline, 5xx, bad response) keeps the dump in the spool, written after appmgr was told.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb_api.h"
#include "tb_contract.h"
#include "tb_corepattern.h"
#include "tb_elfcore.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_gzip.h"
#include "tb_notify.h"
#include "tb_policy.h"
#include "tb_spool.h"

#define MAX_CORE (8 * 1024 * 1024)
/* The first read: ELF header, program headers, notes and the executable's first page of a
 * board app's core fit (about 12 KiB); more is read only when the signature needs it. */
#define FIRST_READ (16 * 1024)

/* The core as read from stdin so far. */
typedef struct {
    unsigned char *buf;
    size_t len, size;
    int eof;       /* the kernel finished writing */
    int truncated; /* more than MAX_CORE: the rest was drained */
} core_in;

/* Read until at least `want` bytes are in (or EOF, or MAX_CORE); 0, or -1 on a read error. */
static int read_to(core_in *in, int fd, size_t want)
{
    if (want > MAX_CORE)
        want = MAX_CORE;
    while (!in->eof && in->len < want) {
        if (in->len == in->size) {
            size_t nsize = in->size ? in->size * 2 : FIRST_READ;
            if (nsize < want)
                nsize = want;
            if (nsize > MAX_CORE)
                nsize = MAX_CORE;
            unsigned char *nb = realloc(in->buf, nsize + 1);
            if (nb == NULL)
                return -1;
            in->buf = nb;
            in->size = nsize;
        }
        ssize_t r = read(fd, in->buf + in->len, in->size - in->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            in->eof = 1;
        in->len += (size_t)r;
    }
    return 0;
}

/* Read the rest; past MAX_CORE keep draining (so the kernel is not held) and mark it truncated. */
static int read_rest(core_in *in, int fd)
{
    if (read_to(in, fd, MAX_CORE) != 0)
        return -1;
    unsigned char sink[4096];
    ssize_t r;
    while (!in->eof && (r = read(fd, sink, sizeof sink)) != 0) {
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0)
            in->truncated = 1;
    }
    in->eof = 1;
    return 0;
}

/* Parse the core as far as it has been read, reading more until the signature is certain: the
 * notes are in and the build id is the executable's own, or the whole core is read. 0 when it
 * parsed; -1 with err when it cannot be parsed; -2 on a read error. */
static int read_signature(core_in *in, int fd, tb_core *core, char *err, size_t errlen)
{
    size_t want = FIRST_READ;
    for (;;) {
        if (read_to(in, fd, want) != 0)
            return -2;
        int parsed = tb_core_parse(in->buf, in->len, core, err, errlen) == 0;
        if (parsed && (core->build_id_from_exe || in->eof || in->len >= MAX_CORE))
            return 0;
        if (in->eof || in->len >= MAX_CORE)
            return parsed ? 0 : -1;
        want = in->len * 4;
    }
}

/* Done with stdin: lets the kernel finish (or abandon) the crashed process's dump; appmgr can reap it now. */
static void close_stdin(void)
{
    close(0);
    if (open("/dev/null", O_RDONLY) != 0) /* keep fd 0 taken (gzip's pipes must not land there) */
        tb_log("cannot reopen stdin on /dev/null");
}

/* The argument named `which`, or "" when the kernel (or a caller) gave fewer. */
static const char *arg(int argc, char **argv, tb_core_argv which) { return (int)which < argc ? argv[which] : ""; }

/* App or OS: appmgr registers its apps' pids in <run>/apps/<pid>. */
static void classify(int pid, const char *exe, tb_dump *d)
{
    char dir[512], path[600];
    tb_path(dir, sizeof dir, tb_run_dir(), "apps");
    snprintf(path, sizeof path, "%s/%d", dir, pid);
    char *app = tb_read_file(path, NULL);
    if (app != NULL) {
        app[strcspn(app, "\n")] = '\0';
        snprintf(d->klass, sizeof d->klass, "%s", TB_CLASS_APP);
        snprintf(d->component, sizeof d->component, "%s", app[0] ? app : exe);
        free(app);
        return;
    }
    snprintf(d->klass, sizeof d->klass, "%s", TB_CLASS_OS);
    snprintf(d->component, sizeof d->component, "%s", exe);
}

static int finish(int pid, int code)
{
    tb_notify_done(pid);
    return code;
}

/* The deadline passed while gzipping (a starved board): the app has been restarted; gzip again,
 * bounded by a deadline of its own, and keep the dump in the spool with a fresh upload id, as any
 * other timeout. Nothing was sent for it yet. */
static void spool_late(tb_dump *d, const core_in *in)
{
    unsigned char *gz = NULL;
    size_t gzlen = 0;
    if (tb_gzip(in->buf, in->len, &gz, &gzlen, tb_mono_ms() + TB_DEADLINE_MS) != 0) {
        tb_log("dump lost: gzip did not finish after the deadline either");
        return;
    }
    if (tb_dump_new_upload_id(d) != 0)
        tb_log("no upload id (/dev/urandom unreadable): the spool gives it one when read");
    if (tb_spool_put(d, gz, gzlen) == 0)
        tb_log("dump kept in the spool for the next sync");
    free(gz);
}

static void crash_event(const tb_dump *d, long pid, int signal, const char *sig, unsigned long long pc, int with_pc)
{
    tb_ev e;
    tb_ev_begin(&e, TB_EV_CRASH);
    tb_ev_str(&e, TB_K_APP, d->component);
    tb_ev_str(&e, TB_K_CLASS, d->klass);
    tb_ev_int(&e, TB_K_PID, pid);
    tb_ev_int(&e, TB_K_SIGNAL, signal);
    tb_ev_str(&e, TB_K_SIG, sig);
    if (with_pc)
        tb_ev_hex(&e, TB_K_PC, pc);
    tb_ev_emit(&e);
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
    if (argc <= TB_ARGV_PID) {
        fprintf(stderr, "usage: crash-reporter PID [EXE SIGNAL TIME] < core\n");
        return 2;
    }
    char *end;
    long pid = strtol(argv[TB_ARGV_PID], &end, 10);
    if (*end != '\0' || pid <= 0) {
        fprintf(stderr, "crash-reporter: PID '%s' is not a positive number\n", argv[TB_ARGV_PID]);
        return 2;
    }
    const char *exe_arg = arg(argc, argv, TB_ARGV_EXE);
    int signal_arg = atoi(arg(argc, argv, TB_ARGV_SIGNAL));
    tb_dump d;
    memset(&d, 0, sizeof d);
    snprintf(d.sig, sizeof d.sig, "-");
    d.crash_time = strtoll(arg(argc, argv, TB_ARGV_TIME), NULL, 10);
    if (d.crash_time <= 0)
        d.crash_time = tb_wall_s();

    tb_notify_crash((int)pid, t0);
    /* classify before the app can be reaped (and its registration removed) */
    classify((int)pid, exe_arg, &d);

    core_in in = {0};
    static tb_core core;
    char err[128];
    int rs = read_signature(&in, 0, &core, err, sizeof err);
    if (rs == -2) {
        close_stdin();
        crash_event(&d, pid, signal_arg, "-", 0, 0);
        tb_event_dump_skipped(TB_SKIP_READ_ERROR, d.component, NULL, -1, 0);
        return finish((int)pid, 1);
    }
    int parsed = rs == 0;
    if (parsed)
        tb_core_signature(&core, d.sig);
    if (!parsed || d.component[0] == '\0')
        snprintf(d.component, sizeof d.component, "%s",
                 parsed && core.exe[0] ? core.exe : (exe_arg[0] ? exe_arg : "unknown"));
    crash_event(&d, pid, parsed ? core.signal : signal_arg, d.sig, parsed ? core.pc : 0, 1);
    if (!parsed) {
        close_stdin();
        tb_log("core not readable: %s", err);
        tb_event_dump_skipped(TB_SKIP_BAD_CORE, d.component, NULL, -1, 0);
        return finish((int)pid, 1);
    }

    tb_identity id;
    int provisioned = tb_identity_load(&id) == 0;
    static tb_sync_state st;
    tb_sync_load(&st);
    tb_action a = tb_decide(provisioned, &st, tb_wall_s(), d.sig, -1);
    if (a != TB_DECIDE_UPLOAD) {
        close_stdin(); /* the kernel stops writing the rest */
        tb_event_dump_skipped(tb_action_reason(a), d.component, d.sig, -1, 0);
        return finish((int)pid, 0);
    }
    int rr = read_rest(&in, 0);
    close_stdin();
    if (rr != 0) {
        tb_event_dump_skipped(TB_SKIP_READ_ERROR, d.component, d.sig, -1, 0);
        return finish((int)pid, 1);
    }
    if (in.truncated) {
        tb_event_dump_skipped(TB_SKIP_TOO_LARGE, d.component, d.sig, -1, 0);
        return finish((int)pid, 0);
    }
    unsigned char *gz = NULL;
    size_t gzlen = 0;
    if (tb_gzip(in.buf, in.len, &gz, &gzlen, deadline) != 0) {
        int timed_out = tb_mono_ms() >= deadline;
        tb_ev e;
        tb_ev_begin(&e, TB_EV_UPLOAD_FAIL);
        tb_ev_str(&e, TB_K_REASON, timed_out ? TB_FAIL_TIMEOUT : TB_FAIL_GZIP);
        tb_ev_str(&e, TB_K_APP, d.component);
        tb_ev_str(&e, TB_K_SIG, d.sig);
        tb_ev_emit(&e);
        finish((int)pid, 1); /* appmgr restarts the app now */
        if (timed_out)
            spool_late(&d, &in);
        free(in.buf);
        return 1;
    }
    free(in.buf);
    a = tb_decide(provisioned, &st, tb_wall_s(), d.sig, (long long)gzlen);
    if (a != TB_DECIDE_UPLOAD) {
        tb_event_dump_skipped(tb_action_reason(a), d.component, d.sig, (long long)gzlen, 0);
        return finish((int)pid, 0);
    }
    if (tb_dump_new_upload_id(&d) != 0)
        tb_log("no upload id (/dev/urandom unreadable): this dump goes without one");
    int r = tb_api_upload(&id, &st, &d, gz, gzlen, t0, deadline, 0);
    /* appmgr restarts the app now; spooling happens after that */
    finish((int)pid, 0);
    if (r == TB_UP_RETRY) {
        if (tb_spool_put(&d, gz, gzlen) == 0)
            tb_log("dump kept in the spool for the next sync");
    }
    free(gz);
    return r == TB_UP_OK || r == TB_UP_SKIPPED ? 0 : 1;
}
