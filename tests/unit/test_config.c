/* Unit tests of lib/config.c: the table, errors naming file:line and the
 * allowed values, overrides, and the documented config file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static void test_defaults(void **state)
{
    sp_config c;
    sp_config_init(&c);
    assert_string_equal(c.kafka_topics, "engagement-events");
    assert_string_equal(c.redis_prefix, "sp:");
    assert_int_equal(c.flush_interval_ms, 200);
    assert_int_equal(c.allowed_lateness_ms, 2000);
    assert_int_equal(c.max_future_ms, 300000);
    assert_int_equal(c.top_n, 1000);
    assert_true(c.baseline_floor == 0.5);
    assert_string_equal(c.http_listen, "127.0.0.1:9321");
    assert_int_equal(sp_config_validate(&c, "x"), 0);
    sp_config_free(&c);
}

static void test_errors_name_file_line_allowed(void **state)
{
    sp_config c;
    sp_config_init(&c);
    assert_int_equal(sp_config_set(&c, "a.conf", 3, 3, "redis", "port", "0"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 4, 4, "log", "level", "loud"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 5, 5, "pipeline", "nope", "1"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 6, 6, "momentum", "min_z", "x"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 7, 7, "webhook.ops", "timeout_ms", "5"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 8, 8, "momentum", "send_resolved", "maybe"), -1);
    assert_int_equal(sp_config_set(&c, "a.conf", 9, 9, "kafka", "group", ""), -1);
    assert_int_equal(c.n_errors, 7);
    assert_non_null(strstr(c.errors, "a.conf:3: [redis] port: 0 is out of range (allowed: 1 to 65535)"));
    assert_non_null(strstr(c.errors, "a.conf:4: [log] level: \"loud\" is not allowed (allowed: error,warn,info,debug)"));
    assert_non_null(strstr(c.errors, "a.conf:5: [pipeline] unknown key \"nope\" (allowed: flush_interval_ms,"));
    assert_non_null(strstr(c.errors, "a.conf:6: [momentum] min_z: \"x\" is not a number"));
    assert_non_null(strstr(c.errors, "a.conf:7: [webhook.ops] timeout_ms: 5 is out of range (allowed: 100 to 600000)"));
    assert_non_null(strstr(c.errors, "a.conf:8: [momentum] send_resolved: \"maybe\" is not a boolean (allowed: true, false)"));
    assert_non_null(strstr(c.errors, "a.conf:9: [kafka] group: must not be empty"));
    /* a webhook without url is caught by validate, at its section's line */
    assert_int_equal(sp_config_validate(&c, "a.conf"), 8);
    assert_non_null(strstr(c.errors, "a.conf:7: [webhook.ops] url: missing (required)"));
    sp_config_free(&c);
}

static void test_rdkafka_passthrough_and_dump(void **state)
{
    sp_config c;
    sp_config_init(&c);
    assert_int_equal(sp_config_set(&c, "f", 1, 1, "kafka", "rdkafka.fetch.min.bytes", "1"), 0);
    assert_int_equal(sp_config_set(&c, "f", 2, 2, "redis", "password", "hunter2"), 0);
    assert_int_equal(sp_config_set(&c, "f", 3, 3, "webhook.ops", "url", "https://x"), 0);
    assert_int_equal(sp_config_set(&c, "f", 4, 4, "webhook.ops", "secret", "whsec_abc"), 0);
    assert_int_equal(c.n_rdkafka, 1);
    assert_string_equal(c.rdkafka[0].key, "fetch.min.bytes");
    char *dump = sp_config_dump(&c);
    assert_null(strstr(dump, "hunter2"));
    assert_null(strstr(dump, "whsec_abc"));
    assert_non_null(strstr(dump, "rdkafka.fetch.min.bytes = 1"));
    assert_non_null(strstr(dump, "[webhook.ops]\nurl = https://x"));
    free(dump);
    sp_config_free(&c);
}

static void test_webhook_secret_and_levels_are_checked(void **state)
{
    sp_config c;
    sp_config_init(&c);
    assert_int_equal(sp_config_set(&c, "w.conf", 2, 1, "webhook.ops", "url", "https://x"), 0);
    assert_int_equal(sp_config_set(&c, "w.conf", 3, 1, "webhook.ops", "secret",
                                   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_YWJj"), 0);
    assert_int_equal(sp_config_validate(&c, "w.conf"), 0);
    assert_int_equal(sp_config_set(&c, "w.conf", 3, 1, "webhook.ops", "secret", "hunter2"), 0);
    assert_int_equal(sp_config_set(&c, "w.conf", 4, 1, "webhook.ops", "levels", "viral,loud"), 0);
    assert_int_equal(sp_config_validate(&c, "w.conf"), 2);
    assert_non_null(strstr(c.errors, "[webhook.ops] secret: not a space-separated list of whsec_<base64>"));
    assert_non_null(strstr(c.errors, "[webhook.ops] levels: \"viral,loud\" is not allowed"));
    sp_config_free(&c);
}

static void test_override_split(void **state)
{
    char *s, *k, *v;
    assert_int_equal(sp_config_split_override("kafka.rdkafka.fetch.min.bytes=1", &s, &k, &v), 0);
    assert_string_equal(s, "kafka");
    assert_string_equal(k, "rdkafka.fetch.min.bytes");
    assert_string_equal(v, "1");
    free(s), free(k), free(v);
    assert_int_equal(sp_config_split_override("webhook.ops.url=http://a.b/c?x=1", &s, &k, &v), 0);
    assert_string_equal(s, "webhook.ops");
    assert_string_equal(k, "url");
    assert_string_equal(v, "http://a.b/c?x=1");
    free(s), free(k), free(v);
    assert_int_equal(sp_config_split_override("kafka.dlq_topic=", &s, &k, &v), 0);
    assert_string_equal(v, "");
    free(s), free(k), free(v);
    assert_int_equal(sp_config_split_override("nodot=1", &s, &k, &v), -1);
    assert_int_equal(sp_config_split_override("kafka.brokers", &s, &k, &v), -1);
    assert_int_equal(sp_config_split_override("webhook.ops=1", &s, &k, &v), -1);
}

/* config/sharepulse.conf documents every key of the table, with its default. */
static void test_conf_file_documents_every_key(void **state)
{
    FILE *f = fopen(SP_CONF_FILE, "r");
    assert_non_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    char *doc = sp_config_doc();
    char section[64] = "";
    for (char *line = strtok(doc, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[') {
            snprintf(section, sizeof(section), "%s", line);
            if (strcmp(section, "[webhook.NAME]") != 0)
                assert_non_null(strstr(text, section));
            continue;
        }
        /* "key = default"; webhook keys appear in a commented example. */
        char want[256];
        if (strcmp(section, "[webhook.NAME]") == 0)
            snprintf(want, sizeof(want), "; %.*s", (int)strcspn(line, " "), line);
        else
            snprintf(want, sizeof(want), "\n%s", line);
        if (strstr(text, want) == NULL)
            fail_msg("config/sharepulse.conf lacks \"%s\" in %s", line, section);
    }
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_file_line_allowed),
        cmocka_unit_test(test_rdkafka_passthrough_and_dump),
        cmocka_unit_test(test_webhook_secret_and_levels_are_checked),
        cmocka_unit_test(test_override_split),
        cmocka_unit_test(test_conf_file_documents_every_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
