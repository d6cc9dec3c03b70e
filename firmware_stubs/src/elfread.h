/* Inside the core reader (elfcore.c, elfnotes.c): bounds-checked reads and the notes walk. */
#ifndef TB_ELFREAD_H
#define TB_ELFREAD_H

#include <stddef.h>
#include <stdint.h>

#include "tb_elfcore.h"

#define PT_LOAD 1
#define PT_NOTE 4
#define NT_PRSTATUS 1
#define NT_PRPSINFO 3
#define NT_FILE 0x46494c45u
#define NT_GNU_BUILD_ID 3
#define EM_ARM 40
#define EM_X86_64 62
#define EM_AARCH64 183

typedef struct {
    const unsigned char *d;
    size_t n;
} buf_t;

/* Little-endian unsigned of `size` bytes at off; -1 when it is not inside b. */
int tb_elf_rd(buf_t b, size_t off, size_t size, uint64_t *v);

typedef int (*note_cb)(const char *name, size_t namesz, uint32_t type, buf_t desc, void *arg);
/* Walk the notes in b, calling cb for each (a nonzero return stops); -1 on a truncated note. */
int tb_elf_walk_notes(buf_t b, note_cb cb, void *arg);

/* What the CORE notes give; err set on a malformed one. */
typedef struct {
    tb_core *core;
    int have_prstatus;
    const char *err;
} tb_core_notes;
/* A note_cb filling a tb_core_notes from the CORE notes. */
int tb_core_note(const char *name, size_t namesz, uint32_t type, buf_t desc, void *argp);

#endif
