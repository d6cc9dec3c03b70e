/* The reporter's decision (tb_policy.h). */
#include <stddef.h>

#include "tb_contract.h"
#include "tb_policy.h"

int tb_consent_valid(int provisioned, const tb_sync_state *st, long long now)
{
    return tb_decide(provisioned, st, now, NULL, -1) == TB_DECIDE_UPLOAD;
}

tb_action tb_decide(int provisioned, const tb_sync_state *st, long long now, const char *sig, long long size)
{
    if (!provisioned || !st->synced || !st->opt_in)
        return TB_DECIDE_OPTOUT;
    long long age = now - st->last_ok;
    /* Older than the validity, or a clock set back before the last sync: freshness cannot be shown. */
    if (age > st->validity || age < 0)
        return TB_DECIDE_STALE;
    if (sig != NULL && tb_sync_is_throttled(st, sig))
        return TB_DECIDE_THROTTLED;
    if (size >= 0 && size > st->max_upload)
        return TB_DECIDE_TOO_LARGE;
    return TB_DECIDE_UPLOAD;
}

const char *tb_action_reason(tb_action a)
{
    switch (a) {
    case TB_DECIDE_UPLOAD: return TB_ACTION_UPLOAD;
    case TB_DECIDE_OPTOUT: return TB_SKIP_OPTOUT;
    case TB_DECIDE_STALE: return TB_SKIP_STALE_SYNC;
    case TB_DECIDE_THROTTLED: return TB_SKIP_THROTTLED;
    case TB_DECIDE_TOO_LARGE: return TB_SKIP_TOO_LARGE;
    }
    return "?";
}
