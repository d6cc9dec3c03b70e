/* appmgr: runs the apps, restarts them.
 *
 *   appmgr [--apps FILE]     (default /etc/testbed/apps, or $TB_APPS_FILE)
 *
 * Apps file: one app a line, `NAME [data_kib=N] COMMAND [ARGS...]`, `#` comments.
 * Each app runs with RLIMIT_DATA of N KiB (default 256, the MT3620 app limit),
 * RLIMIT_CORE 0 (the pipe handler still gets the core while consent is valid;
 * without it core_pattern points nowhere and nothing is written), and the
 * environment TB_COMPONENT=NAME TB_COMPONENT_CLASS=App.
 *
 * Restart rules: a crashed app is restarted as soon as the crash reporter says
 * its upload is done (datagram "done PID" on <run>/appmgr.sock), and at the
 * latest TB_DEADLINE_MS after the crash (the reporter's "crash PID MONO_MS" datagram marks
 * it); an app that crashed without a reporter (no consent) or exited cleanly is
 * restarted at once (after 1 s if it lived less than 1 s). A "done" that arrives once the
 * deadline has passed (the reporter gave up at its own deadline, which starts at the same crash
 * time) is a restart at the deadline: the app waited the whole deadline either way, so the two
 * timers racing cannot change what the event says. Event per restart:
 *   @tb event=app-restart app=NAME after_ms=MS reason=crash|exit|killed upload=done|deadline|none
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb_apps.h"
#include "tb_contract.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_notify.h"
#include "tb_policy.h"
#include "tb_state.h"

#define MAX_PENDING 32

typedef struct {
    pid_t pid;
    int64_t crash_ms;
    int done;
    int64_t seen_ms;
} pending_t;

static app_t apps[MAX_APPS];
static int napps;
static pending_t pend[MAX_PENDING];
static int sigpipe_fds[2];
static volatile sig_atomic_t stop;

static void on_chld(int s)
{
    (void)s;
    int e = errno;
    ssize_t w = write(sigpipe_fds[1], "c", 1);
    (void)w;
    errno = e;
}
static void on_term(int s)
{
    (void)s;
    stop = 1;
    ssize_t w = write(sigpipe_fds[1], "t", 1);
    (void)w;
}

static pending_t *pending_for(pid_t pid, int create)
{
    pending_t *free_slot = NULL, *oldest = &pend[0];
    for (int i = 0; i < MAX_PENDING; i++) {
        if (pend[i].pid == pid)
            return &pend[i];
        if (pend[i].pid == 0 && free_slot == NULL)
            free_slot = &pend[i];
        if (pend[i].seen_ms < oldest->seen_ms)
            oldest = &pend[i];
    }
    if (!create)
        return NULL;
    pending_t *p = free_slot ? free_slot : oldest;
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->seen_ms = tb_mono_ms();
    return p;
}

static void registry_path(char *out, size_t n, pid_t pid)
{
    snprintf(out, n, "%s/apps/%d", tb_run_dir(), (int)pid);
}

static void spawn(app_t *a)
{
    pid_t pid = fork();
    if (pid < 0) {
        tb_log("fork for %s failed: %s", a->name, strerror(errno));
        a->state = ST_WAIT_BACKOFF;
        a->restart_at = tb_mono_ms() + 1000;
        return;
    }
    if (pid == 0) {
        /* registered before exec, so a crash at once is still classed as this app's */
        char path[512], text[64];
        registry_path(path, sizeof path, getpid());
        int n = snprintf(text, sizeof text, "%s\n", a->name);
        tb_write_file_atomic(path, text, (size_t)n);
        struct rlimit rl = {(rlim_t)a->data_kib * 1024, (rlim_t)a->data_kib * 1024};
        if (a->data_kib > 0)
            setrlimit(RLIMIT_DATA, &rl);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        setenv("TB_COMPONENT", a->name, 1);
        setenv("TB_COMPONENT_CLASS", TB_CLASS_APP, 1);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execv(a->argv[0], a->argv);
        fprintf(stderr, "appmgr: cannot run %s: %s\n", a->argv[0], strerror(errno));
        _exit(127);
    }
    a->pid = pid;
    a->state = ST_RUNNING;
    a->started_ms = tb_mono_ms();
}

/* Test-only switch (a broken device, for the verdict tests): when the run dir holds
 * TB_TEST_RESTART_DELAY_FILE with N > 0, a crashed app is restarted N ms after its crash,
 * whatever its upload does, so a scenario sees the device break its 5 s promise. Read at
 * each crash; no board has the file unless a test writes it. */
static long long test_restart_delay_ms(void)
{
    char path[512];
    tb_path(path, sizeof path, tb_run_dir(), TB_TEST_RESTART_DELAY_FILE);
    char *text = tb_read_file(path, NULL);
    if (text == NULL)
        return 0;
    long long ms = strtoll(text, NULL, 10);
    free(text);
    return ms > 0 && ms < 600000 ? ms : 0;
}

static void restart(app_t *a, const char *upload)
{
    a->held = 0;
    char path[512];
    registry_path(path, sizeof path, a->pid);
    unlink(path);
    pending_t *p = pending_for(a->pid, 0);
    if (p)
        p->pid = 0;
    long long after = (long long)(tb_mono_ms() - a->crash_ms);
    spawn(a);
    tb_ev e;
    tb_ev_begin(&e, TB_EV_APP_RESTART);
    tb_ev_str(&e, TB_K_APP, a->name);
    tb_ev_int(&e, TB_K_AFTER_MS, after);
    tb_ev_str(&e, TB_K_REASON, a->reason);
    tb_ev_str(&e, TB_K_UPLOAD, upload);
    tb_ev_int(&e, TB_K_PID, (int)a->pid);
    tb_ev_emit(&e);
}

/* The upload= word for a restart after the reporter's "done" seen at done_ms. */
static const char *after_done(const app_t *a, int64_t done_ms)
{
    return done_ms - a->crash_ms >= TB_DEADLINE_MS ? TB_RESTART_UPLOAD_DEADLINE : TB_RESTART_UPLOAD_DONE;
}

static int core_signal(int s)
{
    return s == SIGSEGV || s == SIGABRT || s == SIGFPE || s == SIGILL || s == SIGBUS || s == SIGTRAP ||
           s == SIGSYS || s == SIGQUIT || s == SIGXCPU || s == SIGXFSZ;
}

static void reaped(app_t *a, int status)
{
    int64_t now = tb_mono_ms();
    if (WIFEXITED(status) || !core_signal(WTERMSIG(status))) {
        a->reason = WIFEXITED(status) ? TB_RESTART_EXIT : TB_RESTART_KILLED;
        a->crash_ms = now;
        if (now - a->started_ms < 1000) {
            a->state = ST_WAIT_BACKOFF; /* do not spin on an app that cannot start */
            a->restart_at = now + 1000;
        } else {
            restart(a, TB_RESTART_UPLOAD_NONE);
        }
        return;
    }
    a->reason = TB_RESTART_CRASH;
    pending_t *p = pending_for(a->pid, 0);
    if (p != NULL && now - p->seen_ms > 60000) {
        p->pid = 0; /* left over from an earlier process with the same pid (an OS component) */
        p = NULL;
    }
    if (p == NULL) {
        /* No reporter ran: core_pattern points nowhere because consent is not valid. */
        tb_identity id;
        static tb_sync_state st;
        int prov = tb_identity_load(&id) == 0;
        tb_sync_load(&st);
        tb_action why = tb_decide(prov, &st, tb_wall_s(), NULL, -1);
        tb_ev e;
        tb_ev_begin(&e, TB_EV_CRASH);
        tb_ev_str(&e, TB_K_APP, a->name);
        tb_ev_str(&e, TB_K_CLASS, TB_CLASS_APP);
        tb_ev_int(&e, TB_K_PID, (int)a->pid);
        tb_ev_int(&e, TB_K_SIGNAL, WTERMSIG(status));
        tb_ev_str(&e, TB_K_SIG, "-");
        tb_ev_emit(&e);
        tb_event_dump_skipped(why == TB_DECIDE_UPLOAD ? TB_SKIP_NO_REPORTER : tb_action_reason(why), a->name, NULL,
                              -1, 0);
        a->crash_ms = now;
        restart(a, TB_RESTART_UPLOAD_NONE);
        return;
    }
    a->crash_ms = p->crash_ms < now ? p->crash_ms : now;
    long long held_ms = test_restart_delay_ms();
    if (held_ms > 0) {
        a->state = ST_WAIT_UPLOAD;
        a->held = 1;
        a->restart_at = a->crash_ms + held_ms;
        return;
    }
    if (p->done) {
        restart(a, after_done(a, p->seen_ms));
        return;
    }
    a->state = ST_WAIT_UPLOAD;
    a->restart_at = a->crash_ms + TB_DEADLINE_MS;
    if (a->restart_at <= now)
        restart(a, TB_RESTART_UPLOAD_DEADLINE);
}

static void on_message(char *msg)
{
    char kind[16];
    int pid = 0;
    long long ms = 0;
    int n = sscanf(msg, "%15s %d %lld", kind, &pid, &ms);
    if (n < 2 || pid <= 0)
        return;
    if (strcmp(kind, TB_NOTIFY_CRASH) == 0) {
        pending_t *p = pending_for(pid, 1);
        p->crash_ms = n == 3 ? ms : tb_mono_ms();
        p->seen_ms = tb_mono_ms();
        p->done = 0;
        return;
    }
    if (strcmp(kind, TB_NOTIFY_DONE) == 0) {
        pending_t *p = pending_for(pid, 1);
        p->done = 1;
        p->seen_ms = tb_mono_ms();
        for (int i = 0; i < napps; i++)
            if (apps[i].pid == pid && apps[i].state == ST_WAIT_UPLOAD && !apps[i].held)
                restart(&apps[i], after_done(&apps[i], p->seen_ms));
    }
}

int main(int argc, char **argv)
{
    tb_set_prog("appmgr");
    const char *file = getenv("TB_APPS_FILE");
    if (!file || !*file)
        file = "/etc/testbed/apps";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--apps") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: appmgr [--apps FILE]   (apps file lines: NAME [data_kib=N] /COMMAND [ARGS...])\n");
            return 0;
        } else {
            fprintf(stderr, "appmgr: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    char dir[512], sockpath[512];
    tb_path(dir, sizeof dir, tb_run_dir(), "apps");
    if (tb_mkdirs(dir) != 0) {
        fprintf(stderr, "appmgr: cannot create %s\n", dir);
        return 1;
    }
    if ((napps = tb_apps_load(file, apps, MAX_APPS)) == 0) {
        fprintf(stderr, "appmgr: no apps to run in %s\n", file);
        return 1;
    }
    if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return 1;
    tb_path(sockpath, sizeof sockpath, tb_run_dir(), TB_NOTIFY_SOCKET);
    unlink(sockpath);
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(sockpath) >= sizeof sa.sun_path) {
        fprintf(stderr, "appmgr: socket path too long: %s\n", sockpath);
        return 1;
    }
    memcpy(sa.sun_path, sockpath, strlen(sockpath) + 1);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "appmgr: cannot bind %s: %s\n", sockpath, strerror(errno));
        return 1;
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_chld;
    act.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &act, NULL);
    act.sa_handler = on_term;
    act.sa_flags = 0;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    char pidfile[512], pidtext[32];
    tb_path(pidfile, sizeof pidfile, tb_run_dir(), "appmgr.pid");
    int pl = snprintf(pidtext, sizeof pidtext, "%d\n", (int)getpid());
    tb_write_file_atomic(pidfile, pidtext, (size_t)pl);

    for (int i = 0; i < napps; i++) {
        spawn(&apps[i]);
        tb_ev e;
        tb_ev_begin(&e, TB_EV_APP_START);
        tb_ev_str(&e, TB_K_APP, apps[i].name);
        tb_ev_int(&e, TB_K_PID, (int)apps[i].pid);
        tb_ev_int(&e, TB_K_DATA_KIB, apps[i].data_kib);
        tb_ev_emit(&e);
    }
    while (!stop) {
        int64_t now = tb_mono_ms(), wake = -1;
        for (int i = 0; i < napps; i++)
            if (apps[i].state != ST_RUNNING && (wake < 0 || apps[i].restart_at < wake))
                wake = apps[i].restart_at;
        int timeout = wake < 0 ? -1 : (wake <= now ? 0 : (int)(wake - now));
        struct pollfd p[2] = {{sock, POLLIN, 0}, {sigpipe_fds[0], POLLIN, 0}};
        int r = poll(p, 2, timeout);
        if (r < 0 && errno != EINTR)
            break;
        /* messages first: a "crash" datagram must be seen before the reap it explains */
        char msg[128];
        ssize_t m;
        while ((m = recv(sock, msg, sizeof msg - 1, 0)) > 0) {
            msg[m] = '\0';
            on_message(msg);
        }
        char drain[64];
        while (read(sigpipe_fds[0], drain, sizeof drain) > 0)
            ;
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            /* a "crash" datagram sent just before the reap may still be queued */
            while ((m = recv(sock, msg, sizeof msg - 1, 0)) > 0) {
                msg[m] = '\0';
                on_message(msg);
            }
            for (int i = 0; i < napps; i++)
                if (apps[i].pid == pid && apps[i].state == ST_RUNNING)
                    reaped(&apps[i], status);
        }
        now = tb_mono_ms();
        for (int i = 0; i < napps; i++)
            if (apps[i].state != ST_RUNNING && apps[i].restart_at <= now)
                restart(&apps[i], apps[i].state == ST_WAIT_UPLOAD ? TB_RESTART_UPLOAD_DEADLINE : TB_RESTART_UPLOAD_NONE);
    }
    for (int i = 0; i < napps; i++)
        if (apps[i].pid > 0 && apps[i].state == ST_RUNNING)
            kill(apps[i].pid, SIGTERM);
    unlink(sockpath);
    unlink(pidfile);
    return 0;
}
