/* A key scanner for the flat JSON objects of the device API (docs/device-api.md):
 * values are strings, integers, booleans, null or arrays of strings. */
#ifndef TB_JSON_H
#define TB_JSON_H

#include <stddef.h>

/* Each returns 0 when the key is present at the top level with the right type, -1 otherwise
 * (also when the text is not a whole flat object up to the key). */
int tb_json_str(const char *json, const char *key, char *out, size_t n);
int tb_json_int(const char *json, const char *key, long long *out);
int tb_json_bool(const char *json, const char *key, int *out);
/* Array of strings: calls cb for each element; returns count or -1. */
int tb_json_str_array(const char *json, const char *key, void (*cb)(const char *s, void *ctx), void *ctx);
void tb_json_escape(const char *in, char *out, size_t n);

#endif
