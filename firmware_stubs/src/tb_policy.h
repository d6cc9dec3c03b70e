/* The reporter's decision: may this dump be sent now? Pure functions of the state. */
#ifndef TB_POLICY_H
#define TB_POLICY_H

#include "tb_state.h"

typedef enum {
    TB_DECIDE_UPLOAD = 0, /* send it */
    TB_DECIDE_OPTOUT,    /* no valid opt-in: never synced, or opted out */
    TB_DECIDE_STALE,     /* the last good sync is older than the validity on the board clock */
    TB_DECIDE_THROTTLED, /* the signature has its N dumps */
    TB_DECIDE_TOO_LARGE, /* over the service's size limit */
} tb_action;
/* Consent, freshness on the board clock, throttling, size (sig NULL: not known; size < 0: not known yet). */
tb_action tb_decide(int provisioned, const tb_sync_state *st, long long now, const char *sig, long long size);
/* The dump-skipped reason of an action (TB_SKIP_*), "upload" for TB_DECIDE_UPLOAD. */
const char *tb_action_reason(tb_action a);
int tb_consent_valid(int provisioned, const tb_sync_state *st, long long now);

#endif
