/* sp_common.c - see sp_common.h. */
#include "sp_common.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sp_strerror(int err)
{
    switch (err) {
#define SP__ERR_CASE(name, val, msg) \
    case (val):                      \
        return msg;
        SP_ERRNO_MAP(SP__ERR_CASE)
#undef SP__ERR_CASE
    case 0:
        return "success";
    }
    return "unknown error";
}

static _Noreturn void sp__oom(size_t n)
{
    fprintf(stderr, "sharepulse: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        sp__oom(n);
    return p;
}

void *sp_xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (p == NULL)
        sp__oom(nmemb * n);
    return p;
}

void *sp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        sp__oom(n);
    return q;
}

char *sp_xstrndup(const char *s, size_t n)
{
    char *p = sp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sp_xstrdup(const char *s)
{
    return sp_xstrndup(s, strlen(s));
}

void sp__assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "sharepulse: BUG: assertion \"%s\" failed at %s:%d\n",
            what, file, line);
    abort();
}

void sp_buf_init(sp_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sp_buf_free(sp_buf *b)
{
    free(b->data);
    sp_buf_init(b);
}

void sp_buf_reset(sp_buf *b)
{
    b->len = 0;
}

void sp_buf_reserve(sp_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = sp_xrealloc(b->data, cap);
    b->cap = cap;
}

void sp_buf_append(sp_buf *b, const void *p, size_t n)
{
    sp_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sp_buf_appends(sp_buf *b, const char *s)
{
    sp_buf_append(b, s, strlen(s));
}

void sp_buf_appendf(sp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    SP_ASSERT(n >= 0);
    sp_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Writes v in decimal at out (at least 20 bytes) and returns its length. */
static size_t sp__fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t sp__fmt_i64(char *out, int64_t v)
{
    if (v >= 0)
        return sp__fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + sp__fmt_u64(out + 1, -(uint64_t)v); /* INT64_MIN too */
}

void sp_buf_append_i64(sp_buf *b, int64_t v)
{
    sp_buf_reserve(b, 21);
    b->len += sp__fmt_i64(b->data + b->len, v);
    b->data[b->len] = '\0';
}

void sp_buf_append_json_str(sp_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sp_buf_reserve(b, n + 2);
    sp_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sp_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sp_buf_append(b, esc, 6);
        } else {
            sp_buf_append(b, &s[i], 1);
        }
    }
    sp_buf_append(b, "\"", 1);
}

void sp_resp_init(sp_resp *r)
{
    sp_buf_init(&r->body);
    r->argc = 0;
}

void sp_resp_free(sp_resp *r)
{
    sp_buf_free(&r->body);
    r->argc = 0;
}

void sp_resp_bulk(sp_resp *r, const char *s, size_t n)
{
    sp_buf *b = &r->body;
    sp_buf_reserve(b, 1 + 20 + 2 + n + 2);
    b->data[b->len++] = '$';
    b->len += sp__fmt_u64(b->data + b->len, n);
    memcpy(b->data + b->len, "\r\n", 2);
    b->len += 2;
    if (n > 0)
        memcpy(b->data + b->len, s, n);
    memcpy(b->data + b->len + n, "\r\n", 2);
    b->len += n + 2;
    b->data[b->len] = '\0';
    r->argc++;
}

void sp_resp_bulks(sp_resp *r, const char *s)
{
    sp_resp_bulk(r, s, strlen(s));
}

void sp_resp_bulki(sp_resp *r, int64_t v)
{
    char num[21];
    sp_resp_bulk(r, num, sp__fmt_i64(num, v));
}

void sp_resp_finish(sp_resp *r, sp_buf *out)
{
    sp_buf_appendf(out, "*%zu\r\n", r->argc);
    if (r->body.len > 0)
        sp_buf_append(out, r->body.data, r->body.len);
    sp_buf_reset(&r->body);
    r->argc = 0;
}

uint64_t sp_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}
