/* gzip through the image's busybox gzip (tb_gzip.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb_files.h"
#include "tb_gzip.h"

int tb_gzip(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen, int64_t deadline_ms)
{
    int to[2], from[2];
    if (pipe(to) != 0)
        return -1;
    if (pipe(from) != 0) {
        close(to[0]);
        close(to[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        const char *gz = tb_gzip_path();
        execlp(gz, gz, "-c", (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    fcntl(to[1], F_SETFL, O_NONBLOCK);
    fcntl(from[0], F_SETFL, O_NONBLOCK);
    size_t cap = 64 * 1024, n = 0, sent = 0;
    unsigned char *buf = malloc(cap);
    int ok = buf != NULL, wfd = to[1];
    if (len == 0 && wfd >= 0) {
        close(wfd);
        wfd = -1;
    }
    while (ok) {
        struct pollfd p[2] = {{from[0], POLLIN, 0}, {wfd, POLLOUT, 0}};
        int64_t left = deadline_ms - tb_mono_ms();
        if (left <= 0) {
            ok = 0;
            break;
        }
        int r = poll(p, wfd >= 0 ? 2 : 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = 0;
            break;
        }
        if (wfd >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(wfd, in + sent, len - sent);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                ok = 0;
            if (sent == len || !ok) {
                close(wfd);
                wfd = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (n == cap) {
                unsigned char *nb = realloc(buf, cap * 2);
                if (nb == NULL) {
                    ok = 0;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            ssize_t rr = read(from[0], buf + n, cap - n);
            if (rr > 0)
                n += (size_t)rr;
            else if (rr == 0)
                break;
            else if (errno != EAGAIN && errno != EINTR)
                ok = 0;
        }
    }
    if (wfd >= 0)
        close(wfd);
    close(from[0]);
    if (!ok)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || n < 18) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

