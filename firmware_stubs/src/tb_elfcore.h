/* Reading an ELF core (elfcore.c) and the crash signature (signature.c). */
#ifndef TB_ELFCORE_H
#define TB_ELFCORE_H

#include <stddef.h>
#include <stdint.h>

#include "tb_contract.h"

#define TB_MAX_MAPS 256
typedef struct {
    uint64_t start, end, file_offset;
    const char *path; /* points into the core buffer */
} tb_mapping;
typedef struct {
    int elf_class;      /* 1 = 32-bit, 2 = 64-bit */
    int machine;        /* EM_ARM 40, EM_X86_64 62, EM_AARCH64 183 */
    int signal;         /* pr_cursig of the first NT_PRSTATUS (the crashing thread) */
    int pid;
    uint64_t pc, lr, sp;
    int has_lr;
    char exe[17];       /* NT_PRPSINFO pr_fname */
    char build_id[129]; /* hex, "" if none */
    int build_id_from_exe; /* the build id is the executable's own (its first page was in the data) */
    int nmaps;
    tb_mapping maps[TB_MAX_MAPS];
    int nsegs;
} tb_core;
/* Returns 0 on success, else -1 with a reason in err. A prefix of a core parses as far as it
 * goes: segments are clipped to it; the notes must be inside it. */
int tb_core_parse(const unsigned char *data, size_t len, tb_core *core, char *err, size_t errlen);
uint64_t tb_core_pc_offset(const tb_core *core);
/* The crash signature: first 16 bytes of SHA-256 of "exe|buildid|signal|pcoffsethex", as 32 hex. */
void tb_signature(const char *exe, const char *build_id, int signal, uint64_t pc_offset, char out[TB_SIG_HEX + 1]);
void tb_core_signature(const tb_core *core, char out[TB_SIG_HEX + 1]);

#endif
