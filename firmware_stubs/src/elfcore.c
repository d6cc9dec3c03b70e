/* Reading an ELF core: the crashing thread's signal and registers, the executable's
 * name, its file mappings (NT_FILE) and GNU build id. Bounds-checked everywhere: the
 * input is whatever the kernel (or a test) pipes in.
 *
 * Layouts (Linux struct elf_prstatus / elf_prpsinfo):
 *   ARM 32-bit:  prstatus 148 bytes, pr_cursig @12, pr_pid @24, pr_reg[18] @72
 *                (SP @124, LR @128, PC @132); prpsinfo pr_fname @28
 *   x86-64:      prstatus 336 bytes, pr_cursig @12, pr_pid @32, pr_reg[27] @112
 *                (rip index 16, rsp index 19); prpsinfo pr_fname @40
 *   AArch64:     prstatus 392 bytes, pr_reg[34] @112 (x30 = LR, sp, pc)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elfread.h"
#include "tb_elfcore.h"
#include "tb_sha256.h"


typedef struct {
    uint64_t vaddr, offset, filesz;
} seg_t;

#define MAX_SEGS 512

typedef struct {
    buf_t all;
    int cls;
    int nsegs;
    seg_t segs[MAX_SEGS];
} ctx_t;

/* The bytes of [vaddr, vaddr+size) when one segment holds them all. */
static const unsigned char *mem_at(const ctx_t *c, uint64_t vaddr, uint64_t size)
{
    for (int i = 0; i < c->nsegs; i++) {
        const seg_t *s = &c->segs[i];
        if (s->vaddr <= vaddr && vaddr + size <= s->vaddr + s->filesz && vaddr + size >= vaddr)
            return c->all.d + s->offset + (vaddr - s->vaddr);
    }
    return NULL;
}

typedef struct {
    char *out;
    int found;
} bid_arg;

static int bid_note(const char *name, size_t namesz, uint32_t type, buf_t desc, void *argp)
{
    bid_arg *a = argp;
    if (namesz == 3 && memcmp(name, "GNU", 3) == 0 && type == NT_GNU_BUILD_ID && desc.n <= 64) {
        tb_hex(desc.d, desc.n, a->out);
        a->found = 1;
        return 1;
    }
    return 0;
}

/* The GNU build id of the ELF whose first page the core holds at base. */
static int build_id_at(const ctx_t *c, uint64_t base, char *out)
{
    const unsigned char *h = mem_at(c, base, 64);
    if (h == NULL || memcmp(h, "\x7f" "ELF", 4) != 0)
        return 0;
    int cls = h[4];
    buf_t hb = {h, 64};
    uint64_t phoff = 0, phentsize = 0, phnum = 0;
    if (cls == 1) {
        tb_elf_rd(hb, 28, 4, &phoff);
        tb_elf_rd(hb, 42, 2, &phentsize);
        tb_elf_rd(hb, 44, 2, &phnum);
    } else if (cls == 2) {
        tb_elf_rd(hb, 32, 8, &phoff);
        tb_elf_rd(hb, 54, 2, &phentsize);
        tb_elf_rd(hb, 56, 2, &phnum);
    } else {
        return 0;
    }
    if (phentsize < (cls == 1 ? 32u : 56u) || phnum > 4096)
        return 0;
    const unsigned char *t = mem_at(c, base + phoff, phentsize * phnum);
    if (t == NULL)
        return 0;
    buf_t tb = {t, (size_t)(phentsize * phnum)};
    for (uint64_t i = 0; i < phnum; i++) {
        size_t at = (size_t)(i * phentsize);
        uint64_t type = 0, off = 0, filesz = 0;
        tb_elf_rd(tb, at, 4, &type);
        if (type != PT_NOTE)
            continue;
        if (cls == 1) {
            tb_elf_rd(tb, at + 4, 4, &off);
            tb_elf_rd(tb, at + 16, 4, &filesz);
        } else {
            tb_elf_rd(tb, at + 8, 8, &off);
            tb_elf_rd(tb, at + 32, 8, &filesz);
        }
        const unsigned char *n = mem_at(c, base + off, filesz);
        if (n == NULL)
            continue;
        bid_arg a = {out, 0};
        buf_t nb = {n, (size_t)filesz};
        tb_elf_walk_notes(nb, bid_note, &a);
        if (a.found)
            return 1;
    }
    return 0;
}

static int path_is_exe(const char *path, const char *exe)
{
    const char *slash = strrchr(path, '/');
    return exe[0] != '\0' && slash != NULL && strcmp(slash + 1, exe) == 0;
}

int tb_core_parse(const unsigned char *data, size_t len, tb_core *core, char *err, size_t errlen)
{
    ctx_t *cp = calloc(1, sizeof *cp); /* ~12 KiB: heap, not stack or .bss */
    memset(core, 0, sizeof *core);
    if (cp == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
#define c (*cp)
    c.all.d = data;
    c.all.n = len;
    const char *why = NULL;
    if (len < 52 || memcmp(data, "\x7f" "ELF", 4) != 0) {
        why = "not an ELF file";
        goto fail;
    }
    c.cls = data[4];
    if (c.cls != 1 && c.cls != 2) {
        why = "bad ELF class";
        goto fail;
    }
    if (data[5] != 1) {
        why = "only little-endian cores are read";
        goto fail;
    }
    uint64_t etype = 0, machine = 0, phoff = 0, phentsize = 0, phnum = 0;
    tb_elf_rd(c.all, 16, 2, &etype);
    tb_elf_rd(c.all, 18, 2, &machine);
    if (etype != 4) {
        why = "not an ELF core (e_type is not ET_CORE)";
        goto fail;
    }
    core->elf_class = c.cls;
    core->machine = (int)machine;
    if (c.cls == 1) {
        tb_elf_rd(c.all, 28, 4, &phoff);
        tb_elf_rd(c.all, 42, 2, &phentsize);
        tb_elf_rd(c.all, 44, 2, &phnum);
    } else {
        if (len < 64) {
            why = "truncated ELF header";
            goto fail;
        }
        tb_elf_rd(c.all, 32, 8, &phoff);
        tb_elf_rd(c.all, 54, 2, &phentsize);
        tb_elf_rd(c.all, 56, 2, &phnum);
    }
    if (phnum == 0) {
        why = "core has no program headers";
        goto fail;
    }
    if (phentsize < (c.cls == 1 ? 32u : 56u) || phoff > len || phentsize * phnum > len - phoff) {
        why = "truncated program header table";
        goto fail;
    }
    uint64_t note_off[16], note_size[16];
    int nnotes = 0;
    for (uint64_t i = 0; i < phnum; i++) {
        size_t at = (size_t)(phoff + i * phentsize);
        uint64_t type = 0, off = 0, vaddr = 0, filesz = 0;
        tb_elf_rd(c.all, at, 4, &type);
        if (c.cls == 1) {
            tb_elf_rd(c.all, at + 4, 4, &off);
            tb_elf_rd(c.all, at + 8, 4, &vaddr);
            tb_elf_rd(c.all, at + 16, 4, &filesz);
        } else {
            tb_elf_rd(c.all, at + 8, 8, &off);
            tb_elf_rd(c.all, at + 16, 8, &vaddr);
            tb_elf_rd(c.all, at + 32, 8, &filesz);
        }
        if (type == PT_NOTE && nnotes < 16) {
            note_off[nnotes] = off;
            note_size[nnotes] = filesz;
            nnotes++;
        } else if (type == PT_LOAD && c.nsegs < MAX_SEGS) {
            seg_t *s = &c.segs[c.nsegs++];
            s->vaddr = vaddr;
            s->offset = off;
            s->filesz = off >= len ? 0 : (filesz < len - off ? filesz : len - off);
        }
    }
    core->nsegs = c.nsegs;
    if (nnotes == 0) {
        why = "core has no PT_NOTE segment";
        goto fail;
    }
    tb_core_notes a = {core, 0, NULL};
    for (int i = 0; i < nnotes; i++) {
        if (note_off[i] > len || note_size[i] > len - note_off[i]) {
            why = "truncated note segment";
            goto fail;
        }
        buf_t nb = {data + note_off[i], (size_t)note_size[i]};
        int r = tb_elf_walk_notes(nb, tb_core_note, &a);
        if (a.err != NULL) {
            why = a.err;
            goto fail;
        }
        if (r < 0) {
            why = "truncated note";
            goto fail;
        }
    }
    if (!a.have_prstatus) {
        why = "core has no NT_PRSTATUS note";
        goto fail;
    }
    /* Build id: the executable's mapping at file offset 0 first, then the others in order. */
    for (int pass = 0; pass < 2 && core->build_id[0] == '\0'; pass++) {
        for (int i = 0; i < core->nmaps; i++) {
            const tb_mapping *m = &core->maps[i];
            if (m->file_offset != 0 || path_is_exe(m->path, core->exe) != (pass == 0))
                continue;
            if (build_id_at(&c, m->start, core->build_id)) {
                core->build_id_from_exe = pass == 0;
                break;
            }
        }
    }
    free(cp);
    return 0;
fail:
    free(cp);
    snprintf(err, errlen, "%s", why);
    return -1;
#undef c
}
