/* tb-provision: give the board its identity and sync at once.
 *
 *   tb-provision --device-id <128 hex> --secret <secret> --service 10.0.2.2:<port>
 *                [--allow-remote-service]   a real board on a LAN: any IPv4 host (still no names);
 *                                           kept in the identity file as allow_remote=1
 *   tb-provision --from-cmdline [FILE]   (reads tb.device_id= tb.secret= tb.service= from /proc/cmdline;
 *                                         always strict: 10.0.2.2 or 127.x only)
 *   tb-provision --clear                 forget the identity (consent, spool and throttling go with it)
 *
 * A new identity resets the sync state, empties the spool and turns crash dumps
 * off until the first sync says otherwise. Exit 0 when provisioned and synced,
 * 1 when provisioned but the sync failed, 2 on bad input.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb_api.h"
#include "tb_corepattern.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_spool.h"
#include "tb_state.h"

static int usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: tb-provision --device-id ID --secret SECRET --service 10.0.2.2:PORT [--allow-remote-service] [--no-sync]\n"
            "       tb-provision --from-cmdline [FILE] [--no-sync]\n"
            "       tb-provision --clear\n");
    return code;
}

static void poke_syncd(int sig)
{
    char path[512];
    tb_path(path, sizeof path, tb_run_dir(), "syncd.pid");
    char *t = tb_read_file(path, NULL);
    if (t == NULL)
        return;
    int pid = atoi(t);
    free(t);
    if (pid > 1)
        kill(pid, sig);
}

static void reset_state(void)
{
    if (tb_sync_remove() != 0)
        tb_log("cannot remove the old sync state under %s", tb_state_dir());
    tb_spool_clear();
    tb_core_pattern_refresh();
}

static const char *cmdline_value(const char *text, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = strcspn(p + kl + 1, " \n");
            if (vl >= n)
                return NULL;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return out;
        }
        p = strpbrk(p, " \n");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    tb_set_prog("tb-provision");
    char dev[200] = "", secret[200] = "", service[128] = "";
    int from_cmdline = 0, no_sync = 0, allow_remote = 0;
    const char *cmdline_file = "/proc/cmdline";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(0);
        if (strcmp(a, "--clear") == 0) {
            tb_identity_clear();
            reset_state();
            poke_syncd(SIGUSR1);
            printf("identity cleared\n");
            return 0;
        }
        if (strcmp(a, "--no-sync") == 0) {
            no_sync = 1;
            continue;
        }
        if (strcmp(a, "--allow-remote-service") == 0) {
            allow_remote = 1;
            continue;
        }
        if (strcmp(a, "--from-cmdline") == 0) {
            from_cmdline = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-')
                cmdline_file = argv[++i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tb-provision: %s needs a value\n", a);
            return usage(2);
        }
        if (strcmp(a, "--device-id") == 0)
            snprintf(dev, sizeof dev, "%s", argv[++i]);
        else if (strcmp(a, "--secret") == 0)
            snprintf(secret, sizeof secret, "%s", argv[++i]);
        else if (strcmp(a, "--service") == 0)
            snprintf(service, sizeof service, "%s", argv[++i]);
        else {
            fprintf(stderr, "tb-provision: unknown argument '%s'\n", a);
            return usage(2);
        }
    }
    if (from_cmdline && allow_remote) {
        fprintf(stderr, "tb-provision: --allow-remote-service is not taken with --from-cmdline (a kernel command "
                        "line names only 10.0.2.2 or 127.x)\n");
        return 2;
    }
    if (from_cmdline) {
        char *text = tb_read_file(cmdline_file, NULL);
        if (text == NULL) {
            fprintf(stderr, "tb-provision: cannot read %s\n", cmdline_file);
            return 2;
        }
        int any = cmdline_value(text, "tb.device_id", dev, sizeof dev) != NULL;
        cmdline_value(text, "tb.secret", secret, sizeof secret);
        cmdline_value(text, "tb.service", service, sizeof service);
        free(text);
        if (!any) {
            printf("no tb.device_id on the kernel command line: staying unprovisioned\n");
            return 0;
        }
    }
    if (!dev[0] || !secret[0] || !service[0]) {
        fprintf(stderr, "tb-provision: --device-id, --secret and --service are all required\n");
        return usage(2);
    }
    for (char *p = dev; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    if (!tb_valid_device_id(dev)) {
        fprintf(stderr, "tb-provision: device id must be %d hex characters (got %zu characters)\n", TB_DEVICE_ID_HEX, strlen(dev));
        return 2;
    }
    if (!tb_valid_secret(secret)) {
        fprintf(stderr, "tb-provision: secret must be 1..%d letters, digits or '%s'\n", TB_SECRET_MAX, TB_SECRET_PUNCTUATION);
        return 2;
    }
    tb_identity id;
    memset(&id, 0, sizeof id);
    id.allow_remote = allow_remote;
    char err[200];
    if (tb_parse_service(service, allow_remote, id.host, sizeof id.host, &id.port, err, sizeof err) != 0) {
        fprintf(stderr, "tb-provision: %s\n", err);
        return 2;
    }
    snprintf(id.device_id, sizeof id.device_id, "%.*s", TB_DEVICE_ID_HEX, dev);
    snprintf(id.secret, sizeof id.secret, "%.*s", TB_SECRET_MAX, secret);
    tb_identity old;
    int same = tb_identity_load(&old) == 0 && strcmp(old.device_id, id.device_id) == 0 &&
               strcmp(old.secret, id.secret) == 0 && strcmp(old.host, id.host) == 0 && old.port == id.port &&
               old.allow_remote == id.allow_remote;
    if (!same)
        reset_state();
    if (tb_identity_save(&id) != 0) {
        fprintf(stderr, "tb-provision: cannot write the identity under %s\n", tb_state_dir());
        return 1;
    }
    char service_text[96];
    snprintf(service_text, sizeof service_text, "%s:%d", id.host, id.port);
    tb_ev e;
    tb_ev_begin(&e, TB_EV_PROVISIONED);
    tb_ev_str(&e, TB_K_DEVICE, id.device_id);
    tb_ev_str(&e, TB_K_SERVICE, service_text);
    tb_ev_emit(&e);
    if (no_sync) {
        poke_syncd(SIGUSR2);
        return 0;
    }
    int r = tb_api_sync(&id, tb_mono_ms() + TB_DEADLINE_MS, 0);
    poke_syncd(SIGUSR1);
    return r == 0 ? 0 : 1;
}
