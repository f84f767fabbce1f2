/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <inttypes.h>
#include <string.h>

#include "daemon.h"
#include "detector.h"

const double sp_flush_buckets[SP_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,    2.5,   5,    10,  0};

void sp_histogram_observe(sp_histogram *h, double value)
{
    int i = 0;
    while (i < SP_HIST_BUCKETS - 1 && value > sp_flush_buckets[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

static void sp__head(sp_buf *b, const char *name, const char *type, const char *help)
{
    sp_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are our own reason codes and topic names; escape the
 * three characters the format reserves anyway. */
static void sp__label(sp_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sp_buf_appendf(b, "\\%c", *v);
        else if (*v == '\n')
            sp_buf_appends(b, "\\n");
        else
            sp_buf_append(b, v, 1);
    }
}

static int64_t sp__lag(sp_daemon *d, const sp_part *p)
{
    int64_t lo = -1, hi = -1;
    if (d->rk == NULL ||
        rd_kafka_get_watermark_offsets(d->rk, p->topic, p->partition, &lo, &hi) != 0 ||
        hi < 0)
        return -1;
    int64_t pos = p->next >= 0 ? p->next : lo;
    return pos >= 0 && hi >= pos ? hi - pos : -1;
}

void sp_metrics_render(sp_daemon *d, sp_buf *b)
{
    sp__head(b, "sharepulse_build_info", "gauge", "Version of the running daemon.");
    sp_buf_appendf(b, "sharepulse_build_info{version=\"%s\",librdkafka=\"%s\"} 1\n",
                   SP_VERSION, rd_kafka_version_str());

    sp__head(b, "sharepulse_events_total", "counter", "Valid events taken in, by type.");
    for (int t = 0; t < SP_EV__COUNT; t++)
        sp_buf_appendf(b, "sharepulse_events_total{type=\"%s\"} %" PRIu64 "\n",
                       sp_event_type_names[t], d->events_by_type[t]);

    sp__head(b, "sharepulse_bad_events_total", "counter",
             "Bad input, by reason code (SPEC section 6).");
    for (int i = 0; i < SP_REASONS_MAX && d->bad_by_reason[i].reason[0]; i++) {
        sp_buf_appends(b, "sharepulse_bad_events_total{reason=\"");
        sp__label(b, d->bad_by_reason[i].reason);
        sp_buf_appendf(b, "\"} %" PRIu64 "\n", d->bad_by_reason[i].n);
    }

    sp__head(b, "sharepulse_dead_letters_total", "counter",
             "Bad messages delivered to the dead-letter topic.");
    sp_buf_appendf(b, "sharepulse_dead_letters_total %" PRIu64 "\n", d->dead_letters);

    sp__head(b, "sharepulse_consumer_lag", "gauge",
             "Messages between the consumer's position and the partition's end.");
    for (size_t i = 0; i < d->n_parts; i++) {
        int64_t lag = sp__lag(d, d->parts[i]);
        if (lag < 0)
            continue;
        sp_buf_appends(b, "sharepulse_consumer_lag{topic=\"");
        sp__label(b, d->parts[i]->topic);
        sp_buf_appendf(b, "\",partition=\"%d\"} %" PRId64 "\n", (int)d->parts[i]->partition,
                       lag);
    }

    sp__head(b, "sharepulse_partitions_assigned", "gauge", "Partitions this instance owns.");
    sp_buf_appendf(b, "sharepulse_partitions_assigned %zu\n", d->n_parts);
    sp__head(b, "sharepulse_pending_events", "gauge",
             "Events taken in and not yet acknowledged by Redis.");
    sp_buf_appendf(b, "sharepulse_pending_events %" PRIu64 "\n", d->pending_events);
    sp__head(b, "sharepulse_alerts_total", "counter", "Alerts fired, by kind and level.");
    for (int l = 1; l < SP_LEVEL__COUNT; l++)
        sp_buf_appendf(b, "sharepulse_alerts_total{kind=\"momentum\",level=\"%s\"} %" PRIu64 "\n",
                       sp_level_names[l], d->alerts_by_level[l]);
    sp_buf_appendf(b, "sharepulse_alerts_total{kind=\"resolved\",level=\"\"} %" PRIu64 "\n",
                   d->alerts_resolved);
    sp__head(b, "sharepulse_alert_deliveries_total", "counter",
             "Alert deliveries to the sinks outside Redis, by outcome.");
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            sp__head(b, "sharepulse_alert_deliveries_queued", "gauge",
                     "Alert deliveries waiting or in flight, by sink.");
        for (int s = -1; s < d->cfg.n_webhooks; s++) {
            const sp_sink_stats *st = s < 0 ? &d->kafka_alert_stats : &d->webhook_stats[s];
            char sink[96];
            if (s < 0)
                snprintf(sink, sizeof(sink), "kafka");
            else
                snprintf(sink, sizeof(sink), "webhook:%s", d->cfg.webhooks[s].name);
            if (pass == 1) {
                sp_buf_appendf(b, "sharepulse_alert_deliveries_queued{sink=\"%s\"} %" PRIu64 "\n",
                               sink, st->queued);
                continue;
            }
            static const char *const what[] = {"delivered", "retry", "failed", "expired",
                                               "overflow"};
            const uint64_t n[] = {st->delivered, st->retries, st->failed, st->expired,
                                  st->overflow};
            for (int k = 0; k < 5; k++)
                sp_buf_appendf(b, "sharepulse_alert_deliveries_total{sink=\"%s\",result=\"%s\"} %"
                               PRIu64 "\n", sink, what[k], n[k]);
        }
    }
    sp__head(b, "sharepulse_clock_ms", "gauge",
             "The event-time clock T (low watermark minus lateness), 0 until known.");
    sp_buf_appendf(b, "sharepulse_clock_ms %" PRId64 "\n", d->clock_ms);
    size_t ents = 0, wbytes = 0;
    for (size_t i = 0; i < d->n_parts; i++) {
        ents += sp_win_entities(d->parts[i]->win);
        wbytes += sp_win_bytes(d->parts[i]->win);
    }
    sp__head(b, "sharepulse_window_entities", "gauge",
             "Videos, creators and hashtags with non-zero rolling windows held.");
    sp_buf_appendf(b, "sharepulse_window_entities %zu\n", ents);
    sp__head(b, "sharepulse_window_bytes", "gauge", "Heap bytes the rolling windows hold.");
    sp_buf_appendf(b, "sharepulse_window_bytes %zu\n", wbytes);
    sp__head(b, "sharepulse_fetch_paused", "gauge", "1 while fetching is paused (backpressure).");
    sp_buf_appendf(b, "sharepulse_fetch_paused %d\n", d->paused);

    sp__head(b, "sharepulse_flushes_total", "counter", "Batches applied to Redis.");
    sp_buf_appendf(b, "sharepulse_flushes_total %" PRIu64 "\n", d->flushes);
    sp__head(b, "sharepulse_flushed_events_total", "counter",
             "Events applied to Redis (exactly once).");
    sp_buf_appendf(b, "sharepulse_flushed_events_total %" PRIu64 "\n", d->flushed_events);
    sp__head(b, "sharepulse_fenced_total", "counter",
             "Batches refused because another writer moved the partition's offset.");
    sp_buf_appendf(b, "sharepulse_fenced_total %" PRIu64 "\n", d->fenced);

    sp__head(b, "sharepulse_flush_duration_seconds", "histogram",
             "Time from sending a batch to Redis to its acknowledgement.");
    uint64_t cum = 0;
    for (int i = 0; i < SP_HIST_BUCKETS; i++) {
        cum += d->flush_hist.counts[i];
        if (i < SP_HIST_BUCKETS - 1)
            sp_buf_appendf(b, "sharepulse_flush_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                           sp_flush_buckets[i], cum);
        else
            sp_buf_appendf(b, "sharepulse_flush_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64
                           "\n", cum);
    }
    sp_buf_appendf(b, "sharepulse_flush_duration_seconds_sum %.6f\n", d->flush_hist.sum);
    sp_buf_appendf(b, "sharepulse_flush_duration_seconds_count %" PRIu64 "\n",
                   d->flush_hist.count);

    sp__head(b, "sharepulse_redis_up", "gauge", "1 while the Redis connection is ready.");
    sp_buf_appendf(b, "sharepulse_redis_up %d\n", d->redis.state == SP_REDIS_READY);
    sp__head(b, "sharepulse_redis_errors_total", "counter",
             "Redis connection failures and error replies.");
    sp_buf_appendf(b, "sharepulse_redis_errors_total %" PRIu64 "\n", d->redis.errors);
    sp__head(b, "sharepulse_redis_reconnects_total", "counter", "Redis reconnection attempts.");
    sp_buf_appendf(b, "sharepulse_redis_reconnects_total %" PRIu64 "\n", d->redis.reconnects);
    sp__head(b, "sharepulse_kafka_up", "gauge",
             "0 while librdkafka reports every broker down.");
    sp_buf_appendf(b, "sharepulse_kafka_up %d\n", !d->kafka_down);
    sp__head(b, "sharepulse_loop_lag_seconds", "gauge",
             "How late the event loop ran its last 100 ms tick.");
    sp_buf_appendf(b, "sharepulse_loop_lag_seconds %.3f\n", d->loop_lag_ms / 1000.0);

    sp__head(b, "sharepulse_api_requests_total", "counter",
             "Dashboard API requests (/api/v1/), by outcome.");
    sp_buf_appendf(b, "sharepulse_api_requests_total{outcome=\"unauthorized\"} %" PRIu64 "\n",
                   d->api_unauthorized);
    sp_buf_appendf(b, "sharepulse_api_requests_total{outcome=\"error\"} %" PRIu64 "\n",
                   d->api_errors);
    sp_buf_appendf(b, "sharepulse_api_requests_total{outcome=\"other\"} %" PRIu64 "\n",
                   d->api_requests - d->api_unauthorized - d->api_errors);
    sp__head(b, "sharepulse_api_redis_up", "gauge",
             "1 while the API's Redis connections (reads, subscriber) are ready.");
    sp_buf_appendf(b, "sharepulse_api_redis_up{conn=\"reads\"} %d\n",
                   d->api_redis.state == SP_REDIS_READY);
    sp_buf_appendf(b, "sharepulse_api_redis_up{conn=\"subscriber\"} %d\n",
                   d->sub_redis.state == SP_REDIS_READY);
    sp__head(b, "sharepulse_sse_clients", "gauge", "Open /api/v1/events streams.");
    sp_buf_appendf(b, "sharepulse_sse_clients %zu\n", d->n_sse);
    sp__head(b, "sharepulse_sse_dropped_total", "counter",
             "Event streams closed because their client fell more than 1 MiB behind.");
    sp_buf_appendf(b, "sharepulse_sse_dropped_total %" PRIu64 "\n", d->sse_dropped);
}

int sp_health_check(sp_daemon *d, sp_buf *out)
{
    const char *reasons[8];
    char lagbuf[96];
    int n = 0;
    int64_t max_lag = 0;

    if (d->redis.state != SP_REDIS_READY)
        reasons[n++] = "redis: not connected";
    if (d->kafka_down)
        reasons[n++] = "kafka: all brokers down";
    if (d->loop_lag_ms > 1000)
        reasons[n++] = "loop: stalled for more than 1 s";
    for (size_t i = 0; i < d->n_parts; i++) {
        int64_t lag = sp__lag(d, d->parts[i]);
        if (lag > max_lag)
            max_lag = lag;
    }
    if (d->cfg.http_max_lag > 0 && max_lag > d->cfg.http_max_lag) {
        snprintf(lagbuf, sizeof(lagbuf), "kafka: consumer lag %" PRId64 " above max_lag %lld",
                 max_lag, (long long)d->cfg.http_max_lag);
        reasons[n++] = lagbuf;
    }
    if (d->stopping)
        reasons[n++] = "daemon: stopping";

    sp_buf_appendf(out, "{\"status\":\"%s\",\"redis\":\"%s\",\"kafka\":\"%s\","
                        "\"partitions\":%zu,\"max_lag\":%" PRId64 ",\"reasons\":[",
                   n ? "unhealthy" : "ok",
                   d->redis.state == SP_REDIS_READY ? "up" : "down",
                   d->kafka_down ? "down" : "up", d->n_parts, max_lag);
    for (int i = 0; i < n; i++) {
        if (i)
            sp_buf_appends(out, ",");
        sp_buf_append_json_str(out, reasons[i], strlen(reasons[i]));
    }
    sp_buf_appends(out, "]}\n");
    return n == 0;
}
