/*
 * sp_common.h - error codes, allocation and small helpers shared by the
 * sharepulse core (lib/) and the daemon (daemon/).
 *
 * Errors are negative integers from one X-macro list; sp_strerror() names
 * them. Out-of-memory is not an error that callers handle: sp_xmalloc() and
 * friends abort the process with a message, as Redis' zmalloc does.
 */
#ifndef SP_COMMON_H
#define SP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define SP_ERRNO_MAP(X)                                         \
    X(INVAL, -1, "invalid argument")                            \
    X(NOMEM, -2, "out of memory")                               \
    X(RANGE, -3, "value out of range")                          \
    X(PARSE, -4, "parse error")                                 \
    X(IO, -5, "input/output error")                             \
    X(FENCED, -6, "stored offset does not match the batch")     \
    X(LOST, -7, "stored state is gone")                         \
    X(FULL, -8, "queue is full")

enum {
#define SP__ERR_ENUM(name, val, msg) SP_E##name = (val),
    SP_ERRNO_MAP(SP__ERR_ENUM)
#undef SP__ERR_ENUM
};

/* Returns a static description of an SP_E* code (or "unknown error"). */
const char *sp_strerror(int err);

/* Allocation that never returns NULL: on failure it prints and aborts. */
void *sp_xmalloc(size_t n);
void *sp_xcalloc(size_t nmemb, size_t n);
void *sp_xrealloc(void *p, size_t n);
char *sp_xstrdup(const char *s);
char *sp_xstrndup(const char *s, size_t n);

/* Program misuse is a bug: log file:line and abort. */
#define SP_ASSERT(cond)                                                       \
    do {                                                                      \
        if (!(cond))                                                          \
            sp__assert_fail(#cond, __FILE__, __LINE__);                       \
    } while (0)
_Noreturn void sp__assert_fail(const char *what, const char *file, int line);

#define SP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A growable byte buffer. Append functions abort on out-of-memory. */
typedef struct sp_buf {
    char *data;
    size_t len;
    size_t cap;
} sp_buf;

void sp_buf_init(sp_buf *b);
void sp_buf_free(sp_buf *b);        /* Frees the storage; b may be reused. */
void sp_buf_reset(sp_buf *b);       /* Empties it, keeping the storage. */
void sp_buf_reserve(sp_buf *b, size_t extra);
void sp_buf_append(sp_buf *b, const void *p, size_t n);
void sp_buf_appends(sp_buf *b, const char *s);
void sp_buf_appendf(sp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends v in decimal, as "%" PRId64 would, without printf: the hot
 * paths (RESP lengths and numbers, window state) write millions. */
void sp_buf_append_i64(sp_buf *b, int64_t v);
/* Appends a JSON string literal (quotes included) for the n bytes at s. */
void sp_buf_append_json_str(sp_buf *b, const char *s, size_t n);

/* A Redis command being built: its arguments as RESP bulk strings, and
 * their count, which RESP needs before them. */
typedef struct sp_resp {
    sp_buf body;
    size_t argc;
} sp_resp;

void sp_resp_init(sp_resp *r);
void sp_resp_free(sp_resp *r);
void sp_resp_bulk(sp_resp *r, const char *s, size_t n);
void sp_resp_bulks(sp_resp *r, const char *s);
void sp_resp_bulki(sp_resp *r, int64_t v);
/* Appends the whole command (array header and arguments) to out and
 * empties r for reuse. */
void sp_resp_finish(sp_resp *r, sp_buf *out);

/* 64-bit FNV-1a; used by the small hash maps. */
uint64_t sp_hash(const void *p, size_t n);

#endif
