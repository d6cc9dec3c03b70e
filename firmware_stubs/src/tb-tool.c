/* tb-tool: the firmware's library from the command line, for tests and debugging.
 *
 *   tb-tool core FILE               parse an ELF core: key=value lines (signal, pid, pc, lr, sp, exe, build_id,
 *                                   pc_offset, signature, mappings)
 *   tb-tool signature EXE BUILDID SIGNAL PCOFFHEX
 *   tb-tool sha256 [FILE]           SHA-256 of FILE (or stdin), hex
 *   tb-tool decide PROVISIONED SYNCED OPTIN VALIDITY LAST_OK NOW THROTTLED(0|1) SIZE MAX_UPLOAD
 *   tb-tool json KEY str|int|bool|array < JSON
 *   tb-tool service [--allow-remote] ADDRESS   validate a service address (strict unless --allow-remote)
 *   tb-tool http HOST PORT PATH DEADLINE_MS [BODYFILE]   one POST with the total deadline; prints status, reason, ms
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb_contract.h"
#include "tb_elfcore.h"
#include "tb_files.h"
#include "tb_http.h"
#include "tb_json.h"
#include "tb_policy.h"
#include "tb_sha256.h"
#include "tb_state.h"

static void print_item(const char *s, void *ctx)
{
    (void)ctx;
    printf("%s\n", s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tb-tool core|signature|sha256|decide|json|service|http ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "core") == 0 && argc == 3) {
        size_t len;
        char *data = tb_read_file(argv[2], &len);
        if (data == NULL) {
            fprintf(stderr, "tb-tool: cannot read %s\n", argv[2]);
            return 2;
        }
        static tb_core core;
        char err[128], sig[TB_SIG_HEX + 1];
        if (tb_core_parse((unsigned char *)data, len, &core, err, sizeof err) != 0) {
            fprintf(stderr, "tb-tool: %s\n", err);
            free(data);
            return 1;
        }
        tb_core_signature(&core, sig);
        printf("class=%d\nmachine=%d\nsignal=%d\npid=%d\npc=0x%llx\nsp=0x%llx\n", core.elf_class, core.machine,
               core.signal, core.pid, (unsigned long long)core.pc, (unsigned long long)core.sp);
        if (core.has_lr)
            printf("lr=0x%llx\n", (unsigned long long)core.lr);
        printf("exe=%s\nbuild_id=%s\npc_offset=0x%llx\nsignature=%s\nsegments=%d\n", core.exe,
               core.build_id[0] ? core.build_id : "-", (unsigned long long)tb_core_pc_offset(&core), sig, core.nsegs);
        for (int i = 0; i < core.nmaps; i++)
            printf("map=0x%llx-0x%llx@0x%llx %s\n", (unsigned long long)core.maps[i].start,
                   (unsigned long long)core.maps[i].end, (unsigned long long)core.maps[i].file_offset,
                   core.maps[i].path);
        free(data); /* after the mapping paths, which point into it */
        return 0;
    }
    if (strcmp(cmd, "signature") == 0 && argc == 6) {
        char sig[TB_SIG_HEX + 1];
        tb_signature(argv[2], argv[3], atoi(argv[4]), strtoull(argv[5], NULL, 16), sig);
        printf("%s\n", sig);
        return 0;
    }
    if (strcmp(cmd, "sha256") == 0) {
        int fd = argc > 2 ? open(argv[2], O_RDONLY) : 0;
        if (fd < 0)
            return 2;
        tb_sha256 c;
        tb_sha256_init(&c);
        unsigned char buf[4096], d[32];
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0)
            tb_sha256_update(&c, buf, (size_t)r);
        tb_sha256_final(&c, d);
        char hex[65];
        tb_hex(d, 32, hex);
        printf("%s\n", hex);
        return 0;
    }
    if (strcmp(cmd, "decide") == 0 && argc == 11) {
        tb_sync_state st;
        tb_sync_defaults(&st);
        st.synced = atoi(argv[3]);
        st.opt_in = atoi(argv[4]);
        st.validity = atoll(argv[5]);
        st.last_ok = atoll(argv[6]);
        const char *sig = "0123456789abcdef0123456789abcdef";
        if (atoi(argv[8]))
            tb_sync_add_throttled(&st, sig);
        st.max_upload = atoll(argv[10]);
        printf("%s\n", tb_action_reason(tb_decide(atoi(argv[2]), &st, atoll(argv[7]), sig, atoll(argv[9]))));
        return 0;
    }
    if (strcmp(cmd, "json") == 0 && argc == 4) {
        char *json = NULL;
        size_t len;
        unsigned char *buf;
        int trunc;
        if (tb_read_all_fd(0, 1 << 20, &buf, &len, &trunc) != 0)
            return 2;
        json = (char *)buf;
        json[len] = '\0';
        const char *type = argv[3];
        int r = -1;
        if (strcmp(type, "str") == 0) {
            char out[256];
            r = tb_json_str(json, argv[2], out, sizeof out);
            if (r == 0)
                printf("%s\n", out);
        } else if (strcmp(type, "int") == 0) {
            long long v;
            r = tb_json_int(json, argv[2], &v);
            if (r == 0)
                printf("%lld\n", v);
        } else if (strcmp(type, "bool") == 0) {
            int v;
            r = tb_json_bool(json, argv[2], &v);
            if (r == 0)
                printf("%s\n", v ? "true" : "false");
        } else if (strcmp(type, "array") == 0) {
            r = tb_json_str_array(json, argv[2], print_item, NULL) < 0 ? -1 : 0;
        }
        free(json);
        return r == 0 ? 0 : 1;
    }
    if (strcmp(cmd, "service") == 0 && (argc == 3 || (argc == 4 && strcmp(argv[2], "--allow-remote") == 0))) {
        char host[64], err[200];
        int port;
        if (tb_parse_service(argv[argc - 1], argc == 4, host, sizeof host, &port, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        printf("%s %d\n", host, port);
        return 0;
    }
    if (strcmp(cmd, "http") == 0 && (argc == 6 || argc == 7)) {
        size_t blen = 0;
        char *body = argc == 7 ? tb_read_file(argv[6], &blen) : NULL;
        tb_http_result res;
        int64_t t0 = tb_mono_ms();
        int r = tb_http_request(argv[2], atoi(argv[3]), "POST", argv[4], TB_HDR_CONTENT_TYPE ": application/octet-stream\r\n",
                                body, blen, t0 + atoll(argv[5]), &res);
        printf("rc=%d\nstatus=%d\nreason=%s\nms=%lld\nbody=%s\n", r, res.status, res.reason,
               (long long)(tb_mono_ms() - t0), res.body ? res.body : "");
        tb_http_free(&res);
        free(body);
        return r == 0 ? 0 : 1;
    }
    fprintf(stderr, "tb-tool: unknown command or wrong arguments: %s\n", cmd);
    return 2;
}
