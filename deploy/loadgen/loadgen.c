/*
 * sp-loadgen - produces realistic engagement event streams into Kafka for
 * the quick start, the tests and the benchmark.
 *
 * Video popularity is Zipf-distributed over --videos videos owned by
 * --creators creators; the mix is mostly views, then likes, shares,
 * comments and follows, with share types, external platforms, regions, age
 * buckets and watch times. --burst injects viral share bursts; --bad mixes
 * in malformed messages of every reason code. --expect writes the exact
 * counts the stream should produce (the tests' ground truth).
 *
 * The stream is a function of --seed: the same arguments give the same
 * events (up to their timestamps, which follow the wall clock).
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "sp_common.h"

typedef struct {
    uint64_t s[2];
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    /* xorshift128+ */
    uint64_t s1 = r->s[0];
    const uint64_t s0 = r->s[1];
    r->s[0] = s0;
    s1 ^= s1 << 23;
    r->s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return r->s[1] + s0;
}

static double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Expected totals per video and creator. */
typedef struct {
    int64_t n[SP_EV__COUNT];
    int64_t watch_ms;
    int64_t share_types[SP_SHARE__COUNT];
    int64_t ext[8];
    int64_t regions[8];
    int64_t ages[SP_AGE__COUNT];
    int64_t sharers;   /* public sharers pushed */
    uint8_t *viewers;  /* bitmap over users, for exact reach */
    int64_t reach;
    int seen;
} exp_video;

typedef struct {
    int64_t views, likes, comments, shares, follows, videos;
} exp_creator;

static const char *const platforms[8] = {"instagram", "twitter", "whatsapp", "facebook",
                                         "telegram",  "snapchat", "reddit", "youtube"};
static const char *const regions[8] = {"US", "BR", "IN", "ID", "MX", "GB", "DE", "JP"};

typedef struct {
    int video;
    double start_s, duration_s;
    long shares, done;
} burst_t;

/* A noisy video: shares at per_min a minute, times 0.5, 1 or 1.5 drawn
 * anew each minute; never a burst (ratio < 3 against its own mean). */
typedef struct {
    int video;
    double per_min, due, last_el;
    long done;
} noisy_t;

/* The factor of minute m of noisy video v: a hash, the same on every run. */
static double noisy_factor(int v, long m)
{
    uint64_t h = ((uint64_t)v * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)m * 0xBF58476D1CE4E5B9ULL);
    h ^= h >> 31;
    return 0.5 + 0.5 * (double)(h % 3);
}

typedef struct {
    rd_kafka_t *rk;
    const char *topic;
    uint64_t produced;
} out_t;

static void produce(out_t *o, const char *key, const char *val, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            o->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(o->rk, 10);
            continue;
        }
        if (err) {
            fprintf(stderr, "sp-loadgen: produce: %s\n", rd_kafka_err2str(err));
            exit(1);
        }
        break;
    }
    o->produced++;
    if ((o->produced & 1023) == 0)
        rd_kafka_poll(o->rk, 0);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err) {
        fprintf(stderr, "sp-loadgen: delivery failed: %s\n", rd_kafka_err2str(m->err));
        exit(1);
    }
}

static int create_topic(rd_kafka_t *rk, const char *topic, int partitions)
{
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    if (nt == NULL) {
        fprintf(stderr, "sp-loadgen: %s\n", err);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev != NULL) {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        if (rd_kafka_event_error(ev))
            fprintf(stderr, "sp-loadgen: create topic: %s\n", rd_kafka_event_error_string(ev));
        else if (n == 1 && (rd_kafka_topic_result_error(tr[0]) == 0 ||
                            rd_kafka_topic_result_error(tr[0]) ==
                                RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
            rc = 0;
        else if (n == 1)
            fprintf(stderr, "sp-loadgen: create topic %s: %s\n", topic,
                    rd_kafka_topic_result_error_string(tr[0]));
        rd_kafka_event_destroy(ev);
    } else {
        fprintf(stderr, "sp-loadgen: create topic %s: timed out\n", topic);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* One malformed message of kind k; returns its expected reason. */
static const char *make_bad(int k, int64_t now, char *buf, size_t sz, size_t *len)
{
    static const char *const reasons[] = {
        "bad_json",          "not_object",           "too_large",
        "unknown_type",      "bad_field:video_id",   "bad_field:ts",
        "future_ts",         "bad_field:watch_ms",   "bad_field:region",
        "bad_field:age_bucket", "bad_field:hashtags", "bad_field:user_id",
        "bad_field:creator_id", "bad_field:share_type", "bad_field:platform",
        "bad_field:type"};
    k %= (int)SP_ARRAY_SIZE(reasons);
    switch (k) {
    case 0: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":"); break;
    case 1: *len = (size_t)snprintf(buf, sz, "[\"view\",\"v1\",%" PRId64 "]", now); break;
    case 2: {
        size_t n = 70 * 1024;
        static const char head[] = "{\"type\":\"view\",\"video_id\":\"v1\",\"ts\":1,\"pad\":\"";
        memcpy(buf, head, sizeof(head) - 1);
        memset(buf + sizeof(head) - 1, 'x', n - sizeof(head) - 1);
        memcpy(buf + n - 2, "\"}", 2);
        *len = n;
        break;
    }
    case 3: *len = (size_t)snprintf(buf, sz, "{\"type\":\"repost_click\",\"video_id\":\"v1\",\"ts\":%" PRId64 "}", now); break;
    case 4: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":\"bad id{x}\",\"ts\":%" PRId64 "}", now); break;
    case 5: *len = (size_t)snprintf(buf, sz, "{\"type\":\"like\",\"video_id\":\"v1\",\"ts\":\"yesterday\"}"); break;
    case 6: *len = (size_t)snprintf(buf, sz, "{\"type\":\"like\",\"video_id\":\"v1\",\"ts\":%" PRId64 "}", now + 86400000); break;
    case 7: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"watch_ms\":-5}", now); break;
    case 8: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"region\":\"usa\"}", now); break;
    case 9: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"age_bucket\":\"12-\"}", now); break;
    case 10: *len = (size_t)snprintf(buf, sz, "{\"type\":\"view\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"hashtags\":\"fyp\"}", now); break;
    case 11: *len = (size_t)snprintf(buf, sz, "{\"type\":\"share\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"user_id\":\"has space\"}", now); break;
    case 12: *len = (size_t)snprintf(buf, sz, "{\"type\":\"follow\",\"ts\":%" PRId64 "}", now); break;
    case 13: *len = (size_t)snprintf(buf, sz, "{\"type\":\"share\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"share_type\":7}", now); break;
    case 14: *len = (size_t)snprintf(buf, sz, "{\"type\":\"share\",\"video_id\":\"v1\",\"ts\":%" PRId64 ",\"share_type\":\"external\",\"platform\":\"Insta Gram\"}", now); break;
    default: *len = (size_t)snprintf(buf, sz, "{\"video_id\":\"v1\",\"ts\":%" PRId64 "}", now); break;
    }
    return reasons[k];
}

static void usage(void)
{
    fprintf(stderr,
            "Usage: sp-loadgen [OPTIONS]\n"
            "  --brokers LIST       bootstrap servers (127.0.0.1:9092)\n"
            "  --topic NAME         topic (engagement-events)\n"
            "  --create-topic N     create the topic with N partitions first\n"
            "  --count N            events to produce, 0 = forever (100000)\n"
            "  --rate R             events per second, 0 = as fast as possible (0)\n"
            "  --videos N           videos (10000)   --creators N  creators (1000)\n"
            "  --users N            distinct users (100000)\n"
            "  --zipf S             Zipf exponent of video popularity (1.1)\n"
            "  --seed N             random seed (1)\n"
            "  --bad F              fraction of malformed messages (0)\n"
            "  --burst V:START:DUR:SHARES  SHARES shares of video index V over DUR\n"
            "                       seconds from START seconds (repeatable); with\n"
            "                       --span-hours, seconds of event time\n"
            "  --expect FILE        write the expected counts as JSON\n"
            "  --prefix P           video id prefix (v)\n"
            "  --noisy N[:R]        N tail videos share about R a minute (4), times\n"
            "                       0.5, 1 or 1.5 each minute: noise, never a burst\n"
            "  --span-hours H       spread event times evenly over the last H hours,\n"
            "                       in order, instead of the wall clock (0)\n"
            "  --unkeyed            events without a key: librdkafka spreads them over\n"
            "                       the partitions (a new one every 10 ms), so each\n"
            "                       video's events land on all of them\n");
}

int main(int argc, char **argv)
{
    const char *brokers = "127.0.0.1:9092", *topic = "engagement-events";
    const char *expect_path = NULL, *prefix = "v";
    long long count = 100000;
    double rate = 0, zipf = 1.1, bad_frac = 0, span_h = 0;
    int videos = 10000, creators = 1000, users = 100000, partitions = 0;
    uint64_t seed = 1;
    burst_t bursts[32];
    int n_bursts = 0;
    noisy_t noisy[64];
    int n_noisy = 0;
    double noisy_rate = 4;
    int unkeyed = 0;

    static const struct option opts[] = {
        {"brokers", 1, 0, 'b'}, {"topic", 1, 0, 't'}, {"count", 1, 0, 'n'},
        {"rate", 1, 0, 'r'},    {"videos", 1, 0, 'v'}, {"creators", 1, 0, 'c'},
        {"users", 1, 0, 'u'},   {"zipf", 1, 0, 'z'},   {"seed", 1, 0, 's'},
        {"bad", 1, 0, 'x'},     {"burst", 1, 0, 'B'},  {"expect", 1, 0, 'e'},
        {"create-topic", 1, 0, 'p'}, {"prefix", 1, 0, 'P'}, {"span-hours", 1, 0, 'S'},
        {"noisy", 1, 0, 'N'},   {"unkeyed", 0, 0, 'U'},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'n': count = atoll(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'v': videos = atoi(optarg); break;
        case 'c': creators = atoi(optarg); break;
        case 'u': users = atoi(optarg); break;
        case 'z': zipf = atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'x': bad_frac = atof(optarg); break;
        case 'e': expect_path = optarg; break;
        case 'p': partitions = atoi(optarg); break;
        case 'P': prefix = optarg; break;
        case 'S': span_h = atof(optarg); break;
        case 'U': unkeyed = 1; break;
        case 'N':
            n_noisy = 0;
            if (sscanf(optarg, "%d:%lf", &n_noisy, &noisy_rate) < 1 || n_noisy < 0 ||
                n_noisy > 64) {
                fprintf(stderr, "sp-loadgen: bad --noisy \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'B':
            if (n_bursts == 32 ||
                sscanf(optarg, "%d:%lf:%lf:%ld", &bursts[n_bursts].video,
                       &bursts[n_bursts].start_s, &bursts[n_bursts].duration_s,
                       &bursts[n_bursts].shares) != 4) {
                fprintf(stderr, "sp-loadgen: bad --burst \"%s\"\n", optarg);
                return 2;
            }
            bursts[n_bursts++].done = 0;
            break;
        default: usage(); return c == 'h' ? 0 : 2;
        }
    }
    if (videos < 1 || creators < 1 || users < 1) {
        usage();
        return 2;
    }
    for (int i = 0; i < n_noisy; i++)
        noisy[i] = (noisy_t){videos - 1 - i, noisy_rate, 0, 0, 0};

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "batch.num.messages", "10000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err))) {
        fprintf(stderr, "sp-loadgen: %s\n", err);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    out_t o = {rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)), topic, 0};
    if (o.rk == NULL) {
        fprintf(stderr, "sp-loadgen: %s\n", err);
        return 1;
    }
    if (partitions > 0 && create_topic(o.rk, topic, partitions) != 0)
        return 1;

    /* Zipf CDF over videos. */
    double *cdf = sp_xmalloc(sizeof(double) * (size_t)videos), sum = 0;
    for (int i = 0; i < videos; i++)
        cdf[i] = (sum += 1.0 / pow(i + 1, zipf));
    for (int i = 0; i < videos; i++)
        cdf[i] /= sum;

    exp_video *ev = sp_xcalloc((size_t)videos, sizeof(*ev));
    exp_creator *ec = sp_xcalloc((size_t)creators, sizeof(*ec));
    json_t *bad_counts = json_object();
    int track_reach = expect_path && (double)videos * users / 8 < 512e6;

    rng_t rng = {{seed * 0x9E3779B97F4A7C15ULL + 1, seed ^ 0xD1B54A32D192ED03ULL}};
    for (int i = 0; i < 16; i++)
        rng_next(&rng);

    char *buf = sp_xmalloc(80 * 1024);
    char key[64], vid[64], cre[64], usr[64];
    double t0 = mono_s();
    long long produced = 0, bad_n = 0;
    int64_t now = wall_ms();

    int64_t span_ms = (int64_t)(span_h * 3600000.0), start_ms = wall_ms() - span_ms;
    for (long long i = 0; count == 0 || i < count; i++) {
        if (span_ms > 0 && count > 0)
            now = start_ms + (int64_t)((double)span_ms * (double)i / (double)count);
        else if ((i & 255) == 0)
            now = wall_ms();
        if (rate > 0) {
            double due = t0 + (double)i / rate;
            double t = mono_s();
            if (due > t) {
                struct timespec ts = {(time_t)(due - t), (long)(fmod(due - t, 1.0) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        size_t len;
        if (bad_frac > 0 && rng_unit(&rng) < bad_frac) {
            const char *reason = make_bad((int)(rng_next(&rng) % 1000), now, buf, 80 * 1024, &len);
            json_object_set_new(bad_counts, reason,
                                json_integer(json_integer_value(json_object_get(bad_counts, reason)) + 1));
            produce(&o, "bad", buf, len);
            bad_n++;
            produced++;
            continue;
        }

        /* Which video: a burst that is due, else a Zipf draw. */
        int v = -1;
        int type;
        /* Bursts start by event time when times are spread (--span-hours). */
        double el = span_ms > 0 ? (double)(now - start_ms) / 1000.0 : mono_s() - t0;
        for (int b = 0; b < n_bursts; b++) {
            burst_t *bu = &bursts[b];
            if (el >= bu->start_s && bu->done < bu->shares) {
                double frac = bu->duration_s > 0 ? (el - bu->start_s) / bu->duration_s : 1;
                if (frac > 1)
                    frac = 1;
                if (bu->done < (long)(frac * bu->shares)) {
                    v = bu->video % videos;
                    bu->done++;
                    break;
                }
            }
        }
        for (int k = 0; v < 0 && k < n_noisy; k++) {
            noisy_t *nz = &noisy[k];
            if (el > nz->last_el) {
                nz->due += nz->per_min * noisy_factor(nz->video, (long)(el / 60)) *
                           (el - nz->last_el) / 60.0;
                nz->last_el = el;
            }
            if ((double)nz->done < nz->due) {
                v = nz->video;
                nz->done++;
            }
        }
        if (v >= 0) {
            type = SP_EV_SHARE;
        } else {
            double u = rng_unit(&rng);
            int lo = 0, hi = videos - 1;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (cdf[mid] < u)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            v = lo;
            double t = rng_unit(&rng);
            type = t < 0.80 ? SP_EV_VIEW : t < 0.90 ? SP_EV_LIKE : t < 0.93 ? SP_EV_COMMENT
                 : t < 0.98 ? SP_EV_SHARE : SP_EV_FOLLOW;
        }
        int cr = (int)(((uint64_t)v * 7919u) % (uint64_t)creators);
        int user = (int)(rng_next(&rng) % (uint64_t)users);
        snprintf(vid, sizeof(vid), "%s%d", prefix, v);
        snprintf(cre, sizeof(cre), "c%d", cr);
        exp_video *x = &ev[v];
        exp_creator *y = &ec[cr];

        sp_buf b;
        sp_buf_init(&b);
        /* One event in ten carries an RFC 3339 time instead of epoch ms. */
        char ts[48];
        if (rng_next(&rng) % 10 == 0) {
            time_t secs = (time_t)(now / 1000);
            struct tm tm;
            gmtime_r(&secs, &tm);
            size_t n = strftime(ts, sizeof(ts), "\"%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(ts + n, sizeof(ts) - n, ".%03dZ\"", (int)(now % 1000));
        } else {
            snprintf(ts, sizeof(ts), "%" PRId64, now);
        }
        if (type == SP_EV_FOLLOW) {
            sp_buf_appendf(&b, "{\"type\":\"follow\",\"creator_id\":\"%s\",\"user_id\":\"u%d\",\"ts\":%s}",
                           cre, user, ts);
            y->follows++;
            snprintf(key, sizeof(key), "%s", cre);
        } else {
            sp_buf_appendf(&b, "{\"type\":\"%s\",\"video_id\":\"%s\",\"creator_id\":\"%s\",\"ts\":%s",
                           sp_event_type_names[type], vid, cre, ts);
            if (!x->seen) {
                x->seen = 1;
                y->videos++;
            }
            x->n[type]++;
            switch (type) {
            case SP_EV_VIEW: {
                int64_t w = (int64_t)(rng_next(&rng) % 60000);
                int r = (int)(rng_next(&rng) % 8), a = (int)(rng_next(&rng) % SP_AGE__COUNT);
                sp_buf_appendf(&b, ",\"user_id\":\"u%d\",\"watch_ms\":%" PRId64
                               ",\"region\":\"%s\",\"age_bucket\":\"%s\"",
                               user, w, regions[r], sp_age_bucket_names[a]);
                x->watch_ms += w;
                x->regions[r]++;
                x->ages[a]++;
                y->views++;
                if (track_reach) {
                    if (x->viewers == NULL)
                        x->viewers = sp_xcalloc((size_t)users / 8 + 1, 1);
                    if (!(x->viewers[user / 8] & (1 << (user % 8)))) {
                        x->viewers[user / 8] |= (uint8_t)(1 << (user % 8));
                        x->reach++;
                    }
                }
                break;
            }
            case SP_EV_LIKE: y->likes++; sp_buf_appendf(&b, ",\"user_id\":\"u%d\"", user); break;
            case SP_EV_COMMENT: y->comments++; sp_buf_appendf(&b, ",\"user_id\":\"u%d\"", user); break;
            case SP_EV_SHARE: {
                /* duet 5, stitch 5, reaction 5, repost 10, dm 30, link 20,
                 * external 20, unspecified 3, other 2 (percent) */
                static const int cut[] = {5, 10, 15, 25, 55, 75, 95, 98, 100};
                int p = (int)(rng_next(&rng) % 100), st = 0;
                while (p >= cut[st])
                    st++;
                sp_share_type t = st == 7 ? SP_SHARE_UNSPECIFIED : st == 8 ? SP_SHARE_OTHER
                                                                            : (sp_share_type)(st + 1);
                int pub = sp_share_type_is_public(t);
                /* Private sharers' ids are marked so a test can prove none
                 * reaches Redis. */
                snprintf(usr, sizeof(usr), "%s%d", pub ? "pub-u" : "priv-u", user);
                sp_buf_appendf(&b, ",\"user_id\":\"%s\"", usr);
                if (t == SP_SHARE_OTHER)
                    sp_buf_appends(&b, ",\"share_type\":\"story_remix\"");
                else if (t != SP_SHARE_UNSPECIFIED)
                    sp_buf_appendf(&b, ",\"share_type\":\"%s\"", sp_share_type_names[t]);
                if (t == SP_SHARE_EXTERNAL) {
                    int pl = (int)(rng_next(&rng) % 8);
                    sp_buf_appendf(&b, ",\"platform\":\"%s\"", platforms[pl]);
                    x->ext[pl]++;
                }
                x->share_types[t]++;
                if (pub)
                    x->sharers++;
                y->shares++;
                break;
            }
            }
            if (rng_next(&rng) % 4 == 0)
                sp_buf_appends(&b, ",\"hashtags\":[\"FYP\",\"dance\"]");
            sp_buf_appends(&b, "}");
            snprintf(key, sizeof(key), "%s", vid);
        }
        produce(&o, unkeyed ? NULL : key, b.data, b.len);
        sp_buf_free(&b);
        produced++;
    }

    while (rd_kafka_outq_len(o.rk) > 0)
        rd_kafka_poll(o.rk, 100);
    rd_kafka_flush(o.rk, 30000);
    double secs = mono_s() - t0;
    fprintf(stderr, "sp-loadgen: produced %lld messages (%lld bad) in %.2f s, %.0f msg/s\n",
            produced, bad_n, secs, produced / (secs > 0 ? secs : 1));

    if (expect_path) {
        json_t *root = json_object(), *jv = json_object(), *jc = json_object();
        json_object_set_new(root, "messages", json_integer(produced));
        json_object_set_new(root, "bad", bad_counts);
        for (int i = 0; i < videos; i++) {
            exp_video *x = &ev[i];
            if (!x->seen)
                continue;
            json_t *o2 = json_object();
            json_object_set_new(o2, "creator_id", json_sprintf("c%d", (int)(((uint64_t)i * 7919u) % (uint64_t)creators)));
            json_object_set_new(o2, "views", json_integer(x->n[SP_EV_VIEW]));
            json_object_set_new(o2, "likes", json_integer(x->n[SP_EV_LIKE]));
            json_object_set_new(o2, "comments", json_integer(x->n[SP_EV_COMMENT]));
            json_object_set_new(o2, "shares", json_integer(x->n[SP_EV_SHARE]));
            json_object_set_new(o2, "watch_ms", json_integer(x->watch_ms));
            for (int s = 0; s < SP_SHARE__COUNT; s++)
                if (x->share_types[s]) {
                    char f[40];
                    snprintf(f, sizeof(f), "shares:%s", sp_share_type_names[s]);
                    json_object_set_new(o2, f, json_integer(x->share_types[s]));
                }
            for (int p = 0; p < 8; p++)
                if (x->ext[p]) {
                    char f[40];
                    snprintf(f, sizeof(f), "shares:ext:%s", platforms[p]);
                    json_object_set_new(o2, f, json_integer(x->ext[p]));
                }
            json_t *demo = json_object();
            for (int r = 0; r < 8; r++)
                if (x->regions[r]) {
                    char f[16];
                    snprintf(f, sizeof(f), "region:%s", regions[r]);
                    json_object_set_new(demo, f, json_integer(x->regions[r]));
                }
            for (int a = 0; a < SP_AGE__COUNT; a++)
                if (x->ages[a]) {
                    char f[16];
                    snprintf(f, sizeof(f), "age:%s", sp_age_bucket_names[a]);
                    json_object_set_new(demo, f, json_integer(x->ages[a]));
                }
            json_object_set_new(o2, "demo", demo);
            json_object_set_new(o2, "public_sharers", json_integer(x->sharers));
            if (track_reach)
                json_object_set_new(o2, "reach", json_integer(x->reach));
            char id[64];
            snprintf(id, sizeof(id), "%s%d", prefix, i);
            json_object_set_new(jv, id, o2);
        }
        for (int i = 0; i < creators; i++) {
            exp_creator *y = &ec[i];
            if (!y->views && !y->likes && !y->comments && !y->shares && !y->follows && !y->videos)
                continue;
            json_t *o2 = json_pack("{sI sI sI sI sI sI}", "views", (json_int_t)y->views,
                                   "likes", (json_int_t)y->likes, "comments",
                                   (json_int_t)y->comments, "shares", (json_int_t)y->shares,
                                   "follows", (json_int_t)y->follows, "videos",
                                   (json_int_t)y->videos);
            char id[32];
            snprintf(id, sizeof(id), "c%d", i);
            json_object_set_new(jc, id, o2);
        }
        json_object_set_new(root, "videos", jv);
        json_object_set_new(root, "creators", jc);
        /* The labelled ground truth of the momentum scenarios. */
        json_t *lb = json_array(), *ln = json_array();
        for (int b = 0; b < n_bursts; b++) {
            char id[64];
            snprintf(id, sizeof(id), "%s%d", prefix, bursts[b].video % videos);
            json_array_append_new(lb, json_pack("{s:s,s:f,s:f,s:I}", "video", id, "start_s",
                                                bursts[b].start_s, "duration_s",
                                                bursts[b].duration_s, "shares",
                                                (json_int_t)bursts[b].done));
        }
        for (int k = 0; k < n_noisy; k++) {
            char id[64];
            snprintf(id, sizeof(id), "%s%d", prefix, noisy[k].video);
            json_array_append_new(ln, json_string(id));
        }
        json_object_set_new(root, "bursts", lb);
        json_object_set_new(root, "noisy", ln);
        if (json_dump_file(root, expect_path, JSON_COMPACT) != 0) {
            fprintf(stderr, "sp-loadgen: cannot write %s\n", expect_path);
            return 1;
        }
        json_decref(root);
    } else {
        json_decref(bad_counts);
    }
    for (int i = 0; i < videos; i++)
        free(ev[i].viewers);
    free(ev);
    free(ec);
    free(cdf);
    free(buf);
    rd_kafka_destroy(o.rk);
    return 0;
}
