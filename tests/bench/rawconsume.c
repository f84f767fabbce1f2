/*
 * sp-rawconsume - the benchmark's yardstick: consumes a topic from the
 * beginning to its end with librdkafka and does nothing with the messages.
 * With --parse it also parses and validates each one as the daemon does
 * (sp_event_parse, Jansson on the daemon's arena allocator) and nothing
 * more: the ceiling of any daemon built on that parse, on this machine.
 * Prints one JSON line: messages, seconds (first message to last), msg/s.
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "jsonarena.h"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int parse = argc == 4 && strcmp(argv[3], "--parse") == 0;
    if (argc != 3 && !parse) {
        fprintf(stderr, "usage: sp-rawconsume BROKERS TOPIC [--parse]\n");
        return 2;
    }
    if (parse)
        sp_jsonarena_install();
    char err[512], group[64];
    snprintf(group, sizeof(group), "sp-rawconsume-%ld", (long)time(NULL));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        /* librdkafka 2.0 idles about a second each time its pre-fetch
         * queue fills (see daemon/kafka.c), which a consumer slower than
         * the fetcher does: a queue that never fills keeps --parse bound by
         * the CPU, as a yardstick should be. The raw consume is faster than
         * the fetcher and keeps librdkafka's defaults. */
        (parse && (rd_kafka_conf_set(conf, "queued.min.messages", "1000000", err,
                                     sizeof(err)) ||
                   rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "1048576", err,
                                     sizeof(err))))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[2], NULL);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1) {
        fprintf(stderr, "no metadata for %s\n", argv[2]);
        return 1;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    long long target = 0;
    for (int i = 0; i < np; i++) {
        int64_t lo, hi;
        int32_t id = md->topics[0].partitions[i].id;
        rd_kafka_query_watermark_offsets(rk, argv[2], id, &lo, &hi, 10000);
        target += hi - lo;
        rd_kafka_topic_partition_list_add(l, argv[2], id)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);

    rd_kafka_message_t *msgs[1024];
    long long n = 0, bytes = 0, good = 0;
    double t0 = 0, t1 = 0, start = mono_s();
    while (n < target && mono_s() - start < 600) {
        ssize_t got = rd_kafka_consume_batch_queue(q, 1000, msgs, 1024);
        for (ssize_t i = 0; i < got; i++) {
            if (!msgs[i]->err) {
                if (n++ == 0)
                    t0 = mono_s();
                bytes += (long long)msgs[i]->len;
                if (parse) {
                    sp_event ev;
                    char reason[48];
                    good += sp_event_parse(msgs[i]->payload ? msgs[i]->payload : "",
                                           msgs[i]->len, (int64_t)(time(NULL) * 1000LL),
                                           300000, &ev, reason, sizeof(reason)) == 0;
                    sp_jsonarena_reset();
                }
            }
            rd_kafka_message_destroy(msgs[i]);
        }
        t1 = mono_s();
    }
    double secs = t1 - t0;
    printf("{\"messages\":%lld,\"bytes\":%lld,\"parsed_good\":%lld,\"seconds\":%.3f,"
           "\"msgs_per_s\":%.0f}\n", n, bytes, good, secs, secs > 0 ? n / secs : 0);
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (parse)
        sp_jsonarena_uninstall();
    return n == target ? 0 : 1;
}
