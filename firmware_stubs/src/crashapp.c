/* crashapp: the sample app that crashes on demand.
 *
 *   crashapp [--mode idle|segv|abort|fpe|stack|exit] [--heap-kib N] [--after-ms M] [--id X]
 *            [--app NAME] [--direct]
 *
 * Under a supervisor (appmgr or the OS-component loop set TB_COMPONENT): runs the
 * mode in this process; `--mode idle` (the default) waits for commands on the FIFO
 * <run>/ctl/<TB_COMPONENT>, one line of the same options per crash.
 *
 * From the console (no TB_COMPONENT): the options are sent to the running app
 * NAME (default: this program's name, so `crashapp --mode segv` crashes the app
 * appmgr runs as "crashapp" and `crashsvc --mode segv` the OS component);
 * `--direct` runs the mode in this shell's child instead.
 *
 *   --heap-kib N   allocate N KiB (0..4096) and fill it with half-compressible data first
 *   --after-ms M   wait M ms (0..600000) before crashing
 *   --id X         crash as "<name>-X" (X: 1..6 of [A-Za-z0-9_]): a different crash signature
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tb_files.h"

typedef struct {
    char mode[8];
    long heap_kib;
    long after_ms;
    char id[8];
    char app[32];
    int direct;
} opts_t;

static const char *prog_name = "crashapp";
volatile unsigned char *heap_keep;
volatile int sink;
volatile uintptr_t bad_address = 0x10; /* unmapped: the first page is never mapped */
volatile int stack_limit = 1 << 30;     /* never reached: the stack rlimit ends the recursion */

static int parse(int argc, char **argv, opts_t *o, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--direct") == 0) {
            o->direct = 1;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "%s needs a value", a);
            return -1;
        }
        const char *v = argv[++i];
        char *end;
        if (strcmp(a, "--mode") == 0) {
            const char *modes[] = {"idle", "segv", "abort", "fpe", "stack", "exit"};
            int ok = 0;
            for (size_t k = 0; k < sizeof modes / sizeof *modes; k++)
                ok |= strcmp(v, modes[k]) == 0;
            if (!ok) {
                snprintf(err, errlen, "--mode '%s': use idle, segv, abort, fpe, stack or exit", v);
                return -1;
            }
            snprintf(o->mode, sizeof o->mode, "%s", v);
        } else if (strcmp(a, "--heap-kib") == 0) {
            o->heap_kib = strtol(v, &end, 10);
            if (*v == '\0' || *end || o->heap_kib < 0 || o->heap_kib > 4096) {
                snprintf(err, errlen, "--heap-kib '%s': a number of KiB from 0 to 4096", v);
                return -1;
            }
        } else if (strcmp(a, "--after-ms") == 0) {
            o->after_ms = strtol(v, &end, 10);
            if (*v == '\0' || *end || o->after_ms < 0 || o->after_ms > 600000) {
                snprintf(err, errlen, "--after-ms '%s': a number of ms from 0 to 600000", v);
                return -1;
            }
        } else if (strcmp(a, "--id") == 0) {
            size_t l = strlen(v);
            int ok = l >= 1 && l <= 6;
            for (size_t k = 0; ok && k < l; k++)
                ok = (v[k] >= 'a' && v[k] <= 'z') || (v[k] >= 'A' && v[k] <= 'Z') || (v[k] >= '0' && v[k] <= '9') ||
                     v[k] == '_';
            if (!ok) {
                snprintf(err, errlen, "--id '%s': 1 to 6 characters of A-Z a-z 0-9 _", v);
                return -1;
            }
            snprintf(o->id, sizeof o->id, "%s", v);
        } else if (strcmp(a, "--app") == 0) {
            if (strlen(v) == 0 || strlen(v) >= sizeof o->app || strchr(v, '/')) {
                snprintf(err, errlen, "--app '%s': an app name", v);
                return -1;
            }
            snprintf(o->app, sizeof o->app, "%s", v);
        } else {
            snprintf(err, errlen, "unknown option '%s'", a);
            return -1;
        }
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Half-compressible: in every 256 bytes, 12 pseudo-random and 244 patterned, like app state. */
static int fill_heap(long kib)
{
    if (kib == 0)
        return 0;
    size_t n = (size_t)kib * 1024;
    /* one brk heap, no separate mmap and no padding: VmData grows by about N KiB, like an
     * MT3620 app's heap inside its 256 KiB */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TOP_PAD, 0);
    unsigned char *p = malloc(n);
    if (p == NULL)
        return -1;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i += 256) {
        size_t blk = n - i < 256 ? n - i : 256;
        for (size_t k = 0; k < blk; k++) {
            if (k < 12) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                p[i + k] = (unsigned char)x;
            } else {
                p[i + k] = (unsigned char)("sensor reading ok;"[k % 18] + (i / 256) % 3);
            }
        }
    }
    heap_keep = p;
    return 0;
}

__attribute__((noinline)) static void crash_segv(void)
{
    volatile int *bad = (volatile int *)bad_address;
    *bad = 0x5eca; /* the faulting store: its PC is the crash PC */
}

__attribute__((noinline)) static int crash_fpe(int a)
{
    volatile int zero = 0;
    return a / zero; /* x86: #DE; ARM: __aeabi_idiv0 raises SIGFPE */
}

__attribute__((noinline)) static int crash_stack(int depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[511] = (char)(depth >> 8);
    if (depth >= stack_limit)
        return frame[0];
    return crash_stack(depth + 1) + frame[0] + frame[511];
}

static void set_name(const opts_t *o)
{
    if (o->id[0] == '\0')
        return;
    char cur[17] = "", name[17];
    prctl(PR_GET_NAME, cur, 0, 0, 0);
    if (snprintf(name, sizeof name, "%s-%s", cur, o->id) >= (int)sizeof name)
        fprintf(stderr, "%s: name %s-%s truncated to 15 characters\n", prog_name, cur, o->id);
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

static int run_mode(const opts_t *o)
{
    if (fill_heap(o->heap_kib) != 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_DATA, &rl);
        if (rl.rlim_cur == RLIM_INFINITY)
            fprintf(stderr, "%s: cannot allocate %ld KiB of heap\n", prog_name, o->heap_kib);
        else
            fprintf(stderr, "%s: cannot allocate %ld KiB of heap: the app's data limit is %lu KiB (RLIMIT_DATA)\n",
                    prog_name, o->heap_kib, (unsigned long)(rl.rlim_cur / 1024));
        return 3;
    }
    set_name(o);
    if (o->after_ms > 0)
        sleep_ms(o->after_ms);
    if (strcmp(o->mode, "segv") == 0)
        crash_segv();
    else if (strcmp(o->mode, "abort") == 0)
        abort();
    else if (strcmp(o->mode, "fpe") == 0)
        sink = crash_fpe(7);
    else if (strcmp(o->mode, "stack") == 0) {
        struct rlimit rl = {64 * 1024, 64 * 1024}; /* an MT3620-sized stack keeps the core small */
        setrlimit(RLIMIT_STACK, &rl);
        sink = crash_stack(0);
    } else if (strcmp(o->mode, "exit") == 0)
        exit(0);
    return 0;
}

/* Wait for commands on the control FIFO; each line is a set of options. */
static int serve(const char *component)
{
    char dir[512], fifo[600];
    tb_path(dir, sizeof dir, tb_run_dir(), "ctl");
    tb_mkdirs(dir);
    snprintf(fifo, sizeof fifo, "%s/%s", dir, component);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) {
        fprintf(stderr, "%s: cannot create %s: %s\n", prog_name, fifo, strerror(errno));
        return 1;
    }
    int fd = open(fifo, O_RDWR | O_CLOEXEC); /* O_RDWR: never sees EOF between writers */
    if (fd < 0)
        return 1;
    char line[512];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, line + n, sizeof line - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 1;
        n += (size_t)r;
        line[n] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            char *args[32];
            int na = 0;
            char *save = NULL;
            for (char *t = strtok_r(line, " \t", &save); t && na < 32; t = strtok_r(NULL, " \t", &save))
                args[na++] = t;
            opts_t o;
            memset(&o, 0, sizeof o);
            snprintf(o.mode, sizeof o.mode, "segv");
            char err[160];
            if (parse(na, args, &o, err, sizeof err) != 0)
                fprintf(stderr, "%s: ignored command: %s\n", prog_name, err);
            else if (strcmp(o.mode, "idle") != 0) {
                int rc = run_mode(&o);
                if (rc != 0) {
                    unlink(fifo);
                    return rc;
                }
            }
            size_t rest = n - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest);
            n = rest;
            line[n] = '\0';
        }
        if (n == sizeof line - 1)
            n = 0;
    }
}

/* From the console: hand the options to the running app through its FIFO. */
static int forward(const opts_t *o, int argc, char **argv)
{
    const char *target = o->app[0] ? o->app : prog_name;
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/ctl/%s", tb_run_dir(), target);
    /* just after a restart the new instance may not listen yet: give it up to 3 s */
    int64_t until = tb_mono_ms() + 3000;
    int fd;
    while ((fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && (errno == ENXIO || errno == ENOENT) &&
           tb_mono_ms() < until)
        sleep_ms(20);
    if (fd < 0) {
        fprintf(stderr,
                "%s: no running app '%s' listens on %s (%s); is appmgr running? Use --direct to crash a new "
                "process instead\n",
                prog_name, target, fifo, strerror(errno));
        return 2;
    }
    char line[512];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--app") == 0) {
            i++;
            continue;
        }
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", n ? " " : "", argv[i]);
        if (n >= sizeof line - 2)
            return 2;
    }
    line[n++] = '\n';
    ssize_t w = write(fd, line, n);
    close(fd);
    if (w != (ssize_t)n) {
        fprintf(stderr, "%s: cannot write to %s\n", prog_name, fifo);
        return 2;
    }
    printf("%s: sent to the running app '%s': %.*s\n", prog_name, target, (int)n - 1, line);
    return 0;
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    prog_name = slash ? slash + 1 : argv[0];
    opts_t o;
    memset(&o, 0, sizeof o);
    snprintf(o.mode, sizeof o.mode, "idle");
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [--mode idle|segv|abort|fpe|stack|exit] [--heap-kib N] [--after-ms M] [--id X]\n"
                   "          [--app NAME] [--direct]\n"
                   "  under appmgr: runs the mode (idle waits for commands on %s/ctl/<app>)\n"
                   "  from a shell: sends the options to the running app NAME; --direct crashes this process\n",
                   prog_name, tb_run_dir());
            return 0;
        }
    char err[160];
    if (parse(argc - 1, argv + 1, &o, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog_name, err);
        return 2;
    }
    const char *component = getenv("TB_COMPONENT");
    if (component && *component) {
        if (strcmp(o.mode, "idle") == 0)
            return serve(component);
        return run_mode(&o);
    }
    if (o.direct) {
        if (strcmp(o.mode, "idle") == 0) {
            for (;;)
                pause();
        }
        return run_mode(&o);
    }
    if (strcmp(o.mode, "idle") == 0) {
        fprintf(stderr, "%s: --mode idle only makes sense under appmgr (or with --direct)\n", prog_name);
        return 2;
    }
    return forward(&o, argc, argv);
}
