/* core_pattern: the kernel's pipe to the crash reporter, switched with consent.
 *
 * With consent the kernel pipes each core to "|<reporter> %P %e %s %t"; without it
 * core_pattern names a file in a directory that does not exist (and the apps run with
 * RLIMIT_CORE 0), so nothing is written.
 *
 * The reporter's arguments are named here once: the pattern is built from this table,
 * and the reporter reads argv[TB_ARGV_PID] and so on, never by a bare position.
 */
#ifndef TB_COREPATTERN_H
#define TB_COREPATTERN_H

typedef enum {
    TB_ARGV_PID = 1, /* %P: the crashed process's pid in the initial pid namespace */
    TB_ARGV_EXE,     /* %e: its executable's name (comm, at most 15 characters) */
    TB_ARGV_SIGNAL,  /* %s: the signal that killed it */
    TB_ARGV_TIME,    /* %t: the time of the dump, seconds since the epoch */
    TB_ARGV_COUNT,   /* argc of a full invocation */
} tb_core_argv;

/* The specifier of each argument, indexed by tb_core_argv. */
extern const char *const tb_core_argv_spec[TB_ARGV_COUNT];

/* Write core_pattern for consent (1) or none (0); 1 when it changed, 0 when it was right, -1 on error. */
int tb_core_pattern_apply(int consent);
/* Under the state lock: load identity and sync state, decide consent now, apply it.
 * Every writer of the sync state calls this after saving, so a concurrent stale reader
 * can never leave core_pattern behind the newest state. Returns consent; when the lock
 * cannot be had it turns dumps off (a device that cannot keep its state sends nothing). */
int tb_core_pattern_refresh(void);

#endif
