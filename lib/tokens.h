/*
 * tokens.h - the API's tokens file: one token per line,
 *
 *   <sha256 hex of the token> <account_type> <creator_id or *>
 *
 * account types admin, creator, business, personal. The file holds digests,
 * never tokens; the daemon hashes what a client presents and asks
 * sp_tokens_find(), which compares with every line in constant time.
 */
#ifndef SP_TOKENS_H
#define SP_TOKENS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SP_ACCOUNT_ADMIN,
    SP_ACCOUNT_CREATOR,
    SP_ACCOUNT_BUSINESS,
    SP_ACCOUNT_PERSONAL
} sp_account_type;

typedef struct sp_token {
    uint8_t digest[32];
    sp_account_type type;
    char *creator;       /* NULL for admin: every creator */
} sp_token;

typedef struct sp_tokens {
    sp_token *v;
    size_t n;
} sp_tokens;

/* Parses a tokens file's text. Returns 0, or -1 with every bad line in
 * errors (malloc'd, one "FILE:LINE: ..." message per line, naming what is
 * allowed); t is then empty. */
int sp_tokens_parse(sp_tokens *t, const char *file, const char *text, size_t len,
                    char **errors);
/* Reads and parses file. Same contract. */
int sp_tokens_load(sp_tokens *t, const char *file, char **errors);
void sp_tokens_free(sp_tokens *t);

/* The token whose digest this is, or NULL. Takes the same time whichever
 * line matches, or none. */
const sp_token *sp_tokens_find(const sp_tokens *t, const uint8_t digest[32]);

/* May tok see creator's videos? */
int sp_token_sees_creator(const sp_token *tok, const char *creator);
/* Share types, platforms and sharers: creator, business and admin only. */
static inline int sp_token_sees_share_details(const sp_token *tok)
{
    return tok->type != SP_ACCOUNT_PERSONAL;
}
const char *sp_account_name(sp_account_type type);

#endif
