/* Unit tests of lib/detector.c with scripted time: a simulated video whose
 * shares per 2 s bucket are given, stepped at every bucket edge as the
 * window code does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "detector.h"

#define MIN 60000LL
#define BUCKETS (6 * 3600 / 2) /* six hours of 2 s buckets */

typedef struct {
    int64_t at;
    sp_alert_kind kind;
    int level;
} fired;

static sp_config cfg;

static int setup(void **state)
{
    sp_config_init(&cfg);
    return 0;
}

static int teardown(void **state)
{
    sp_config_free(&cfg);
    return 0;
}

/* Steps a video through shares[] (per 2 s bucket); returns alerts fired. */
static int simulate(const int64_t *shares, int nbuckets, fired *out, int max)
{
    sp_detector st;
    memset(&st, 0, sizeof(st));
    int n = 0;
    for (int k = 1; k <= nbuckets; k++) {
        int64_t g = (int64_t)k * 2000;
        /* Minutes that ended 5 minutes before g join the baseline. */
        int64_t upto = (g - 5 * MIN) / MIN; /* minutes < upto */
        for (int64_t m = st.folded_upto; m < upto; m++) {
            int64_t s = 0;
            for (int b = (int)(m * 30); b < (int)(m * 30 + 30); b++)
                s += shares[b];
            sp_detector_fold(&cfg, &st, m, s);
        }
        int64_t s5 = 0;
        for (int b = k - 150; b < k; b++)
            if (b >= 0)
                s5 += shares[b];
        sp_signal sig;
        sp_detector_signal(&cfg, &st, s5, &sig);
        sp_alert_kind kind = sp_detector_step(&cfg, &st, g, &sig);
        if (kind != SP_ALERT_NONE && n < max)
            out[n++] = (fired){g, kind, (int)(kind == SP_ALERT_RESOLVED ? st.alerted_level
                                                                       : sig.level)};
    }
    return n;
}

/* per_min shares a minute from minute `from` to `to`, spread evenly. */
static void fill(int64_t *shares, int from, int to, int per_min)
{
    for (int m = from; m < to; m++)
        for (int i = 0; i < per_min; i++)
            shares[m * 30 + (i * 30) / per_min]++;
}

static void test_burst_fires_once_and_escalates_once(void **state)
{
    static int64_t shares[BUCKETS];
    memset(shares, 0, sizeof(shares));
    fill(shares, 0, 120, 2);       /* two hours at 2 shares a minute */
    fill(shares, 120, 135, 40);    /* then 40 a minute for 15 minutes */
    fill(shares, 135, 240, 2);
    fired f[16];
    int n = simulate(shares, 240 * 30, f, 16);
    /* The warm-up (no baseline yet) may alert in the first minutes; after
     * it, exactly: rising, then surging, then resolved. */
    int first = 0;
    while (first < n && f[first].at < 60 * MIN)
        first++;
    assert_int_equal(n - first, 3);
    assert_int_equal(f[first].kind, SP_ALERT_MOMENTUM);
    assert_int_equal(f[first].level, SP_LEVEL_RISING);
    assert_int_equal(f[first + 1].kind, SP_ALERT_MOMENTUM);
    assert_int_equal(f[first + 1].level, SP_LEVEL_SURGING);
    assert_true(f[first].at > 120 * MIN && f[first].at < 123 * MIN);
    assert_true(f[first + 1].at > f[first].at && f[first + 1].at < 126 * MIN);
    assert_int_equal(f[first + 2].kind, SP_ALERT_RESOLVED);
    assert_int_equal(f[first + 2].level, SP_LEVEL_SURGING);
    assert_true(f[first + 2].at > 135 * MIN);
}

static void test_steadily_popular_never_fires_after_warm_up(void **state)
{
    static int64_t shares[BUCKETS];
    memset(shares, 0, sizeof(shares));
    srand(3);
    for (int m = 0; m < 360; m++)
        fill(shares, m, m + 1, 40 + rand() % 17 - 8); /* 32..48 a minute */
    fired f[16];
    int n = simulate(shares, 360 * 30, f, 16);
    for (int i = 0; i < n; i++)
        if (f[i].kind == SP_ALERT_MOMENTUM)
            assert_true(f[i].at < 30 * MIN); /* only the warm-up */
}

static void test_quiet_video_never_fires(void **state)
{
    static int64_t shares[BUCKETS];
    memset(shares, 0, sizeof(shares));
    for (int m = 0; m < 360; m += 7)
        fill(shares, m, m + 1, 3); /* a few shares now and then */
    fired f[4];
    assert_int_equal(simulate(shares, 360 * 30, f, 4), 0);
}

static void test_flapping_does_not_refire_within_cooldown(void **state)
{
    sp_detector st;
    memset(&st, 0, sizeof(st));
    sp_signal rising = {.level = SP_LEVEL_RISING}, quiet = {.level = SP_LEVEL_QUIET};
    int alerts = 0;
    int64_t t = 100 * MIN;
    /* rising and quiet every 2 minutes for 28 minutes: one alert */
    for (int i = 0; i < 14; i++, t += 2 * MIN)
        alerts += sp_detector_step(&cfg, &st, t, i % 2 ? &quiet : &rising) == SP_ALERT_MOMENTUM;
    assert_int_equal(alerts, 1);
    /* once the cooldown has passed, entering rising alerts again */
    t = 100 * MIN + 31 * MIN;
    assert_int_equal(sp_detector_step(&cfg, &st, t, &quiet), SP_ALERT_NONE);
    assert_int_equal(sp_detector_step(&cfg, &st, t + 2000, &rising), SP_ALERT_MOMENTUM);
    /* staying at a level does not alert again, even past the cooldown */
    assert_int_equal(sp_detector_step(&cfg, &st, t + 40 * MIN, &rising), SP_ALERT_NONE);
}

static void test_resolved_after_ten_quiet_minutes(void **state)
{
    sp_detector st;
    memset(&st, 0, sizeof(st));
    sp_signal viral = {.level = SP_LEVEL_VIRAL}, quiet = {.level = SP_LEVEL_QUIET};
    int64_t t = 50 * MIN;
    assert_int_equal(sp_detector_step(&cfg, &st, t, &viral), SP_ALERT_MOMENTUM);
    assert_true(sp_detector_open(&cfg, &st));
    assert_int_equal(sp_detector_step(&cfg, &st, t + MIN, &quiet), SP_ALERT_NONE);
    /* back up for a moment: the quiet period starts again */
    assert_int_equal(sp_detector_step(&cfg, &st, t + 5 * MIN, &viral), SP_ALERT_NONE);
    assert_int_equal(sp_detector_step(&cfg, &st, t + 6 * MIN, &quiet), SP_ALERT_NONE);
    assert_int_equal(sp_detector_step(&cfg, &st, t + 16 * MIN - 2000, &quiet), SP_ALERT_NONE);
    assert_int_equal(sp_detector_step(&cfg, &st, t + 16 * MIN, &quiet), SP_ALERT_RESOLVED);
    assert_false(sp_detector_open(&cfg, &st));
    assert_int_equal(sp_detector_step(&cfg, &st, t + 30 * MIN, &quiet), SP_ALERT_NONE);

    sp_detector s2;
    memset(&s2, 0, sizeof(s2));
    cfg.send_resolved = 0;
    sp_detector_step(&cfg, &s2, t, &viral);
    sp_detector_step(&cfg, &s2, t + MIN, &quiet);
    assert_int_equal(sp_detector_step(&cfg, &s2, t + 11 * MIN, &quiet), SP_ALERT_NONE);
    assert_false(sp_detector_open(&cfg, &s2));
    cfg.send_resolved = 1;
}

static void test_signal_thresholds(void **state)
{
    sp_detector st;
    memset(&st, 0, sizeof(st));
    st.baseline = 2.0;
    st.minutes = 100000; /* long seen: no bias correction left */
    sp_signal s;
    sp_detector_signal(&cfg, &st, 20, &s); /* v 4 < min_velocity 5 */
    assert_int_equal(s.level, SP_LEVEL_QUIET);
    sp_detector_signal(&cfg, &st, 30, &s); /* v 6, ratio 3, z (30-10)/sqrt 10 = 6.3 */
    assert_int_equal(s.level, SP_LEVEL_RISING);
    assert_true(s.z > 6.32 && s.z < 6.33);
    sp_detector_signal(&cfg, &st, 100, &s); /* v 20, ratio 10 */
    assert_int_equal(s.level, SP_LEVEL_SURGING);
    sp_detector_signal(&cfg, &st, 300, &s); /* v 60, ratio 30 */
    assert_int_equal(s.level, SP_LEVEL_VIRAL);
    st.baseline = 0.1; /* floored at 0.5 */
    sp_detector_signal(&cfg, &st, 0, &s);
    assert_true(s.baseline == 0.5);
    /* bias correction: 10 minutes of 4 shares read as 4, not as 0.86 */
    memset(&st, 0, sizeof(st));
    for (int m = 1; m <= 10; m++)
        sp_detector_fold(&cfg, &st, m, 4);
    sp_detector_signal(&cfg, &st, 0, &s);
    assert_true(s.baseline > 3.999 && s.baseline < 4.001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_fires_once_and_escalates_once),
        cmocka_unit_test(test_steadily_popular_never_fires_after_warm_up),
        cmocka_unit_test(test_quiet_video_never_fires),
        cmocka_unit_test(test_flapping_does_not_refire_within_cooldown),
        cmocka_unit_test(test_resolved_after_ten_quiet_minutes),
        cmocka_unit_test(test_signal_thresholds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
