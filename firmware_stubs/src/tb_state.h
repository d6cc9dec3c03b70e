/* The device's state under TB_STATE_DIR: its identity (identity.c) and its sync state and
 * the lock over both (syncstate.c).
 *
 * Files: <state>/identity and <state>/sync.state ("key=value" lines, written atomically),
 * <state>/.lock (flock). Every read-modify-write of the sync state holds the lock.
 */
#ifndef TB_STATE_H
#define TB_STATE_H

#include <stddef.h>

#include "tb_contract.h"

/* ---- identity ---- */
typedef struct {
    char device_id[TB_DEVICE_ID_HEX + 1];
    char secret[TB_SECRET_MAX + 1];
    char host[64];
    int port;
    int allow_remote; /* provisioned with --allow-remote-service ("allow_remote=1" in the identity file) */
} tb_identity;
/* HOST:PORT, port 1..65535, host a dotted-quad IPv4 address (never a name). Without allow_remote
 * only 10.0.2.2 (the host seen from a QEMU board) and 127.x.y.z; with it any IPv4 address (a real
 * board dialling the host's LAN address). 0, or -1 with err. */
int tb_parse_service(const char *s, int allow_remote, char *host, size_t hostlen, int *port, char *err, size_t errlen);
int tb_valid_device_id(const char *id);
int tb_valid_secret(const char *s);
int tb_identity_load(tb_identity *id); /* 0 if provisioned */
int tb_identity_save(const tb_identity *id);
int tb_identity_clear(void);

/* ---- sync state ---- */
#define TB_MAX_THROTTLED 1024
typedef struct {
    int synced;             /* ever synced successfully with this identity */
    int opt_in;
    char boundary[16];
    long long validity;     /* seconds */
    long long last_ok;      /* board wall clock of the last successful sync */
    long long last_attempt; /* board wall clock of the last attempt */
    long long server_time;
    long long max_upload;
    long long max_inflated;
    char group[80];
    int nthrottled;
    char throttled[TB_MAX_THROTTLED][TB_SIG_HEX + 1];
} tb_sync_state;
void tb_sync_defaults(tb_sync_state *st);
int tb_sync_load(tb_sync_state *st); /* missing file: defaults, returns 0 */
int tb_sync_save(const tb_sync_state *st); /* 0, or -1 (logged) */
int tb_sync_remove(void);
int tb_sync_is_throttled(const tb_sync_state *st, const char *sig);
void tb_sync_add_throttled(tb_sync_state *st, const char *sig);

/* Exclusive lock over the state files (flock); -1 (logged) if it cannot be had. Not reentrant. */
int tb_state_lock(void);
void tb_state_unlock(int fd);
/* Read-modify-write under the lock: add a throttled signature / record a failed attempt.
 * 0, or -1 when the lock or the write failed (logged; the state is left as it was). */
int tb_sync_persist_throttled(const char *sig);
int tb_sync_persist_attempt(long long when);
/* Save a fresh sync state under the lock: 0, or -1 (logged). */
int tb_sync_persist(const tb_sync_state *st);

#endif
