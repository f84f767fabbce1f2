/* Unit tests of lib/event.c: SPEC section 1 and the reason codes of 6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"

#define NOW 1764000000000LL /* 2025-11-24T16:00:00Z */

static int parse(const char *json, sp_event *ev, char *reason)
{
    return sp_event_parse(json, strlen(json), NOW, 300000, ev, reason, 48);
}

static void expect_reason(const char *json, const char *want)
{
    sp_event ev;
    char reason[48] = "";
    assert_int_not_equal(parse(json, &ev, reason), 0);
    assert_string_equal(reason, want);
}

static void test_full_view(void **state)
{
    sp_event ev;
    char reason[48];
    assert_int_equal(parse("{\"type\":\"view\",\"video_id\":\"v-1.a:b_c\",\"ts\":1763999999000,"
                           "\"creator_id\":\"c1\",\"user_id\":\"u\\u00e9#1\",\"watch_ms\":1500,"
                           "\"region\":\"BR\",\"age_bucket\":\"55+\",\"hashtags\":[\"FYP\",\"Dance\"],"
                           "\"unknown\":{\"x\":1}}",
                           &ev, reason),
                     0);
    assert_int_equal(ev.type, SP_EV_VIEW);
    assert_string_equal(ev.video_id, "v-1.a:b_c");
    assert_int_equal(ev.ts_ms, 1763999999000LL);
    assert_string_equal(ev.creator_id, "c1");
    assert_int_equal(ev.watch_ms, 1500);
    assert_string_equal(ev.region, "BR");
    assert_string_equal(sp_age_bucket_names[ev.age_bucket], "55+");
    assert_int_equal(ev.n_hashtags, 2);
    assert_string_equal(ev.hashtags[0], "fyp");
    assert_string_equal(ev.hashtags[1], "dance");
}

static void test_share_types(void **state)
{
    sp_event ev;
    char reason[48];
    assert_int_equal(parse("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1}", &ev, reason), 0);
    assert_int_equal(ev.share_type, SP_SHARE_UNSPECIFIED);
    assert_int_equal(parse("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1,\"share_type\":\"duet\"}",
                           &ev, reason), 0);
    assert_int_equal(ev.share_type, SP_SHARE_DUET);
    assert_true(sp_share_type_is_public(ev.share_type));
    assert_int_equal(parse("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1,\"share_type\":\"story\"}",
                           &ev, reason), 0);
    assert_int_equal(ev.share_type, SP_SHARE_OTHER);
    assert_false(sp_share_type_is_public(SP_SHARE_DM));
    assert_false(sp_share_type_is_public(SP_SHARE_EXTERNAL));
    assert_int_equal(parse("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1,"
                           "\"share_type\":\"external\",\"platform\":\"instagram\"}", &ev, reason), 0);
    assert_string_equal(ev.platform, "instagram");
}

static void test_follow_needs_creator_not_video(void **state)
{
    sp_event ev;
    char reason[48];
    assert_int_equal(parse("{\"type\":\"follow\",\"creator_id\":\"c9\",\"ts\":5}", &ev, reason), 0);
    assert_string_equal(ev.video_id, "");
    expect_reason("{\"type\":\"follow\",\"ts\":5}", "bad_field:creator_id");
}

static void test_rfc3339(void **state)
{
    int64_t ms;
    const char *s = "2026-11-24T17:12:37.123Z";
    assert_int_equal(sp_rfc3339_parse(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 1795540357123LL);
    s = "2026-11-24T19:12:37.123+02:00";
    assert_int_equal(sp_rfc3339_parse(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 1795540357123LL);
    s = "1970-01-01T00:00:00Z";
    assert_int_equal(sp_rfc3339_parse(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 0);
    s = "2024-02-29T00:00:00.5Z";
    assert_int_equal(sp_rfc3339_parse(s, strlen(s), &ms), 0);
    assert_int_equal(ms % 1000, 500);
    const char *bad[] = {"2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-24 17:12:37Z",
                         "2026-11-24T17:12:37", "2026-11-24T17:12:37.Z", "2026-11-24T24:00:00Z",
                         "2026-11-24T17:12:37+0200", "yesterday", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(sp_rfc3339_parse(bad[i], strlen(bad[i]), &ms), 0);
}

static void test_reasons(void **state)
{
    expect_reason("", "bad_json");
    expect_reason("{\"type\":\"view\"", "bad_json");
    expect_reason("{\"type\":\"view\",\"type\":\"like\",\"video_id\":\"v\",\"ts\":1}", "bad_json");
    expect_reason("[1]", "not_object");
    expect_reason("\"view\"", "bad_json"); /* Jansson refuses a bare scalar */
    expect_reason("{\"video_id\":\"v\",\"ts\":1}", "bad_field:type");
    expect_reason("{\"type\":5,\"video_id\":\"v\",\"ts\":1}", "bad_field:type");
    expect_reason("{\"type\":\"repost\",\"video_id\":\"v\",\"ts\":1}", "unknown_type");
    expect_reason("{\"type\":\"view\",\"ts\":1}", "bad_field:video_id");
    expect_reason("{\"type\":\"view\",\"video_id\":\"a b\",\"ts\":1}", "bad_field:video_id");
    expect_reason("{\"type\":\"view\",\"video_id\":\"a{b}\",\"ts\":1}", "bad_field:video_id");
    expect_reason("{\"type\":\"view\",\"video_id\":\"\",\"ts\":1}", "bad_field:video_id");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\"}", "bad_field:ts");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1.5}", "bad_field:ts");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":-1}", "bad_field:ts");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1764000300001}", "future_ts");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"watch_ms\":86400001}",
                  "bad_field:watch_ms");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"watch_ms\":\"5\"}",
                  "bad_field:watch_ms");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"region\":\"br\"}",
                  "bad_field:region");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"age_bucket\":\"18-25\"}",
                  "bad_field:age_bucket");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"user_id\":\"a b\"}",
                  "bad_field:user_id");
    expect_reason("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1,\"share_type\":null}",
                  "bad_field:share_type");
    expect_reason("{\"type\":\"share\",\"video_id\":\"v\",\"ts\":1,\"platform\":\"Insta\"}",
                  "bad_field:platform");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"hashtags\":[\"\"]}",
                  "bad_field:hashtags");
    expect_reason("{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1,\"hashtags\":[1]}",
                  "bad_field:hashtags");
}

static void test_limits(void **state)
{
    char big[SP_EVENT_MAX_BYTES + 64];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"type\":\"view\",\"video_id\":\"v\",\"ts\":1}", 37);
    sp_event ev;
    char reason[48];
    assert_int_not_equal(sp_event_parse(big, sizeof(big), NOW, 0, &ev, reason, 48), 0);
    assert_string_equal(reason, "too_large");

    char id[200], json[400];
    memset(id, 'a', 128);
    id[128] = '\0';
    snprintf(json, sizeof(json), "{\"type\":\"view\",\"video_id\":\"%s\",\"ts\":1}", id);
    assert_int_equal(parse(json, &ev, reason), 0);
    memset(id, 'a', 129);
    id[129] = '\0';
    snprintf(json, sizeof(json), "{\"type\":\"view\",\"video_id\":\"%s\",\"ts\":1}", id);
    expect_reason(json, "bad_field:video_id");

    /* An embedded NUL is not valid JSON text for Jansson by default. */
    const char nul[] = "{\"type\":\"view\",\"video_id\":\"v\\u0000\",\"ts\":1}";
    assert_int_not_equal(sp_event_parse(nul, sizeof(nul) - 1, NOW, 0, &ev, reason, 48), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_view),
        cmocka_unit_test(test_share_types),
        cmocka_unit_test(test_follow_needs_creator_not_video),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
