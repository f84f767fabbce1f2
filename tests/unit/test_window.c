/* Unit tests of lib/window.c with scripted time: window values, decay,
 * late and out-of-order events, bucket edges, clock jumps, the series,
 * state round trips, and a randomised comparison with a brute-force
 * model that plays Redis (it adds up every delta written). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "window.h"

#define MIN 60000LL
#define HOUR 3600000LL
/* A clock on a 30-minute boundary, so that every level's buckets align. */
#define T0 1764000000000LL

enum { V1M, V5M, V1H, V24H };

typedef struct {
    char **argv;
    int argc;
} records;

static records encode_cfg(sp_win *w, const sp_config *cfg)
{
    sp_resp r;
    sp_buf out, upd;
    sp_resp_init(&r);
    sp_buf_init(&out);
    sp_buf_init(&upd);
    sp_win_encode(w, cfg, &r, &upd, NULL);
    sp_resp_finish(&r, &out);
    records rec = {NULL, 0};
    const char *p = out.data;
    rec.argc = atoi(p + 1);
    rec.argv = calloc((size_t)rec.argc + 1, sizeof(char *));
    p = strstr(p, "\r\n") + 2;
    for (int i = 0; i < rec.argc; i++) {
        int len = atoi(p + 1);
        p = strstr(p, "\r\n") + 2;
        rec.argv[i] = strndup(p, (size_t)len);
        p += len + 2;
    }
    sp_resp_free(&r);
    sp_buf_free(&out);
    sp_buf_free(&upd);
    return rec;
}

static records encode(sp_win *w)
{
    return encode_cfg(w, NULL);
}

static void records_free(records *r)
{
    for (int i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
}

static sp_event ev(sp_event_type t, const char *video, int64_t ts)
{
    sp_event e;
    memset(&e, 0, sizeof(e));
    e.type = t;
    e.ts_ms = ts;
    e.watch_ms = -1;
    e.age_bucket = -1;
    snprintf(e.video_id, sizeof(e.video_id), "%s", video);
    snprintf(e.creator_id, sizeof(e.creator_id), "c1");
    return e;
}

static void add(sp_win *w, sp_event_type t, const char *video, int64_t ts, int n)
{
    sp_event e = ev(t, video, ts);
    for (int i = 0; i < n; i++)
        sp_win_add(w, &e, NULL);
}

static int64_t val(sp_win *w, const char *video, int field)
{
    int64_t v[SP_WIN_FIELDS];
    if (sp_win_video_values(w, video, v) != 0)
        return -1;
    return v[field];
}

static void test_values_at_known_times(void **state)
{
    sp_win *w = sp_win_new();
    int64_t T = T0 + 30 * MIN;
    sp_win_advance(w, T);
    add(w, SP_EV_VIEW, "a", T - 10000, 3);       /* 10 s ago */
    add(w, SP_EV_VIEW, "a", T - 2 * MIN, 5);     /* 2 min ago */
    add(w, SP_EV_VIEW, "a", T - 30 * MIN, 7);    /* 30 min ago, on a bucket edge */
    add(w, SP_EV_VIEW, "a", T - 3 * HOUR, 11);   /* 3 h ago */
    add(w, SP_EV_VIEW, "a", T - 25 * HOUR, 13);  /* older than a day: not counted */
    add(w, SP_EV_SHARE, "a", T - 90000, 2);      /* out of order, 1.5 min ago */
    add(w, SP_EV_LIKE, "a", T + 1000, 1);        /* newer than T counts at once */
    assert_int_equal(val(w, "a", V1M), 3);
    assert_int_equal(val(w, "a", V5M), 8);
    assert_int_equal(val(w, "a", V1H), 15);
    assert_int_equal(val(w, "a", V24H), 26);
    assert_int_equal(val(w, "a", 4 + V1M), 1);
    assert_int_equal(val(w, "a", 12 + V1M), 0);
    assert_int_equal(val(w, "a", 12 + V5M), 2);
    assert_int_equal(val(w, "a", 12 + V24H), 2);
    assert_int_equal(val(w, "nope", V1M), -1);
    sp_win_free(w);
}

static void test_edges_leave_at_most_one_bucket_early(void **state)
{
    sp_win *w = sp_win_new();
    int64_t ts = T0 + 5 * MIN + 1500; /* 1.5 s into a 2 s bucket */
    sp_win_advance(w, ts);
    add(w, SP_EV_VIEW, "a", ts, 1);
    records r = encode(w);
    records_free(&r);
    /* In the 1m window until its bucket start + 60 s, i.e. 58.5 s after it. */
    sp_win_advance(w, ts + 58499);
    assert_int_equal(sp_win_dirty(w), 0);
    assert_int_equal(val(w, "a", V1M), 1);
    sp_win_advance(w, ts + 58500);
    assert_int_equal(sp_win_dirty(w), 1);
    assert_int_equal(val(w, "a", V1M), 0);
    assert_int_equal(val(w, "a", V5M), 1);
    /* An event exactly on a bucket edge leaves exactly W later. */
    int64_t edge = T0 + 20 * MIN;
    sp_win_advance(w, edge);
    add(w, SP_EV_VIEW, "b", edge, 1);
    sp_win_advance(w, edge + MIN - 1);
    assert_int_equal(val(w, "b", V1M), 1);
    sp_win_advance(w, edge + MIN);
    assert_int_equal(val(w, "b", V1M), 0);
    sp_win_free(w);
}

/* Finds the first record of a kind for an id. */
static int find_rec(const records *r, const char *kind, const char *id)
{
    for (int i = 0; i + 1 < r->argc; i++)
        if (strcmp(r->argv[i], kind) == 0 && strcmp(r->argv[i + 1], id) == 0)
            return i;
    return -1;
}

/* The 16 deltas of the w record at i (absent = 0); returns the index of
 * its count of series minutes. */
static int w_deltas(const records *r, int i, int64_t out[SP_WIN_FIELDS])
{
    memset(out, 0, SP_WIN_FIELDS * sizeof(*out));
    int nd = atoi(r->argv[i + 2]);
    for (int k = 0; k < nd; k++)
        out[atoi(r->argv[i + 3 + 2 * k]) - 1] = atoll(r->argv[i + 4 + 2 * k]);
    return i + 3 + 2 * nd;
}

static void test_decay_to_zero_and_forget(void **state)
{
    sp_win *w = sp_win_new();
    int64_t T = T0;
    sp_win_advance(w, T);
    add(w, SP_EV_SHARE, "a", T - 1000, 4);
    records r = encode(w);
    int64_t d[SP_WIN_FIELDS];
    int i = find_rec(&r, "w", "a");
    assert_true(i >= 0);
    w_deltas(&r, i, d);
    assert_int_equal(d[12], 4); /* shares_1m */
    assert_int_equal(d[15], 4); /* shares_24h */
    assert_true(find_rec(&r, "s", "v:a") >= 0);
    records_free(&r);

    /* Nothing is due before the first bucket leaves the 1m window. */
    sp_win_advance(w, T + 30000);
    assert_int_equal(sp_win_dirty(w), 0);
    sp_win_advance(w, T + 59000);
    assert_int_equal(sp_win_dirty(w), 1);
    r = encode(w);
    i = find_rec(&r, "w", "a");
    w_deltas(&r, i, d);
    assert_int_equal(d[12], -4);
    assert_int_equal(d[13], 0);
    records_free(&r);

    /* A day later everything has left: the deltas undo what was written
     * and the state is deleted. */
    sp_win_advance(w, T + 25 * HOUR);
    r = encode(w);
    i = find_rec(&r, "w", "a");
    assert_true(i >= 0);
    int64_t sum = 0;
    w_deltas(&r, i, d);
    for (int f = 0; f < SP_WIN_FIELDS; f++)
        sum += d[f];
    assert_int_equal(sum, -12); /* shares_5m, shares_1h, shares_24h */
    int s = find_rec(&r, "s", "v:a");
    assert_string_equal(r.argv[s + 2], "");
    records_free(&r);
    assert_int_equal(sp_win_entities(w), 0);
    sp_win_free(w);
}

static void test_clock_never_goes_back(void **state)
{
    sp_win *w = sp_win_new();
    sp_win_advance(w, T0 + HOUR);
    sp_win_advance(w, T0);
    assert_int_equal(sp_win_clock(w), T0 + HOUR);
    /* A jump forward of two days makes every value due at once. */
    add(w, SP_EV_VIEW, "a", T0 + HOUR - 1000, 2);
    records r = encode(w);
    records_free(&r);
    sp_win_advance(w, T0 + 49 * HOUR);
    assert_int_equal(sp_win_dirty(w), 1);
    assert_int_equal(val(w, "a", V24H), 0);
    r = encode(w);
    records_free(&r);
    assert_int_equal(sp_win_entities(w), 0);
    sp_win_free(w);
}

static void test_series_minutes_once_when_ended(void **state)
{
    sp_win *w = sp_win_new();
    int64_t T = T0 + 10 * MIN + 30000;
    sp_win_advance(w, T);
    add(w, SP_EV_VIEW, "a", T0 + 9 * MIN + 5000, 3);
    add(w, SP_EV_SHARE, "a", T0 + 9 * MIN + 7000, 1);
    add(w, SP_EV_VIEW, "a", T0 + 10 * MIN + 1000, 2); /* minute not ended yet */
    records r = encode(w);
    int64_t d[SP_WIN_FIELDS];
    int i = find_rec(&r, "w", "a");
    int m = w_deltas(&r, i, d);
    assert_string_equal(r.argv[m], "1");
    char want[32];
    snprintf(want, sizeof(want), "%lld", (long long)(T0 + 9 * MIN));
    assert_string_equal(r.argv[m + 1], want);
    assert_string_equal(r.argv[m + 2], "3");   /* views */
    assert_string_equal(r.argv[m + 5], "1");   /* shares */
    records_free(&r);
    /* The next minute is written when the clock passes its end, once. */
    sp_win_advance(w, T0 + 11 * MIN);
    assert_int_equal(sp_win_dirty(w), 1);
    r = encode(w);
    i = find_rec(&r, "w", "a");
    m = w_deltas(&r, i, d);
    assert_string_equal(r.argv[m], "1");
    snprintf(want, sizeof(want), "%lld", (long long)(T0 + 10 * MIN));
    assert_string_equal(r.argv[m + 1], want);
    assert_string_equal(r.argv[m + 2], "2");
    records_free(&r);
    sp_win_advance(w, T0 + 12 * MIN);
    r = encode(w);
    i = find_rec(&r, "w", "a");
    assert_true(i < 0 || strcmp(r.argv[w_deltas(&r, i, d)], "0") == 0);
    records_free(&r);
    sp_win_free(w);
}

static void test_hashtags_and_follows(void **state)
{
    sp_win *w = sp_win_new();
    sp_win_advance(w, T0);
    sp_event s = ev(SP_EV_SHARE, "a", T0 - 1000);
    s.n_hashtags = 2;
    strcpy(s.hashtags[0], "fyp");
    strcpy(s.hashtags[1], "dance");
    sp_win_add(w, &s, NULL);
    sp_win_add(w, &s, NULL);
    sp_event f = ev(SP_EV_FOLLOW, "", T0 - 1000);
    sp_win_add(w, &f, NULL);
    records r = encode(w);
    int i = find_rec(&r, "h", "fyp");
    assert_string_equal(r.argv[i + 2], "2");
    i = find_rec(&r, "f", "c1");
    assert_string_equal(r.argv[i + 2], "1");
    records_free(&r);
    sp_win_advance(w, T0 + HOUR);
    r = encode(w);
    i = find_rec(&r, "h", "dance");
    assert_string_equal(r.argv[i + 2], "-2");
    assert_int_equal(find_rec(&r, "f", "c1"), -1); /* follows_24h still 1 */
    records_free(&r);
    sp_win_free(w);
}

static void test_state_round_trip(void **state)
{
    sp_win *w = sp_win_new();
    int64_t T = T0 + 7 * MIN;
    sp_win_advance(w, T);
    add(w, SP_EV_VIEW, "a", T - 5000, 3);
    add(w, SP_EV_COMMENT, "a", T - 20 * MIN, 2);
    add(w, SP_EV_SHARE, "b", T - 3 * HOUR, 1);
    records r = encode(w);

    sp_win *back = sp_win_new();
    for (int i = 0; i + 2 < r.argc; i++)
        if (strcmp(r.argv[i], "s") == 0 && r.argv[i + 2][0] != '\0') {
            assert_int_equal(sp_win_load(back, r.argv[i + 1], strlen(r.argv[i + 1]),
                                         r.argv[i + 2], strlen(r.argv[i + 2])), 0);
            /* an entity loaded twice is refused */
            if (r.argv[i + 1][0] != '#')
                assert_int_equal(sp_win_load(back, r.argv[i + 1], strlen(r.argv[i + 1]),
                                             r.argv[i + 2], strlen(r.argv[i + 2])), SP_EPARSE);
        }
    records_free(&r);
    sp_win_advance(back, T);
    for (int f = 0; f < SP_WIN_FIELDS; f++) {
        assert_int_equal(val(back, "a", f), val(w, "a", f));
        assert_int_equal(val(back, "b", f), val(w, "b", f));
    }
    /* Reloaded entities are re-evaluated; nothing changed, so no deltas. */
    assert_int_equal(sp_win_dirty(back), 2);
    r = encode(back);
    assert_int_equal(find_rec(&r, "w", "a"), -1);
    records_free(&r);

    const char *bad[][2] = {{"v:a", ""}, {"v:a", "2 0"}, {"x:a", "1 0 0"},
                            {"v:a", "1 0 1 2 3"}, {"c:z", "1 0 1 1 99 1 0 0 x"},
                            {"v", "1"}, {"h:t", "1 0 -1 0 0 0"}};
    sp_win *junk = sp_win_new();
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        assert_int_equal(sp_win_load(junk, bad[k][0], strlen(bad[k][0]), bad[k][1],
                                     strlen(bad[k][1])), SP_EPARSE);
    assert_int_equal(sp_win_entities(junk), 0);
    sp_win_free(junk);
    sp_win_free(back);
    sp_win_free(w);
}

/* Encodes with the detector on; returns the alerts' JSON, one per line. */
static char *encode_alerts(sp_win *w, const sp_config *cfg)
{
    sp_resp r;
    sp_buf upd, alerts;
    sp_resp_init(&r);
    sp_buf_init(&upd);
    sp_buf_init(&alerts);
    sp_win_encode(w, cfg, &r, &upd, &alerts);
    sp_buf_appends(&alerts, "");
    sp_resp_free(&r);
    sp_buf_free(&upd);
    return alerts.data;
}

/* A video that was surging when its partition went away for a month: the
 * detector resumes a day and ten minutes before the clock (bounded work),
 * goes quiet and sends its resolved, at an edge of the last day. */
static void test_detector_after_a_month_away(void **state)
{
    sp_config cfg;
    sp_config_init(&cfg);
    sp_win *w = sp_win_new();
    sp_win_advance(w, T0);
    add(w, SP_EV_SHARE, "v", T0 - 30000, 200);
    sp_win_advance(w, T0 + 10000);
    char *a = encode_alerts(w, &cfg);
    assert_non_null(strstr(a, "\"kind\":\"momentum\""));
    free(a);
    int64_t T = T0 + 30 * 24 * HOUR;
    sp_win_advance(w, T);
    a = encode_alerts(w, &cfg);
    const char *res = strstr(a, "\"kind\":\"resolved\"");
    assert_non_null(res);
    long long at = atoll(strstr(res, "\"at_ms\":") + 8);
    assert_true(at > T - 24 * HOUR - 10 * MIN && at <= T - 24 * HOUR + 2000);
    free(a);
    assert_int_equal(sp_win_entities(w), 0); /* all quiet and empty: forgotten */
    sp_win_free(w);
    sp_config_free(&cfg);
}

/* ---- the live edge: alerts before the clock reaches their edge ---- */

static void add_live(sp_win *w, const sp_config *cfg, sp_event_type t, const char *video,
                     int64_t ts, int n)
{
    sp_event e = ev(t, video, ts);
    for (int i = 0; i < n; i++)
        sp_win_add(w, &e, cfg);
}

/* The momentum alerts' levels in a, in order: "rising surging ...". */
static void levels_of(const char *a, char *out, size_t cap)
{
    out[0] = '\0';
    for (const char *p = a; (p = strstr(p, "\"kind\":\"momentum\",\"level\":\"")) != NULL;) {
        p += strlen("\"kind\":\"momentum\",\"level\":\"");
        size_t n = strcspn(p, "\"");
        snprintf(out + strlen(out), cap - strlen(out), "%s%.*s", out[0] ? " " : "", (int)n, p);
    }
}

/* A usual 1 share a minute for an hour, then 105 shares in one 2 s bucket
 * with the clock held 2 s behind (the lateness): rising fires at the 25th
 * share and surging at the 50th, both at the edge that closes the bucket,
 * long before the clock gets there; the clock's own step at that edge
 * fires nothing again. A run without the live edge fires surging at the
 * same edge, with the same alert_id. */
static void test_live_edge_fires_before_the_clock(void **state)
{
    sp_config cfg;
    sp_config_init(&cfg);
    sp_win *w = sp_win_new(), *clock_only = sp_win_new();
    for (int m = 60; m >= 1; m--) {
        add_live(w, &cfg, SP_EV_SHARE, "v", T0 - m * MIN + 1000, 1);
        add(clock_only, SP_EV_SHARE, "v", T0 - m * MIN + 1000, 1);
    }
    sp_win_advance(w, T0 - 2000);
    sp_win_advance(clock_only, T0 - 2000);
    free(encode_alerts(w, &cfg));
    free(encode_alerts(clock_only, &cfg));
    char got[256] = "";
    int rising_at = 0, surging_at = 0;
    for (int i = 1; i <= 100; i++) {
        add_live(w, &cfg, SP_EV_SHARE, "v", T0 + 500, 1);
        char *a = encode_alerts(w, &cfg), lv[64];
        levels_of(a, lv, sizeof(lv));
        if (strcmp(lv, "rising") == 0)
            rising_at = i;
        if (strcmp(lv, "surging") == 0) {
            surging_at = i;
            assert_non_null(strstr(a, "\"at_ms\":1764000002000,"));
            assert_non_null(strstr(a, "\"shares_5m\":50,"));
        }
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", lv[0] && got[0] ? " " : "",
                 lv);
        free(a);
    }
    assert_string_equal(got, "rising surging");
    /* The 4 usual shares of the 5 minutes before the edge count too. */
    assert_int_equal(rising_at, 21);
    assert_int_equal(surging_at, 46);
    sp_win_advance(w, T0 + 10000);
    char *a = encode_alerts(w, &cfg);
    assert_null(strstr(a, "\"kind\":\"momentum\""));
    free(a);

    add(clock_only, SP_EV_SHARE, "v", T0 + 500, 100);
    sp_win_advance(clock_only, T0 + 10000);
    a = encode_alerts(clock_only, &cfg);
    char lv[64];
    levels_of(a, lv, sizeof(lv));
    assert_string_equal(lv, "surging");
    assert_non_null(strstr(a, "\"at_ms\":1764000002000,"));
    assert_non_null(strstr(a, "\"shares_5m\":104,"));
    free(a);
    sp_win_free(clock_only);
    sp_win_free(w);
    sp_config_free(&cfg);
}

/* cooldown_min 0: the live edge evaluates an edge again with every share
 * of its bucket, and an alert at the edge it fired at is still within any
 * cooldown: each level fires once. */
static void test_live_edge_cooldown_zero(void **state)
{
    sp_config cfg;
    sp_config_init(&cfg);
    cfg.cooldown_min = 0;
    sp_win *w = sp_win_new();
    for (int m = 60; m >= 1; m--)
        add_live(w, &cfg, SP_EV_SHARE, "v", T0 - m * MIN + 1000, 1);
    sp_win_advance(w, T0 - 2000);
    free(encode_alerts(w, &cfg));
    sp_buf got;
    sp_buf_init(&got);
    for (int i = 1; i <= 100; i++) {
        add_live(w, &cfg, SP_EV_SHARE, "v", T0 + 500, 1);
        char *a = encode_alerts(w, &cfg), lv[64];
        levels_of(a, lv, sizeof(lv));
        if (lv[0] != '\0')
            sp_buf_appendf(&got, "%s%s", got.len ? " " : "", lv);
        free(a);
    }
    sp_win_advance(w, T0 + 10000);
    char *a = encode_alerts(w, &cfg), lv[64];
    levels_of(a, lv, sizeof(lv));
    free(a);
    sp_buf_appends(&got, "");
    assert_string_equal(got.data, "rising surging");
    assert_string_equal(lv, "");
    sp_buf_free(&got);
    sp_win_free(w);
    sp_config_free(&cfg);
}

/* A labelled stream over three hours (quiet, steady, noisy videos and three
 * bursts), taken in with up to 800 ms of disorder, flushed after every
 * event, every 37 events, every 1000 events or only every 5000, with the
 * clock held back on some flushes, and restarted from the stored state
 * mid-stream: the same alerts, byte for byte, and every momentum alert out
 * before the clock reached its edge. */
typedef struct {
    int64_t arrive, ts;
    int video, type;
} live_event;

static uint64_t lcg_state;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg_state >> 33);
}

static int live_cmp(const void *a, const void *b)
{
    const live_event *x = a, *y = b;
    return x->arrive < y->arrive ? -1 : x->arrive > y->arrive;
}

static size_t live_stream(live_event *out, size_t cap)
{
    /* shares per minute: quiet, popular, noisy (2 or 9 in turn), quiet, rare, rare */
    static const double rate[6] = {0.5, 20, 2, 1, 0.2, 0.2};
    /* bursts: video, start (minutes before T0), shares, over seconds */
    static const struct {
        int video;
        int64_t start;
        int n;
        int secs;
    } burst[3] = {{0, 150, 300, 180}, {3, 90, 100, 120}, {5, 30, 1000, 120}};
    size_t n = 0;
    lcg_state = 42;
    for (int64_t t = T0 - 3 * HOUR; t < T0; t += 1000)
        for (int v = 0; v < 6; v++) {
            double r = rate[v];
            if (v == 2 && (t / MIN) % 2)
                r = 9;
            if (lcg() % 60000 < (uint32_t)(r * 1000) && n < cap)
                out[n++] = (live_event){0, t + lcg() % 1000, v, SP_EV_SHARE};
            if (lcg() % 60 < 10 && n < cap)
                out[n++] = (live_event){0, t + lcg() % 1000, v, SP_EV_VIEW};
        }
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < burst[b].n && n < cap; i++)
            out[n++] = (live_event){0, T0 - burst[b].start * MIN +
                                           (int64_t)(lcg() % (uint32_t)(burst[b].secs * 1000)),
                                    burst[b].video, SP_EV_SHARE};
    for (size_t i = 0; i < n; i++)
        out[i].arrive = out[i].ts + lcg() % 800;
    qsort(out, n, sizeof(*out), live_cmp);
    return n;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The state hash as Redis holds it: the latest value of each field. */
typedef struct {
    char *field[64], *value[64];
    int n;
} state_hash;

static void state_set(state_hash *h, const char *f, const char *v)
{
    int k = 0;
    while (k < h->n && strcmp(h->field[k], f) != 0)
        k++;
    if (k == h->n) {
        assert_true(h->n < 64);
        h->field[h->n++] = strdup(f);
        h->value[k] = NULL;
    }
    free(h->value[k]);
    h->value[k] = strdup(v);
}

static void state_free(state_hash *h)
{
    for (int k = 0; k < h->n; k++) {
        free(h->field[k]);
        free(h->value[k]);
    }
    h->n = 0;
}

/* Walks one encode's records: alerts to all, states to h. */
static void take_records(const records *r, sp_buf *all, state_hash *h)
{
    for (int i = 0; i < r->argc;) {
        const char *k = r->argv[i];
        if (strcmp(k, "w") == 0) {
            int64_t d[SP_WIN_FIELDS];
            int m = w_deltas(r, i, d);
            i = m + 1 + atoi(r->argv[m]) * 5;
        } else if (strcmp(k, "m") == 0) {
            i += 5;
        } else if (strcmp(k, "a") == 0) {
            sp_buf_appends(all, r->argv[i + 2]);
            sp_buf_appends(all, "\n");
            i += 3;
        } else if (strcmp(k, "s") == 0) {
            state_set(h, r->argv[i + 1], r->argv[i + 2]);
            i += 3;
        } else {
            i += 3; /* f, h */
        }
    }
}

/* Runs the stream flushing every `every` events. The clock is the newest
 * event minus the lateness, held back up to 5 s more on some flushes (as
 * another partition would). restart > 0: the daemon dies after the flush
 * that follows event `restart`, and a new one loads the state hash as the
 * flushes left it and goes on from the next event. Returns the alerts
 * sorted, one per line; early counts the momentum alerts out while the
 * clock was still before their edge. */
/* Clock-only writes per encode in live_run (sp_win_set_clock_budget). */
static size_t live_budget;

static char *live_run(const live_event *evs, size_t n, size_t every, size_t restart,
                      const sp_config *cfg, int *early)
{
    sp_win *w = sp_win_new();
    sp_win_set_clock_budget(w, live_budget);
    state_hash h = {.n = 0};
    sp_buf all;
    sp_buf_init(&all);
    sp_buf_appends(&all, "");
    int64_t newest = 0;
    size_t flushes = 0;
    *early = 0;
    for (size_t i = 0; i < n; i++) {
        static const char *ids[6] = {"v0", "v1", "v2", "v3", "v4", "v5"};
        sp_event e = ev((sp_event_type)evs[i].type, ids[evs[i].video], evs[i].ts);
        sp_win_add(w, &e, cfg);
        if (evs[i].ts > newest)
            newest = evs[i].ts;
        if ((i + 1) % every != 0 && i + 1 != n)
            continue;
        int64_t T = newest - cfg->allowed_lateness_ms - (int64_t)(flushes++ % 3) * 2500;
        sp_win_advance(w, T);
        records r = encode_cfg(w, cfg);
        size_t before = all.len;
        take_records(&r, &all, &h);
        records_free(&r);
        for (const char *p = all.data + before; (p = strstr(p, "\"kind\":\"momentum\"")) != NULL;
             p++)
            if (atoll(strstr(p, "\"at_ms\":") + 8) > sp_win_clock(w))
                (*early)++;
        if (restart > 0 && i + 1 >= restart) {
            restart = 0;
            sp_win_free(w);
            w = sp_win_new();
            sp_win_set_clock_budget(w, live_budget);
            for (int k = 0; k < h.n; k++)
                if (h.value[k][0] != '\0')
                    assert_int_equal(sp_win_load(w, h.field[k], strlen(h.field[k]), h.value[k],
                                                 strlen(h.value[k])), 0);
        }
    }
    sp_win_advance(w, newest + HOUR); /* the stream's end: every resolved */
    do {
        records r = encode_cfg(w, cfg);
        take_records(&r, &all, &h);
        records_free(&r);
    } while (sp_win_backlog(w) > 0);
    sp_win_free(w);
    state_free(&h);
    char *lines[256];
    int nl = 0;
    for (char *p = strtok(all.data, "\n"); p != NULL && nl < 256; p = strtok(NULL, "\n"))
        lines[nl++] = p;
    qsort(lines, (size_t)nl, sizeof(char *), line_cmp);
    sp_buf out;
    sp_buf_init(&out);
    for (int i = 0; i < nl; i++) {
        sp_buf_appends(&out, lines[i]);
        sp_buf_appends(&out, "\n");
    }
    sp_buf_free(&all);
    return out.data;
}

/* One event taken in and flushed, with the clock at the newest event minus
 * the lateness (or at hold, if lower); alerts to all, states to h. */
static void live_step(sp_win *w, const sp_config *cfg, state_hash *h, sp_buf *all,
                      int64_t *newest, sp_event_type t, const char *video, int64_t ts,
                      int64_t hold)
{
    add_live(w, cfg, t, video, ts, 1);
    if (ts > *newest)
        *newest = ts;
    int64_t T = *newest - cfg->allowed_lateness_ms;
    sp_win_advance(w, hold < T ? hold : T);
    records r = encode_cfg(w, cfg);
    take_records(&r, all, h);
    records_free(&r);
}

/* A restart from the stored state places the live edge's real steps where
 * an uninterrupted run does (the newest event time is part of the state):
 * a video alerts, goes quiet until its resolved is due at r, the clock is
 * held back at the flush the restart starts from, and a burst arrives 1 s
 * out of order. Both runs then fire the same alerts. */
static void test_live_edge_same_after_restart(void **state)
{
    sp_config cfg;
    sp_config_init(&cfg);
    sp_win *w = sp_win_new();
    state_hash h = {.n = 0};
    sp_buf pre, one, two;
    sp_buf_init(&pre);
    sp_buf_init(&one);
    sp_buf_init(&two);
    sp_buf_appends(&one, "");
    sp_buf_appends(&two, "");
    int64_t newest = 0, r = T0 + 902000, none = INT64_MAX;
    for (int m = 60; m >= 1; m--)
        live_step(w, &cfg, &h, &pre, &newest, SP_EV_SHARE, "v", T0 - m * MIN + 1000, none);
    for (int i = 0; i < 30; i++)
        live_step(w, &cfg, &h, &pre, &newest, SP_EV_SHARE, "v", T0 + 500, none);
    for (int64_t t = T0 + 1000; t <= r - 3000; t += 2000)
        live_step(w, &cfg, &h, &pre, &newest, SP_EV_VIEW, "u", t, none);
    assert_non_null(strstr(pre.data, "\"level\":\"rising\""));
    /* The flush the restart starts from: the clock held back at r - 4000. */
    live_step(w, &cfg, &h, &pre, &newest, SP_EV_VIEW, "u", r + 2000, r - 4000);
    sp_win *w2 = sp_win_new();
    for (int k = 0; k < h.n; k++)
        if (h.value[k][0] != '\0')
            assert_int_equal(sp_win_load(w2, h.field[k], strlen(h.field[k]), h.value[k],
                                         strlen(h.value[k])), 0);
    int64_t newest2 = 0;
    sp_win_advance(w2, r - 4000);
    for (int i = 0; i < 200; i++) {
        live_step(w, &cfg, &h, &one, &newest, SP_EV_SHARE, "v", r + 1000, none);
        live_step(w2, &cfg, &h, &two, &newest2, SP_EV_SHARE, "v", r + 1000, none);
    }
    live_step(w, &cfg, &h, &one, &newest, SP_EV_VIEW, "u", r + 20000, none);
    live_step(w2, &cfg, &h, &two, &newest2, SP_EV_VIEW, "u", r + 20000, none);
    assert_non_null(strstr(one.data, "\"kind\":\"momentum\""));
    assert_string_equal(two.data, one.data);
    sp_buf_free(&pre);
    sp_buf_free(&one);
    sp_buf_free(&two);
    state_free(&h);
    sp_win_free(w2);
    sp_win_free(w);
    sp_config_free(&cfg);
}

static void test_live_edge_independent_of_flushes(void **state)
{
    enum { CAP = 200000 };
    live_event *evs = malloc(CAP * sizeof(*evs));
    size_t n = live_stream(evs, CAP);
    sp_config cfg;
    sp_config_init(&cfg);
    int early[7];
    char *want = live_run(evs, n, 1, 0, &cfg, &early[0]);
    /* Flush cadences, then restarts at a few points of the stream, then
     * one clock-only write per flush (the rest deferred). */
    int early_budget;
    const size_t every[7] = {37, 1000, 5000, 37, 37, 1000, 37};
    const size_t restart[7] = {0, 0, 0, n / 3, n * 3 / 4, n / 2, n / 2};
    for (int k = 0; k < 7; k++) {
        live_budget = k == 6 ? 1 : 0;
        char *got = live_run(evs, n, every[k], restart[k], &cfg,
                             k < 6 ? &early[k + 1] : &early_budget);
        if (getenv("SP_DUMP")) {
            char fn[64];
            snprintf(fn, sizeof(fn), "/tmp/live_%zu.txt", every[k]);
            FILE *f = fopen(fn, "w");
            fputs(got, f);
            fclose(f);
            f = fopen("/tmp/live_1.txt", "w");
            fputs(want, f);
            fclose(f);
        }
        assert_string_equal(got, want);
        free(got);
    }
    /* Every burst fired; the steady and noisy videos did not after the
     * warm-up (a video's first 5 minutes have no baseline yet). */
    for (int v = 0; v < 6; v++) {
        char id[32];
        snprintf(id, sizeof(id), "\"video_id\":\"v%d\"", v);
        int fired = 0;
        for (const char *l = want; *l != '\0'; l = strchr(l, '\n') + 1) {
            char line[1024];
            snprintf(line, sizeof(line), "%.*s", (int)strcspn(l, "\n"), l);
            fired |= strstr(line, "\"kind\":\"momentum\"") != NULL && strstr(line, id) != NULL &&
                     atoll(strstr(line, "\"at_ms\":") + 8) > T0 - 3 * HOUR + 10 * MIN;
        }
        assert_int_equal(fired, v == 0 || v == 3 || v == 5);
    }
    /* Flushed at every event, every momentum alert left while the clock
     * was still before its edge. */
    int momentum = 0;
    for (const char *p = want; (p = strstr(p, "\"kind\":\"momentum\"")) != NULL; p++)
        momentum++;
    assert_int_equal(momentum, 10);
    assert_int_equal(early[0], momentum);
    free(want);
    free(evs);
    sp_config_free(&cfg);
}

/* ---- randomised: the daemon's deltas, added up, equal a brute force ---- */

typedef struct {
    int video;
    int type;
    int64_t ts;
} model_event;

static int64_t model_value(const model_event *evs, size_t n, int video, int field, int64_t T)
{
    static const int64_t g[4] = {2000, 2000, MIN, 1800000};
    static const int64_t nb[4] = {30, 150, 60, 48};
    int win = field % 4, metric = field / 4;
    int64_t lower = (T / g[win] - nb[win] + 1) * g[win];
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        if (evs[i].video == video && evs[i].type == metric && evs[i].ts >= lower)
            sum++;
    return sum;
}

/* With a clock budget, every video an event changed is written by the
 * first encode after it; the decay of the others is spread over the next
 * encodes, and once they are through Redis equals the model again. */
static void random_against_model(size_t budget)
{
    enum { VIDEOS = 40, EVENTS = 3000 };
    static model_event evs[EVENTS];
    static int64_t redis[VIDEOS][SP_WIN_FIELDS];
    memset(redis, 0, sizeof(redis));
    sp_win *w = sp_win_new();
    sp_win_set_clock_budget(w, budget);
    int deferred = 0;
    srand(7);
    int64_t T = T0;
    size_t n = 0;
    for (int step = 0; step < 600; step++) {
        T += rand() % 30000;
        if (step == 300)
            T += 2 * HOUR; /* a jump */
        sp_win_advance(w, T);
        size_t first = n;
        for (int k = rand() % 10; k > 0 && n < EVENTS; k--) {
            model_event m = {rand() % VIDEOS, rand() % 4, T - rand() % (2 * HOUR) + 3000};
            /* Kept only where the window still covers it, as the daemon does. */
            char id[16];
            snprintf(id, sizeof(id), "v%d", m.video);
            sp_event e = ev((sp_event_type)m.type, id, m.ts);
            sp_win_add(w, &e, NULL);
            evs[n++] = m;
        }
        for (int pass = 0; pass == 0 || sp_win_backlog(w) > 0; pass++) {
            records r = encode(w);
            int written[VIDEOS] = {0};
            for (int i = 0; i < r.argc; i++)
                if (strcmp(r.argv[i], "s") == 0 && r.argv[i + 1][0] == 'v')
                    written[atoi(r.argv[i + 1] + 3)] = 1;
            for (int i = 0; i < r.argc; i++)
                if (strcmp(r.argv[i], "w") == 0) {
                    int v = atoi(r.argv[i + 1] + 1);
                    int64_t d[SP_WIN_FIELDS];
                    int m = w_deltas(&r, i, d);
                    for (int f = 0; f < SP_WIN_FIELDS; f++)
                        redis[v][f] += d[f];
                    i = m + atoi(r.argv[m]) * 5;
                }
            records_free(&r);
            for (size_t k = first; pass == 0 && k < n; k++)
                if (!written[evs[k].video])
                    fail_msg("step %d: video %d had an event and was not written", step,
                             evs[k].video);
            deferred += pass > 0;
        }
        for (int v = 0; v < VIDEOS; v++)
            for (int f = 0; f < SP_WIN_FIELDS; f++) {
                int64_t want = model_value(evs, n, v, f, T);
                if (redis[v][f] != want)
                    fail_msg("step %d video %d field %s: redis %lld model %lld", step, v,
                             sp_win_field_names[f], (long long)redis[v][f], (long long)want);
            }
    }
    assert_true(sp_win_bytes(w) > 0);
    assert_true(budget == 0 ? deferred == 0 : deferred > 0);
    sp_win_free(w);
}

static void test_random_against_model(void **state)
{
    random_against_model(0);
}

static void test_random_with_clock_budget(void **state)
{
    random_against_model(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_at_known_times),
        cmocka_unit_test(test_edges_leave_at_most_one_bucket_early),
        cmocka_unit_test(test_decay_to_zero_and_forget),
        cmocka_unit_test(test_clock_never_goes_back),
        cmocka_unit_test(test_series_minutes_once_when_ended),
        cmocka_unit_test(test_hashtags_and_follows),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_detector_after_a_month_away),
        cmocka_unit_test(test_live_edge_fires_before_the_clock),
        cmocka_unit_test(test_live_edge_cooldown_zero),
        cmocka_unit_test(test_live_edge_same_after_restart),
        cmocka_unit_test(test_live_edge_independent_of_flushes),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_random_with_clock_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
