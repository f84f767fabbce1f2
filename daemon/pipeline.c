/*
 * pipeline.c - partitions, their batches, and the exactly-once flush.
 *
 * Each assigned partition owns a pending batch (events taken in, not yet
 * sent) and at most one in-flight batch (sent to Redis, not acknowledged).
 * A flush encodes the pending batch as one call of the apply script, which
 * checks the partition's stored offset, applies all deltas and advances the
 * offset atomically. Only after Redis acknowledged is the offset stored for
 * Kafka's own commit. A batch is flushed only once the dead-letter copies of
 * its bad messages are delivered, so a crash can duplicate a dead letter
 * but never lose one.
 *
 * Assignments wait for the stored offsets: the rebalance callback asks
 * Redis, and the partitions are assigned, at those offsets, when it answers.
 * Revocations wait for the partitions' in-flight batches; their pending
 * events are dropped and will be consumed again by the next owner.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "jsonarena.h"

/* Flush right after an acknowledgement once this many events wait. */
#define SP_FLUSH_EAGER_EVENTS 20000
/* Entities whose windows changed with the clock alone, written per flush
 * of a partition (sp_win_set_clock_budget): about 60 ms of Redis time, so
 * that a wave of them (every video of the last minute at the minute's end,
 * a restart's loaded state) never holds the next batch and its alerts for
 * seconds. What is left goes out right after the acknowledgement. */
#define SP_FLUSH_CLOCK_ENTITIES 2000

/* A partition's windows, as every flush of the pipeline writes them. */
static sp_win *sp__part_win_new(void)
{
    sp_win *w = sp_win_new();
    sp_win_set_clock_budget(w, SP_FLUSH_CLOCK_ENTITIES);
    return w;
}

static sp_part *sp__part_find(sp_daemon *d, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    }
    return NULL;
}

static sp_part *sp__part_new(sp_daemon *d, const char *topic, int32_t partition)
{
    sp_part *p = sp_xcalloc(1, sizeof(*p));
    p->topic = sp_xstrdup(topic);
    p->partition = partition;
    p->stored = -1;
    p->next = -1;
    p->pending = sp_batch_new();
    p->pending_gen = ++d->next_gen;
    p->win = sp__part_win_new();
    p->max_ts = -1;
    sp_buf_init(&p->inflight_cmd);
    p->end_at_start = -1;
    p->low_at_start = 0;
    if (d->watermarks != NULL) {
        rd_kafka_topic_partition_t *w =
            rd_kafka_topic_partition_list_find(d->watermarks, topic, partition);
        if (w != NULL) {
            p->end_at_start = w->offset;
            p->low_at_start = (int64_t)(intptr_t)w->opaque;
        }
    }
    if (d->n_parts == d->cap_parts) {
        d->cap_parts = d->cap_parts ? d->cap_parts * 2 : 16;
        d->parts = sp_xrealloc(d->parts, d->cap_parts * sizeof(*d->parts));
    }
    d->parts[d->n_parts++] = p;
    return p;
}

static void sp__part_free(sp_part *p)
{
    if (p == NULL)
        return;
    sp_batch_free(p->pending);
    sp_batch_free(p->inflight);
    sp_win_free(p->win);
    sp_buf_free(&p->inflight_cmd);
    sp_buf_free(&p->inflight_alerts);
    free(p->topic);
    free(p);
}

static void sp__part_remove(sp_daemon *d, sp_part *p)
{
    for (size_t i = 0; i < d->n_parts; i++)
        if (d->parts[i] == p) {
            d->parts[i] = d->parts[--d->n_parts];
            break;
        }
    d->pending_events -= sp_batch_events(p->pending) + sp_batch_bad(p->pending);
    sp__part_free(p);
}

void sp_pipeline_free(sp_daemon *d)
{
    for (size_t i = 0; i < d->n_parts; i++)
        sp__part_free(d->parts[i]);
    free(d->parts);
    sp_buf_free(&d->updates);
    d->parts = NULL;
    d->n_parts = d->cap_parts = 0;
}

/* ---- backpressure ---- */

static void sp__backpressure(sp_daemon *d)
{
    uint64_t cap = (uint64_t)d->cfg.max_pending_events;
    if (!d->paused && d->pending_events >= cap) {
        sp_debug("pipeline", "pausing fetch pending_events=%" PRIu64, d->pending_events);
        d->paused = 1;
        sp_kafka_pause(d, 1);
    } else if (d->paused && d->pending_events < cap / 2) {
        sp_debug("pipeline", "resuming fetch pending_events=%" PRIu64, d->pending_events);
        d->paused = 0;
        sp_kafka_pause(d, 0);
    }
}

/* ---- messages in ---- */

int sp_pipeline_on_message(sp_daemon *d, rd_kafka_message_t *rkm, int64_t now_ms)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    sp_part *p = sp__part_find(d, topic, rkm->partition);

    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (p != NULL) {
            p->eof = 1;
            p->eof_offset = rkm->offset;
            p->eof_ms = uv_now(d->loop);
        }
        return 0;
    }
    if (rkm->err) {
        unsigned long sup;
        if (sp_ratelimit_ok(&d->rl_kafka_err, now_ms, 5000, &sup))
            sp_warn("kafka", "consume error: %s suppressed=%lu",
                    rd_kafka_message_errstr(rkm), sup);
        return 0;
    }
    /* Messages of a partition not (or no longer) ours, or taken in before
     * a re-seek, or arriving while stopping: leave them to the next run. */
    if (p == NULL || p->state != SP_PART_ACTIVE || d->stopping)
        return 0;
    if (p->next >= 0 && rkm->offset < p->next)
        return 0;

    sp_event ev;
    char reason[48];
    const char *payload = rkm->payload ? rkm->payload : "";
    int rc;
    if (rkm->len > SP_EVENT_MAX_BYTES) {
        snprintf(reason, sizeof(reason), "too_large");
        rc = SP_EPARSE;
    } else {
        rc = sp_event_parse(payload, rkm->len, now_ms, d->cfg.max_future_ms, &ev,
                            reason, sizeof(reason));
        sp_jsonarena_reset(); /* the parse left no Jansson value alive */
    }
    if (rc == 0) {
        sp_batch_add(p->pending, &ev);
        if (d->cfg.windows)
            sp_win_add(p->win, &ev, &d->cfg);
        if (ev.ts_ms > p->max_ts)
            p->max_ts = ev.ts_ms;
        d->events_by_type[ev.type]++;
    } else {
        sp_batch_add_bad(p->pending);
        sp_daemon_count_bad(d, reason);
        if (sp_kafka_dead_letter(d, rkm, reason, p->pending_gen))
            p->pending_dlq++;
        unsigned long sup;
        if (sp_ratelimit_ok(&d->rl_bad, now_ms, 5000, &sup))
            sp_warn("pipeline", "bad input reason=%s topic=%s partition=%d offset=%" PRId64
                    " suppressed=%lu", reason, topic, (int)rkm->partition,
                    rkm->offset, sup);
    }
    p->next = rkm->offset + 1;
    p->eof = 0;
    d->pending_events++;
    if (d->pending_events >= (uint64_t)d->cfg.max_pending_events)
        sp__backpressure(d);
    return 1;
}

void sp_pipeline_on_dlq_delivered(sp_daemon *d, const char *topic,
                                  int32_t partition, uint64_t gen)
{
    sp_part *p = sp__part_find(d, topic, partition);
    if (p != NULL && p->pending_gen == gen && p->pending_dlq > 0)
        p->pending_dlq--;
}

/* ---- flushing ---- */

static int64_t sp__parse_offset(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0)
        return -1;
    return strtoll(r->str, NULL, 10);
}

static void sp__send_inflight(sp_daemon *d, sp_part *p);

static void sp__reseek(sp_daemon *d, sp_part *p);

/* The applied batch's alerts go to their sinks outside Redis. */
static void sp__queue_alerts(sp_daemon *d, sp_part *p)
{
    const sp_buf *b = &p->inflight_alerts;
    for (size_t i = 0; i < b->len;) {
        const char *line = b->data + i;
        const char *tab = memchr(line, '\t', b->len - i);
        const char *nl = memchr(line, '\n', b->len - i);
        sp_alerts_queue(d, p->topic, p->partition, line, (size_t)(tab - line), tab + 1,
                        (size_t)(nl - tab - 1));
        i = (size_t)(nl - b->data) + 1;
    }
    sp_buf_reset(&p->inflight_alerts);
}

static void sp__apply_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    sp_part *p = priv;
    SP_ASSERT(p->inflight != NULL);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* Someone flushed the script cache: load it again and resend;
             * both go out in order on the same connection. */
            sp_redis_sendf(&d->redis, NULL, NULL, "SCRIPT LOAD %s", sp_apply_script);
            sp__send_inflight(d, p);
            return;
        }
        p->inflight_sent = 0;
        if (reply != NULL && strstr(reply->str, "OOM command not allowed") != NULL) {
            /* Refused at its first write: nothing was applied; resent on
             * the next tick, fetching pauses once pending events pile up. */
            unsigned long sup;
            d->redis.errors++;
            if (sp_ratelimit_ok(&d->rl_redis_err, sp_wall_ms(), 5000, &sup))
                sp_error("redis", "Redis is out of memory (maxmemory); holding topic=%s "
                         "partition=%d until it has room suppressed=%lu", p->topic,
                         (int)p->partition, sup);
            return;
        }
        if (reply != NULL && (strstr(reply->str, "Error running script") != NULL ||
                              strstr(reply->str, "user_script") != NULL)) {
            /* Redis does not roll a script back: writes made before the
             * error stay, so resending would count them again. */
            sp_error("redis", "apply script failed part-way topic=%s partition=%d error=\"%s\"; "
                     "stopping rather than counting twice", p->topic, (int)p->partition,
                     reply->str);
            d->redis.errors++;
            sp_daemon_stop(d, 1);
            return;
        }
        if (reply != NULL) {
            unsigned long sup;
            d->redis.errors++;
            if (sp_ratelimit_ok(&d->rl_redis_err, sp_wall_ms(), 5000, &sup))
                sp_error("redis", "apply failed topic=%s partition=%d error=\"%s\" suppressed=%lu",
                         p->topic, (int)p->partition, reply->str, sup);
        }
        if (p->state == SP_PART_REVOKING) {
            /* The connection is gone, so the batch either applied or never
             * will: the next owner reads the truth from Redis. */
            sp_batch_free(p->inflight);
            p->inflight = NULL;
            sp_daemon_check_progress(d);
        }
        return; /* resent on the next flush tick or reconnect */
    }

    const char *status = "";
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING)
        status = reply->element[0]->str;

    sp_batch *done = p->inflight;
    p->inflight = NULL;
    p->inflight_sent = 0;

    if (strcmp(status, "ok") == 0 || strcmp(status, "dup") == 0) {
        p->stored = p->inflight_to;
        p->seq = p->inflight_seq;
        sp_histogram_observe(&d->flush_hist,
                             (double)(uv_now(d->loop) - p->inflight_sent_ms) / 1000.0);
        sp_debug("pipeline", "flushed topic=%s partition=%d events=%" PRIu64 " videos=%zu bytes=%zu ms=%" PRIu64
                 " backlog=%zu", p->topic, (int)p->partition, sp_batch_events(done),
                 sp_batch_videos(done), p->inflight_cmd.len, uv_now(d->loop) - p->inflight_sent_ms,
                 sp_win_backlog(p->win));
        d->flushes++;
        d->flushed_events += sp_batch_events(done);
        if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_INTEGER &&
            reply->element[2]->integer > 0)
            sp_warn("redis", "apply skipped writes to keys of the wrong type count=%lld",
                    reply->element[2]->integer);
        sp_kafka_store_offset(d, p->topic, p->partition, p->stored);
        if (p->state == SP_PART_ACTIVE)
            sp__queue_alerts(d, p); /* else the next owner reads them from Redis */
        else
            sp_buf_reset(&p->inflight_alerts);
    } else if (strcmp(status, "fenced") == 0) {
        int64_t stored = sp__parse_offset(reply->element[1]);
        d->fenced++;
        if (stored < 0 && p->stored >= 0) {
            sp_error("redis", "the stored offset of %s:%d is gone (Redis lost or flushed "
                     "its data); refusing to write counts that would be wrong",
                     p->topic, (int)p->partition);
            sp_batch_free(done);
            sp_daemon_stop(d, 1);
            return;
        }
        sp_batch_free(done);
        if (p->state != SP_PART_ACTIVE) {
            /* Being revoked: the next owner reads the stored offset. */
            sp_daemon_check_progress(d);
            return;
        }
        if (!d->cooperative) {
            /* An eager unassign would drop every partition; a restart
             * resumes all of them from Redis instead. */
            sp_error("pipeline", "fenced topic=%s partition=%d expected=%" PRId64
                     " stored=%" PRId64 ": another writer moved it; restarting to re-read",
                     p->topic, (int)p->partition, p->stored, stored);
            sp_daemon_stop(d, 1);
            return;
        }
        sp_warn("pipeline", "fenced topic=%s partition=%d expected=%" PRId64
                " stored=%" PRId64 ": another writer moved it; re-reading from there",
                p->topic, (int)p->partition, p->stored, stored);
        sp__reseek(d, p);
        sp_daemon_check_progress(d);
        return;
    } else {
        /* Not our script's answer: whether it applied is unknown. */
        sp_error("redis", "unexpected apply reply topic=%s partition=%d; stopping",
                 p->topic, (int)p->partition);
        sp_batch_free(done);
        sp_daemon_stop(d, 1);
        return;
    }
    sp_batch_free(done);
    if (p->state == SP_PART_REVOKING) {
        sp_daemon_check_progress(d);
        return;
    }
    if (sp_batch_events(p->pending) + sp_batch_bad(p->pending) >= SP_FLUSH_EAGER_EVENTS ||
        sp_win_backlog(p->win) > 0)
        sp_pipeline_flush(d);
    sp_daemon_check_progress(d);
}

static void sp__send_inflight(sp_daemon *d, sp_part *p)
{
    p->inflight_sent = 1;
    p->inflight_sent_ms = uv_now(d->loop);
    sp_redis_send(&d->redis, p->inflight_cmd.data, p->inflight_cmd.len, sp__apply_cb, p);
}

static void sp__flush_part(sp_daemon *d, sp_part *p)
{
    if (p->state != SP_PART_ACTIVE || p->inflight != NULL || p->pending_dlq > 0)
        return;
    uint64_t n = sp_batch_events(p->pending) + sp_batch_bad(p->pending);
    if ((n == 0 && sp_win_dirty(p->win) == 0) || p->next < 0)
        return;

    int64_t clock = sp_win_clock(p->win);
    sp_batch_target t = {d->cfg.redis_prefix, d->cfg.kafka_group, p->topic, p->partition,
                         p->stored, p->next, p->seq, clock, d->cfg.top_n};
    sp_resp r;
    sp_resp_init(&r);
    sp_batch_encode(p->pending, &t, d->redis.sha, &r);
    sp_buf_reset(&d->updates);
    sp_buf alerts;
    sp_buf_init(&alerts);
    sp_win_encode(p->win, &d->cfg, &r, &d->updates, &alerts);
    /* Each alert's deliveries outside Redis are recorded in the same unit. */
    sp_buf_reset(&p->inflight_alerts);
    for (size_t i = 0; i < alerts.len;) {
        const char *nl = memchr(alerts.data + i, '\n', alerts.len - i);
        sp_alerts_route(d, alerts.data + i, (size_t)(nl - alerts.data) - i, &r,
                        &p->inflight_alerts);
        i = (size_t)(nl - alerts.data) + 1;
    }
    sp_buf_free(&alerts);
    if (d->updates.len > 0) {
        sp_buf msg;
        sp_buf_init(&msg);
        sp_buf_appendf(&msg, "{\"t\":%" PRId64 ",\"videos\":[", clock);
        sp_buf_append(&msg, d->updates.data, d->updates.len);
        sp_buf_appends(&msg, "]}");
        sp_resp_bulks(&r, "u");
        sp_resp_bulk(&r, msg.data, msg.len);
        sp_buf_free(&msg);
    }
    sp_buf_reset(&p->inflight_cmd);
    sp_resp_finish(&r, &p->inflight_cmd);
    sp_resp_free(&r);
    p->inflight = p->pending;
    p->inflight_to = p->next;
    p->inflight_seq = p->seq + 1;
    p->pending = sp_batch_new();
    p->pending_gen = ++d->next_gen;
    d->pending_events -= n;
    sp__send_inflight(d, p);
    if (d->paused)
        sp__backpressure(d);
}

/* How long an end report from before a broker outage is not trusted once
 * the brokers are back: time for the first fetch to bring the backlog. */
#define SP_EOF_STALE_MS 5000

/* Caught up: librdkafka reported the partition's end, nothing was appended
 * since as far as the last fetch knows, and the broker is reachable. While
 * it is not, nobody knows what producers are writing meanwhile: a partition
 * that followed the wall clock through an outage would make every event
 * produced during it late (its edges stepped before it arrives). Just after
 * the brokers are back, an end report from before the outage is stale until
 * a fresh one comes, or the first fetches had time to bring the backlog
 * (librdkafka reports an end only once per offset: an idle partition gets
 * no fresh one). */
static int sp__caught_up(const sp_daemon *d, const sp_part *p)
{
    int64_t lo, hi;
    if (!p->eof || d->kafka_down || d->rk == NULL)
        return 0;
    if (d->kafka_back_ms > 0 && p->eof_ms < d->kafka_back_ms &&
        uv_now(d->loop) - d->kafka_back_ms < SP_EOF_STALE_MS)
        return 0;
    return rd_kafka_get_watermark_offsets(d->rk, p->topic, p->partition, &lo, &hi) != 0 ||
           hi <= p->eof_offset;
}

/* A partition's watermark: its newest event time minus the allowed
 * lateness, or the (trusted) wall clock minus the lateness once it is caught
 * up. Returns 0 and sets *wm, or -1 while the partition has not been heard
 * from since it was (re)assigned. */
static int sp__watermark(const sp_daemon *d, const sp_part *p, int64_t cap, int64_t *wm)
{
    if (d->drained || sp__caught_up(d, p))
        *wm = cap;
    else if (p->max_ts >= 0)
        *wm = p->max_ts - d->cfg.allowed_lateness_ms;
    else
        return -1;
    if (*wm > cap)
        *wm = cap;
    return 0;
}

/* The clock T (SPEC 2): the lowest watermark of the active partitions,
 * never ahead of the wall clock minus the lateness, never back. */
static int64_t sp__clock(sp_daemon *d, int64_t cap)
{
    int64_t t = INT64_MAX;
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        int64_t wm;
        if (p->state != SP_PART_ACTIVE)
            continue;
        if (sp__watermark(d, p, cap, &wm) != 0)
            return d->clock_ms; /* not heard from yet */
        if (wm < t)
            t = wm;
    }
    if (t != INT64_MAX && t > d->clock_ms)
        d->clock_ms = t;
    return d->clock_ms;
}

static void sp__request_offsets(sp_daemon *d);

void sp_pipeline_flush(sp_daemon *d)
{
    if (d->redis.state != SP_REDIS_READY)
        return;
    sp__request_offsets(d); /* partitions whose offsets were refused earlier */
    int64_t cap = sp_trusted_wall_ms() - d->cfg.allowed_lateness_ms;
    int64_t clock = sp__clock(d, cap);
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        /* A partition's windows (and detectors) never run ahead of its own
         * watermark: one assigned behind the others (a rebalance, a
         * re-read) catches up from where its events are, so its edges are
         * stepped only once its events before them are in. */
        int64_t wm;
        if (p->state == SP_PART_ACTIVE && clock > 0 && sp__watermark(d, p, cap, &wm) == 0)
            sp_win_advance(p->win, wm < clock ? wm : clock);
        if (p->inflight != NULL && !p->inflight_sent)
            sp__send_inflight(d, p);
        else
            sp__flush_part(d, p);
    }
}

int sp_pipeline_idle(sp_daemon *d)
{
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        if (p->inflight != NULL || p->pending_dlq > 0 ||
            (p->state == SP_PART_ACTIVE &&
             (sp_batch_events(p->pending) + sp_batch_bad(p->pending) > 0 ||
              sp_win_backlog(p->win) > 0)))
            return 0;
    }
    return 1;
}

int sp_pipeline_drained(sp_daemon *d)
{
    if (!d->assigned_once)
        return 0;
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        if (p->state != SP_PART_ACTIVE)
            return 0;
        int64_t pos = p->next >= 0 ? p->next : p->low_at_start;
        /* A partition can end in transaction markers that are never
         * delivered: its end-of-partition offset says it is done. */
        if (p->end_at_start >= 0 && pos < p->end_at_start &&
            !(p->eof && p->eof_offset >= p->end_at_start))
            return 0;
    }
    return sp_pipeline_idle(d);
}

/* ---- assignment ---- */

/* One lookup of stored positions: an HMGET of the offsets, then an
 * HGETALL of each partition's window state, sent back to back on one
 * connection so their replies arrive in that order. */
typedef struct sp__lookup {
    rd_kafka_topic_partition_list_t *list;
    int64_t *offsets;
    const char **offset_text;   /* for the log; NULL: none stored */
    int replies;                /* received so far */
    int ok;
} sp__lookup;

static void sp__lookup_cb(sp_daemon *d, redisReply *reply, void *priv);

/* Asks Redis for the stored offsets and window state of every partition
 * that waits for them; their assignment completes in sp__lookup_done. */
static void sp__request_offsets(sp_daemon *d)
{
    if (d->redis.state != SP_REDIS_READY)
        return; /* asked again in sp_pipeline_on_redis_ready */
    /* Called on every flush tick: cheap when no partition is waiting. */
    size_t waiting = 0;
    for (size_t i = 0; i < d->n_parts; i++)
        waiting += d->parts[i]->state == SP_PART_ASSIGNING && d->parts[i]->want_offsets;
    if (waiting == 0)
        return;
    sp__lookup *lk = sp_xcalloc(1, sizeof(*lk));
    lk->list = rd_kafka_topic_partition_list_new((int)waiting);
    lk->offsets = sp_xcalloc(waiting, sizeof(*lk->offsets));
    lk->ok = 1;
    for (size_t i = 0; i < d->n_parts; i++) {
        sp_part *p = d->parts[i];
        if (p->state == SP_PART_ASSIGNING && p->want_offsets) {
            rd_kafka_topic_partition_list_add(lk->list, p->topic, p->partition);
            p->want_offsets = 0;
        }
    }
    int n = lk->list->cnt;
    sp_buf key;
    sp_buf_init(&key);
    sp_buf_appendf(&key, "%soffsets:{%s}", d->cfg.redis_prefix, d->cfg.kafka_group);
    sp_resp r;
    sp_resp_init(&r);
    sp_resp_bulks(&r, "HMGET");
    sp_resp_bulk(&r, key.data, key.len);
    for (int i = 0; i < n; i++) {
        sp_buf_reset(&key);
        sp_buf_appendf(&key, "%s:%d", lk->list->elems[i].topic,
                       (int)lk->list->elems[i].partition);
        sp_resp_bulk(&r, key.data, key.len);
    }
    sp_buf cmd;
    sp_buf_init(&cmd);
    sp_resp_finish(&r, &cmd);
    sp_redis_send(&d->redis, cmd.data, cmd.len, sp__lookup_cb, lk);
    /* lk lives until its last reply, which cannot come before the last
     * send below. */
    for (int i = 0; i < n; i++) {
        sp_batch_target t = {d->cfg.redis_prefix, d->cfg.kafka_group, lk->list->elems[i].topic,
                             lk->list->elems[i].partition, 0, 0, 0, 0, 0};
        sp_buf_reset(&key);
        sp_batch_state_key(&t, &key);
        sp_resp_bulks(&r, "HGETALL");
        sp_resp_bulk(&r, key.data, key.len);
        sp_buf_reset(&cmd);
        sp_resp_finish(&r, &cmd);
        sp_redis_send(&d->redis, cmd.data, cmd.len, sp__lookup_cb, lk);
    }
    sp_resp_free(&r);
    sp_buf_free(&cmd);
    sp_buf_free(&key);
}

static void sp__lookup_free(sp__lookup *lk)
{
    rd_kafka_topic_partition_list_destroy(lk->list);
    free(lk->offsets);
    free(lk);
}

/* Restores partition i's window state from its HGETALL reply. */
static void sp__lookup_state(sp_daemon *d, sp__lookup *lk, int i, redisReply *reply)
{
    rd_kafka_topic_partition_t *tp = &lk->list->elems[i];
    sp_part *p = sp__part_find(d, tp->topic, tp->partition);
    if (p == NULL || p->state != SP_PART_ASSIGNING)
        return; /* revoked meanwhile */
    sp_win_free(p->win);
    p->win = sp__part_win_new();
    p->seq = 0;
    p->max_ts = -1; /* heard from again once it delivers */
    p->eof = 0;
    size_t bad = 0;
    for (size_t k = 0; k + 1 < reply->elements; k += 2) {
        const redisReply *f = reply->element[k], *v = reply->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            bad++;
        else if (f->len == 4 && memcmp(f->str, "#seq", 4) == 0)
            p->seq = strtoll(v->str, NULL, 10);
        else if (f->len > 0 && f->str[0] == '!')
            sp_alerts_queue(d, tp->topic, tp->partition, f->str, f->len, v->str, v->len);
        else if (!d->cfg.windows)
            continue; /* kept as it is, frozen with the fields it wrote */
        else if (sp_win_load(p->win, f->str, f->len, v->str, v->len) != 0)
            bad++;
    }
    if (bad > 0)
        sp_warn("pipeline", "window state not ours skipped topic=%s partition=%d fields=%zu",
                tp->topic, (int)tp->partition, bad);
    sp_info("pipeline", "window state loaded topic=%s partition=%d entities=%zu seq=%" PRId64,
            tp->topic, (int)tp->partition, sp_win_entities(p->win), p->seq);
}

static void sp__lookup_done(sp_daemon *d, sp__lookup *lk)
{
    rd_kafka_topic_partition_list_t *list = lk->list;
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(list->cnt);
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        sp_part *p = sp__part_find(d, tp->topic, tp->partition);
        if (p == NULL || p->state != SP_PART_ASSIGNING)
            continue; /* revoked meanwhile */
        if (!lk->ok) {
            p->want_offsets = 1; /* asked again once Redis is back */
            continue;
        }
        int64_t stored = lk->offsets[i];
        p->stored = stored;
        p->next = stored;
        p->state = SP_PART_ACTIVE;
        rd_kafka_topic_partition_list_add(assign, tp->topic, tp->partition)->offset =
            stored >= 0 ? stored : RD_KAFKA_OFFSET_BEGINNING;
        if (stored >= 0)
            sp_info("pipeline", "assigned topic=%s partition=%d from=%" PRId64,
                    tp->topic, (int)tp->partition, stored);
        else
            sp_info("pipeline", "assigned topic=%s partition=%d from=beginning",
                    tp->topic, (int)tp->partition);
    }
    if (lk->ok) {
        /* librdkafka waits for exactly one assign call per assignment, an
         * empty one included (after a cooperative revoke it hands out an
         * empty assignment and waits for the call). */
        sp_kafka_assign(d, assign);
        d->assigned_once = 1;
    }
    rd_kafka_topic_partition_list_destroy(assign);
    sp__lookup_free(lk);
    sp_daemon_check_progress(d);
}

static void sp__lookup_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    sp__lookup *lk = priv;
    int i = lk->replies++ - 1; /* -1: the HMGET, then partition i's state */
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        sp_error("redis", "reading stored positions failed: %s", reply->str);
    if (i < 0) {
        if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
            reply->elements == (size_t)lk->list->cnt) {
            for (int k = 0; k < lk->list->cnt; k++)
                lk->offsets[k] = sp__parse_offset(reply->element[k]);
        } else {
            lk->ok = 0;
        }
    } else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        if (lk->ok)
            sp__lookup_state(d, lk, i, reply);
    } else {
        lk->ok = 0;
    }
    if (lk->replies == lk->list->cnt + 1)
        sp__lookup_done(d, lk);
}

void sp_pipeline_on_assign(sp_daemon *d, rd_kafka_topic_partition_list_t *parts)
{
    if (parts->cnt == 0) {
        sp_kafka_assign(d, parts); /* nothing to look up; librdkafka waits for the call */
        d->assigned_once = 1;
        sp_daemon_check_progress(d);
        return;
    }
    for (int i = 0; i < parts->cnt; i++) {
        sp_part *p = sp__part_find(d, parts->elems[i].topic, parts->elems[i].partition);
        if (p == NULL)
            p = sp__part_new(d, parts->elems[i].topic, parts->elems[i].partition);
        p->state = SP_PART_ASSIGNING;
        p->want_offsets = 1;
    }
    sp__request_offsets(d);
}

static void sp__reseek(sp_daemon *d, sp_part *p)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
    sp_kafka_unassign(d, list);
    rd_kafka_topic_partition_list_destroy(list);
    d->pending_events -= sp_batch_events(p->pending) + sp_batch_bad(p->pending);
    sp_batch_reset(p->pending);
    p->pending_gen = ++d->next_gen;
    p->pending_dlq = 0;
    p->state = SP_PART_ASSIGNING; /* its windows (and watermark) are read again */
    p->want_offsets = 1;
    sp__request_offsets(d);
}

void sp_pipeline_on_redis_ready(sp_daemon *d)
{
    sp__request_offsets(d);
    sp_pipeline_flush(d);
}

/* ---- revocation ---- */

void sp_pipeline_on_revoke(sp_daemon *d, rd_kafka_topic_partition_list_t *parts)
{
    if (d->revoking == NULL)
        d->revoking = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_list_add(d->revoking, parts->elems[i].topic,
                                          parts->elems[i].partition);
        sp_part *p = sp__part_find(d, parts->elems[i].topic, parts->elems[i].partition);
        if (p == NULL)
            continue;
        p->state = SP_PART_REVOKING;
        sp_alerts_drop_partition(d, p->topic, p->partition); /* the next owner sends them */
        d->pending_events -= sp_batch_events(p->pending) + sp_batch_bad(p->pending);
        sp_batch_reset(p->pending);
        p->pending_dlq = 0;
        if (p->inflight != NULL && !p->inflight_sent) {
            /* Its connection died (or Redis refused it): nothing is
             * outstanding, so there is nothing to wait for. */
            sp_batch_free(p->inflight);
            p->inflight = NULL;
        }
    }
    sp_daemon_check_progress(d);
}

void sp_pipeline_progress_revoke(sp_daemon *d)
{
    if (d->revoking == NULL)
        return;
    for (int i = 0; i < d->revoking->cnt; i++) {
        sp_part *p = sp__part_find(d, d->revoking->elems[i].topic,
                                   d->revoking->elems[i].partition);
        if (p != NULL && p->inflight != NULL)
            return;
    }
    for (int i = 0; i < d->revoking->cnt; i++) {
        sp_part *p = sp__part_find(d, d->revoking->elems[i].topic,
                                   d->revoking->elems[i].partition);
        if (p != NULL && p->state == SP_PART_REVOKING)
            sp__part_remove(d, p);
    }
    rd_kafka_topic_partition_list_t *list = d->revoking;
    d->revoking = NULL;
    sp_kafka_unassign(d, list);
    rd_kafka_topic_partition_list_destroy(list);
    sp__backpressure(d);
}
