/* The seam between the crash reporter and the app manager: datagrams on <run>/appmgr.sock.
 *
 *   "crash PID MONO_MS"  the reporter started for PID's crash at MONO_MS (the deadline's start)
 *   "done PID"           the reporter's upload (or skip) for PID is over: restart the app now
 */
#ifndef TB_NOTIFY_H
#define TB_NOTIFY_H

#include <stdint.h>

#define TB_NOTIFY_SOCKET "appmgr.sock"
#define TB_NOTIFY_CRASH "crash"
#define TB_NOTIFY_DONE "done"

void tb_notify_crash(int pid, int64_t mono_ms);
void tb_notify_done(int pid);

#endif
