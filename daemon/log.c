/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sp_common.h"

int sp_log_level = SP_LOG_INFO;
static int sp__log_json = 0;

static const char *const sp__level_names[] = {"error", "warn", "info", "debug"};

int sp_log_configure(const char *level, const char *format)
{
    int lvl = -1;
    for (int i = 0; i < 4; i++)
        if (level && strcmp(level, sp__level_names[i]) == 0)
            lvl = i;
    if (lvl < 0 || format == NULL ||
        (strcmp(format, "text") != 0 && strcmp(format, "json") != 0))
        return -1;
    sp_log_level = lvl;
    sp__log_json = strcmp(format, "json") == 0;
    return 0;
}

void sp_log_write(int level, const char *component, const char *fmt, ...)
{
    char msg[2048], ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    if (sp__log_json) {
        sp_buf b;
        sp_buf_init(&b);
        sp_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":",
                       ts, sp__level_names[level], component);
        sp_buf_append_json_str(&b, msg, strlen(msg));
        sp_buf_appends(&b, "}\n");
        fwrite(b.data, 1, b.len, stderr);
        sp_buf_free(&b);
    } else {
        fprintf(stderr, "%s %-5s %s: %s\n", ts, sp__level_names[level],
                component, msg);
    }
}

int sp_ratelimit_ok(sp_ratelimit *rl, long long now_ms, long long interval_ms,
                    unsigned long *suppressed)
{
    if (rl->last_ms != 0 && now_ms - rl->last_ms < interval_ms) {
        rl->suppressed++;
        return 0;
    }
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->last_ms = now_ms;
    return 1;
}
