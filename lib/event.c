/* event.c - see event.h. */
#include "event.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "sp_common.h"

const char *const sp_event_type_names[SP_EV__COUNT] = {
    "view", "like", "comment", "share", "follow"};

const char *const sp_share_type_names[SP_SHARE__COUNT] = {
    "unspecified", "duet", "stitch", "reaction", "repost",
    "dm",          "link", "external", "other"};

const char *const sp_age_bucket_names[SP_AGE__COUNT] = {
    "13-17", "18-24", "25-34", "35-44", "45-54", "55+"};

int sp_share_type_is_public(sp_share_type t)
{
    return t == SP_SHARE_DUET || t == SP_SHARE_STITCH ||
           t == SP_SHARE_REACTION || t == SP_SHARE_REPOST;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t sp__days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int sp__digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int sp_rfc3339_parse(const char *s, size_t len, int64_t *ms)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int Y, M, D, h, mi, sec, frac_ms = 0;
    size_t i;

    if (len < 20 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return SP_EPARSE;
    if (sp__digits(s, 4, &Y) || sp__digits(s + 5, 2, &M) ||
        sp__digits(s + 8, 2, &D) || sp__digits(s + 11, 2, &h) ||
        sp__digits(s + 14, 2, &mi) || sp__digits(s + 17, 2, &sec))
        return SP_EPARSE;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return SP_EPARSE;
    if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0))
        return SP_EPARSE;
    if (sec == 60) /* A leap second folds onto the next one. */
        sec = 59;
    i = 19;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        int scale = 100;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9)
            return SP_EPARSE;
    }
    int64_t offset_s = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') &&
               s[i + 3] == ':') {
        int oh, om;
        if (sp__digits(s + i + 1, 2, &oh) || sp__digits(s + i + 4, 2, &om) ||
            oh > 23 || om > 59)
            return SP_EPARSE;
        offset_s = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return SP_EPARSE;
    }
    if (i != len)
        return SP_EPARSE;
    int64_t days = sp__days_from_civil(Y, M, D);
    int64_t t = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    *ms = t * 1000 + frac_ms;
    return 0;
}

int sp_is_id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
}

int sp_is_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > SP_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!sp_is_id_char((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Character classes of the string fields; i is the position in the string. */
static int sp__is_id_char(unsigned char c, size_t i)
{
    (void)i;
    return sp_is_id_char(c);
}

static int sp__is_user_char(unsigned char c, size_t i)
{
    (void)i;
    return c > 0x20 && c != 0x7f; /* printable, no space; UTF-8 allowed */
}

static int sp__is_platform_char(unsigned char c, size_t i)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (i > 0 && (c == '.' || c == '_' || c == '-'));
}

/* Copies a string field of 1..max bytes, each allowed by ok, into out
 * (max + 1 bytes). Returns 0, or -1 if v is not such a string. */
static int sp__take_string(json_t *v, char *out, size_t max,
                           int (*ok)(unsigned char, size_t))
{
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < 1 || n > max)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!ok((unsigned char)s[i], i))
            return -1;
    memcpy(out, s, n + 1);
    return 0;
}

static int sp__take_id(json_t *v, char *out)
{
    return sp__take_string(v, out, SP_ID_MAX, sp__is_id_char);
}

static int sp__take_ts(json_t *v, int64_t *ts)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return -1;
        *ts = (int64_t)x;
        return 0;
    }
    if (json_is_string(v)) {
        int64_t ms;
        if (sp_rfc3339_parse(json_string_value(v), json_string_length(v),
                             &ms) != 0 ||
            ms < 0)
            return -1;
        *ts = ms;
        return 0;
    }
    return -1;
}

static int sp__take_hashtags(json_t *v, sp_event *ev)
{
    if (!json_is_array(v) || json_array_size(v) > SP_HASHTAGS_MAX)
        return -1;
    size_t i;
    json_t *tag;
    json_array_foreach(v, i, tag) {
        if (!json_is_string(tag))
            return -1;
        const char *s = json_string_value(tag);
        size_t n = json_string_length(tag);
        if (n < 1 || n > SP_HASHTAG_MAX || memchr(s, '\0', n) != NULL)
            return -1;
        char *out = ev->hashtags[ev->n_hashtags++];
        for (size_t k = 0; k < n; k++)
            out[k] = (s[k] >= 'A' && s[k] <= 'Z') ? (char)(s[k] + 32) : s[k];
        out[n] = '\0';
    }
    return 0;
}

static int sp__lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

#define SP__BAD(field)                                                    \
    do {                                                                  \
        snprintf(reason, reason_size, "bad_field:%s", field);             \
        goto bad;                                                         \
    } while (0)

int sp_event_parse(const char *buf, size_t len, int64_t now_ms,
                   int64_t max_future_ms, sp_event *ev, char *reason,
                   size_t reason_size)
{
    json_t *root = NULL, *v;
    json_error_t jerr;

    if (len > SP_EVENT_MAX_BYTES) {
        snprintf(reason, reason_size, "too_large");
        return SP_EPARSE;
    }
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(reason, reason_size, "bad_json");
        return SP_EPARSE;
    }
    if (!json_is_object(root)) {
        snprintf(reason, reason_size, "not_object");
        goto bad;
    }

    ev->video_id[0] = ev->creator_id[0] = ev->user_id[0] = '\0';
    ev->platform[0] = ev->region[0] = '\0';
    ev->share_type = SP_SHARE_UNSPECIFIED;
    ev->watch_ms = -1;
    ev->age_bucket = -1;
    ev->n_hashtags = 0;

    v = json_object_get(root, "type");
    if (!json_is_string(v))
        SP__BAD("type");
    int t = sp__lookup(sp_event_type_names, SP_EV__COUNT, json_string_value(v));
    if (t < 0) {
        snprintf(reason, reason_size, "unknown_type");
        goto bad;
    }
    ev->type = (sp_event_type)t;

    v = json_object_get(root, "video_id");
    if (v != NULL || ev->type != SP_EV_FOLLOW)
        if (sp__take_id(v, ev->video_id) != 0)
            SP__BAD("video_id");

    v = json_object_get(root, "ts");
    if (sp__take_ts(v, &ev->ts_ms) != 0)
        SP__BAD("ts");

    v = json_object_get(root, "creator_id");
    if (v != NULL || ev->type == SP_EV_FOLLOW)
        if (sp__take_id(v, ev->creator_id) != 0)
            SP__BAD("creator_id");

    if ((v = json_object_get(root, "user_id")) != NULL &&
        sp__take_string(v, ev->user_id, SP_ID_MAX, sp__is_user_char) != 0)
        SP__BAD("user_id");

    if ((v = json_object_get(root, "share_type")) != NULL) {
        if (!json_is_string(v))
            SP__BAD("share_type");
        int st = sp__lookup(sp_share_type_names, SP_SHARE_OTHER,
                            json_string_value(v));
        ev->share_type = st >= 0 ? (sp_share_type)st : SP_SHARE_OTHER;
    }

    if ((v = json_object_get(root, "platform")) != NULL &&
        sp__take_string(v, ev->platform, SP_PLATFORM_MAX, sp__is_platform_char) != 0)
        SP__BAD("platform");

    if ((v = json_object_get(root, "watch_ms")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > SP_WATCH_MS_MAX)
            SP__BAD("watch_ms");
        ev->watch_ms = (int64_t)json_integer_value(v);
    }

    if ((v = json_object_get(root, "region")) != NULL) {
        const char *s = json_string_value(v);
        if (!json_is_string(v) || json_string_length(v) != 2 ||
            s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z')
            SP__BAD("region");
        memcpy(ev->region, s, 3);
    }

    if ((v = json_object_get(root, "age_bucket")) != NULL) {
        if (!json_is_string(v) ||
            (ev->age_bucket = sp__lookup(sp_age_bucket_names, SP_AGE__COUNT,
                                         json_string_value(v))) < 0)
            SP__BAD("age_bucket");
    }

    if ((v = json_object_get(root, "hashtags")) != NULL &&
        sp__take_hashtags(v, ev) != 0)
        SP__BAD("hashtags");

    if (ev->ts_ms > now_ms + max_future_ms) {
        snprintf(reason, reason_size, "future_ts");
        goto bad;
    }

    json_decref(root);
    return 0;

bad:
    json_decref(root);
    return SP_EPARSE;
}
