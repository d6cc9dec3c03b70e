/* gzip through the image's busybox gzip, fed and drained through pipes within the deadline. */
#ifndef TB_GZIP_H
#define TB_GZIP_H

#include <stddef.h>
#include <stdint.h>

/* 0 with a malloc'd *out, or -1 (the deadline passed, or gzip failed). */
int tb_gzip(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen, int64_t deadline_ms);

#endif
