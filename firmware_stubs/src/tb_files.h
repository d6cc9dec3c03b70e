/* Files, paths and clocks of the firmware.
 *
 * Every path is overridable by an environment variable so the host tests run the
 * programs in a scratch directory; on the board the defaults hold.
 */
#ifndef TB_FILES_H
#define TB_FILES_H

#include <stddef.h>
#include <stdint.h>

/* ---- paths ---- */
const char *tb_state_dir(void);         /* TB_STATE_DIR, default TB_DEFAULT_STATE_DIR */
const char *tb_run_dir(void);           /* TB_RUN_DIR, default TB_DEFAULT_RUN_DIR */
const char *tb_console_path(void);      /* TB_CONSOLE, default /dev/console */
const char *tb_core_pattern_path(void); /* TB_CORE_PATTERN_FILE, default /proc/sys/kernel/core_pattern */
const char *tb_reporter_path(void);     /* TB_REPORTER, default TB_DEFAULT_REPORTER */
const char *tb_gzip_path(void);         /* TB_GZIP, default gzip (from PATH) */
void tb_path(char *out, size_t n, const char *dir, const char *name);

/* ---- clocks ---- */
int64_t tb_mono_ms(void);
/* The board's wall clock. TB_CLOCK_OFFSET (seconds, host tests only) moves it the way
 * `date -s` moves the board's. */
int64_t tb_wall_s(void);

/* ---- files ---- */
int tb_mkdirs(const char *path);
int tb_write_file_atomic(const char *path, const void *data, size_t len);
char *tb_read_file(const char *path, size_t *len); /* malloc'd, NUL-terminated; NULL on error */
/* Reads fd to its end into a malloc'd buffer of at most cap bytes (one spare byte for a NUL);
 * past cap it drains and sets *truncated. */
int tb_read_all_fd(int fd, size_t cap, unsigned char **out, size_t *len, int *truncated);
/* n random bytes from /dev/urandom as 2n lowercase hex into out (2n + 1 bytes); 0 or -1. */
int tb_random_hex(char *out, size_t nbytes);
/* "key=value" lines: the value of key, or NULL. */
const char *tb_kv_get(const char *text, const char *key, char *out, size_t n);

#endif
