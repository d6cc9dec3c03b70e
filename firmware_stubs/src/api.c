/* The device API calls (tb_api.h, docs/device-api.md). Every path, header, field, reason and
 * event name comes from tb_contract.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_api.h"
#include "tb_corepattern.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_http.h"
#include "tb_json.h"
#include "tb_spool.h"
#include "tb_version.h"

#define HDR(name, fmt) name ": " fmt "\r\n"

static int auth_header(const tb_identity *id, char *out, size_t n)
{
    return snprintf(out, n, HDR(TB_HDR_AUTHORIZATION, TB_AUTH_FORMAT), id->device_id, id->secret);
}

int tb_dump_new_upload_id(tb_dump *d) { return tb_random_hex(d->upload_id, TB_UPLOAD_ID_HEX / 2); }

int tb_valid_upload_id(const char *text)
{
    size_t n = strlen(text);
    if (n != TB_UPLOAD_ID_HEX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
            return 0;
    return 1;
}

static void add_sig(const char *s, void *ctx) { tb_sync_add_throttled((tb_sync_state *)ctx, s); }

static void sync_fail(const char *reason, int quiet)
{
    tb_ev e;
    tb_ev_begin(&e, TB_EV_SYNC_FAIL);
    tb_ev_str(&e, TB_K_REASON, reason);
    tb_ev_emit(&e);
    if (!quiet)
        printf("sync failed: %s\n", reason);
}

/* The sync answer into a fresh state; the reason when it is not a good one. */
static const char *read_sync_answer(const char *body, long long now, tb_sync_state *fresh)
{
    int opt_in;
    long long validity;
    if (tb_json_bool(body, TB_SYNC_OPT_IN, &opt_in) != 0 || tb_json_int(body, TB_SYNC_VALIDITY_SECONDS, &validity) != 0 ||
        validity <= 0)
        return TB_SYNCFAIL_BAD_RESPONSE;
    fresh->synced = 1;
    fresh->opt_in = opt_in;
    fresh->validity = validity;
    fresh->last_ok = now;
    fresh->last_attempt = now;
    tb_json_str(body, TB_SYNC_BOUNDARY, fresh->boundary, sizeof fresh->boundary);
    tb_json_int(body, TB_SYNC_SERVER_TIME, &fresh->server_time);
    tb_json_int(body, TB_SYNC_MAX_UPLOAD_BYTES, &fresh->max_upload);
    tb_json_int(body, TB_SYNC_MAX_INFLATED_BYTES, &fresh->max_inflated);
    tb_json_str(body, TB_SYNC_DEVICE_GROUP_ID, fresh->group, sizeof fresh->group);
    tb_json_str_array(body, TB_SYNC_THROTTLED_SIGNATURES, add_sig, fresh);
    return NULL;
}

int tb_api_sync(const tb_identity *id, int64_t deadline_ms, int quiet)
{
    long long now = tb_wall_s();
    char headers[512], body[256];
    int hl = auth_header(id, headers, sizeof headers);
    snprintf(headers + hl, sizeof headers - (size_t)hl, HDR(TB_HDR_CONTENT_TYPE, "%s"), TB_JSON_CONTENT_TYPE);
    int n = snprintf(body, sizeof body,
                     "{\"" TB_SYNC_REQ_FIRMWARE_VERSION "\": \"%s\", \"" TB_SYNC_REQ_DEVICE_TIME
                     "\": %lld, \"" TB_SYNC_REQ_SPOOLED "\": %d}",
                     TB_VERSION, now, tb_spool_count());
    tb_http_result res;
    int r = tb_http_request(id->host, id->port, "POST", TB_PATH_SYNC, headers, body, (size_t)n, deadline_ms, &res);
    const char *reason = NULL;
    if (r != 0 || res.status != 200)
        reason = res.reason[0] ? res.reason : TB_SYNCFAIL_BAD_RESPONSE;
    /* ~33 KiB (the throttled list): on the heap */
    tb_sync_state *fresh = malloc(sizeof *fresh);
    if (fresh == NULL) {
        tb_http_free(&res);
        return -1;
    }
    tb_sync_defaults(fresh);
    if (reason == NULL)
        reason = read_sync_answer(res.body, now, fresh);
    char why[16];
    snprintf(why, sizeof why, "%s", reason ? reason : "");
    tb_http_free(&res);
    if (why[0]) {
        if (tb_sync_persist_attempt(now) != 0) /* a failed sync never extends consent */
            tb_log("could not record the failed sync attempt");
        sync_fail(why, quiet);
        tb_core_pattern_refresh();
        free(fresh);
        return -1;
    }
    if (tb_sync_persist(fresh) != 0) {
        /* the answer was good but the device cannot keep it: consent stays what it was */
        sync_fail(TB_SYNCFAIL_STATE, quiet);
        tb_core_pattern_refresh();
        free(fresh);
        return -1;
    }
    if (!fresh->opt_in)
        tb_spool_clear(); /* an opt-out empties the spool */
    tb_core_pattern_refresh();
    tb_ev e;
    tb_ev_begin(&e, TB_EV_SYNC_OK);
    tb_ev_int(&e, TB_K_OPTIN, fresh->opt_in);
    tb_ev_str(&e, TB_K_BOUNDARY, fresh->boundary);
    tb_ev_int(&e, TB_K_VALIDITY, fresh->validity);
    tb_ev_int(&e, TB_K_THROTTLED, fresh->nthrottled);
    tb_ev_emit(&e);
    if (!quiet)
        printf("sync ok: " TB_SYNC_OPT_IN "=%s boundary=%s validity=%llds throttled=%d\n", fresh->opt_in ? "true" : "false",
               fresh->boundary, fresh->validity, fresh->nthrottled);
    free(fresh);
    return 0;
}

/* Worth keeping in the spool: the service may take it later. */
static int retryable(const char *reason, int status)
{
    return status >= 500 || strcmp(reason, TB_FAIL_CONNECT) == 0 || strcmp(reason, TB_FAIL_TIMEOUT) == 0 ||
           strcmp(reason, TB_FAIL_BAD_RESPONSE) == 0;
}

static void upload_fail(const char *reason, const char *stage, const tb_dump *d, long long ms, int spooled)
{
    tb_ev e;
    tb_ev_begin(&e, TB_EV_UPLOAD_FAIL);
    tb_ev_str(&e, TB_K_REASON, reason);
    tb_ev_str(&e, TB_K_STAGE, stage);
    tb_ev_str(&e, TB_K_SIG, d->sig);
    tb_ev_int(&e, TB_K_MS, ms);
    if (spooled)
        tb_ev_int(&e, TB_K_SPOOLED, 1);
    if (d->upload_id[0])
        tb_ev_str(&e, TB_K_UPLOAD_ID, d->upload_id);
    tb_ev_emit(&e);
}

/* A refusal by status that is a skip, not a failure: its dump-skipped reason, or NULL. */
static const char *refusal(int status)
{
    switch (status) {
    case 403: return TB_SKIP_OPTOUT;
    case 413: return TB_SKIP_TOO_LARGE;
    case 429: return TB_SKIP_RATELIMIT;
    }
    return NULL;
}

/* The service's intent skip reason as a dump-skipped reason (an unknown one is "intent"). */
static const char *intent_skip_reason(const char *why)
{
    if (strcmp(why, TB_SERVICE_SKIP_OPTOUT) == 0)
        return TB_SKIP_OPTOUT;
    if (strcmp(why, TB_SERVICE_SKIP_THROTTLED) == 0)
        return TB_SKIP_THROTTLED;
    if (strcmp(why, TB_SERVICE_SKIP_TOO_LARGE) == 0)
        return TB_SKIP_TOO_LARGE;
    return TB_SKIP_INTENT;
}

static void throttled(tb_sync_state *st, const char *sig)
{
    tb_sync_add_throttled(st, sig);
    if (tb_sync_persist_throttled(sig) != 0)
        tb_log("could not record the throttled signature %s", sig);
}

/* The intent: TB_UP_OK to go on with the body, else the outcome (event printed). */
static int intent(const tb_identity *id, tb_sync_state *st, const tb_dump *d, const char *auth, size_t gzlen,
                  int64_t t0_ms, int64_t deadline_ms, int spooled)
{
    char headers[1024], body[512], comp[2 * TB_COMPONENT_NAME_MAX + 8];
    tb_json_escape(d->component, comp, sizeof comp);
    int n = snprintf(body, sizeof body,
                     "{\"" TB_INTENT_REQ_SIGNATURE "\": \"%s\", \"" TB_INTENT_REQ_SIZE "\": %zu, \"" TB_INTENT_REQ_COMPONENT_CLASS
                     "\": \"%s\", \"" TB_INTENT_REQ_COMPONENT "\": \"%s\"}",
                     d->sig, gzlen, d->klass, comp);
    snprintf(headers, sizeof headers, "%s" HDR(TB_HDR_CONTENT_TYPE, "%s"), auth, TB_JSON_CONTENT_TYPE);
    tb_http_result res;
    int r = tb_http_request(id->host, id->port, "POST", TB_PATH_INTENT, headers, body, (size_t)n, deadline_ms, &res);
    if (r != 0 || res.status != 200) {
        char reason[16];
        snprintf(reason, sizeof reason, "%s", res.reason);
        int status = res.status;
        tb_http_free(&res);
        const char *skip = status == 403 || status == 429 ? refusal(status) : NULL;
        if (skip != NULL) {
            tb_event_dump_skipped(skip, NULL, d->sig, -1, spooled);
            return TB_UP_SKIPPED;
        }
        upload_fail(reason, TB_STAGE_INTENT, d, (long long)(tb_mono_ms() - t0_ms), spooled);
        return retryable(reason, status) ? TB_UP_RETRY : TB_UP_FAILED;
    }
    char action[16] = "", why[32] = "";
    tb_json_str(res.body, TB_INTENT_ACTION, action, sizeof action);
    tb_json_str(res.body, TB_INTENT_REASON, why, sizeof why);
    tb_http_free(&res);
    if (strcmp(action, TB_ACTION_UPLOAD) == 0)
        return TB_UP_OK;
    const char *skip = intent_skip_reason(why);
    if (strcmp(skip, TB_SKIP_THROTTLED) == 0)
        throttled(st, d->sig);
    tb_event_dump_skipped(skip, NULL, d->sig, -1, spooled);
    return TB_UP_SKIPPED;
}

int tb_api_upload(const tb_identity *id, tb_sync_state *st, const tb_dump *d, const unsigned char *gz, size_t gzlen,
                  int64_t t0_ms, int64_t deadline_ms, int spooled)
{
    char auth[512], headers[1024];
    auth_header(id, auth, sizeof auth);
    int r = intent(id, st, d, auth, gzlen, t0_ms, deadline_ms, spooled);
    if (r != TB_UP_OK)
        return r;

    char comp_h[TB_COMPONENT_NAME_MAX + 1];
    snprintf(comp_h, sizeof comp_h, "%s", d->component);
    for (char *p = comp_h; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = '_';
    int hl = snprintf(headers, sizeof headers,
                      "%s" HDR(TB_HDR_CONTENT_TYPE, TB_GZIP_CONTENT_TYPE) HDR(TB_HDR_SIGNATURE, "%s")
                          HDR(TB_HDR_COMPONENT_CLASS, "%s") HDR(TB_HDR_COMPONENT_NAME, "%s")
                              HDR(TB_HDR_CRASH_TIME, "%lld"),
                      auth, d->sig, d->klass, comp_h, d->crash_time);
    if (tb_valid_upload_id(d->upload_id) && hl > 0 && (size_t)hl < sizeof headers)
        snprintf(headers + hl, sizeof headers - (size_t)hl, HDR(TB_HDR_UPLOAD_ID, "%s"), d->upload_id);
    tb_http_result res;
    r = tb_http_request(id->host, id->port, "POST", TB_PATH_UPLOAD, headers, gz, gzlen, deadline_ms, &res);
    long long ms = (long long)(tb_mono_ms() - t0_ms);
    char dump_id[80] = "", region[32] = "";
    if (r == 0 && res.status == 201 &&
        (!res.complete || tb_json_str(res.body, TB_UPRESP_ID, dump_id, sizeof dump_id) != 0 || dump_id[0] == '\0')) {
        /* Stored or not, this answer does not say: the dump stays; its retry carries the same id. */
        tb_http_free(&res);
        upload_fail(TB_FAIL_BAD_RESPONSE, TB_STAGE_BODY, d, ms, spooled);
        return TB_UP_RETRY;
    }
    if (r == 0 && res.status == 201) {
        tb_json_str(res.body, TB_UPRESP_REGION, region, sizeof region);
        tb_http_free(&res);
        tb_ev e;
        tb_ev_begin(&e, TB_EV_UPLOAD_OK);
        tb_ev_str(&e, TB_K_ID, dump_id);
        tb_ev_str(&e, TB_K_REGION, region);
        tb_ev_int(&e, TB_K_BYTES, (long long)gzlen);
        tb_ev_int(&e, TB_K_MS, ms);
        tb_ev_str(&e, TB_K_SIG, d->sig);
        if (spooled)
            tb_ev_int(&e, TB_K_SPOOLED, 1);
        if (d->upload_id[0])
            tb_ev_str(&e, TB_K_UPLOAD_ID, d->upload_id);
        tb_ev_emit(&e);
        return TB_UP_OK;
    }
    if (r == 0 && res.status == 200) { /* {"skipped": "throttled"}: the service has its N */
        tb_http_free(&res);
        throttled(st, d->sig);
        tb_event_dump_skipped(TB_SKIP_THROTTLED, NULL, d->sig, -1, spooled);
        return TB_UP_SKIPPED;
    }
    int status = r == 0 ? res.status : 0;
    char reason[16];
    snprintf(reason, sizeof reason, "%s", res.reason);
    tb_http_free(&res);
    const char *skip = refusal(status);
    if (skip != NULL) {
        tb_event_dump_skipped(skip, NULL, d->sig, -1, spooled);
        return TB_UP_SKIPPED;
    }
    upload_fail(reason, TB_STAGE_BODY, d, ms, spooled);
    return retryable(reason, status) ? TB_UP_RETRY : TB_UP_FAILED;
}
