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

static records encode(sp_win *w)
{
    sp_resp r;
    sp_buf out, upd;
    sp_resp_init(&r);
    sp_buf_init(&out);
    sp_buf_init(&upd);
    sp_win_encode(w, NULL, &r, &upd, NULL);
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
        sp_win_add(w, &e);
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
    sp_win_add(w, &s);
    sp_win_add(w, &s);
    sp_event f = ev(SP_EV_FOLLOW, "", T0 - 1000);
    sp_win_add(w, &f);
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
            /* loaded twice is refused */
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

static void test_random_against_model(void **state)
{
    enum { VIDEOS = 40, EVENTS = 3000 };
    static model_event evs[EVENTS];
    static int64_t redis[VIDEOS][SP_WIN_FIELDS];
    memset(redis, 0, sizeof(redis));
    sp_win *w = sp_win_new();
    srand(7);
    int64_t T = T0;
    size_t n = 0;
    for (int step = 0; step < 600; step++) {
        T += rand() % 30000;
        if (step == 300)
            T += 2 * HOUR; /* a jump */
        sp_win_advance(w, T);
        for (int k = rand() % 10; k > 0 && n < EVENTS; k--) {
            model_event m = {rand() % VIDEOS, rand() % 4, T - rand() % (2 * HOUR) + 3000};
            /* Kept only where the window still covers it, as the daemon does. */
            char id[16];
            snprintf(id, sizeof(id), "v%d", m.video);
            sp_event e = ev((sp_event_type)m.type, id, m.ts);
            sp_win_add(w, &e);
            evs[n++] = m;
        }
        records r = encode(w);
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
        for (int v = 0; v < VIDEOS; v++)
            for (int f = 0; f < SP_WIN_FIELDS; f++) {
                int64_t want = model_value(evs, n, v, f, T);
                if (redis[v][f] != want)
                    fail_msg("step %d video %d field %s: redis %lld model %lld", step, v,
                             sp_win_field_names[f], (long long)redis[v][f], (long long)want);
            }
    }
    assert_true(sp_win_bytes(w) > 0);
    sp_win_free(w);
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
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
