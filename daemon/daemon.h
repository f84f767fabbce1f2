/*
 * daemon.h - struct sp_daemon, which owns everything the process runs, and
 * the functions the daemon's files call on each other.
 *
 * Everything runs on one libuv loop thread. Handles reach the daemon through
 * handle->data. Files: main.c (CLI, signals, systemd, lifecycle), kafka.c
 * (consumer and dead-letter producer), redis.c (connection), pipeline.c
 * (partitions, batches, exactly-once flushes).
 */
#ifndef SP_DAEMON_H
#define SP_DAEMON_H

#include <curl/curl.h>
#include <hiredis/async.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <uv.h>

#include "batch.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "tokens.h"
#include "window.h"

struct MHD_Daemon;
struct MHD_Connection;

#define SP_REASONS_MAX 32

typedef struct sp_daemon sp_daemon;

/* ---- redis.c ---- */

typedef enum { SP_REDIS_DOWN, SP_REDIS_CONNECTING, SP_REDIS_READY } sp_redis_state;

typedef enum {
    SP_REDIS_PIPELINE, /* flushes: loads the apply script */
    SP_REDIS_API,      /* dashboard reads */
    SP_REDIS_SUB       /* subscribed to <prefix>updates and <prefix>alerts */
} sp_redis_role;

/* Called with the reply, or with NULL when the connection died first. */
typedef void sp_redis_reply_cb(sp_daemon *d, redisReply *reply, void *priv);

typedef struct sp_redis {
    sp_daemon *d;
    const char *name;        /* in logs */
    sp_redis_role role;
    void (*on_ready)(struct sp_redis *r);
    void (*on_down)(struct sp_redis *r);
    /* SP_REDIS_SUB: a message published on one of its channels. */
    void (*on_message)(sp_daemon *d, const char *channel, const char *msg, size_t len);
    redisAsyncContext *ac;
    sp_redis_state state;
    uint64_t generation;     /* bumped on every new connection */
    char sha[41];            /* of sp_apply_script, once loaded */
    uv_timer_t timer;        /* reconnect backoff and reply timeouts */
    uint64_t backoff_ms;
    uint64_t connect_started_ms;
    uint64_t down_since_ms;  /* when the current backoff wait began */
    uint64_t inflight;       /* commands awaiting a reply */
    uint64_t progress_ms;    /* last reply, or when inflight became > 0 */
    uint64_t errors, reconnects;
    long long n_channels;
    int started, closing;
} sp_redis;

/* Starts a connection (set the callbacks first); reconnects by itself. */
void sp_redis_start(sp_daemon *d, sp_redis *r, const char *name, sp_redis_role role);
/* Sends a RESP-encoded command. Only while READY, never on a subscriber.
 * The callback is called exactly once, on the loop thread. */
void sp_redis_send(sp_redis *r, const char *cmd, size_t len,
                   sp_redis_reply_cb *cb, void *priv);
/* Like sp_redis_send, with printf-style arguments as hiredis takes them. */
void sp_redis_sendf(sp_redis *r, sp_redis_reply_cb *cb, void *priv,
                    const char *fmt, ...);
/* Drops the connection (pending callbacks get NULL) and reconnects later. */
void sp_redis_reset(sp_redis *r, const char *why);
void sp_redis_close(sp_redis *r);

/* ---- pipeline.c ---- */

typedef enum {
    SP_PART_ASSIGNING, /* waiting for the stored offset */
    SP_PART_ACTIVE,
    SP_PART_REVOKING   /* waiting for its in-flight batch */
} sp_part_state;

typedef struct sp_part {
    char *topic;
    int32_t partition;
    sp_part_state state;
    int64_t stored;         /* offset stored in Redis; -1: none */
    int64_t next;           /* next offset to take in; -1: unknown yet */
    sp_batch *pending;      /* events not yet sent */
    uint64_t pending_gen;   /* names the pending batch for DLQ reports */
    int64_t pending_dlq;    /* its dead-letter messages not yet delivered */
    sp_batch *inflight;     /* sent, not acknowledged */
    sp_buf inflight_cmd;
    int64_t inflight_to;
    int inflight_sent;      /* 0: must be (re)sent */
    uint64_t inflight_sent_ms;
    int64_t end_at_start;   /* --drain: high watermark seen at start */
    int64_t low_at_start;
    int eof;
    int64_t eof_offset;     /* where librdkafka reported the end */
    uint64_t eof_ms;        /* loop time of that report */
    int want_offsets;       /* ASSIGNING: stored offset still to be asked */
    sp_win *win;            /* rolling windows of the events taken in */
    int64_t seq;            /* flush sequence stored in Redis; 0: none */
    int64_t inflight_seq;
    int64_t max_ts;         /* newest event time taken in; -1: none */
    sp_buf inflight_alerts; /* "<field>\t<json>\n" to queue once applied */
} sp_part;

int sp_pipeline_on_message(sp_daemon *d, rd_kafka_message_t *rkm, int64_t now_ms);
void sp_pipeline_on_assign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts);
void sp_pipeline_on_revoke(sp_daemon *d, rd_kafka_topic_partition_list_t *parts);
void sp_pipeline_on_redis_ready(sp_daemon *d);
void sp_pipeline_on_dlq_delivered(sp_daemon *d, const char *topic,
                                  int32_t partition, uint64_t gen);
/* Sends every partition's pending batch that can go now (Redis ready, no
 * batch in flight, its dead letters delivered), and resends batches whose
 * connection died. */
void sp_pipeline_flush(sp_daemon *d);
/* True when nothing is pending, in flight or awaiting dead-letter delivery. */
int sp_pipeline_idle(sp_daemon *d);
/* --drain: true once every assigned partition reached its start end. */
int sp_pipeline_drained(sp_daemon *d);
/* Completes revocations whose in-flight batches are settled. */
void sp_pipeline_progress_revoke(sp_daemon *d);
void sp_pipeline_free(sp_daemon *d);

/* ---- alerts.c ---- */

enum { SP_PRODUCE_DLQ = 1, SP_PRODUCE_ALERT = 2 };

/* One alert on its way to one sink outside Redis. */
typedef struct sp_delivery {
    int what;                   /* SP_PRODUCE_ALERT: a Kafka report's opaque */
    struct sp_delivery *next;
    int sink;                   /* -1: the Kafka alerts_topic; else a webhook */
    char *topic;                /* the partition whose state holds it */
    int32_t partition;
    char *field;                /* its pending field there */
    char *alert_id, *video, *json;
    int64_t queued_ms;          /* trusted clock when queued: max_age_s counts from it */
    int attempts;
    uint64_t due_ms;            /* loop time of the next attempt */
    int inflight;
    void *easy;                 /* CURL * while a webhook request runs */
    struct curl_slist *headers;
} sp_delivery;

/* Per sink: what happened to its deliveries. */
typedef struct sp_sink_stats {
    uint64_t delivered, retries, failed, expired, overflow;
    uint64_t queued;
} sp_sink_stats;

int sp_alerts_start(sp_daemon *d, char *errstr, size_t errsz);
/* Decides the sinks of one fired alert: appends to r one pending record per
 * sink ("s" records of the apply script) and to pending the lines
 * "<field>\t<json>" to queue once the flush is acknowledged. */
void sp_alerts_route(sp_daemon *d, const char *json, size_t len, sp_resp *r, sp_buf *pending);
/* Queues a pending delivery of a partition (after its flush, or found in
 * its state on assignment). */
void sp_alerts_queue(sp_daemon *d, const char *topic, int32_t partition, const char *field,
                     size_t flen, const char *json, size_t jlen);
/* Forgets the queued deliveries of a partition this instance gave up. */
void sp_alerts_drop_partition(sp_daemon *d, const char *topic, int32_t partition);
void sp_alerts_on_kafka(sp_daemon *d, void *delivery, rd_kafka_resp_err_t err);
/* SIGHUP: takes fresh's [webhook.*] sections (moved out of fresh). */
void sp_alerts_reload(sp_daemon *d, sp_config *fresh);
void sp_alerts_stop(sp_daemon *d);

/* ---- kafka.c ---- */

int sp_kafka_start(sp_daemon *d, char *errstr, size_t errsz);
/* Produces a bad message unchanged to the dead-letter topic. Returns 1 if
 * a delivery report will follow, 0 if the DLQ is off. */
int sp_kafka_dead_letter(sp_daemon *d, const rd_kafka_message_t *rkm,
                         const char *reason, uint64_t gen);
/* Produces an alert to alerts_topic (key = video id); the delivery report
 * reaches sp_alerts_on_kafka. Returns 0, or -1 if it could not be queued. */
int sp_kafka_produce_alert(sp_daemon *d, sp_delivery *dl);
void sp_kafka_store_offset(sp_daemon *d, const char *topic, int32_t partition,
                           int64_t offset);
void sp_kafka_assign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts);
void sp_kafka_unassign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts);
void sp_kafka_pause(sp_daemon *d, int pause);
/* Begins the consumer close; sp_kafka_closed() tells when it is done. */
void sp_kafka_close(sp_daemon *d);
int sp_kafka_closed(sp_daemon *d);
void sp_kafka_free(sp_daemon *d);

/* ---- http.c ---- */

/* Starts the HTTP server on [http] listen (no-op when empty). */
int sp_http_start(sp_daemon *d, char *errstr, size_t errsz);
void sp_http_stop(sp_daemon *d);
/* Queues a JSON answer on c. */
enum MHD_Result sp_http_respond(struct MHD_Connection *c, unsigned status, const char *json);
/* Runs MHD soon: a connection was resumed. */
void sp_http_kick(sp_daemon *d);

/* ---- api.c ---- */

typedef struct sp_api_req sp_api_req;
typedef struct sp_sse sp_sse;

typedef struct sp_video_creator {
    char *video, *creator;
} sp_video_creator;

/* Opens the API's Redis connections (d->tokens come with the config). */
int sp_api_start(sp_daemon *d, char *errstr, size_t errsz);
/* A first call for a path under /api/: answers, or suspends c and sets
 * *state until Redis has answered. */
enum MHD_Result sp_api_handle(sp_daemon *d, struct MHD_Connection *c, const char *url,
                              void **state);
/* MHD called again for a request that sp_api_handle suspended. */
enum MHD_Result sp_api_continue(sp_daemon *d, struct MHD_Connection *c, sp_api_req *q);
/* MHD is done with the connection of q. */
void sp_api_completed(sp_daemon *d, sp_api_req *q);
/* Resumes every suspended connection (before MHD stops), ending streams. */
void sp_api_release_all(sp_daemon *d);
void sp_api_stop(sp_daemon *d);

/* ---- the daemon ---- */

typedef struct sp_reason_count {
    char reason[40];
    uint64_t n;
} sp_reason_count;

struct sp_daemon {
    uv_loop_t *loop;
    sp_config cfg;
    const char *config_path;
    char **sets;             /* --set overrides, kept for SIGHUP */
    int n_sets;
    int drain;               /* --drain */
    int stopping;            /* stop requested: flush, commit, exit */
    int exit_code;

    /* kafka.c */
    rd_kafka_t *rk;          /* consumer */
    rd_kafka_queue_t *rkq;   /* its consumer queue */
    int rk_pipe[2];
    uv_poll_t rk_poll;
    uv_timer_t rk_timer;
    uv_idle_t rk_idle;       /* more to consume: back after the loop's turn */
    rd_kafka_t *dlq;         /* dead-letter producer, NULL if off */
    int dlq_pipe[2];
    uv_poll_t dlq_poll;
    int kafka_closing;
    int rk_loop_ready;       /* rk_poll, rk_timer and rk_idle initialised */
    int dlq_loop_ready;
    int cooperative;
    rd_kafka_topic_partition_list_t *watermarks; /* --drain: ends at start */
    int assigned_once;
    rd_kafka_topic_partition_list_t *revoking; /* awaiting in-flight batches */

    /* redis.c */
    sp_redis redis;

    /* pipeline.c */
    sp_part **parts;
    size_t n_parts, cap_parts;
    uint64_t next_gen;
    uint64_t pending_events; /* across partitions, for backpressure */
    int paused;
    uv_timer_t flush_timer;
    int64_t clock_ms;        /* T, the low watermark (SPEC 2); 0: unknown */
    int drained;             /* --drain reached the end: every partition is caught up */
    sp_buf updates;          /* scratch for the updates message */

    /* alerts.c */
    void *curlm;             /* CURLM * */
    uv_timer_t curl_timer, alerts_timer;
    int alerts_ready;
    sp_delivery *deliveries;
    sp_sink_stats kafka_alert_stats;
    sp_sink_stats webhook_stats[SP_WEBHOOKS_MAX];
    uint64_t alerts_by_level[4], alerts_resolved;

    /* http.c */
    struct MHD_Daemon *http;
    uv_poll_t http_poll;
    uv_timer_t http_timer, http_kick;
    unsigned http_port;

    /* api.c */
    int api_started;
    sp_tokens tokens;         /* of [http] tokens_file, loaded with the config */
    sp_redis api_redis, sub_redis;
    sp_api_req *api_reqs;     /* requests not yet freed */
    sp_sse *sse;              /* event stream clients */
    size_t n_sse;
    uv_timer_t sse_timer;     /* pings */
    sp_map creator_map;       /* video -> index in creator_cache */
    sp_video_creator *creator_cache;
    size_t n_creator_cache, cap_creator_cache;
    uint64_t api_requests, api_unauthorized, api_errors, sse_dropped;

    /* main.c */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t stop_timer;
    uv_timer_t stats_timer;
    uv_timer_t watchdog_timer;
    uint64_t stop_started_ms;
    int ready_notified;
    int finishing;

    /* counters (exposed in logs now, /metrics later) */
    uint64_t events_by_type[SP_EV__COUNT];
    uint64_t bad_total;
    sp_reason_count bad_by_reason[SP_REASONS_MAX];
    uint64_t flushes, flushed_events, fenced, dead_letters;
    sp_histogram flush_hist;
    int kafka_down;          /* librdkafka says all brokers are down */
    uint64_t kafka_back_ms;  /* loop time the brokers were reachable again; 0: never down */
    uint64_t loop_lag_ms;    /* lateness of the last 100 ms tick */
    uint64_t tick_due_ms;
    uv_timer_t tick_timer;
    sp_ratelimit rl_kafka_err, rl_redis_err, rl_bad, rl_alerts;
};

/* Milliseconds of the system's wall clock. */
int64_t sp_wall_ms(void);
/*
 * The wall clock as the pipeline trusts it: it advances with CLOCK_BOOTTIME
 * and converges on the system clock at most 10 % faster or slower
 * than real time, as an NTP slew does. A step of the system clock (a bad
 * NTP step, `date -s`) then neither ages every window at once nor stalls
 * them, and event time stays the truth.
 */
int64_t sp_trusted_wall_ms(void);
/* Requests a graceful stop (idempotent). */
void sp_daemon_stop(sp_daemon *d, int exit_code);
/* Re-evaluates whether the stop or the drain can progress. */
void sp_daemon_check_progress(sp_daemon *d);
void sp_daemon_count_bad(sp_daemon *d, const char *reason);

#endif
