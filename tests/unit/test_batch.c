/* Unit tests of lib/batch.c: aggregation and the RESP encoding of the
 * apply script's call. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"

/* Splits a RESP array of bulk strings into argv. Returns argc. */
static int resp_split(const sp_buf *b, char ***argv_out)
{
    const char *p = b->data;
    assert_true(*p == '*');
    int argc = atoi(p + 1);
    char **argv = calloc((size_t)argc, sizeof(char *));
    p = strstr(p, "\r\n") + 2;
    for (int i = 0; i < argc; i++) {
        assert_true(*p == '$');
        int len = atoi(p + 1);
        p = strstr(p, "\r\n") + 2;
        argv[i] = strndup(p, (size_t)len);
        p += len + 2;
    }
    assert_true(p == b->data + b->len);
    *argv_out = argv;
    return argc;
}

static void free_argv(char **argv, int argc)
{
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

static void encode(const sp_batch *b, const sp_batch_target *t, const char *sha,
                   sp_buf *out)
{
    sp_resp r;
    sp_resp_init(&r);
    sp_batch_encode(b, t, sha, &r);
    sp_resp_finish(&r, out);
    sp_resp_free(&r);
}

static sp_event mk(sp_event_type t, const char *video, const char *user, int64_t ts)
{
    sp_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = t;
    ev.ts_ms = ts;
    ev.watch_ms = -1;
    ev.age_bucket = -1;
    snprintf(ev.video_id, sizeof(ev.video_id), "%s", video);
    snprintf(ev.user_id, sizeof(ev.user_id), "%s", user);
    snprintf(ev.creator_id, sizeof(ev.creator_id), "c1");
    return ev;
}

static int find(char **argv, int argc, const char *s)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], s) == 0)
            return i;
    return -1;
}

static void test_encode_layout(void **state)
{
    sp_batch *b = sp_batch_new();
    sp_event v = mk(SP_EV_VIEW, "vid1", "u1", 100);
    v.watch_ms = 700;
    memcpy(v.region, "BR", 3);
    v.age_bucket = 1;
    sp_batch_add(b, &v);
    sp_batch_add(b, &v);
    sp_event s = mk(SP_EV_SHARE, "vid1", "u2", 300);
    s.share_type = SP_SHARE_EXTERNAL;
    snprintf(s.platform, sizeof(s.platform), "whatsapp");
    sp_batch_add(b, &s);
    sp_event f = mk(SP_EV_FOLLOW, "", "u3", 200);
    sp_batch_add(b, &f);
    sp_batch_add_bad(b);
    assert_int_equal(sp_batch_events(b), 4);
    assert_int_equal(sp_batch_bad(b), 1);
    assert_int_equal(sp_batch_videos(b), 1);

    sp_batch_target t = {"sp:", "grp", "events", 3, 41, 46, 7, 1000, 50};
    sp_buf out;
    sp_buf_init(&out);
    encode(b, &t, "0123456789012345678901234567890123456789", &out);
    char **argv;
    int argc = resp_split(&out, &argv);
    const char *head[] = {"EVALSHA", "0123456789012345678901234567890123456789", "0",
                          "sp:offsets:{grp}", "events:3", "41", "46", "sp:",
                          "sp:win:{grp}:events:3", "7", "8", "1000", "50",
                          "v", "vid1", "c1", "300"};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        assert_string_equal(argv[i], head[i]);
    /* hash deltas: views 2, shares 1, watch_ms 1400, shares:external 1 */
    assert_string_equal(argv[17], "4");
    int i = find(argv, argc, "views");
    assert_string_equal(argv[i + 1], "2");
    i = find(argv, argc, "watch_ms");
    assert_string_equal(argv[i + 1], "1400");
    i = find(argv, argc, "shares:external");
    assert_string_equal(argv[i + 1], "1");
    i = find(argv, argc, "region:BR");
    assert_string_equal(argv[i + 1], "2");
    i = find(argv, argc, "age:18-24");
    assert_string_equal(argv[i + 1], "2");
    i = find(argv, argc, "whatsapp");
    assert_string_equal(argv[i + 1], "1");
    /* the viewer twice (PFADD is idempotent), the private sharer never */
    assert_int_not_equal(find(argv, argc, "u1"), -1);
    assert_int_equal(find(argv, argc, "u2"), -1);
    for (int k = 0; k < argc; k++)
        assert_null(strstr(argv[k], "u2"));
    /* the follow */
    i = find(argv, argc, "c");
    assert_string_equal(argv[i + 1], "c1");
    assert_string_equal(argv[i + 2], "1");
    assert_int_equal(i + 3, argc);

    free_argv(argv, argc);
    sp_buf_free(&out);
    sp_batch_free(b);
}

static void test_sharers_newest_hundred(void **state)
{
    sp_batch *b = sp_batch_new();
    for (int i = 0; i < 250; i++) {
        char u[16];
        snprintf(u, sizeof(u), "pub%d", i);
        sp_event s = mk(SP_EV_SHARE, "v", u, 1000 + i);
        s.share_type = SP_SHARE_STITCH;
        sp_batch_add(b, &s);
    }
    sp_batch_target t = {"sp:", "g", "t", 0, -1, 250, 0, 0, 0};
    sp_buf out;
    sp_buf_init(&out);
    encode(b, &t, NULL, &out);
    char **argv;
    int argc = resp_split(&out, &argv);
    assert_string_equal(argv[0], "EVAL");
    assert_string_equal(argv[5], ""); /* nothing stored yet */
    assert_string_equal(argv[9], ""); /* no sequence yet */
    assert_string_equal(argv[10], "1");
    int first = -1, n = 0;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "{\"user_id\":", 11) == 0) {
            if (first < 0)
                first = i;
            n++;
        }
    assert_int_equal(n, SP_SHARERS_MAX);
    /* oldest of the newest hundred first; the script LPUSHes them */
    assert_string_equal(argv[first], "{\"user_id\":\"pub150\",\"share_type\":\"stitch\",\"ts\":1150}");
    assert_string_equal(argv[first + 99], "{\"user_id\":\"pub249\",\"share_type\":\"stitch\",\"ts\":1249}");
    free_argv(argv, argc);
    sp_buf_free(&out);

    /* reset empties it for reuse */
    sp_batch_reset(b);
    assert_int_equal(sp_batch_events(b), 0);
    assert_int_equal(sp_batch_videos(b), 0);
    sp_batch_free(b);
    sp_batch_free(NULL);
}

static void test_many_videos(void **state)
{
    sp_batch *b = sp_batch_new();
    for (int i = 0; i < 20000; i++) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", i % 5000);
        sp_event e = mk(SP_EV_LIKE, v, "u", i);
        sp_batch_add(b, &e);
    }
    assert_int_equal(sp_batch_videos(b), 5000);
    assert_true(sp_batch_bytes(b) > 0);
    sp_batch_free(b);
}

/* The hand-written number formatting agrees with printf at the edges. */
static void test_resp_numbers(void **state)
{
    static const int64_t vs[] = {0, 7, -7, 9, 10, 99, 100, 1764000000000LL, -1764000000000LL,
                                 INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "%" PRId64, vs[i]);
        sp_buf b;
        sp_buf_init(&b);
        sp_buf_appends(&b, "x");
        sp_buf_append_i64(&b, vs[i]);
        assert_int_equal(b.len, 1 + strlen(want));
        assert_string_equal(b.data + 1, want);
        sp_buf_free(&b);

        sp_resp r;
        sp_resp_init(&r);
        sp_resp_bulki(&r, vs[i]);
        sp_resp_bulk(&r, "", 0);
        char resp[96];
        snprintf(resp, sizeof(resp), "$%zu\r\n%s\r\n$0\r\n\r\n", strlen(want), want);
        assert_int_equal(r.argc, 2);
        assert_int_equal(r.body.len, strlen(resp));
        assert_string_equal(r.body.data, resp);
        sp_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resp_numbers),
        cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_sharers_newest_hundred),
        cmocka_unit_test(test_many_videos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
