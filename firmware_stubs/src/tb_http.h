/* HTTP/1.1 client on plain sockets: one request per connection, one total deadline
 * (an absolute tb_mono_ms() value) over connect, send and the whole response. */
#ifndef TB_HTTP_H
#define TB_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* The largest response read; a longer one is a bad-response. */
#define TB_HTTP_MAX_RESPONSE (256 * 1024)

typedef struct {
    int status;            /* 0 when no response */
    char reason[16];       /* TB_FAIL_CONNECT, _TIMEOUT, _BAD_RESPONSE, _BAD_REQUEST, "http-NNN" or "" */
    long long retry_after;
    int complete;          /* the body is as long as the response said (Content-Length, last chunk or EOF) */
    char *body;            /* malloc'd, NUL-terminated */
    size_t body_len;
} tb_http_result;
/* Returns 0 when a response was read (res->status set), else -1 with res->reason. */
int tb_http_request(const char *host, int port, const char *method, const char *path,
                    const char *headers, const void *body, size_t body_len,
                    int64_t deadline_ms, tb_http_result *res);
void tb_http_free(tb_http_result *res);
int tb_link_down(void); /* 1 when the network interface reports no carrier */

#endif
