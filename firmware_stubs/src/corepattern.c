/* core_pattern switching (tb_corepattern.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb_corepattern.h"
#include "tb_events.h"
#include "tb_files.h"
#include "tb_policy.h"

#define TB_NO_CORE_PATTERN "/nonexistent-testbed-no-consent/core"

const char *const tb_core_argv_spec[TB_ARGV_COUNT] = {
    [TB_ARGV_PID] = "%P",
    [TB_ARGV_EXE] = "%e",
    [TB_ARGV_SIGNAL] = "%s",
    [TB_ARGV_TIME] = "%t",
};

static void pattern(int consent, char *want, size_t n)
{
    if (!consent) {
        snprintf(want, n, "%s", TB_NO_CORE_PATTERN);
        return;
    }
    size_t k = (size_t)snprintf(want, n, "|%s", tb_reporter_path());
    for (int i = TB_ARGV_PID; i < TB_ARGV_COUNT && k < n; i++)
        k += (size_t)snprintf(want + k, n - k, " %s", tb_core_argv_spec[i]);
}

int tb_core_pattern_apply(int consent)
{
    char want[300];
    pattern(consent, want, sizeof want - 1);
    const char *path = tb_core_pattern_path();
    char *cur = tb_read_file(path, NULL);
    if (cur != NULL) {
        size_t l = strlen(cur);
        while (l > 0 && (cur[l - 1] == '\n' || cur[l - 1] == ' '))
            cur[--l] = '\0';
        int same = strcmp(cur, want) == 0;
        free(cur);
        if (same)
            return 0;
    }
    int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tb_log("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t l = strlen(want);
    want[l] = '\n';
    ssize_t w = write(fd, want, l + 1);
    close(fd);
    if (w != (ssize_t)(l + 1)) {
        tb_log("cannot write %s", path);
        return -1;
    }
    return 1;
}

int tb_core_pattern_refresh(void)
{
    tb_sync_state *st = malloc(sizeof *st);
    if (st == NULL)
        return -1;
    int fd = tb_state_lock();
    int consent = 0;
    if (fd >= 0) {
        tb_identity id;
        int prov = tb_identity_load(&id) == 0;
        tb_sync_load(st);
        consent = tb_consent_valid(prov, st, tb_wall_s());
    } /* else: no state lock (logged once): crash dumps off */
    tb_core_pattern_apply(consent);
    tb_state_unlock(fd);
    free(st);
    return consent;
}
