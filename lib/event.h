/*
 * event.h - parsing and validation of one engagement event (SPEC section 1).
 *
 * sp_event_parse() turns one Kafka message value into an sp_event, or says
 * why it is bad input with a short reason code (SPEC section 6): bad_json,
 * not_object, too_large, unknown_type, bad_field:<name>, future_ts.
 * Pure: the caller passes the wall clock.
 */
#ifndef SP_EVENT_H
#define SP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define SP_EVENT_MAX_BYTES (64 * 1024)
#define SP_ID_MAX 128

/* The characters of video, creator and other ids: A-Z a-z 0-9 . _ : - */
int sp_is_id_char(unsigned char c);
/* Is s (NUL-terminated) a possible id: 1 to SP_ID_MAX such characters? */
int sp_is_id(const char *s);
#define SP_PLATFORM_MAX 32
#define SP_HASHTAGS_MAX 20
#define SP_HASHTAG_MAX 64
#define SP_WATCH_MS_MAX 86400000LL

typedef enum {
    SP_EV_VIEW,
    SP_EV_LIKE,
    SP_EV_COMMENT,
    SP_EV_SHARE,
    SP_EV_FOLLOW,
    SP_EV__COUNT
} sp_event_type;

typedef enum {
    SP_SHARE_UNSPECIFIED,
    SP_SHARE_DUET,
    SP_SHARE_STITCH,
    SP_SHARE_REACTION,
    SP_SHARE_REPOST,
    SP_SHARE_DM,
    SP_SHARE_LINK,
    SP_SHARE_EXTERNAL,
    SP_SHARE_OTHER,
    SP_SHARE__COUNT
} sp_share_type;

#define SP_AGE__COUNT 6

typedef struct sp_event {
    sp_event_type type;
    int64_t ts_ms;
    /* Strings are NUL-terminated; an empty string means "absent". */
    char video_id[SP_ID_MAX + 1];
    char creator_id[SP_ID_MAX + 1];
    char user_id[SP_ID_MAX + 1];
    sp_share_type share_type;
    char platform[SP_PLATFORM_MAX + 1];
    int64_t watch_ms;  /* -1 when absent */
    char region[3];    /* "" when absent */
    int age_bucket;    /* index into sp_age_bucket_names, -1 when absent */
    int n_hashtags;
    char hashtags[SP_HASHTAGS_MAX][SP_HASHTAG_MAX + 1]; /* lower case */
} sp_event;

extern const char *const sp_event_type_names[SP_EV__COUNT];
extern const char *const sp_share_type_names[SP_SHARE__COUNT];
extern const char *const sp_age_bucket_names[SP_AGE__COUNT];

/* True for the share types whose sharer is public (duet, stitch, reaction,
 * repost): only those sharers' user_ids may ever be stored. */
int sp_share_type_is_public(sp_share_type t);

/*
 * Parses and validates the len bytes at buf.
 * now_ms is the wall clock; an event with ts > now_ms + max_future_ms is
 * bad input. Returns 0 and fills *ev, or returns SP_EPARSE and writes a
 * NUL-terminated reason code into reason (reason_size >= 32 is enough).
 */
int sp_event_parse(const char *buf, size_t len, int64_t now_ms,
                   int64_t max_future_ms, sp_event *ev, char *reason,
                   size_t reason_size);

/*
 * Parses an RFC 3339 date-time ("2026-11-24T17:12:37.123Z", offsets allowed,
 * fractions truncated to milliseconds). Returns 0 and sets *ms, or SP_EPARSE.
 */
int sp_rfc3339_parse(const char *s, size_t len, int64_t *ms);

#endif
