/* Datagrams from the crash reporter to the app manager (tb_notify.h). */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tb_files.h"
#include "tb_notify.h"

static void send_msg(const char *msg)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", tb_run_dir(), TB_NOTIFY_SOCKET);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t r = sendto(fd, msg, strlen(msg), MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
    (void)r;
    close(fd);
}

void tb_notify_crash(int pid, int64_t mono_ms)
{
    char msg[64];
    snprintf(msg, sizeof msg, TB_NOTIFY_CRASH " %d %lld", pid, (long long)mono_ms);
    send_msg(msg);
}

void tb_notify_done(int pid)
{
    char msg[64];
    snprintf(msg, sizeof msg, TB_NOTIFY_DONE " %d", pid);
    send_msg(msg);
}
