/* Unit tests of lib/tokens.c: the tokens file's lines, its errors (file,
 * line, allowed values), lookup by digest and what each account sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tokens.h"

/* Three arbitrary digests. */
#define D1 "4c3fd4e8fdcbb2ae41bdd1ea2cac6b7ac5b6e4d2e4fb2a4bbf4de5f3b5ad4f01"
#define D2 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define D3 "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

static void digest(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_parse_and_find(void **state)
{
    (void)state;
    const char *text = "# tokens\n"
                       "\n"
                       D1 " creator c42\n"
                       "  " D2 "\tadmin *   # the ops team\r\n"
                       D3 " personal c42";
    sp_tokens t;
    char *errors = NULL;
    assert_int_equal(sp_tokens_parse(&t, "tok", text, strlen(text), &errors), 0);
    assert_null(errors);
    assert_int_equal(t.n, 3);

    uint8_t d[32];
    digest(D1, d);
    const sp_token *k = sp_tokens_find(&t, d);
    assert_non_null(k);
    assert_int_equal(k->type, SP_ACCOUNT_CREATOR);
    assert_string_equal(k->creator, "c42");
    assert_true(sp_token_sees_creator(k, "c42"));
    assert_false(sp_token_sees_creator(k, "c43"));
    assert_false(sp_token_sees_creator(k, NULL));
    assert_true(sp_token_sees_share_details(k));

    digest(D2, d);
    k = sp_tokens_find(&t, d);
    assert_non_null(k);
    assert_int_equal(k->type, SP_ACCOUNT_ADMIN);
    assert_null(k->creator);
    assert_true(sp_token_sees_creator(k, "anyone"));

    digest(D3, d);
    k = sp_tokens_find(&t, d);
    assert_non_null(k);
    assert_int_equal(k->type, SP_ACCOUNT_PERSONAL);
    assert_false(sp_token_sees_share_details(k));
    assert_true(sp_token_sees_creator(k, "c42"));

    d[31] ^= 1; /* one bit off is no token */
    assert_null(sp_tokens_find(&t, d));
    sp_tokens_free(&t);
}

static void test_errors_name_line_and_allowed(void **state)
{
    (void)state;
    const char *text = D1 " creator c42\n"
                       "abc creator c1\n"                 /* 2: short digest */
                       D2 " boss c1\n"                    /* 3: account type */
                       D2 " admin c1\n"                   /* 4: admin with a creator */
                       D2 " creator {c1}\n"               /* 5: bad creator id */
                       D2 " creator\n"                    /* 6: two fields */
                       D1 " business c7\n";               /* 7: digest again */
    sp_tokens t;
    char *errors = NULL;
    assert_int_equal(sp_tokens_parse(&t, "/etc/sp/tokens", text, strlen(text), &errors), -1);
    assert_non_null(errors);
    assert_int_equal(t.n, 0);
    assert_non_null(strstr(errors, "/etc/sp/tokens:2: token digest: expected 64 hex digits"));
    assert_non_null(strstr(errors, "/etc/sp/tokens:3: account type \"boss\" (allowed: admin, "
                                   "creator, business, personal)"));
    assert_non_null(strstr(errors, "/etc/sp/tokens:4: an admin token"));
    assert_non_null(strstr(errors, "/etc/sp/tokens:5: creator id \"{c1}\" (allowed:"));
    assert_non_null(strstr(errors, "/etc/sp/tokens:6: expected"));
    assert_non_null(strstr(errors, "/etc/sp/tokens:7: the same token digest"));
    assert_null(strstr(errors, "tokens:1:"));
    free(errors);
}

static void test_missing_file(void **state)
{
    (void)state;
    sp_tokens t;
    char *errors = NULL;
    assert_int_equal(sp_tokens_load(&t, "/nonexistent/tokens", &errors), -1);
    assert_non_null(strstr(errors, "/nonexistent/tokens: cannot read the tokens file"));
    free(errors);
}

static void test_empty_file_has_no_tokens(void **state)
{
    (void)state;
    sp_tokens t;
    char *errors = NULL;
    assert_int_equal(sp_tokens_parse(&t, "f", "", 0, &errors), 0);
    uint8_t d[32] = {0};
    assert_null(sp_tokens_find(&t, d));
    sp_tokens_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_find),
        cmocka_unit_test(test_errors_name_line_and_allowed),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_file_has_no_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
