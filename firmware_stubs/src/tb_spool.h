/* The spool: dumps whose upload failed for a reason worth retrying (connection, timeout,
 * 5xx, bad response), kept in <state>/spool/<time>-<pid>.gz with a .meta beside it and
 * retried oldest first after the next good sync. Bounded in files and bytes (the oldest go
 * first); an opt-out empties it. */
#ifndef TB_SPOOL_H
#define TB_SPOOL_H

#include <stddef.h>

#include "tb_api.h"

#define TB_SPOOL_MAX_FILES 4
#define TB_SPOOL_MAX_BYTES (256 * 1024)

int tb_spool_put(const tb_dump *dump, const unsigned char *gz, size_t len);
int tb_spool_count(void);
void tb_spool_clear(void);
/* Retry the spooled dumps (consent and throttling checked again for each); returns how many were stored. */
int tb_spool_retry(const tb_identity *id, tb_sync_state *st);

#endif
