/*
 * config.h - sharepulse's configuration: one table of keys (name, type,
 * default, bounds, flags, documentation) and a validator.
 *
 * The INI reader lives in daemon/ (inih); it hands every (section, key,
 * value, line) to sp_config_set(). Errors are collected, not fatal one by
 * one, so a user sees every mistake in a file at once; each names the file,
 * the line, the key and what is allowed.
 */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SP_WEBHOOKS_MAX 16
#define SP_RDKAFKA_PROPS_MAX 64

typedef struct sp_webhook_conf {
    char *name;
    char *url;
    char *secret;        /* whsec_<base64>, several space-separated */
    int64_t timeout_ms;
    int64_t max_age_s;
    char *levels;        /* comma list of rising,surging,viral,resolved */
    int64_t max_pending;
    char *file;          /* where the section was first seen */
    int line;
} sp_webhook_conf;

typedef struct sp_kv_conf {
    char *key;
    char *value;
    int line;
} sp_kv_conf;

typedef struct sp_config {
    /* [kafka] */
    char *kafka_brokers;
    char *kafka_topics;  /* comma-separated */
    char *kafka_group;
    char *kafka_dlq_topic;    /* "" = off */
    char *kafka_alerts_topic; /* "" = off */
    sp_kv_conf rdkafka[SP_RDKAFKA_PROPS_MAX];
    int n_rdkafka;
    /* [redis] */
    char *redis_host;
    int64_t redis_port;
    char *redis_unix_socket;
    int64_t redis_db;
    char *redis_password;
    char *redis_prefix;
    int64_t redis_timeout_ms;
    /* [pipeline] */
    int64_t flush_interval_ms;
    int64_t allowed_lateness_ms;
    int64_t max_future_ms;
    int64_t top_n;
    int64_t max_pending_events;
    int windows;         /* 0: totals only */
    /* [momentum] */
    double min_velocity;
    double min_z;
    double ratio_rising;
    double ratio_surging;
    double ratio_viral;
    double baseline_half_life_min;
    double baseline_floor;
    int64_t cooldown_min;
    int send_resolved;
    /* [webhook.NAME] */
    sp_webhook_conf webhooks[SP_WEBHOOKS_MAX];
    int n_webhooks;
    /* [http] */
    char *http_listen;
    char *http_tokens_file;
    int64_t http_max_lag;
    int64_t http_max_sse_clients;
    int64_t http_sse_max_behind_kb;
    /* [log] */
    char *log_level;   /* error, warn, info, debug */
    char *log_format;  /* text, json */

    /* Errors found so far, one message per line. */
    char *errors;
    size_t errors_len;
    int n_errors;
} sp_config;

/* Fills cfg with every default. Free with sp_config_free(). */
void sp_config_init(sp_config *cfg);
void sp_config_free(sp_config *cfg);
/* Moves src's [webhook.*] sections into dst, freeing dst's (SIGHUP). */
void sp_config_take_webhooks(sp_config *dst, sp_config *src);

/*
 * Sets one key. file and line name where it came from; section_line is the
 * line of its [section] header (errors about a whole section name it). On a
 * bad key or value, records an error naming them and returns -1; otherwise
 * returns 0.
 */
int sp_config_set(sp_config *cfg, const char *file, int line, int section_line,
                  const char *section, const char *key, const char *value);

/* Records a free-form error (e.g. from the INI reader) naming file:line. */
void sp_config_error(sp_config *cfg, const char *file, int line,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checks rules across keys once everything is set. Returns the number of
 * errors recorded in total (0 = valid). */
int sp_config_validate(sp_config *cfg, const char *file);

/* Writes the effective config as INI, secrets masked, into a malloc'ed
 * string the caller frees. */
char *sp_config_dump(const sp_config *cfg);

/* Writes the table as documentation: one commented block per key. */
char *sp_config_doc(void);

/* Parses a "section.key=value" override (SPEC 5: the first dot ends the
 * section, except webhook.NAME). Returns 0 and fills the three malloc'ed
 * outputs, or -1. */
int sp_config_split_override(const char *arg, char **section, char **key,
                             char **value);

#endif
