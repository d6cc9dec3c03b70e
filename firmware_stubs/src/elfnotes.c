/* The notes of an ELF core (elfread.h): the walk, and the CORE notes into a tb_core
 * (NT_PRSTATUS of the crashing thread, NT_PRPSINFO, NT_FILE). Layouts: see elfcore.c. */
#include <stdio.h>
#include <string.h>

#include "elfread.h"

int tb_elf_rd(buf_t b, size_t off, size_t size, uint64_t *v)
{
    if (off > b.n || size > b.n - off)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < size; i++)
        x |= (uint64_t)b.d[off + i] << (8 * i);
    *v = x;
    return 0;
}

/* Walk the notes in b; -1 on a truncated note. */
int tb_elf_walk_notes(buf_t b, note_cb cb, void *arg)
{
    size_t pos = 0;
    while (pos + 12 <= b.n) {
        uint64_t namesz = 0, descsz = 0, type = 0;
        tb_elf_rd(b, pos, 4, &namesz);
        tb_elf_rd(b, pos + 4, 4, &descsz);
        tb_elf_rd(b, pos + 8, 4, &type);
        size_t name_at = pos + 12;
        uint64_t desc_at = name_at + ((namesz + 3) & ~(uint64_t)3);
        if (desc_at > b.n || descsz > b.n - desc_at)
            return -1;
        size_t nlen = (size_t)namesz;
        while (nlen > 0 && b.d[name_at + nlen - 1] == '\0')
            nlen--;
        buf_t desc = {b.d + desc_at, (size_t)descsz};
        int r = cb((const char *)b.d + name_at, nlen, (uint32_t)type, desc, arg);
        if (r != 0)
            return r > 0 ? 0 : r;
        pos = (size_t)(desc_at + ((descsz + 3) & ~(uint64_t)3));
    }
    return 0;
}

static int parse_prstatus(tb_core *core, buf_t d, const char **err)
{
    uint64_t v = 0;
    if (core->machine == EM_ARM) {
        if (d.n < 148) {
            *err = "ARM NT_PRSTATUS shorter than 148 bytes";
            return -1;
        }
        tb_elf_rd(d, 12, 2, &v);
        core->signal = (int)v;
        tb_elf_rd(d, 24, 4, &v);
        core->pid = (int)(int32_t)v;
        tb_elf_rd(d, 124, 4, &core->sp);
        tb_elf_rd(d, 128, 4, &core->lr);
        tb_elf_rd(d, 132, 4, &core->pc);
        core->has_lr = 1;
        return 0;
    }
    if (core->machine == EM_X86_64) {
        if (d.n < 336) {
            *err = "x86-64 NT_PRSTATUS shorter than 336 bytes";
            return -1;
        }
        tb_elf_rd(d, 12, 2, &v);
        core->signal = (int)v;
        tb_elf_rd(d, 32, 4, &v);
        core->pid = (int)(int32_t)v;
        tb_elf_rd(d, 112 + 16 * 8, 8, &core->pc);
        tb_elf_rd(d, 112 + 19 * 8, 8, &core->sp);
        core->has_lr = 0;
        return 0;
    }
    if (core->machine == EM_AARCH64) {
        if (d.n < 392) {
            *err = "AArch64 NT_PRSTATUS shorter than 392 bytes";
            return -1;
        }
        tb_elf_rd(d, 12, 2, &v);
        core->signal = (int)v;
        tb_elf_rd(d, 32, 4, &v);
        core->pid = (int)(int32_t)v;
        tb_elf_rd(d, 112 + 30 * 8, 8, &core->lr);
        tb_elf_rd(d, 112 + 31 * 8, 8, &core->sp);
        tb_elf_rd(d, 112 + 32 * 8, 8, &core->pc);
        core->has_lr = 1;
        return 0;
    }
    *err = "unsupported ELF machine (ARM, x86-64 and AArch64 are read)";
    return -1;
}

static int parse_nt_file(tb_core *core, int cls, buf_t d, const char **err)
{
    size_t w = cls == 1 ? 4 : 8;
    uint64_t count = 0, page = 0;
    if (tb_elf_rd(d, 0, w, &count) || tb_elf_rd(d, w, w, &page)) {
        *err = "truncated NT_FILE note";
        return -1;
    }
    size_t table = 2 * w;
    if (count > (d.n - table) / (3 * w)) {
        *err = "truncated NT_FILE note";
        return -1;
    }
    size_t names = table + (size_t)count * 3 * w;
    size_t pos = names;
    core->nmaps = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (pos >= d.n) {
            *err = "NT_FILE note names fewer files than it counts";
            return -1;
        }
        const char *name = (const char *)d.d + pos;
        const void *nul = memchr(name, '\0', d.n - pos);
        if (nul == NULL) {
            *err = "NT_FILE file name not terminated";
            return -1;
        }
        if (core->nmaps < TB_MAX_MAPS) {
            tb_mapping *m = &core->maps[core->nmaps++];
            tb_elf_rd(d, table + i * 3 * w, w, &m->start);
            tb_elf_rd(d, table + i * 3 * w + w, w, &m->end);
            uint64_t pgoff = 0;
            tb_elf_rd(d, table + i * 3 * w + 2 * w, w, &pgoff);
            m->file_offset = pgoff * page;
            m->path = name;
        }
        pos = (size_t)((const char *)nul - (const char *)d.d) + 1;
    }
    return 0;
}

int tb_core_note(const char *name, size_t namesz, uint32_t type, buf_t desc, void *argp)
{
    tb_core_notes *a = argp;
    if (namesz != 4 || memcmp(name, "CORE", 4) != 0)
        return 0;
    tb_core *core = a->core;
    if (type == NT_PRSTATUS && !a->have_prstatus) {
        a->have_prstatus = 1; /* the first thread's is the one that crashed */
        return parse_prstatus(core, desc, &a->err);
    }
    if (type == NT_PRPSINFO) {
        size_t at = core->elf_class == 1 ? 28 : 40;
        if (desc.n >= at + 16) {
            memcpy(core->exe, desc.d + at, 16);
            core->exe[16] = '\0';
        }
        return 0;
    }
    if (type == NT_FILE)
        return parse_nt_file(core, core->elf_class, desc, &a->err);
    return 0;
}

