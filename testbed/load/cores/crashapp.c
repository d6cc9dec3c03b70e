/* Small crashing app used to record load-test core fixtures (not shipped to boards). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int sink;

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "segv";
    long heap_kib = argc > 2 ? strtol(argv[2], NULL, 10) : 16;
    int entropy_pct = argc > 3 ? atoi(argv[3]) : 30;
    size_t n = (size_t)heap_kib * 1024;
    unsigned char *heap = malloc(n ? n : 1);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        heap[i] = (int)(x % 100) < entropy_pct ? (unsigned char)(x >> 8) : (unsigned char)(i / 64);
    }
    sink = heap[n / 2];
    if (strcmp(mode, "abort") == 0) abort();
    if (strcmp(mode, "fpe") == 0) raise(SIGFPE);
    volatile int *p = (int *)0;
    *p = sink;
    return 0;
}
