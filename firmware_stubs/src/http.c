/* HTTP/1.1 client on plain sockets: one request per connection, and one total
 * deadline (an absolute monotonic time) covering connect, send and the whole
 * response. Every wait is a poll() with the time left, so a server that hangs
 * or drips bytes cannot stretch it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tb_contract.h"
#include "tb_files.h"
#include "tb_http.h"
#include "tb_version.h"

static int wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - tb_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        return 1;
    }
}

static int fail(tb_http_result *res, int fd, const char *reason)
{
    if (fd >= 0)
        close(fd);
    snprintf(res->reason, sizeof res->reason, "%s", reason);
    return -1;
}

static int send_all(int fd, const void *data, size_t len, int64_t deadline_ms)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline_ms);
            if (r == 0)
                return 0; /* timeout */
            if (r < 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 1;
}

int tb_link_down(void)
{
    const char *ifname = getenv("TB_NET_IF");
    char path[128];
    snprintf(path, sizeof path, "/sys/class/net/%s/carrier", ifname && *ifname ? ifname : "eth0");
    char *v = tb_read_file(path, NULL);
    if (v == NULL)
        return 0; /* no such interface (host tests): do not guess */
    int down = v[0] == '0';
    free(v);
    return down;
}

/* Decode a chunked body in place (the whole response is in memory); returns its length and
 * sets *last when the last (zero-size) chunk was there. */
static size_t dechunk(char *buf, size_t len, int *last)
{
    *last = 0;
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long size = strtoul(buf + in, &end, 16);
        char *crlf = strstr(buf + in, "\r\n");
        if (end == buf + in || crlf == NULL)
            break;
        in = (size_t)(crlf - buf) + 2;
        if (size == 0) {
            *last = 1;
            break;
        }
        if (size > len - in)
            break;
        memmove(buf + out, buf + in, size);
        out += size;
        in += size + 2;
    }
    buf[out] = '\0';
    return out;
}

int tb_http_request(const char *host, int port, const char *method, const char *path, const char *headers,
                    const void *body, size_t body_len, int64_t deadline_ms, tb_http_result *res)
{
    memset(res, 0, sizeof *res);
    res->retry_after = -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return fail(res, -1, TB_FAIL_CONNECT);
    if (strncmp(host, "127.", 4) != 0 && tb_link_down())
        return fail(res, -1, TB_FAIL_CONNECT); /* no carrier: the connection cannot be made, say so at once */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(res, -1, TB_FAIL_CONNECT);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EINPROGRESS)
            return fail(res, fd, TB_FAIL_CONNECT);
        int r = wait_fd(fd, POLLOUT, deadline_ms);
        if (r == 0)
            return fail(res, fd, TB_FAIL_TIMEOUT);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
            return fail(res, fd, TB_FAIL_CONNECT);
    }
    char head[2048];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: testbed-firmware/" TB_VERSION
                      "\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n",
                      method, path, host, port, body_len, headers ? headers : "");
    if (hn < 0 || (size_t)hn >= sizeof head)
        return fail(res, fd, TB_FAIL_BAD_REQUEST);
    int s = send_all(fd, head, (size_t)hn, deadline_ms);
    if (s == 1 && body_len > 0)
        s = send_all(fd, body, body_len, deadline_ms);
    /* A server may answer (413, 401...) and close before taking the whole body: read what it said. */
    int send_failed = s < 0;
    if (s == 0)
        return fail(res, fd, TB_FAIL_TIMEOUT);

    size_t cap = 8192, n = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return fail(res, fd, TB_FAIL_BAD_RESPONSE);
    long long content_length = -1;
    size_t header_end = 0;
    int chunked = 0, eof = 0;
    for (;;) {
        if (header_end && content_length >= 0 && n >= header_end + (size_t)content_length)
            break;
        if (n == cap) {
            if (cap >= TB_HTTP_MAX_RESPONSE) {
                free(buf);
                return fail(res, fd, TB_FAIL_BAD_RESPONSE);
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                return fail(res, fd, TB_FAIL_BAD_RESPONSE);
            }
            buf = nb;
        }
        ssize_t r = recv(fd, buf + n, cap - n, MSG_DONTWAIT);
        if (r > 0) {
            n += (size_t)r;
            buf[n] = '\0';
            if (!header_end) {
                char *e = strstr(buf, "\r\n\r\n");
                if (e) {
                    header_end = (size_t)(e - buf) + 4;
                    for (char *line = strstr(buf, "\r\n"); line && line < e; line = strstr(line + 2, "\r\n")) {
                        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                            content_length = strtoll(line + 17, NULL, 10);
                        else if (strncasecmp(line + 2, TB_HDR_RETRY_AFTER ":", sizeof TB_HDR_RETRY_AFTER) == 0)
                            res->retry_after = strtoll(line + 2 + sizeof TB_HDR_RETRY_AFTER, NULL, 10);
                        else if (strncasecmp(line + 2, "Transfer-Encoding:", 18) == 0 &&
                                 strstr(line + 20, "chunked") != NULL && strstr(line + 20, "chunked") < e)
                            chunked = 1;
                    }
                }
            }
            continue;
        }
        if (r == 0) {
            eof = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(fd, POLLIN, deadline_ms);
            if (w == 0) {
                free(buf);
                return fail(res, fd, TB_FAIL_TIMEOUT);
            }
            if (w < 0) {
                free(buf);
                return fail(res, fd, TB_FAIL_CONNECT);
            }
            continue;
        }
        break; /* reset: use what arrived */
    }
    close(fd);
    buf[n] = '\0';
    int major, minor, status;
    if (!header_end || sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || status < 100 || status > 599) {
        free(buf);
        return fail(res, -1, send_failed ? TB_FAIL_CONNECT : TB_FAIL_BAD_RESPONSE);
    }
    res->status = status;
    size_t blen = n - header_end;
    if (content_length >= 0 && (size_t)content_length < blen)
        blen = (size_t)content_length;
    /* Whole: as long as Content-Length said, up to the last chunk, or up to a clean close. */
    res->complete = content_length >= 0 ? blen == (size_t)content_length : eof;
    memmove(buf, buf + header_end, blen);
    buf[blen] = '\0';
    if (chunked && content_length < 0)
        blen = dechunk(buf, blen, &res->complete);
    res->body = buf;
    res->body_len = blen;
    if (status >= 300)
        snprintf(res->reason, sizeof res->reason, TB_HTTP_REASON_FORMAT, status);
    return 0;
}

void tb_http_free(tb_http_result *res)
{
    free(res->body);
    res->body = NULL;
}
