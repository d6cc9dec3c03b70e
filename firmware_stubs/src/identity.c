/* The device's identity: device id, secret and the service it dials (tb_state.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb_files.h"
#include "tb_state.h"

#define IDENTITY_FILE "identity"

int tb_parse_service(const char *s, int allow_remote, char *host, size_t hostlen, int *port, char *err, size_t errlen)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        snprintf(err, errlen, "service address '%s' is not HOST:PORT", s);
        return -1;
    }
    size_t hl = (size_t)(colon - s);
    char h[64];
    if (hl >= sizeof h || hl >= hostlen) {
        snprintf(err, errlen, "service host too long");
        return -1;
    }
    memcpy(h, s, hl);
    h[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*(colon + 1) == '\0' || *end != '\0' || p < 1 || p > 65535) {
        snprintf(err, errlen, "service port '%s' is not a number from 1 to 65535", colon + 1);
        return -1;
    }
    int a, b, c, d;
    char extra;
    int ok = sscanf(h, "%d.%d.%d.%d%c", &a, &b, &c, &d, &extra) == 4 && a >= 0 && a <= 255 && b >= 0 &&
             b <= 255 && c >= 0 && c <= 255 && d >= 0 && d <= 255;
    for (const char *q = h; ok && *q; q++)
        if (!isdigit((unsigned char)*q) && *q != '.')
            ok = 0;
    if (!ok) {
        snprintf(err, errlen, "service address '%s' refused: the host must be a dotted-quad IPv4 address, not a name", h);
        return -1;
    }
    if (!allow_remote && !((a == 10 && b == 0 && c == 2 && d == 2) || a == 127)) {
        snprintf(err, errlen,
                 "service address '%s' refused: a board dials only 10.0.2.2 (the host's loopback) or 127.x.y.z "
                 "(a real board on a LAN: tb-provision --allow-remote-service)",
                 h);
        return -1;
    }
    snprintf(host, hostlen, "%s", h);
    *port = (int)p;
    return 0;
}

int tb_valid_device_id(const char *id)
{
    size_t n = strlen(id);
    if (n != TB_DEVICE_ID_HEX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isdigit((unsigned char)id[i]) || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

int tb_valid_secret(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TB_SECRET_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || strchr(TB_SECRET_PUNCTUATION, s[i]) != NULL))
            return 0;
    return 1;
}

int tb_identity_load(tb_identity *id)
{
    char path[512], svc[128], remote[8] = "0";
    memset(id, 0, sizeof *id);
    tb_path(path, sizeof path, tb_state_dir(), IDENTITY_FILE);
    char *text = tb_read_file(path, NULL);
    if (text == NULL)
        return -1;
    char err[200];
    tb_kv_get(text, "allow_remote", remote, sizeof remote); /* absent (written before it existed): 0 */
    id->allow_remote = strcmp(remote, "1") == 0;
    int ok = tb_kv_get(text, "device_id", id->device_id, sizeof id->device_id) &&
             tb_kv_get(text, "secret", id->secret, sizeof id->secret) &&
             tb_kv_get(text, "service", svc, sizeof svc) && tb_valid_device_id(id->device_id) &&
             tb_parse_service(svc, id->allow_remote, id->host, sizeof id->host, &id->port, err, sizeof err) == 0;
    free(text);
    return ok ? 0 : -1;
}

int tb_identity_save(const tb_identity *id)
{
    char path[512], text[512];
    if (tb_mkdirs(tb_state_dir()) != 0)
        return -1;
    tb_path(path, sizeof path, tb_state_dir(), IDENTITY_FILE);
    int n = snprintf(text, sizeof text, "device_id=%s\nsecret=%s\nservice=%s:%d\nallow_remote=%d\n", id->device_id,
                     id->secret, id->host, id->port, id->allow_remote ? 1 : 0);
    return tb_write_file_atomic(path, text, (size_t)n);
}

int tb_identity_clear(void)
{
    char path[512];
    tb_path(path, sizeof path, tb_state_dir(), IDENTITY_FILE);
    return unlink(path);
}
