/* The crash signature of a parsed core (tb_elfcore.h): the executable, its build id, the
 * signal and the PC as an offset into the mapping that holds it (stable under ASLR). */
#include <stdio.h>
#include <string.h>

#include "tb_elfcore.h"
#include "tb_sha256.h"

uint64_t tb_core_pc_offset(const tb_core *core)
{
    const tb_mapping *hit = NULL;
    for (int i = 0; i < core->nmaps; i++)
        if (core->maps[i].start <= core->pc && core->pc < core->maps[i].end) {
            hit = &core->maps[i];
            break;
        }
    if (hit == NULL)
        return core->pc;
    uint64_t base = hit->start - hit->file_offset;
    for (int i = 0; i < core->nmaps; i++) {
        const tb_mapping *m = &core->maps[i];
        if (strcmp(m->path, hit->path) == 0 && m->start - m->file_offset < base)
            base = m->start - m->file_offset;
    }
    return core->pc - base;
}

void tb_signature(const char *exe, const char *build_id, int signal, uint64_t pc_offset, char out[TB_SIG_HEX + 1])
{
    char text[256];
    int n = snprintf(text, sizeof text, "%s|%s|%d|%llx", exe, build_id && build_id[0] ? build_id : "-", signal,
                     (unsigned long long)pc_offset);
    if (n < 0 || (size_t)n >= sizeof text)
        n = (int)sizeof text - 1;
    tb_sha256 c;
    unsigned char digest[32];
    tb_sha256_init(&c);
    tb_sha256_update(&c, text, (size_t)n);
    tb_sha256_final(&c, digest);
    tb_hex(digest, 16, out);
}

void tb_core_signature(const tb_core *core, char out[TB_SIG_HEX + 1])
{
    tb_signature(core->exe, core->build_id, core->signal, tb_core_pc_offset(core), out);
}
