/* SHA-256 (FIPS 180-4) and hex. */
#ifndef TB_SHA256_H
#define TB_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} tb_sha256;
void tb_sha256_init(tb_sha256 *c);
void tb_sha256_update(tb_sha256 *c, const void *data, size_t n);
void tb_sha256_final(tb_sha256 *c, unsigned char out[32]);
/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void tb_hex(const unsigned char *in, size_t n, char *out);

#endif
