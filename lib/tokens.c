/*
 * tokens.c - parsing the API's tokens file and finding a token in it.
 */
#include "tokens.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "sp_common.h"

static const char *const sp__account_names[] = {"admin", "creator", "business", "personal"};

const char *sp_account_name(sp_account_type type)
{
    return sp__account_names[type];
}

static void sp__err(sp_buf *errs, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void sp__err(sp_buf *errs, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_buf_appendf(errs, "%s:%d: %s\n", file, line, msg);
}

static int sp__hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void sp__parse_line(sp_tokens *t, const char *file, int lineno, char *line, sp_buf *errs)
{
    char *save = NULL;
    char *hex = strtok_r(line, " \t", &save);
    if (hex == NULL || hex[0] == '#')
        return; /* blank or comment */
    char *type = strtok_r(NULL, " \t", &save);
    char *creator = strtok_r(NULL, " \t", &save);
    char *extra = strtok_r(NULL, " \t", &save);
    if (type == NULL || creator == NULL || (extra != NULL && extra[0] != '#')) {
        sp__err(errs, file, lineno,
                "expected \"<sha256 hex> <account_type> <creator_id or *>\" "
                "(three fields)");
        return;
    }
    sp_token tok = {0};
    int ok = strlen(hex) == 64;
    for (int i = 0; ok && i < 32; i++) {
        int hi = sp__hexval(hex[2 * i]), lo = sp__hexval(hex[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        if (ok)
            tok.digest[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!ok) {
        sp__err(errs, file, lineno,
                "token digest: expected 64 hex digits, the SHA-256 of the token "
                "(printf %%s TOKEN | sha256sum)");
        return;
    }
    int found = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(type, sp__account_names[i]) == 0)
            found = i;
    if (found < 0) {
        sp__err(errs, file, lineno,
                "account type \"%.64s\" (allowed: admin, creator, business, personal)", type);
        return;
    }
    tok.type = (sp_account_type)found;
    if (tok.type == SP_ACCOUNT_ADMIN) {
        if (strcmp(creator, "*") != 0) {
            sp__err(errs, file, lineno, "an admin token sees every creator: its creator is *");
            return;
        }
    } else if (!sp_is_id(creator)) {
        sp__err(errs, file, lineno,
                "creator id \"%.64s\" (allowed: 1 to %d characters A-Z a-z 0-9 . _ : -; "
                "* only for admin)", creator, SP_ID_MAX);
        return;
    } else {
        tok.creator = sp_xstrdup(creator);
    }
    for (size_t i = 0; i < t->n; i++)
        if (memcmp(t->v[i].digest, tok.digest, 32) == 0) {
            sp__err(errs, file, lineno, "the same token digest is on an earlier line");
            free(tok.creator);
            return;
        }
    t->v = sp_xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->v[t->n++] = tok;
}

int sp_tokens_parse(sp_tokens *t, const char *file, const char *text, size_t len,
                    char **errors)
{
    sp_buf errs;
    sp_buf_init(&errs);
    t->v = NULL;
    t->n = 0;
    *errors = NULL;
    int lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (n > 0 && text[pos + n - 1] == '\r')
            n--;
        char *line = sp_xstrndup(text + pos, n);
        if (strlen(line) != n)
            sp__err(&errs, file, lineno, "a NUL byte in the line");
        else
            sp__parse_line(t, file, lineno, line, &errs);
        free(line);
        pos += (nl ? (size_t)(nl - (text + pos)) + 1 : len - pos);
    }
    if (errs.len > 0) {
        sp_tokens_free(t);
        errs.data[errs.len - 1] = '\0'; /* the last newline */
        *errors = errs.data;
        return -1;
    }
    sp_buf_free(&errs);
    return 0;
}

int sp_tokens_load(sp_tokens *t, const char *file, char **errors)
{
    FILE *f = fopen(file, "rb");
    t->v = NULL;
    t->n = 0;
    if (f == NULL) {
        sp_buf e;
        sp_buf_init(&e);
        sp_buf_appendf(&e, "%s: cannot read the tokens file: %s", file, strerror(errno));
        *errors = e.data;
        return -1;
    }
    sp_buf text;
    sp_buf_init(&text);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sp_buf_append(&text, chunk, n);
    fclose(f);
    int rc = sp_tokens_parse(t, file, text.data ? text.data : "", text.len, errors);
    sp_buf_free(&text);
    return rc;
}

void sp_tokens_free(sp_tokens *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].creator);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

const sp_token *sp_tokens_find(const sp_tokens *t, const uint8_t digest[32])
{
    /* Every line is compared in full, and the match is picked without a
     * branch on secret data: the time says nothing about which line, if
     * any, matched, or how much of a digest did. */
    const sp_token *found = NULL;
    for (size_t i = 0; i < t->n; i++) {
        uint8_t diff = 0;
        for (int k = 0; k < 32; k++)
            diff |= (uint8_t)(t->v[i].digest[k] ^ digest[k]);
        uintptr_t mask = (uintptr_t)0 - (uintptr_t)(((unsigned)diff - 1u) >> 8 & 1u);
        found = (const sp_token *)(((uintptr_t)found & ~mask) | ((uintptr_t)&t->v[i] & mask));
    }
    return found;
}

int sp_token_sees_creator(const sp_token *tok, const char *creator)
{
    if (tok->type == SP_ACCOUNT_ADMIN)
        return 1;
    return creator != NULL && strcmp(tok->creator, creator) == 0;
}
