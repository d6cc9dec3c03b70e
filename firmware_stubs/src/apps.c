/* The apps file of the app manager (tb_apps.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_apps.h"
#include "tb_contract.h"
#include "tb_events.h"
#include "tb_files.h"

int tb_apps_load(const char *file, app_t *apps, int max)
{
    char *text = tb_read_file(file, NULL);
    if (text == NULL) {
        tb_log("no apps file %s: running the default app crashapp", file);
        text = strdup("crashapp /usr/bin/crashapp --mode idle\n");
    }
    int napps = 0;
    char *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *tok[MAX_ARGS + 3];
        int nt = 0;
        char *s2 = NULL;
        for (char *t = strtok_r(line, " \t", &s2); t && nt < MAX_ARGS + 2; t = strtok_r(NULL, " \t", &s2))
            tok[nt++] = t;
        if (nt == 0)
            continue;
        if (napps == max) {
            tb_log("%s:%d: more than %d apps; ignoring the rest", file, lineno, max);
            break;
        }
        app_t *a = &apps[napps];
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "%s", tok[0]);
        a->data_kib = TB_APP_DATA_LIMIT_BYTES / 1024;
        int k = 1;
        if (k < nt && strncmp(tok[k], "data_kib=", 9) == 0)
            a->data_kib = strtol(tok[k++] + 9, NULL, 10);
        if (k >= nt || tok[k][0] != '/') {
            tb_log("%s:%d: app %s needs an absolute command path", file, lineno, a->name);
            continue;
        }
        int na = 0;
        for (; k < nt && na < MAX_ARGS; k++)
            a->argv[na++] = strdup(tok[k]);
        a->argv[na] = NULL;
        napps++;
    }
    free(text);
    return napps;
}

