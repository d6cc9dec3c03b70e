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
} tb_dump;

/* One sync: saves the new state under the lock, applies core_pattern, empties the spool on an
 * opt-out, prints sync-ok or sync-fail. 0 on success; -1 (sync-fail printed) otherwise,
 * including when the answer was good but could not be saved (reason=state). */
int tb_api_sync(const tb_identity *id, int64_t deadline_ms, int quiet);

/* Upload one gzip'd core: intent then body, within deadline_ms; prints the outcome event. */
enum { TB_UP_OK = 0, TB_UP_SKIPPED = 1, TB_UP_RETRY = 2, TB_UP_FAILED = 3 };
int tb_api_upload(const tb_identity *id, tb_sync_state *st, const tb_dump *dump, const unsigned char *gz,
                  size_t gzlen, int64_t t0_ms, int64_t deadline_ms, int from_spool);

#endif
