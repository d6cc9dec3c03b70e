/* A key scanner for the flat JSON objects of the device API (docs/device-api.md):
 * values are strings, integers, booleans, null or arrays of strings. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_json.h"

static const char *skip_ws(const char *p)
{
    while (*p && isspace((unsigned char)*p))
        p++;
    return p;
}

/* Parse a JSON string at p (pointing at '"'); writes up to n-1 bytes; returns the char after it. */
static const char *parse_string(const char *p, char *out, size_t n)
{
    if (*p != '"')
        return NULL;
    p++;
    size_t k = 0;
    while (*p && *p != '"') {
        char ch = *p++;
        if (ch == '\\') {
            char e = *p++;
            switch (e) {
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'u':
                for (int i = 0; i < 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                ch = '?'; /* the device API sends ASCII; anything else is not needed here */
                p += 4;
                break;
            case '\0': return NULL;
            default: ch = e; break;
            }
        }
        if (out != NULL && k + 1 < n)
            out[k++] = ch;
    }
    if (*p != '"')
        return NULL;
    if (out != NULL && n > 0)
        out[k] = '\0';
    return p + 1;
}

static const char *skip_value(const char *p)
{
    p = skip_ws(p);
    if (*p == '"')
        return parse_string(p, NULL, 0);
    if (*p == '[') {
        p = skip_ws(p + 1);
        if (*p == ']')
            return p + 1;
        for (;;) {
            p = skip_value(p);
            if (p == NULL)
                return NULL;
            p = skip_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == ']' ? p + 1 : NULL;
        }
    }
    if (*p == '{')
        return NULL; /* nesting is not part of the device API */
    const char *s = p;
    while (*p && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.'))
        p++;
    return p == s ? NULL : p;
}

/* Pointer to the value of key at the top level of the object, or NULL. */
static const char *find_value(const char *json, const char *key)
{
    if (json == NULL)
        return NULL;
    const char *p = skip_ws(json);
    if (*p != '{')
        return NULL;
    p = skip_ws(p + 1);
    if (*p == '}')
        return NULL;
    char name[128];
    for (;;) {
        p = parse_string(skip_ws(p), name, sizeof name);
        if (p == NULL)
            return NULL;
        p = skip_ws(p);
        if (*p != ':')
            return NULL;
        p = skip_ws(p + 1);
        if (strcmp(name, key) == 0)
            return p;
        p = skip_value(p);
        if (p == NULL)
            return NULL;
        p = skip_ws(p);
        if (*p != ',')
            return NULL;
        p++;
    }
}

int tb_json_str(const char *json, const char *key, char *out, size_t n)
{
    const char *v = find_value(json, key);
    if (v == NULL || *v != '"')
        return -1;
    return parse_string(v, out, n) ? 0 : -1;
}

int tb_json_int(const char *json, const char *key, long long *out)
{
    const char *v = find_value(json, key);
    if (v == NULL || !(*v == '-' || isdigit((unsigned char)*v)))
        return -1;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end == '.' || *end == 'e' || *end == 'E')
        return -1;
    *out = x;
    return 0;
}

int tb_json_bool(const char *json, const char *key, int *out)
{
    const char *v = find_value(json, key);
    if (v == NULL)
        return -1;
    if (strncmp(v, "true", 4) == 0) {
        *out = 1;
        return 0;
    }
    if (strncmp(v, "false", 5) == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

int tb_json_str_array(const char *json, const char *key, void (*cb)(const char *s, void *ctx), void *ctx)
{
    const char *p = find_value(json, key);
    if (p == NULL || *p != '[')
        return -1;
    p = skip_ws(p + 1);
    int count = 0;
    if (*p == ']')
        return 0;
    char item[256];
    for (;;) {
        p = parse_string(skip_ws(p), item, sizeof item);
        if (p == NULL)
            return -1;
        cb(item, ctx);
        count++;
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        return *p == ']' ? count : -1;
    }
}

void tb_json_escape(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (; *in && k + 7 < n; in++) {
        unsigned char ch = (unsigned char)*in;
        if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch < 0x20) {
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k] = '\0';
}
