/*
 * log.h - one line per record on stderr: time, level, component, message
 * with key=value fields; or one JSON object per line (--log-format json).
 * The level is checked before the arguments are evaluated.
 */
#ifndef SP_LOG_H
#define SP_LOG_H

enum { SP_LOG_ERROR, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG };

extern int sp_log_level;

/* Sets level and format by name ("info", "json"). Returns 0 or -1. */
int sp_log_configure(const char *level, const char *format);

void sp_log_write(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SP_LOG(level, component, ...)                                        \
    do {                                                                     \
        if ((level) <= sp_log_level)                                         \
            sp_log_write((level), (component), __VA_ARGS__);                 \
    } while (0)

#define sp_error(comp, ...) SP_LOG(SP_LOG_ERROR, comp, __VA_ARGS__)
#define sp_warn(comp, ...) SP_LOG(SP_LOG_WARN, comp, __VA_ARGS__)
#define sp_info(comp, ...) SP_LOG(SP_LOG_INFO, comp, __VA_ARGS__)
#define sp_debug(comp, ...) SP_LOG(SP_LOG_DEBUG, comp, __VA_ARGS__)

/* A rate limiter for repeated errors: sp_ratelimit_ok() returns 1 at most
 * once per interval and counts what it suppressed in between. */
typedef struct sp_ratelimit {
    long long last_ms;
    unsigned long suppressed;
} sp_ratelimit;

int sp_ratelimit_ok(sp_ratelimit *rl, long long now_ms, long long interval_ms,
                    unsigned long *suppressed);

#endif
