/* config.c - see config.h. The table below is the single source of truth
 * for every key: defaults, bounds, flags and documentation. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_common.h"

typedef enum { SP_T_STR, SP_T_INT, SP_T_DOUBLE, SP_T_BOOL, SP_T_ENUM } sp__type;

#define SP_CF_RELOADABLE 1 /* SIGHUP applies it */
#define SP_CF_SECRET 2     /* masked in dumps and logs */
#define SP_CF_NONEMPTY 4   /* a string that may not be empty */

typedef struct {
    const char *section; /* "webhook" means every [webhook.NAME] */
    const char *name;
    sp__type type;
    size_t offset;       /* in sp_config, or in sp_webhook_conf */
    const char *def;
    double min, max;     /* for numbers */
    const char *enums;   /* for SP_T_ENUM: "a|b|c" */
    int flags;
    const char *doc;
} sp__key;

#define C(f) offsetof(sp_config, f)
#define W(f) offsetof(sp_webhook_conf, f)

static const sp__key sp__keys[] = {
    {"kafka", "brokers", SP_T_STR, C(kafka_brokers), "127.0.0.1:9092", 0, 0,
     NULL, SP_CF_NONEMPTY, "Kafka bootstrap servers, host:port[,host:port...]."},
    {"kafka", "topics", SP_T_STR, C(kafka_topics), "engagement-events", 0, 0,
     NULL, SP_CF_NONEMPTY, "Comma-separated topics to consume events from."},
    {"kafka", "group", SP_T_STR, C(kafka_group), "sharepulse", 0, 0, NULL,
     SP_CF_NONEMPTY,
     "Consumer group. Instances with the same group split the partitions;\n"
     "the exactly-once offsets live in <prefix>offsets:{<group>}."},
    {"kafka", "dlq_topic", SP_T_STR, C(kafka_dlq_topic),
     "engagement-events-dlq", 0, 0, NULL, 0,
     "Dead-letter topic for bad input (SPEC 6). Empty turns it off\n"
     "(bad messages are then only counted and logged)."},
    {"kafka", "alerts_topic", SP_T_STR, C(kafka_alerts_topic),
     "sharepulse-alerts", 0, 0, NULL, 0,
     "Topic for momentum alerts, keyed by video id. Empty turns it off."},
    {"redis", "host", SP_T_STR, C(redis_host), "127.0.0.1", 0, 0, NULL, 0,
     "Redis host (ignored when unix_socket is set)."},
    {"redis", "port", SP_T_INT, C(redis_port), "6379", 1, 65535, NULL, 0,
     "Redis TCP port."},
    {"redis", "unix_socket", SP_T_STR, C(redis_unix_socket), "", 0, 0, NULL, 0,
     "Path of a Redis unix socket; when set, host and port are not used."},
    {"redis", "db", SP_T_INT, C(redis_db), "0", 0, 1024, NULL, 0,
     "Redis database number."},
    {"redis", "password", SP_T_STR, C(redis_password), "", 0, 0, NULL,
     SP_CF_SECRET, "Redis password (AUTH). Empty: no AUTH."},
    {"redis", "prefix", SP_T_STR, C(redis_prefix), "sp:", 0, 0, NULL,
     SP_CF_NONEMPTY, "Prefix of every key sharepulse writes."},
    {"redis", "timeout_ms", SP_T_INT, C(redis_timeout_ms), "10000", 100,
     600000, NULL, 0,
     "Connect timeout, and the longest a reply may be awaited before the\n"
     "connection is dropped and rebuilt (the batch is then resent)."},
    {"pipeline", "flush_interval_ms", SP_T_INT, C(flush_interval_ms), "200", 10,
     60000, NULL, 0,
     "How often each partition's pre-aggregated batch is written to Redis."},
    {"pipeline", "allowed_lateness_ms", SP_T_INT, C(allowed_lateness_ms),
     "2000", 0, 3600000, NULL, 0,
     "How far the event-time clock trails the newest event (SPEC 2)."},
    {"pipeline", "max_future_ms", SP_T_INT, C(max_future_ms), "300000", 0,
     86400000, NULL, 0,
     "Events more than this ahead of the wall clock are bad input (future_ts)."},
    {"pipeline", "top_n", SP_T_INT, C(top_n), "1000", 1, 1000000, NULL, 0,
     "Length of the leaderboards."},
    {"pipeline", "max_pending_events", SP_T_INT, C(max_pending_events),
     "500000", 1000, 100000000, NULL, 0,
     "Events held in memory, not yet acknowledged by Redis, past which\n"
     "fetching pauses (backpressure) until Redis catches up."},
    {"pipeline", "windows", SP_T_BOOL, C(windows), "true", 0, 0, NULL, 0,
     "false: totals only (SPEC 3's totals, creators, reach, demo, sharers);\n"
     "no rolling windows, rates, leaderboards, series, detector or alerts."},
    {"momentum", "min_velocity", SP_T_DOUBLE, C(min_velocity), "5", 0, 1e9,
     NULL, SP_CF_RELOADABLE, "Shares per minute below which a video stays quiet."},
    {"momentum", "min_z", SP_T_DOUBLE, C(min_z), "3", 0, 1e9, NULL,
     SP_CF_RELOADABLE, "Poisson score a video must reach to leave quiet."},
    {"momentum", "ratio_rising", SP_T_DOUBLE, C(ratio_rising), "3", 1, 1e9,
     NULL, SP_CF_RELOADABLE, "velocity/baseline for level rising."},
    {"momentum", "ratio_surging", SP_T_DOUBLE, C(ratio_surging), "10", 1, 1e9,
     NULL, SP_CF_RELOADABLE, "velocity/baseline for level surging."},
    {"momentum", "ratio_viral", SP_T_DOUBLE, C(ratio_viral), "30", 1, 1e9,
     NULL, SP_CF_RELOADABLE, "velocity/baseline for level viral."},
    {"momentum", "baseline_half_life_min", SP_T_DOUBLE,
     C(baseline_half_life_min), "30", 1, 100000, NULL, SP_CF_RELOADABLE,
     "Half-life in minutes of the baseline's exponential weighting."},
    {"momentum", "baseline_floor", SP_T_DOUBLE, C(baseline_floor), "0.5", 0.01,
     1e9, NULL, SP_CF_RELOADABLE, "Lowest baseline, in shares per minute."},
    {"momentum", "cooldown_min", SP_T_INT, C(cooldown_min), "30", 0, 100000,
     NULL, SP_CF_RELOADABLE,
     "Minutes during which a video does not alert again at or below the\n"
     "highest level it alerted at."},
    {"momentum", "send_resolved", SP_T_BOOL, C(send_resolved), "true", 0, 0,
     NULL, SP_CF_RELOADABLE,
     "Send a resolved alert after 10 quiet minutes (true or false)."},
    {"webhook", "url", SP_T_STR, W(url), "", 0, 0, NULL,
     SP_CF_RELOADABLE | SP_CF_NONEMPTY, "Receiver URL (http or https)."},
    {"webhook", "secret", SP_T_STR, W(secret), "", 0, 0, NULL,
     SP_CF_RELOADABLE | SP_CF_SECRET,
     "Standard Webhooks secrets, whsec_<base64>; several separated by spaces\n"
     "during rotation. Empty: unsigned."},
    {"webhook", "timeout_ms", SP_T_INT, W(timeout_ms), "5000", 100, 600000,
     NULL, SP_CF_RELOADABLE, "Timeout of one delivery attempt."},
    {"webhook", "max_age_s", SP_T_INT, W(max_age_s), "86400", 1, 2592000, NULL,
     SP_CF_RELOADABLE, "Retries stop when an alert is older than this."},
    {"webhook", "levels", SP_T_STR, W(levels), "rising,surging,viral,resolved",
     0, 0, NULL, SP_CF_RELOADABLE,
     "Comma list of alert levels to send: rising, surging, viral, resolved."},
    {"webhook", "max_pending", SP_T_INT, W(max_pending), "10000", 1, 10000000,
     NULL, SP_CF_RELOADABLE,
     "Deliveries queued for this receiver; beyond it alerts are dropped,\n"
     "counted and logged."},
    {"http", "listen", SP_T_STR, C(http_listen), "127.0.0.1:9321", 0, 0, NULL,
     0, "host:port of the HTTP server; port 0 takes a free port and logs it;\n"
        "empty turns the server off."},
    {"http", "tokens_file", SP_T_STR, C(http_tokens_file), "", 0, 0, NULL, SP_CF_RELOADABLE,
     "File of API tokens, one per line: <sha256 hex of the token> <account_type>\n"
     "<creator_id or *>; account types admin (creator *), creator, business,\n"
     "personal (docs/api.md). Empty: the API answers 401 to every request.\n"
     "Reloaded on SIGHUP."},
    {"http", "max_lag", SP_T_INT, C(http_max_lag), "1000000", 0, 1e12, NULL, 0,
     "/healthz answers 503 when a partition's consumer lag exceeds this many\n"
     "messages; 0 turns the check off."},
    {"http", "max_sse_clients", SP_T_INT, C(http_max_sse_clients), "64", 1, 10000, NULL, 0,
     "Most /api/v1/events streams open at once; more answer 503."},
    {"http", "sse_max_behind_kb", SP_T_INT, C(http_sse_max_behind_kb), "1024", 16, 1048576,
     NULL, 0,
     "An /api/v1/events client that has not read this many KiB of its stream\n"
     "(beyond what its socket holds, 64 KiB) is disconnected and counted."},
    {"log", "level", SP_T_ENUM, C(log_level), "info", 0, 0,
     "error|warn|info|debug", SP_CF_RELOADABLE, "Lowest level logged."},
    {"log", "format", SP_T_ENUM, C(log_format), "text", 0, 0, "text|json",
     SP_CF_RELOADABLE, "text (key=value) or json, one record per line."},
};

#undef C
#undef W

void sp_config_error(sp_config *cfg, const char *file, int line,
                     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char head[512];
    if (line > 0)
        snprintf(head, sizeof(head), "%s:%d: ", file, line);
    else
        snprintf(head, sizeof(head), "%s: ", file);
    size_t need = strlen(head) + strlen(msg) + 2;
    cfg->errors = sp_xrealloc(cfg->errors, cfg->errors_len + need + 1);
    cfg->errors_len += (size_t)snprintf(cfg->errors + cfg->errors_len,
                                        need + 1, "%s%s\n", head, msg);
    cfg->n_errors++;
}

static void *sp__field(void *base, const sp__key *k)
{
    return (char *)base + k->offset;
}

/* Parses v into the key's field. Returns 0, or -1 with msg filled. */
static int sp__parse_value(const sp__key *k, const char *v, void *base,
                           char *msg, size_t msgsz)
{
    char *end;
    switch (k->type) {
    case SP_T_STR: {
        if ((k->flags & SP_CF_NONEMPTY) && *v == '\0') {
            snprintf(msg, msgsz, "must not be empty");
            return -1;
        }
        char **p = sp__field(base, k);
        free(*p);
        *p = sp_xstrdup(v);
        return 0;
    }
    case SP_T_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno != 0) {
            snprintf(msg, msgsz, "\"%s\" is not an integer (allowed: %.0f to %.0f)",
                     v, k->min, k->max);
            return -1;
        }
        if ((double)x < k->min || (double)x > k->max) {
            snprintf(msg, msgsz, "%lld is out of range (allowed: %.0f to %.0f)",
                     x, k->min, k->max);
            return -1;
        }
        *(int64_t *)sp__field(base, k) = x;
        return 0;
    }
    case SP_T_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(x)) {
            snprintf(msg, msgsz, "\"%s\" is not a number (allowed: %g to %g)", v,
                     k->min, k->max);
            return -1;
        }
        if (x < k->min || x > k->max) {
            snprintf(msg, msgsz, "%g is out of range (allowed: %g to %g)", x,
                     k->min, k->max);
            return -1;
        }
        *(double *)sp__field(base, k) = x;
        return 0;
    }
    case SP_T_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
            strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
            *(int *)sp__field(base, k) = 1;
        } else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
                   strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
            *(int *)sp__field(base, k) = 0;
        } else {
            snprintf(msg, msgsz, "\"%s\" is not a boolean (allowed: true, false)",
                     v);
            return -1;
        }
        return 0;
    case SP_T_ENUM: {
        size_t n = strlen(v);
        const char *e = k->enums;
        while (*e) {
            const char *bar = strchr(e, '|');
            size_t len = bar ? (size_t)(bar - e) : strlen(e);
            if (len == n && strncmp(e, v, n) == 0 && n > 0) {
                char **p = sp__field(base, k);
                free(*p);
                *p = sp_xstrdup(v);
                return 0;
            }
            e += len + (bar ? 1 : 0);
        }
        char allowed[256];
        snprintf(allowed, sizeof(allowed), "%s", k->enums);
        for (char *c = allowed; *c; c++)
            if (*c == '|')
                *c = ',';
        snprintf(msg, msgsz, "\"%s\" is not allowed (allowed: %s)", v, allowed);
        return -1;
    }
    }
    return -1;
}

static void sp__set_defaults(const char *section, void *base)
{
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++) {
        const sp__key *k = &sp__keys[i];
        if (strcmp(k->section, section) != 0)
            continue;
        char msg[256];
        int rc = sp__parse_value(k, k->def, base, msg, sizeof(msg));
        if (rc != 0 && k->type == SP_T_STR) {
            /* An empty default of a NONEMPTY key (webhook url): required. */
            char **p = sp__field(base, k);
            free(*p);
            *p = sp_xstrdup(k->def);
            rc = 0;
        }
        SP_ASSERT(rc == 0);
    }
}

void sp_config_init(sp_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    static const char *const sections[] = {"kafka", "redis", "pipeline",
                                           "momentum", "http", "log"};
    for (size_t i = 0; i < SP_ARRAY_SIZE(sections); i++)
        sp__set_defaults(sections[i], cfg);
}

static void sp__free_strings(const char *section, void *base)
{
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++) {
        const sp__key *k = &sp__keys[i];
        if (strcmp(k->section, section) == 0 &&
            (k->type == SP_T_STR || k->type == SP_T_ENUM)) {
            char **p = sp__field(base, k);
            free(*p);
            *p = NULL;
        }
    }
}

void sp_config_free(sp_config *cfg)
{
    static const char *const sections[] = {"kafka", "redis", "pipeline",
                                           "momentum", "http", "log"};
    for (size_t i = 0; i < SP_ARRAY_SIZE(sections); i++)
        sp__free_strings(sections[i], cfg);
    for (int i = 0; i < cfg->n_rdkafka; i++) {
        free(cfg->rdkafka[i].key);
        free(cfg->rdkafka[i].value);
    }
    for (int i = 0; i < cfg->n_webhooks; i++) {
        sp__free_strings("webhook", &cfg->webhooks[i]);
        free(cfg->webhooks[i].name);
        free(cfg->webhooks[i].file);
    }
    free(cfg->errors);
    memset(cfg, 0, sizeof(*cfg));
}

void sp_config_take_webhooks(sp_config *dst, sp_config *src)
{
    for (int i = 0; i < dst->n_webhooks; i++) {
        sp__free_strings("webhook", &dst->webhooks[i]);
        free(dst->webhooks[i].name);
        free(dst->webhooks[i].file);
    }
    memcpy(dst->webhooks, src->webhooks, sizeof(dst->webhooks));
    dst->n_webhooks = src->n_webhooks;
    memset(src->webhooks, 0, sizeof(src->webhooks));
    src->n_webhooks = 0;
}

static void sp__allowed_keys(const char *section, char *out, size_t outsz)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++)
        if (strcmp(sp__keys[i].section, section) == 0)
            len += (size_t)snprintf(out + len, len < outsz ? outsz - len : 0,
                                    "%s%s", len ? ", " : "", sp__keys[i].name);
    if (strcmp(section, "kafka") == 0)
        snprintf(out + len, len < outsz ? outsz - len : 0, ", rdkafka.<property>");
}

static sp_webhook_conf *sp__webhook(sp_config *cfg, const char *file, int line,
                                    const char *name)
{
    for (int i = 0; i < cfg->n_webhooks; i++)
        if (strcmp(cfg->webhooks[i].name, name) == 0)
            return &cfg->webhooks[i];
    if (cfg->n_webhooks == SP_WEBHOOKS_MAX) {
        sp_config_error(cfg, file, line, "[webhook.%s]: too many webhooks (at most %d)",
                        name, SP_WEBHOOKS_MAX);
        return NULL;
    }
    sp_webhook_conf *w = &cfg->webhooks[cfg->n_webhooks++];
    memset(w, 0, sizeof(*w));
    sp__set_defaults("webhook", w);
    w->name = sp_xstrdup(name);
    w->file = sp_xstrdup(file);
    w->line = line;
    return w;
}

int sp_config_set(sp_config *cfg, const char *file, int line, int section_line,
                  const char *section, const char *key, const char *value)
{
    void *base = cfg;
    const char *table_section = section;

    if (strncmp(section, "webhook.", 8) == 0) {
        const char *name = section + 8;
        size_t n = strlen(name);
        int ok = n > 0 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (name[i] >= 'a' && name[i] <= 'z') ||
                 (name[i] >= 'A' && name[i] <= 'Z') ||
                 (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
                 name[i] == '-';
        if (!ok) {
            sp_config_error(cfg, file, section_line,
                            "[%s]: bad webhook name (allowed: 1-64 of A-Z a-z 0-9 _ -)",
                            section);
            return -1;
        }
        if ((base = sp__webhook(cfg, file, section_line, name)) == NULL)
            return -1;
        table_section = "webhook";
        if (strcmp(key, "url") == 0 && *value != '\0' && strncmp(value, "http://", 7) != 0 &&
            strncmp(value, "https://", 8) != 0) {
            sp_config_error(cfg, file, line,
                            "[%s] url: \"%s\" (allowed: http://... or https://...)", section,
                            value);
            return -1;
        }
    } else if (strcmp(section, "kafka") == 0 &&
               strncmp(key, "rdkafka.", 8) == 0) {
        if (key[8] == '\0') {
            sp_config_error(cfg, file, line, "[kafka] rdkafka.: empty property name");
            return -1;
        }
        for (int i = 0; i < cfg->n_rdkafka; i++)
            if (strcmp(cfg->rdkafka[i].key, key + 8) == 0) {
                free(cfg->rdkafka[i].value);
                cfg->rdkafka[i].value = sp_xstrdup(value);
                cfg->rdkafka[i].line = line;
                return 0;
            }
        if (cfg->n_rdkafka == SP_RDKAFKA_PROPS_MAX) {
            sp_config_error(cfg, file, line, "[kafka] too many rdkafka.* properties (at most %d)",
                            SP_RDKAFKA_PROPS_MAX);
            return -1;
        }
        sp_kv_conf *kv = &cfg->rdkafka[cfg->n_rdkafka++];
        kv->key = sp_xstrdup(key + 8);
        kv->value = sp_xstrdup(value);
        kv->line = line;
        return 0;
    }

    if (strcmp(section, "webhook") == 0) {
        /* The webhook rows describe sp_webhook_conf, not sp_config: they
         * apply only through a named [webhook.NAME] section. */
        sp_config_error(cfg, file, section_line,
                        "[webhook] needs a name (allowed: [webhook.NAME], NAME of A-Z a-z 0-9 _ -)");
        return -1;
    }
    int known_section = 0;
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++) {
        const sp__key *k = &sp__keys[i];
        if (strcmp(k->section, table_section) != 0)
            continue;
        known_section = 1;
        if (strcmp(k->name, key) != 0)
            continue;
        char msg[512];
        if (sp__parse_value(k, value, base, msg, sizeof(msg)) != 0) {
            sp_config_error(cfg, file, line, "[%s] %s: %s", section, key, msg);
            return -1;
        }
        return 0;
    }
    if (!known_section) {
        sp_config_error(cfg, file, line,
                        "unknown section [%s] (allowed: kafka, redis, pipeline, "
                        "momentum, webhook.NAME, http, log)",
                        section);
        return -1;
    }
    char allowed[1024];
    sp__allowed_keys(table_section, allowed, sizeof(allowed));
    sp_config_error(cfg, file, line, "[%s] unknown key \"%s\" (allowed: %s)",
                    section, key, allowed);
    return -1;
}

/* Standard Webhooks secrets: whsec_<base64>, space-separated; empty = none. */
static int sp__secrets_ok(const char *s)
{
    while (*s != '\0') {
        while (*s == ' ')
            s++;
        if (*s == '\0')
            break;
        if (strncmp(s, "whsec_", 6) != 0)
            return 0;
        s += 6;
        size_t n = 0, pad = 0;
        for (; s[n] != '\0' && s[n] != ' '; n++) {
            char c = s[n];
            if (c == '=')
                pad++;
            else if (pad > 0 || !(isalnum((unsigned char)c) || c == '+' || c == '/'))
                return 0;
        }
        if (n == 0 || n % 4 != 0 || pad > 2 || n > 512)
            return 0;
        s += n;
    }
    return 1;
}

static int sp__levels_ok(const char *s)
{
    static const char *const names[] = {"rising", "surging", "viral", "resolved"};
    while (*s != '\0') {
        size_t n = strcspn(s, ",");
        int ok = 0;
        for (size_t i = 0; i < SP_ARRAY_SIZE(names); i++)
            ok |= strlen(names[i]) == n && strncmp(s, names[i], n) == 0;
        if (!ok)
            return 0;
        s += n + (s[n] == ',');
    }
    return 1;
}

int sp_config_validate(sp_config *cfg, const char *file)
{
    if (!(cfg->ratio_rising <= cfg->ratio_surging &&
          cfg->ratio_surging <= cfg->ratio_viral))
        sp_config_error(cfg, file, 0,
                        "[momentum] ratio_rising <= ratio_surging <= ratio_viral "
                        "must hold (have %g, %g, %g)",
                        cfg->ratio_rising, cfg->ratio_surging, cfg->ratio_viral);
    for (int i = 0; i < cfg->n_webhooks; i++) {
        sp_webhook_conf *w = &cfg->webhooks[i];
        if (w->url[0] == '\0')
            sp_config_error(cfg, w->file, w->line,
                            "[webhook.%s] url: missing (required)", w->name);
        if (!sp__secrets_ok(w->secret))
            sp_config_error(cfg, w->file, w->line,
                            "[webhook.%s] secret: not a space-separated list of "
                            "whsec_<base64> (allowed: whsec_ followed by base64 of the key)",
                            w->name);
        if (!sp__levels_ok(w->levels))
            sp_config_error(cfg, w->file, w->line,
                            "[webhook.%s] levels: \"%s\" is not allowed (allowed: a comma "
                            "list of rising,surging,viral,resolved)", w->name, w->levels);
    }
    return cfg->n_errors;
}

static void sp__dump_section(sp_buf *b, const char *section, const void *base)
{
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++) {
        const sp__key *k = &sp__keys[i];
        if (strcmp(k->section, section) != 0)
            continue;
        const void *f = (const char *)base + k->offset;
        switch (k->type) {
        case SP_T_STR:
        case SP_T_ENUM: {
            const char *s = *(char *const *)f;
            if ((k->flags & SP_CF_SECRET) && s && *s)
                s = "********";
            sp_buf_appendf(b, "%s = %s\n", k->name, s ? s : "");
            break;
        }
        case SP_T_INT:
            sp_buf_appendf(b, "%s = %lld\n", k->name,
                           (long long)*(const int64_t *)f);
            break;
        case SP_T_DOUBLE:
            sp_buf_appendf(b, "%s = %g\n", k->name, *(const double *)f);
            break;
        case SP_T_BOOL:
            sp_buf_appendf(b, "%s = %s\n", k->name,
                           *(const int *)f ? "true" : "false");
            break;
        }
    }
}

char *sp_config_dump(const sp_config *cfg)
{
    static const char *const sections[] = {"kafka", "redis", "pipeline",
                                           "momentum", "http", "log"};
    sp_buf b;
    sp_buf_init(&b);
    for (size_t i = 0; i < SP_ARRAY_SIZE(sections); i++) {
        sp_buf_appendf(&b, "%s[%s]\n", i ? "\n" : "", sections[i]);
        sp__dump_section(&b, sections[i], cfg);
        if (i == 0)
            for (int r = 0; r < cfg->n_rdkafka; r++)
                sp_buf_appendf(&b, "rdkafka.%s = %s\n", cfg->rdkafka[r].key,
                               strstr(cfg->rdkafka[r].key, "password") ||
                                       strstr(cfg->rdkafka[r].key, "secret")
                                   ? "********"
                                   : cfg->rdkafka[r].value);
    }
    for (int i = 0; i < cfg->n_webhooks; i++) {
        sp_buf_appendf(&b, "\n[webhook.%s]\n", cfg->webhooks[i].name);
        sp__dump_section(&b, "webhook", &cfg->webhooks[i]);
    }
    return b.data;
}

char *sp_config_doc(void)
{
    sp_buf b;
    sp_buf_init(&b);
    const char *last = "";
    for (size_t i = 0; i < SP_ARRAY_SIZE(sp__keys); i++) {
        const sp__key *k = &sp__keys[i];
        if (strcmp(k->section, last) != 0) {
            sp_buf_appendf(&b, "%s[%s]\n", *last ? "\n" : "",
                           strcmp(k->section, "webhook") == 0 ? "webhook.NAME"
                                                              : k->section);
            last = k->section;
        }
        sp_buf_appendf(&b, "%s =%s%s\n", k->name, *k->def ? " " : "", k->def);
    }
    return b.data;
}

int sp_config_split_override(const char *arg, char **section, char **key,
                             char **value)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (eq == NULL || dot == NULL || dot > eq || dot == arg)
        return -1;
    if ((size_t)(dot - arg) == 7 && strncmp(arg, "webhook", 7) == 0) {
        dot = strchr(dot + 1, '.');
        if (dot == NULL || dot > eq)
            return -1;
    }
    if (dot + 1 == eq)
        return -1;
    *section = sp_xstrndup(arg, (size_t)(dot - arg));
    *key = sp_xstrndup(dot + 1, (size_t)(eq - dot - 1));
    *value = sp_xstrdup(eq + 1);
    return 0;
}
