/*
 * kafka.c - the consumer and the dead-letter producer on the libuv loop.
 *
 * The consumer is never polled in a busy loop or with a blocking call: its
 * queue writes to a pipe when it goes from empty to non-empty; the loop
 * watches the pipe with uv_poll and then drains the queue until it is empty
 * (librdkafka writes the pipe only on that transition). A 100 ms timer also
 * drains it, so that an idle consumer keeps serving rebalances and stays in
 * the group. Rebalance, error and log events all arrive through the same
 * drain, on the loop thread. The producer is served the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon.h"
#include "jsonarena.h"

#define SP_CONSUME_BATCH 1024
/* Messages taken in one turn of the loop before Redis replies, timers
 * (the flush tick) and HTTP get theirs: about 10 ms of work. A backlog
 * would otherwise keep the loop in the consumer for seconds, and Redis
 * would wait for the next batch while the daemon parses. */
#define SP_CONSUME_SLICE 4096

static void sp__rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sp_daemon *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        sp_info("kafka", "rebalance: assigned %d partition(s)", parts->cnt);
        sp_pipeline_on_assign(d, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        sp_info("kafka", "rebalance: revoked %d partition(s)%s", parts->cnt,
                rd_kafka_assignment_lost(rk) ? " (lost)" : "");
        sp_pipeline_on_revoke(d, parts);
    } else {
        sp_error("kafka", "rebalance error: %s", rd_kafka_err2str(err));
        sp_kafka_unassign(d, NULL);
    }
}

void sp_kafka_assign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = 0;
    if (d->cooperative)
        error = rd_kafka_incremental_assign(d->rk, parts);
    else
        err = rd_kafka_assign(d->rk, parts);
    if (error) {
        sp_error("kafka", "assign failed: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (err) {
        sp_error("kafka", "assign failed: %s", rd_kafka_err2str(err));
    }
}

void sp_kafka_unassign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts)
{
    if (d->cooperative && parts != NULL) {
        /* librdkafka refuses the whole list if one partition is not in the
         * local assignment (a partition being re-seeked, say); the call is
         * still made, empty if need be, as a revoke waits for it. */
        rd_kafka_topic_partition_list_t *cur = NULL, *mine;
        mine = rd_kafka_topic_partition_list_new(parts->cnt);
        if (rd_kafka_assignment(d->rk, &cur) == 0) {
            for (int i = 0; i < parts->cnt; i++)
                if (rd_kafka_topic_partition_list_find(cur, parts->elems[i].topic,
                                                       parts->elems[i].partition))
                    rd_kafka_topic_partition_list_add(mine, parts->elems[i].topic,
                                                      parts->elems[i].partition);
            rd_kafka_topic_partition_list_destroy(cur);
        }
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(d->rk, mine);
        rd_kafka_topic_partition_list_destroy(mine);
        if (error) {
            sp_error("kafka", "unassign failed: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rd_kafka_assign(d->rk, NULL);
    }
}

void sp_kafka_pause(sp_daemon *d, int pause)
{
    rd_kafka_topic_partition_list_t *parts;
    if (rd_kafka_assignment(d->rk, &parts) != 0)
        return;
    if (pause)
        rd_kafka_pause_partitions(d->rk, parts);
    else
        rd_kafka_resume_partitions(d->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

void sp_kafka_store_offset(sp_daemon *d, const char *topic, int32_t partition,
                           int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(d->rk, l);
    if (err && err != RD_KAFKA_RESP_ERR__STATE)
        sp_debug("kafka", "offset store %s:%d failed: %s", topic, (int)partition,
                 rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void sp__drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* librdkafka's logs and errors arrive through the consumer queue
 * (log.queue), so these run on the loop thread inside a drain. */
static void sp__log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 3)
        sp_error("kafka", "%s: %s", fac, buf);
    else if (level <= 4)
        sp_warn("kafka", "%s: %s", fac, buf);
    else
        sp_debug("kafka", "%s: %s", fac, buf);
}

static void sp__error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sp_daemon *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && rk == d->rk)
        d->kafka_down = 1;
    unsigned long sup;
    if (sp_ratelimit_ok(&d->rl_kafka_err, sp_wall_ms(), 5000, &sup))
        sp_warn("kafka", "error: %s: %s suppressed=%lu",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, sup);
}

/* librdkafka's statistics (every 2 s, on the loop): Kafka is up while at
 * least one real broker connection is UP. Returns 0: we do not keep json. */
static int sp__stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    sp_daemon *d = opaque;
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err), *brokers, *b;
    const char *name;
    if (root == NULL)
        return 0;
    int up = 0;
    brokers = json_object_get(root, "brokers");
    json_object_foreach(brokers, name, b) {
        json_t *state = json_object_get(b, "state");
        json_t *nodeid = json_object_get(b, "nodeid");
        if (json_is_string(state) && strcmp(json_string_value(state), "UP") == 0 &&
            json_integer_value(nodeid) >= 0)
            up++;
    }
    json_decref(root);
    sp_jsonarena_reset();
    if (d->kafka_down != (up == 0))
        sp_info("kafka", "brokers %s", up ? "reachable again" : "all unreachable");
    if (d->kafka_down && up)
        d->kafka_back_ms = uv_now(d->loop);
    d->kafka_down = up == 0;
    return 0;
}

static void sp__rk_idle_cb(uv_idle_t *h);

/* Takes what the consumer queue holds, at most SP_CONSUME_SLICE messages
 * a turn: while more wait, an idle handle brings the loop back here after
 * its other work (the fd is written only when the queue goes from empty to
 * non-empty, so what is left must not wait for it). */
static void sp__consume(sp_daemon *d)
{
    rd_kafka_message_t *msgs[SP_CONSUME_BATCH];
    ssize_t n;
    size_t taken = 0;
    /* The later of the two, so that a system clock set back does not turn
     * good events into future_ts. */
    int64_t now = sp_trusted_wall_ms(), sys = sp_wall_ms();
    if (sys > now)
        now = sys;
    do {
        n = rd_kafka_consume_batch_queue(d->rkq, 0, msgs, SP_CONSUME_BATCH);
        for (ssize_t i = 0; i < n; i++) {
            sp_pipeline_on_message(d, msgs[i], now);
            rd_kafka_message_destroy(msgs[i]);
        }
        taken += n > 0 ? (size_t)n : 0;
    } while (n > 0 && taken < SP_CONSUME_SLICE);
    if (n > 0)
        uv_idle_start(&d->rk_idle, sp__rk_idle_cb); /* maybe more: until one comes back empty */
    else
        uv_idle_stop(&d->rk_idle);
    sp_daemon_check_progress(d);
}

static void sp__rk_idle_cb(uv_idle_t *h)
{
    sp__consume(h->data);
}

static void sp__rk_poll_cb(uv_poll_t *h, int status, int events)
{
    sp_daemon *d = h->data;
    sp__drain_pipe(d->rk_pipe[0]);
    sp__consume(d);
}

static void sp__dlq_serve(sp_daemon *d)
{
    if (d->dlq == NULL)
        return;
    sp__drain_pipe(d->dlq_pipe[0]);
    rd_kafka_poll(d->dlq, 0);
}

static void sp__dlq_poll_cb(uv_poll_t *h, int status, int events)
{
    sp__dlq_serve(h->data);
}

static void sp__rk_timer_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    sp__consume(d);
    sp__dlq_serve(d);
}

/* What a dead letter's delivery report refers to. Starts with the same
 * int as sp_delivery, which alert deliveries pass instead. */
struct sp__dlq_ref {
    int what; /* SP_PRODUCE_DLQ */
    uint64_t gen;
    int32_t partition;
    char topic[];
};

static void sp__dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    sp_daemon *d = opaque;
    if (*(const int *)rkm->_private == SP_PRODUCE_ALERT) {
        sp_alerts_on_kafka(d, rkm->_private, rkm->err);
        return;
    }
    struct sp__dlq_ref *ref = rkm->_private;
    if (rkm->err) {
        /* Never lose a dead letter: produce it again. */
        sp_warn("kafka", "dead-letter delivery failed, retrying: %s",
                rd_kafka_err2str(rkm->err));
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_message_detach_headers((rd_kafka_message_t *)rkm, &hdrs);
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(rd_kafka_topic_name(rkm->rkt)),
                              RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
                              RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
                              RD_KAFKA_V_HEADERS(hdrs),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END) == 0)
            return;
        rd_kafka_headers_destroy(hdrs);
        sp_error("kafka", "dead-letter produce failed for good; stopping so that its batch "
                 "is consumed again after a restart");
        free(ref);
        sp_daemon_stop(d, 1);
        return;
    }
    d->dead_letters++;
    sp_pipeline_on_dlq_delivered(d, ref->topic, ref->partition, ref->gen);
    free(ref);
    sp_daemon_check_progress(d);
}

int sp_kafka_produce_alert(sp_daemon *d, sp_delivery *dl)
{
    if (d->dlq == NULL || d->cfg.kafka_alerts_topic[0] == '\0')
        return -1;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->dlq, RD_KAFKA_V_TOPIC(d->cfg.kafka_alerts_topic),
        RD_KAFKA_V_VALUE(dl->json, strlen(dl->json)),
        RD_KAFKA_V_KEY(dl->video, strlen(dl->video)),
        RD_KAFKA_V_HEADER("sp-alert-id", dl->alert_id, -1),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(dl), RD_KAFKA_V_END);
    return err ? -1 : 0;
}

int sp_kafka_dead_letter(sp_daemon *d, const rd_kafka_message_t *rkm,
                         const char *reason, uint64_t gen)
{
    if (d->dlq == NULL || d->cfg.kafka_dlq_topic[0] == '\0')
        return 0;
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)rkm->partition);
    snprintf(off, sizeof(off), "%" PRId64, rkm->offset);

    /* The original headers are kept, ours appended. */
    rd_kafka_headers_t *in = NULL, *hdrs;
    if (rd_kafka_message_headers(rkm, &in) == 0 && in != NULL)
        hdrs = rd_kafka_headers_copy(in);
    else
        hdrs = rd_kafka_headers_new(4);
    rd_kafka_header_add(hdrs, "sp-reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "sp-topic", -1, topic, -1);
    rd_kafka_header_add(hdrs, "sp-partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "sp-offset", -1, off, -1);

    size_t tlen = strlen(topic);
    struct sp__dlq_ref *ref = sp_xmalloc(sizeof(*ref) + tlen + 1);
    ref->what = SP_PRODUCE_DLQ;
    ref->gen = gen;
    ref->partition = rkm->partition;
    memcpy(ref->topic, topic, tlen + 1);

    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->dlq, RD_KAFKA_V_TOPIC(d->cfg.kafka_dlq_topic),
        RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
        RD_KAFKA_V_KEY(rkm->key, rkm->key_len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(ref),
        RD_KAFKA_V_END);
    if (err) {
        /* The local queue is full (a broker outage): the batch cannot be
         * flushed without this letter, so wait for room by failing loudly
         * and stopping; the restart re-reads it from the stored offset. */
        rd_kafka_headers_destroy(hdrs);
        free(ref);
        sp_error("kafka", "dead-letter produce failed: %s; stopping so that nothing is lost",
                 rd_kafka_err2str(err));
        sp_daemon_stop(d, 1);
        return 1; /* counted as outstanding for good: its batch never flushes */
    }
    return 1;
}

static int sp__set(rd_kafka_conf_t *conf, const char *k, const char *v,
                   char *errstr, size_t errsz)
{
    if (rd_kafka_conf_set(conf, k, v, errstr, errsz) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

/* What the daemon needs of librdkafka; [kafka] rdkafka.* comes after these
 * and may override them. */
static const char *const sp__consumer_defaults[][2] = {
    {"partition.assignment.strategy", "cooperative-sticky"},
    /* Offsets are stored only after Redis acknowledged (exactly once). */
    {"enable.auto.offset.store", "false"},
    {"enable.auto.commit", "true"},
    {"auto.offset.reset", "earliest"},
    {"enable.partition.eof", "true"},
    {"log.queue", "true"},
    {"client.id", "sharepulsed"},
    /* librdkafka 2.0 stops fetching for about a second once its local queue
     * holds queued.min.messages; with the default 100000 a consumer slower
     * than the fetcher idles most of each second. Bound the queue by bytes
     * (queued.max.messages.kbytes) instead. */
    {"queued.min.messages", "1000000"},
    {"queued.max.messages.kbytes", "32768"},
    {"statistics.interval.ms", "2000"},
};

static const char *const sp__producer_defaults[][2] = {
    {"enable.idempotence", "true"},
    {"linger.ms", "5"},
    {"client.id", "sharepulsed-dlq"},
    {"log.queue", "true"},
};

static int sp__set_all(rd_kafka_conf_t *conf, const char *const kv[][2], size_t n,
                       char *errstr, size_t errsz)
{
    for (size_t i = 0; i < n; i++)
        if (sp__set(conf, kv[i][0], kv[i][1], errstr, errsz) != 0)
            return -1;
    return 0;
}

static int sp__apply_user_props(sp_daemon *d, rd_kafka_conf_t *conf,
                                char *errstr, size_t errsz)
{
    for (int i = 0; i < d->cfg.n_rdkafka; i++) {
        char e[512];
        if (sp__set(conf, d->cfg.rdkafka[i].key, d->cfg.rdkafka[i].value, e,
                    sizeof(e)) != 0) {
            snprintf(errstr, errsz, "%s:%d: [kafka] rdkafka.%s: %s",
                     d->config_path ? d->config_path : "--set",
                     d->cfg.rdkafka[i].line, d->cfg.rdkafka[i].key, e);
            return -1;
        }
    }
    return 0;
}

static int sp__pipe_init(uv_loop_t *loop, int fds[2], uv_poll_t *poll,
                         uv_poll_cb cb, void *data)
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    uv_poll_init(loop, poll, fds[0]);
    poll->data = data;
    uv_poll_start(poll, UV_READABLE, cb);
    return 0;
}

/* --drain: the end offsets of every partition of the topics, now. This
 * runs once before the loop starts, so blocking is fine here. */
static int sp__query_ends(sp_daemon *d, rd_kafka_topic_partition_list_t *topics,
                          char *errstr, size_t errsz)
{
    d->watermarks = rd_kafka_topic_partition_list_new(16);
    for (int t = 0; t < topics->cnt; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(d->rk, topics->elems[t].topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(d->rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            snprintf(errstr, errsz, "metadata for topic %s: %s", topics->elems[t].topic,
                     rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            return -1;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            int32_t id = md->topics[0].partitions[p].id;
            int64_t lo, hi;
            err = rd_kafka_query_watermark_offsets(d->rk, topics->elems[t].topic, id,
                                                   &lo, &hi, 10000);
            if (err) {
                snprintf(errstr, errsz, "end offset of %s:%d: %s",
                         topics->elems[t].topic, (int)id, rd_kafka_err2str(err));
                rd_kafka_metadata_destroy(md);
                return -1;
            }
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_add(d->watermarks, topics->elems[t].topic, id);
            tp->offset = hi;
            tp->opaque = (void *)(intptr_t)lo;
            sp_info("kafka", "drain target topic=%s partition=%d end=%" PRId64,
                    topics->elems[t].topic, (int)id, hi);
        }
        rd_kafka_metadata_destroy(md);
    }
    return 0;
}

int sp_kafka_start(sp_daemon *d, char *errstr, size_t errsz)
{
    const sp_config *cfg = &d->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[512];

    if (sp__set(conf, "bootstrap.servers", cfg->kafka_brokers, e, sizeof(e)) ||
        sp__set(conf, "group.id", cfg->kafka_group, e, sizeof(e)) ||
        sp__set_all(conf, sp__consumer_defaults, SP_ARRAY_SIZE(sp__consumer_defaults), e,
                    sizeof(e))) {
        snprintf(errstr, errsz, "kafka config: %s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (sp__apply_user_props(d, conf, errstr, errsz) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_rebalance_cb(conf, sp__rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, sp__log_cb);
    rd_kafka_conf_set_error_cb(conf, sp__error_cb);
    rd_kafka_conf_set_stats_cb(conf, sp__stats_cb);

    d->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (d->rk == NULL) {
        snprintf(errstr, errsz, "kafka consumer: %s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(d->rk);
    d->rkq = rd_kafka_queue_get_consumer(d->rk);
    rd_kafka_set_log_queue(d->rk, d->rkq);
    /* The protocol is only known after the first join; cooperative-sticky
     * is what we configure, unless rdkafka.* overrode it. */
    d->cooperative = 1;
    for (int i = 0; i < cfg->n_rdkafka; i++)
        if (strcmp(cfg->rdkafka[i].key, "partition.assignment.strategy") == 0 &&
            strstr(cfg->rdkafka[i].value, "cooperative") == NULL)
            d->cooperative = 0;

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    char *list = sp_xstrdup(cfg->kafka_topics), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        char *end = t + strlen(t);
        while (end > t && end[-1] == ' ')
            *--end = '\0';
        if (*t)
            rd_kafka_topic_partition_list_add(topics, t, RD_KAFKA_PARTITION_UA);
    }
    free(list);

    if (d->drain && sp__query_ends(d, topics, errstr, errsz) != 0) {
        rd_kafka_topic_partition_list_destroy(topics);
        return -1;
    }

    rd_kafka_resp_err_t err = rd_kafka_subscribe(d->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errsz, "subscribe: %s", rd_kafka_err2str(err));
        return -1;
    }

    if (sp__pipe_init(d->loop, d->rk_pipe, &d->rk_poll, sp__rk_poll_cb, d) != 0) {
        snprintf(errstr, errsz, "pipe: %s", strerror(errno));
        return -1;
    }
    rd_kafka_queue_io_event_enable(d->rkq, d->rk_pipe[1], "1", 1);
    uv_timer_init(d->loop, &d->rk_timer);
    d->rk_timer.data = d;
    uv_timer_start(&d->rk_timer, sp__rk_timer_cb, 100, 100);
    uv_idle_init(d->loop, &d->rk_idle);
    d->rk_idle.data = d;
    d->rk_loop_ready = 1;

    /* One producer for the dead letters and the alerts. */
    if (cfg->kafka_dlq_topic[0] != '\0' || cfg->kafka_alerts_topic[0] != '\0') {
        rd_kafka_conf_t *pconf = rd_kafka_conf_new();
        if (sp__set(pconf, "bootstrap.servers", cfg->kafka_brokers, e, sizeof(e)) ||
            sp__set_all(pconf, sp__producer_defaults, SP_ARRAY_SIZE(sp__producer_defaults), e,
                        sizeof(e))) {
            snprintf(errstr, errsz, "kafka producer config: %s", e);
            rd_kafka_conf_destroy(pconf);
            return -1;
        }
        /* Security and client settings ([kafka] rdkafka.*) apply to both. */
        if (sp__apply_user_props(d, pconf, errstr, errsz) != 0) {
            rd_kafka_conf_destroy(pconf);
            return -1;
        }
        rd_kafka_conf_set_opaque(pconf, d);
        rd_kafka_conf_set_dr_msg_cb(pconf, sp__dlq_dr_cb);
        rd_kafka_conf_set_log_cb(pconf, sp__log_cb);
        rd_kafka_conf_set_error_cb(pconf, sp__error_cb);
        d->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, e, sizeof(e));
        if (d->dlq == NULL) {
            snprintf(errstr, errsz, "kafka producer: %s", e);
            rd_kafka_conf_destroy(pconf);
            return -1;
        }
        if (sp__pipe_init(d->loop, d->dlq_pipe, &d->dlq_poll, sp__dlq_poll_cb, d) != 0) {
            snprintf(errstr, errsz, "pipe: %s", strerror(errno));
            return -1;
        }
        /* Its logs, errors and delivery reports all come out of rd_kafka_poll
         * on the loop. */
        rd_kafka_set_log_queue(d->dlq, NULL);
        rd_kafka_queue_t *mq = rd_kafka_queue_get_main(d->dlq);
        rd_kafka_queue_io_event_enable(mq, d->dlq_pipe[1], "1", 1);
        rd_kafka_queue_destroy(mq);
        d->dlq_loop_ready = 1;
    }
    return 0;
}

void sp_kafka_close(sp_daemon *d)
{
    if (d->kafka_closing || d->rk == NULL)
        return;
    d->kafka_closing = 1;
    sp_info("kafka", "closing consumer");
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(d->rk, d->rkq);
    if (error) {
        sp_error("kafka", "consumer close: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

int sp_kafka_closed(sp_daemon *d)
{
    return d->rk == NULL || rd_kafka_consumer_closed(d->rk);
}

static void sp__close_pipe(sp_daemon *d, uv_poll_t *poll, int fds[2])
{
    uv_close((uv_handle_t *)poll, NULL);
    close(fds[0]);
    close(fds[1]);
}

void sp_kafka_free(sp_daemon *d)
{
    if (d->dlq != NULL) {
        rd_kafka_queue_t *mq = rd_kafka_queue_get_main(d->dlq);
        rd_kafka_queue_io_event_enable(mq, -1, NULL, 0);
        rd_kafka_queue_destroy(mq);
        rd_kafka_resp_err_t err = rd_kafka_flush(d->dlq, 5000);
        if (err)
            sp_error("kafka", "dead-letter flush at exit: %s", rd_kafka_err2str(err));
        rd_kafka_destroy(d->dlq);
        d->dlq = NULL;
        if (d->dlq_loop_ready)
            sp__close_pipe(d, &d->dlq_poll, d->dlq_pipe);
    }
    if (d->rk != NULL) {
        rd_kafka_queue_io_event_enable(d->rkq, -1, NULL, 0);
        if (d->rk_loop_ready) {
            uv_timer_stop(&d->rk_timer);
            uv_close((uv_handle_t *)&d->rk_timer, NULL);
            uv_idle_stop(&d->rk_idle);
            uv_close((uv_handle_t *)&d->rk_idle, NULL);
        }
        rd_kafka_queue_destroy(d->rkq);
        rd_kafka_destroy(d->rk);
        d->rk = NULL;
        if (d->rk_loop_ready)
            sp__close_pipe(d, &d->rk_poll, d->rk_pipe);
    }
    if (d->watermarks)
        rd_kafka_topic_partition_list_destroy(d->watermarks);
    if (d->revoking)
        rd_kafka_topic_partition_list_destroy(d->revoking);
}
