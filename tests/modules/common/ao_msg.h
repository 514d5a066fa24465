/*
 * Shared by ao-cu's C test processes (tests/modules/tensor/infer.c, tests/modules/llm/generate.c):
 * a minimal scanner for the msg JSON the CU hands to handle(), and the {"ok":..., "response":...} reply.
 * Header-only (static functions); include it once per process.
 */
#ifndef AO_MSG_H
#define AO_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A process uses the helpers it needs. */
#pragma clang diagnostic ignored "-Wunused-function"

/* ---- output ------------------------------------------------------------------------------------- */

static char *reply = NULL;
static size_t reply_cap = 0;

static const char *respond(int ok, const char *text) {
    size_t need = strlen(text) + 128;
    if (need > reply_cap) {
        free(reply);
        reply = malloc(need);
        reply_cap = reply ? need : 0;
        if (!reply) return "";
    }
    char *p = reply;
    const char *head = ok ? "{\"ok\":true,\"response\":{\"Output\":\"" : "{\"ok\":false,\"response\":\"";
    const char *tail = ok ? "\",\"Messages\":[],\"Spawns\":[],\"Assignments\":[]}}" : "\"}";
    strcpy(p, head);
    p += strlen(head);
    for (const char *t = text; *t; t++) { /* our texts never need escapes beyond these */
        if (*t == '"' || *t == '\\') *p++ = '\\';
        *p++ = *t;
    }
    strcpy(p, tail);
    return reply;
}

static char *fmt_u(char *p, unsigned long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* ---- minimal JSON scanning ------------------------------------------------------------------------ */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

/* Returns the end of the JSON value at p, or NULL. */
static const char *skip_value(const char *p) {
    p = ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1]) p++;
        return *p ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = skip_value(p);
                if (!p) return NULL;
                p = ws(p);
                if (*p != ':') return NULL;
                p++;
            }
            p = skip_value(p);
            if (!p) return NULL;
            p = ws(p);
            if (*p == ',') { p++; continue; }
            if (*p == close) return p + 1;
            return NULL;
        }
    }
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
    return p;
}

/* The value of `key` in the object at obj (which starts with '{'), or NULL. */
static const char *get(const char *obj, const char *key) {
    const char *p = ws(obj);
    if (*p != '{') return NULL;
    p = ws(p + 1);
    size_t klen = strlen(key);
    while (*p == '"') {
        const char *k = p + 1;
        const char *end = skip_value(p);
        if (!end) return NULL;
        int match = (size_t)(end - 1 - k) == klen && memcmp(k, key, klen) == 0;
        p = ws(end);
        if (*p != ':') return NULL;
        p = ws(p + 1);
        if (match) return p;
        p = skip_value(p);
        if (!p) return NULL;
        p = ws(p);
        if (*p != ',') return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

/* Decodes the JSON string at p (\" \\ \/ \n \t \r \b \f and \u00XX escapes) into a new buffer. */
static char *string_at(const char *p) {
    p = ws(p);
    if (!p || *p != '"') return NULL;
    const char *end = skip_value(p);
    if (!end) return NULL;
    char *out = malloc((size_t)(end - p));
    if (!out) return NULL;
    char *o = out;
    for (p++; p < end - 1; p++) {
        if (*p != '\\') { *o++ = *p; continue; }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': { /* \uXXXX (and surrogate pairs) as UTF-8 */
            unsigned long v = strtoul((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (v >= 0xd800 && v < 0xdc00 && p[1] == '\\' && p[2] == 'u') {
                unsigned long lo = strtoul((char[]){p[3], p[4], p[5], p[6], 0}, NULL, 16);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            if (v < 0x80) {
                *o++ = (char)v;
            } else if (v < 0x800) {
                *o++ = (char)(0xc0 | (v >> 6));
                *o++ = (char)(0x80 | (v & 0x3f));
            } else if (v < 0x10000) {
                *o++ = (char)(0xe0 | (v >> 12));
                *o++ = (char)(0x80 | ((v >> 6) & 0x3f));
                *o++ = (char)(0x80 | (v & 0x3f));
            } else {
                *o++ = (char)(0xf0 | (v >> 18));
                *o++ = (char)(0x80 | ((v >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((v >> 6) & 0x3f));
                *o++ = (char)(0x80 | (v & 0x3f));
            }
            break;
        }
        default: *o++ = *p;
        }
    }
    *o = 0;
    return out;
}

static long long number_at(const char *p, int *ok) {
    char *end;
    if (!p) { *ok = 0; return 0; }
    long long v = strtoll(p, &end, 10);
    if (end == p) *ok = 0;
    return v;
}

/* The value of the tag called `name` in msg.Tags, or NULL. */
static char *tag(const char *msg, const char *name) {
    const char *tags = get(msg, "Tags");
    if (!tags || *tags != '[') return NULL;
    const char *p = ws(tags + 1);
    while (*p == '{') {
        char *n = string_at(get(p, "name"));
        int match = n && strcmp(n, name) == 0;
        free(n);
        if (match) return string_at(get(p, "value"));
        p = skip_value(p);
        if (!p) return NULL;
        p = ws(p);
        if (*p != ',') return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

#endif
