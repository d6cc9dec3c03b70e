/*
 * tb-reseed HEX: mix a seed from the host into the kernel's entropy pool and
 * force a CRNG reseed at once.
 *
 * Boards restored from one snapshot start with the same RNG state. Writing to
 * /dev/urandom only mixes into the input pool; Linux 6.1 reseeds the CRNG
 * from it about once a minute of guest time. RNDRESEEDCRNG does it now, so
 * restored boards draw different random numbers from the first byte.
 */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    unsigned char seed[256];
    size_t len, n, i;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: tb-reseed HEX (2 to 512 hex digits)\n");
        return 2;
    }
    len = strlen(argv[1]);
    if (len < 2 || len % 2 != 0 || len / 2 > sizeof seed) {
        fprintf(stderr, "tb-reseed: the seed must be 2 to 512 hex digits, an even count\n");
        return 2;
    }
    n = len / 2;
    for (i = 0; i < n; i++) {
        int hi = hexval(argv[1][2 * i]), lo = hexval(argv[1][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "tb-reseed: not a hex digit in the seed\n");
            return 2;
        }
        seed[i] = (unsigned char)(hi << 4 | lo);
    }
    fd = open("/dev/urandom", O_WRONLY);
    if (fd < 0) {
        perror("tb-reseed: /dev/urandom");
        return 1;
    }
    if (write(fd, seed, n) != (ssize_t)n) {
        perror("tb-reseed: write");
        return 1;
    }
    if (ioctl(fd, RNDRESEEDCRNG) != 0) {
        perror("tb-reseed: RNDRESEEDCRNG");
        return 1;
    }
    close(fd);
    return 0;
}
