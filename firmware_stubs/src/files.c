/* Files, paths and clocks (tb_files.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tb_contract.h"
#include "tb_files.h"

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

const char *tb_state_dir(void) { return env_or("TB_STATE_DIR", TB_DEFAULT_STATE_DIR); }
const char *tb_run_dir(void) { return env_or("TB_RUN_DIR", TB_DEFAULT_RUN_DIR); }
const char *tb_console_path(void) { return env_or("TB_CONSOLE", "/dev/console"); }
const char *tb_core_pattern_path(void) { return env_or("TB_CORE_PATTERN_FILE", "/proc/sys/kernel/core_pattern"); }
const char *tb_reporter_path(void) { return env_or("TB_REPORTER", TB_DEFAULT_REPORTER); }
const char *tb_gzip_path(void) { return env_or("TB_GZIP", "gzip"); }

void tb_path(char *out, size_t n, const char *dir, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

int64_t tb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tb_wall_s(void)
{
    const char *off = getenv("TB_CLOCK_OFFSET");
    return (int64_t)time(NULL) + (off && *off ? strtoll(off, NULL, 10) : 0);
}

int tb_mkdirs(const char *path)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int tb_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int tb_read_all_fd(int fd, size_t cap, unsigned char **out, size_t *len, int *truncated)
{
    size_t size = 64 * 1024, n = 0;
    if (size > cap)
        size = cap;
    unsigned char *buf = malloc(size + 1);
    if (buf == NULL)
        return -1;
    *truncated = 0;
    for (;;) {
        if (n == size) {
            if (size >= cap) {
                /* keep draining so the writer (the kernel) is not held */
                unsigned char sink[4096];
                ssize_t r;
                while ((r = read(fd, sink, sizeof sink)) != 0) {
                    if (r < 0 && errno != EINTR)
                        break;
                    if (r > 0)
                        *truncated = 1;
                }
                break;
            }
            size_t nsize = size * 2 > cap ? cap : size * 2;
            unsigned char *nb = realloc(buf, nsize + 1);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
            size = nsize;
        }
        ssize_t r = read(fd, buf + n, size - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

char *tb_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    unsigned char *buf = NULL;
    size_t n = 0;
    int trunc = 0;
    int r = tb_read_all_fd(fd, 16 * 1024 * 1024, &buf, &n, &trunc);
    close(fd);
    if (r != 0)
        return NULL;
    if (len)
        *len = n;
    return (char *)buf;
}

int tb_random_hex(char *out, size_t nbytes)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char buf[64];
    if (nbytes > sizeof buf)
        return -1;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = read(fd, buf + got, nbytes - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = digits[buf[i] >> 4];
        out[2 * i + 1] = digits[buf[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

const char *tb_kv_get(const char *text, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t vl = strcspn(v, "\n");
            if (vl >= n)
                vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}
