/* The device API calls (docs/device-api.md): sync, and an upload (intent, then the body). */
#ifndef TB_API_H
#define TB_API_H

#include <stddef.h>
#include <stdint.h>

#include "tb_contract.h"
#include "tb_state.h"

/* What is sent with one dump besides its bytes. */
typedef struct {
    char sig[TB_SIG_HEX + 1];
    char klass[8];                               /* TB_CLASS_APP or TB_CLASS_OS */
    char component[TB_COMPONENT_NAME_MAX + 1];
    long long crash_time;                        /* board wall clock, seconds */
    /* Made on the device when the dump is first attempted, kept with it in the spool and sent
     * with every attempt (TB_HDR_UPLOAD_ID): the service stores one id once and answers a
     * repeat with its first answer, so a retry after a lost answer is not a second copy. */
    char upload_id[TB_UPLOAD_ID_HEX + 1];
} tb_dump;

/* A fresh upload id (TB_UPLOAD_ID_HEX lowercase hex from /dev/urandom) into d->upload_id; 0 or -1. */
int tb_dump_new_upload_id(tb_dump *d);
/* Whether text is a well-formed upload id. */
int tb_valid_upload_id(const char *text);

/* One sync: saves the new state under the lock, applies core_pattern, empties the spool on an
 * opt-out, prints sync-ok or sync-fail. 0 on success; -1 (sync-fail printed) otherwise,
 * including when the answer was good but could not be saved (reason=state). */
int tb_api_sync(const tb_identity *id, int64_t deadline_ms, int quiet);

/* Upload one gzip'd core: intent then body, within deadline_ms; prints the outcome event.
 * Done (TB_UP_OK) only on a 201 whose whole JSON body carries the dump id; any other answer to
 * the body (garbage, cut off, over the read cap) is a bad-response that keeps the dump. */
enum { TB_UP_OK = 0, TB_UP_SKIPPED = 1, TB_UP_RETRY = 2, TB_UP_FAILED = 3 };
int tb_api_upload(const tb_identity *id, tb_sync_state *st, const tb_dump *dump, const unsigned char *gz,
                  size_t gzlen, int64_t t0_ms, int64_t deadline_ms, int from_spool);

#endif
