/* testbed firmware stubs: shared declarations.
 *
 * The device side of the crash-dump pipeline: crash reporter, sync agent,
 * app manager, provisioning and the sample crashing apps. C11, no
 * dependencies beyond libc; built static for armhf and for the host.
 */
#ifndef TB_H
#define TB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define TB_VERSION "0.1.0"
#define TB_DEADLINE_MS 5000 /* one total deadline from the crash (seed: 5 s) */
#define TB_SIG_HEX 32

/* ---- paths (each overridable by an environment variable for host tests) ---- */
const char *tb_state_dir(void);   /* TB_STATE_DIR, default /var/lib/testbed */
const char *tb_run_dir(void);     /* TB_RUN_DIR, default /run/testbed */
const char *tb_console_path(void);/* TB_CONSOLE, default /dev/console */
const char *tb_core_pattern_path(void); /* TB_CORE_PATTERN_FILE, default /proc/sys/kernel/core_pattern */
const char *tb_reporter_path(void); /* TB_REPORTER, default /usr/sbin/crash-reporter */
const char *tb_gzip_path(void);   /* TB_GZIP, default gzip (from PATH) */
void tb_path(char *out, size_t n, const char *dir, const char *name);

/* ---- events and logging ---- */
void tb_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_set_prog(const char *name);

/* ---- time ---- */
int64_t tb_mono_ms(void);
int64_t tb_wall_s(void);

/* ---- files ---- */
int tb_mkdirs(const char *path);
int tb_write_file_atomic(const char *path, const void *data, size_t len);
char *tb_read_file(const char *path, size_t *len); /* malloc'd, NUL-terminated; NULL on error */
int tb_read_all_fd(int fd, size_t cap, unsigned char **out, size_t *len, int *truncated);

/* ---- SHA-256 ---- */
typedef struct {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} tb_sha256;
void tb_sha256_init(tb_sha256 *c);
void tb_sha256_update(tb_sha256 *c, const void *data, size_t n);
void tb_sha256_final(tb_sha256 *c, unsigned char out[32]);
void tb_hex(const unsigned char *in, size_t n, char *out);

/* ---- ELF cores ---- */
#define TB_MAX_MAPS 256
typedef struct {
    uint64_t start, end, file_offset;
    const char *path; /* points into the core buffer */
} tb_mapping;
typedef struct {
    int elf_class;     /* 1 = 32-bit, 2 = 64-bit */
    int machine;       /* EM_ARM 40, EM_X86_64 62, EM_AARCH64 183 */
    int signal;        /* pr_cursig of the first NT_PRSTATUS (the crashing thread) */
    int pid;
    uint64_t pc, lr, sp;
    int has_lr;
    char exe[17];      /* NT_PRPSINFO pr_fname */
    char build_id[129];/* hex, "" if none */
    int nmaps;
    tb_mapping maps[TB_MAX_MAPS];
    int nsegs;
} tb_core;
/* Returns 0 on success, else -1 with a reason in err. */
int tb_core_parse(const unsigned char *data, size_t len, tb_core *core, char *err, size_t errlen);
uint64_t tb_core_pc_offset(const tb_core *core);
/* The crash signature: first 16 bytes of SHA-256 of "exe|buildid|signal|pcoffsethex", as 32 hex. */
void tb_signature(const char *exe, const char *build_id, int signal, uint64_t pc_offset, char out[TB_SIG_HEX + 1]);
void tb_core_signature(const tb_core *core, char out[TB_SIG_HEX + 1]);

/* ---- flat JSON ---- */
/* Each returns 0 when the key is present with the right type, -1 otherwise. */
int tb_json_str(const char *json, const char *key, char *out, size_t n);
int tb_json_int(const char *json, const char *key, long long *out);
int tb_json_bool(const char *json, const char *key, int *out);
/* Array of strings: calls cb for each element; returns count or -1. */
int tb_json_str_array(const char *json, const char *key, void (*cb)(const char *s, void *ctx), void *ctx);
void tb_json_escape(const char *in, char *out, size_t n);

/* ---- service address, identity ---- */
typedef struct {
    char device_id[129];
    char secret[129];
    char host[64];
    int port;
} tb_identity;
/* Accepts only 10.0.2.2:<port> and 127.x.y.z:<port>. Returns 0 or -1 with err. */
int tb_parse_service(const char *s, char *host, size_t hostlen, int *port, char *err, size_t errlen);
int tb_valid_device_id(const char *id);
int tb_valid_secret(const char *s);
int tb_identity_load(tb_identity *id); /* 0 if provisioned */
int tb_identity_save(const tb_identity *id);

/* ---- sync state ---- */
#define TB_MAX_THROTTLED 1024
typedef struct {
    int synced;            /* ever synced successfully with this identity */
    int opt_in;
    char boundary[16];
    long long validity;    /* seconds */
    long long last_ok;     /* board wall clock of the last successful sync */
    long long last_attempt;/* board wall clock of the last attempt */
    long long server_time;
    long long max_upload;
    long long max_inflated;
    char group[80];
    int nthrottled;
    char throttled[TB_MAX_THROTTLED][TB_SIG_HEX + 1];
} tb_sync_state;
void tb_sync_defaults(tb_sync_state *st);
int tb_sync_load(tb_sync_state *st);  /* missing file: defaults, returns 0 */
int tb_sync_save(const tb_sync_state *st);
int tb_sync_is_throttled(const tb_sync_state *st, const char *sig);
/* Exclusive lock over the state files (flock); -1 if it cannot be had. Not reentrant. */
int tb_state_lock(void);
void tb_state_unlock(int fd);
/* Read-modify-write under the lock: add a throttled signature / record a failed attempt. */
void tb_sync_persist_throttled(const char *sig);
void tb_sync_persist_attempt(long long when);
void tb_sync_add_throttled(tb_sync_state *st, const char *sig);

/* ---- decisions ---- */
typedef enum {
    TB_UPLOAD = 0,
    TB_SKIP_OPTOUT,
    TB_SKIP_STALE,
    TB_SKIP_THROTTLED,
    TB_SKIP_TOO_LARGE,
} tb_action;
/* Pure: consent, freshness on the board clock, throttling, size (size < 0: not known yet). */
tb_action tb_decide(int provisioned, const tb_sync_state *st, long long now, const char *sig, long long size);
const char *tb_action_reason(tb_action a);
int tb_consent_valid(int provisioned, const tb_sync_state *st, long long now);

/* ---- HTTP (one request per connection, one total deadline) ---- */
typedef struct {
    int status;            /* 0 when no response */
    char reason[16];       /* "connect", "timeout", "http-NNN", "bad-response" or "" */
    long long retry_after;
    char *body;            /* malloc'd, NUL-terminated */
    size_t body_len;
} tb_http_result;
/* deadline_ms is an absolute tb_mono_ms() value. Returns 0 when a response was read. */
int tb_http_request(const char *host, int port, const char *method, const char *path,
                    const char *headers, const void *body, size_t body_len,
                    int64_t deadline_ms, tb_http_result *res);
void tb_http_free(tb_http_result *res);
int tb_link_down(void); /* 1 when the network interface reports no carrier */

/* ---- device API calls ---- */
int tb_api_sync(const tb_identity *id, int64_t deadline_ms, int quiet);
/* Upload one gzip'd core: intent then body. Returns an outcome code below; prints events. */
enum { TB_UP_OK = 0, TB_UP_SKIPPED = 1, TB_UP_RETRY = 2, TB_UP_FAILED = 3 };
int tb_api_upload(const tb_identity *id, tb_sync_state *st, const char *sig, const char *klass,
                  const char *component, long long crash_time, const unsigned char *gz, size_t gzlen,
                  int64_t t0_ms, int64_t deadline_ms, int from_spool);

/* ---- gzip through busybox ---- */
int tb_gzip(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen, int64_t deadline_ms);

/* ---- spool ---- */
#define TB_SPOOL_MAX_FILES 4
#define TB_SPOOL_MAX_BYTES (256 * 1024)
int tb_spool_put(const char *sig, const char *klass, const char *component, long long crash_time,
                 const unsigned char *gz, size_t len);
int tb_spool_count(void);
void tb_spool_clear(void);
int tb_spool_retry(const tb_identity *id, tb_sync_state *st);

/* ---- core_pattern ---- */
int tb_core_pattern_apply(int consent);
/* Under the state lock: load identity and sync state, decide consent now, apply it.
 * Every writer of the sync state calls this after saving, so a concurrent stale
 * reader can never leave core_pattern behind the newest state. Returns consent. */
int tb_core_pattern_refresh(void);

/* ---- appmgr notifications (unix datagram socket in the run dir) ---- */
void tb_notify_appmgr(const char *msg);

#endif
