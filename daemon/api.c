/*
 * api.c - the dashboard API (SPEC 7, docs/api.md): token checks, reads from
 * Redis, and the Server-Sent Events stream.
 *
 * A request is answered without blocking the loop: the handler checks the
 * token, sends its Redis commands on the API's own connection (so a read
 * never waits behind a flush, nor a flush behind a read) and suspends the
 * MHD connection. Replies come back in the order sent; each is folded into
 * the answer as it comes (hiredis frees a reply when its callback returns).
 * The last one resumes the connection, and MHD calls the handler again,
 * which queues the answer.
 *
 * Event streams: a subscriber connection receives the updates and alerts
 * channels; each client has its own bounded buffer, drained by MHD through
 * a content reader that suspends the connection when the buffer is empty.
 * Which creator owns a changed video is asked of Redis (and cached) only
 * while a client that is not an admin is connected.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon.h"
#include "jsonarena.h"

#define SP_SSE_SNDBUF (64 * 1024)    /* the kernel's share of a stream's backlog */
#define SP_SSE_PING_MS 15000
#define SP_CREATOR_CACHE_MAX 200000

/* The share types, as in shares:<type> (SPEC 1). */
static const char *const sp__share_types[] = {"duet", "stitch", "reaction", "repost", "dm",
                                              "link", "external", "other", "unspecified"};
#define SP_N_SHARE_TYPES (SP_ARRAY_SIZE(sp__share_types))

/* What a token may see, copied from the token (the table can be reloaded
 * while a request runs). */
typedef struct sp__who {
    int admin, details;
    char creator[SP_ID_MAX + 1];
} sp__who;

static int sp__sees(const sp__who *w, const char *creator, size_t len)
{
    return w->admin ||
           (creator != NULL && strlen(w->creator) == len && memcmp(w->creator, creator, len) == 0);
}

/* ---- requests ---- */

typedef enum { SP_R_VIDEO, SP_R_CREATOR, SP_R_TOP, SP_R_ALERTS } sp__route;

struct sp_api_req {
    sp_daemon *d;
    struct MHD_Connection *conn; /* NULL once MHD is done with it */
    sp_api_req *next;            /* d->api_reqs */
    sp__route route;
    sp__who who;
    char id[SP_ID_MAX + 1];
    char by[16];
    long limit;
    int64_t since;
    int waiting;                 /* replies still to come */
    int k;                       /* replies seen */
    int done;                    /* status and body are final */
    int suspended;               /* its MHD connection is */
    unsigned status;
    sp_buf body;
    /* /top */
    char **ids;                  /* the candidates, then the rows kept */
    double *scores;
    sp_buf *rows;
    size_t n_ids, n_rows;
    int64_t now_ms;              /* newest updated_ms among the rows */
};

static void sp__req_free(sp_api_req *q)
{
    sp_api_req **pp = &q->d->api_reqs;
    while (*pp != q)
        pp = &(*pp)->next;
    *pp = q->next;
    for (size_t i = 0; i < q->n_ids; i++)
        free(q->ids[i]);
    for (size_t i = 0; i < q->n_rows; i++)
        sp_buf_free(&q->rows[i]);
    free(q->ids);
    free(q->scores);
    free(q->rows);
    sp_buf_free(&q->body);
    free(q);
}

static void sp__fail(sp_api_req *q, unsigned status, const char *msg)
{
    if (q->done)
        return;
    sp_buf_reset(&q->body);
    sp_buf_appends(&q->body, "{\"error\":");
    sp_buf_append_json_str(&q->body, msg, strlen(msg));
    sp_buf_appends(&q->body, "}\n");
    q->status = status;
    q->done = 1;
}

static void sp__finish(sp_api_req *q)
{
    if (!q->done) {
        sp_buf_appends(&q->body, "\n");
        q->status = MHD_HTTP_OK;
        q->done = 1;
    }
}

static void sp__resume(sp_api_req *q)
{
    if (q->suspended) {
        q->suspended = 0;
        MHD_resume_connection(q->conn);
        sp_http_kick(q->d);
    }
}

/* Called after each reply: when none is awaited any more, the answer goes. */
static void sp__settle(sp_api_req *q)
{
    if (q->waiting > 0)
        return;
    if (q->conn == NULL) {
        sp__req_free(q);
        return;
    }
    if (!q->done)
        sp__fail(q, MHD_HTTP_INTERNAL_SERVER_ERROR, "incomplete answer");
    sp__resume(q);
}

static void sp__reply_cb(sp_daemon *d, redisReply *reply, void *priv);

static void sp__send(sp_api_req *q, const char *fmt, ...)
{
    char *cmd;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    SP_ASSERT(len > 0);
    q->waiting++;
    sp_redis_send(&q->d->api_redis, cmd, (size_t)len, sp__reply_cb, q);
    free(cmd);
}

/* A Redis value as JSON: a number when it is one, else a string. */
static void sp__json_value(sp_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t digits = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    int ok = i > digits && !(s[digits] == '0' && i - digits > 1);
    if (ok && i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        ok = i > f;
    }
    if (ok && i == n)
        sp_buf_append(b, s, n);
    else
        sp_buf_append_json_str(b, s, n);
}

static int sp__is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int sp__is_share_detail(const char *field)
{
    return strncmp(field, "shares:", 7) == 0;
}

/* Appends a hash reply's fields, typed; string-valued fields stay strings. */
static void sp__hash_fields(sp_buf *b, const redisReply *h, int details)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (!sp__is_str(f) || !sp__is_str(v) || (!details && sp__is_share_detail(f->str)))
            continue;
        sp_buf_appends(b, ",");
        sp_buf_append_json_str(b, f->str, f->len);
        sp_buf_appends(b, ":");
        if (strcmp(f->str, "creator_id") == 0 || strcmp(f->str, "level") == 0)
            sp_buf_append_json_str(b, v->str, v->len);
        else
            sp__json_value(b, v->str, v->len);
    }
}

static const char *sp__hash_get(const redisReply *h, const char *field, size_t *len)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (sp__is_str(h->element[i]) && strcmp(h->element[i]->str, field) == 0 &&
            sp__is_str(h->element[i + 1])) {
            *len = h->element[i + 1]->len;
            return h->element[i + 1]->str;
        }
    return NULL;
}

/* A stream entry's minute: the ms part of its id. */
static int64_t sp__entry_ms(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || !sp__is_str(e->element[0]))
        return -1;
    return strtoll(e->element[0]->str, NULL, 10);
}

/* ---- /api/v1/videos/{id} ---- */

static void sp__video_reply(sp_api_req *q, const redisReply *r)
{
    sp_buf *b = &q->body;
    switch (q->k) {
    case 0: { /* HGETALL the video */
        size_t n = 0;
        const char *creator = r->type == REDIS_REPLY_ARRAY ? sp__hash_get(r, "creator_id", &n)
                                                           : NULL;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || !sp__sees(&q->who, creator, n)) {
            sp__fail(q, MHD_HTTP_NOT_FOUND, "no such video");
            return;
        }
        size_t u = 0;
        const char *upd = sp__hash_get(r, "updated_ms", &u);
        q->now_ms = upd ? strtoll(upd, NULL, 10) : 0;
        sp_buf_appends(b, "{\"video_id\":");
        sp_buf_append_json_str(b, q->id, strlen(q->id));
        sp__hash_fields(b, r, q->who.details);
        break;
    }
    case 1: /* PFCOUNT reach */
        sp_buf_appendf(b, ",\"reach\":%lld", r->type == REDIS_REPLY_INTEGER ? r->integer : 0);
        break;
    case 2: /* HGETALL demo */
        sp_buf_appends(b, ",\"demo\":{");
        if (r->type == REDIS_REPLY_ARRAY) {
            sp_buf tmp;
            sp_buf_init(&tmp);
            sp__hash_fields(&tmp, r, 1);
            if (tmp.len > 1)
                sp_buf_append(b, tmp.data + 1, tmp.len - 1); /* without the first comma */
            sp_buf_free(&tmp);
        }
        sp_buf_appends(b, "}");
        break;
    case 3: /* XREVRANGE series, newest first: the last hour, oldest first */
        sp_buf_appends(b, ",\"series\":[");
        if (r->type == REDIS_REPLY_ARRAY) {
            int first = 1;
            for (size_t i = r->elements; i-- > 0;) {
                const redisReply *e = r->element[i];
                int64_t t = sp__entry_ms(e);
                if (t < 0 || t < q->now_ms - 3600000)
                    continue;
                sp_buf_appendf(b, "%s{\"t\":%lld", first ? "" : ",", (long long)t);
                sp__hash_fields(b, e->element[1], 1);
                sp_buf_appends(b, "}");
                first = 0;
            }
        }
        sp_buf_appends(b, "]");
        if (!q->who.details)
            sp_buf_appends(b, "}");
        break;
    case 4: /* LRANGE sharers: JSON the apply script wrote */
        sp_buf_appends(b, ",\"sharers\":[");
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0, first = 1; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                if (!sp__is_str(e) || e->len == 0 || e->str[0] != '{')
                    continue;
                if (!first)
                    sp_buf_appends(b, ",");
                sp_buf_append(b, e->str, e->len);
                first = 0;
            }
        sp_buf_appends(b, "]}");
        break;
    }
}

static void sp__video_start(sp_api_req *q)
{
    const char *p = q->d->cfg.redis_prefix;
    sp__send(q, "HGETALL %sv:{%s}", p, q->id);
    sp__send(q, "PFCOUNT %sv:{%s}:reach", p, q->id);
    sp__send(q, "HGETALL %sv:{%s}:demo", p, q->id);
    sp__send(q, "XREVRANGE %sv:{%s}:series + - COUNT 60", p, q->id);
    if (q->who.details)
        sp__send(q, "LRANGE %sv:{%s}:sharers 0 99", p, q->id);
}

/* ---- /api/v1/creators/{id} ---- */

static void sp__creator_reply(sp_api_req *q, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        sp__fail(q, MHD_HTTP_NOT_FOUND, "no such creator");
        return;
    }
    sp_buf_appends(&q->body, "{\"creator_id\":");
    sp_buf_append_json_str(&q->body, q->id, strlen(q->id));
    sp__hash_fields(&q->body, r, q->who.details);
    sp_buf_appends(&q->body, "}");
}

/* ---- /api/v1/top ---- */

static const char *const sp__row_fields[] = {
    "creator_id", "velocity", "baseline", "momentum", "level",    "shares",
    "shares_5m",  "shares_1h", "views_1h", "er_1h",   "share_rate_1h", "updated_ms"};
#define SP_N_ROW_FIELDS (SP_ARRAY_SIZE(sp__row_fields))

/* Keeps candidate i (its HMGET reply r) as the next row. */
static void sp__top_row(sp_api_req *q, size_t i, const redisReply *r)
{
    sp_buf *row = &q->rows[q->n_rows];
    sp_buf_init(row);
    sp_buf_appends(row, "{\"video_id\":");
    sp_buf_append_json_str(row, q->ids[i], strlen(q->ids[i]));
    sp_buf_appendf(row, ",\"score\":%.15g", q->scores[i]);
    for (size_t f = 0; f < SP_N_ROW_FIELDS && f < r->elements; f++) {
        const redisReply *v = r->element[f];
        if (!sp__is_str(v) || strcmp(sp__row_fields[f], "updated_ms") == 0)
            continue;
        sp_buf_appendf(row, ",\"%s\":", sp__row_fields[f]);
        if (f == 0 || strcmp(sp__row_fields[f], "level") == 0)
            sp_buf_append_json_str(row, v->str, v->len);
        else
            sp__json_value(row, v->str, v->len);
    }
    const redisReply *upd = r->element[SP_N_ROW_FIELDS - 1];
    if (sp__is_str(upd) && strtoll(upd->str, NULL, 10) > q->now_ms)
        q->now_ms = strtoll(upd->str, NULL, 10);
    if (q->who.details) {
        sp_buf_appends(row, ",\"shares_by_type\":{");
        int first = 1;
        for (size_t t = 0; t < SP_N_SHARE_TYPES; t++) {
            const redisReply *v = SP_N_ROW_FIELDS + t < r->elements
                                      ? r->element[SP_N_ROW_FIELDS + t] : NULL;
            if (!sp__is_str(v))
                continue;
            sp_buf_appendf(row, "%s\"%s\":", first ? "" : ",", sp__share_types[t]);
            sp__json_value(row, v->str, v->len);
            first = 0;
        }
        sp_buf_appends(row, "}");
    }
    /* The row's id moves down to its row index for step 3. */
    char *tmp = q->ids[q->n_rows];
    q->ids[q->n_rows] = q->ids[i];
    q->ids[i] = tmp;
    q->n_rows++;
}

/* Step 1 (k == 0): the leaderboard. Step 2: one HMGET per candidate, rows
 * kept while visible and under the limit. Step 3: one series per row (for
 * an admin, sent with step 2: it sees every candidate). */
static void sp__top_reply(sp_api_req *q, const redisReply *r)
{
    const char *p = q->d->cfg.redis_prefix;
    if (q->k == 0) {
        if (r->type != REDIS_REPLY_ARRAY) {
            sp__fail(q, MHD_HTTP_SERVICE_UNAVAILABLE, "leaderboard unavailable");
            return;
        }
        size_t n = r->elements / 2;
        q->ids = sp_xcalloc(n ? n : 1, sizeof(char *));
        q->scores = sp_xcalloc(n ? n : 1, sizeof(double));
        q->rows = sp_xcalloc(n ? n : 1, sizeof(sp_buf));
        for (size_t i = 0; i < n; i++) {
            const redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
            if (!sp__is_str(m) || !sp__is_str(s))
                continue;
            q->scores[q->n_ids] = strtod(s->str, NULL);
            q->ids[q->n_ids++] = sp_xstrndup(m->str, m->len);
        }
        for (size_t i = 0; i < q->n_ids; i++) {
            sp_buf cmd; /* HMGET key f1 f2 ... */
            sp_buf_init(&cmd);
            sp_buf_appends(&cmd, "HMGET %s");
            for (size_t f = 0; f < SP_N_ROW_FIELDS; f++)
                sp_buf_appendf(&cmd, " %s", sp__row_fields[f]);
            if (q->who.details)
                for (size_t t = 0; t < SP_N_SHARE_TYPES; t++)
                    sp_buf_appendf(&cmd, " shares:%s", sp__share_types[t]);
            char key[SP_ID_MAX + 80];
            snprintf(key, sizeof(key), "%sv:{%s}", p, q->ids[i]);
            sp__send(q, cmd.data, key);
            sp_buf_free(&cmd);
        }
        if (q->n_ids == 0)
            goto answer;
        /* An admin keeps every candidate: its series can go now, in the
         * same round trip as the rows. */
        if (q->who.admin)
            goto series;
        return;
    }
    if ((size_t)q->k <= q->n_ids) { /* an HMGET */
        size_t i = (size_t)q->k - 1;
        const redisReply *c0 = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]
                                                                              : NULL;
        int sees = q->who.admin || (c0 != NULL && sp__is_str(c0) &&
                                    sp__sees(&q->who, c0->str, c0->len));
        if (sees && q->n_rows < (size_t)q->limit)
            sp__top_row(q, i, r);
        if ((size_t)q->k == q->n_ids && !q->who.admin)
            goto series;
        return;
    }
    { /* a series, newest first: shares per minute of the last hour */
        size_t row = (size_t)q->k - q->n_ids - 1;
        int64_t end = q->now_ms / 60000 * 60000; /* the minute in progress */
        long spark[60] = {0};
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                int64_t t = sp__entry_ms(e);
                if (t < 0 || t >= end || t < end - 3600000)
                    continue;
                size_t n = 0;
                const char *s = sp__hash_get(e->element[1], "shares", &n);
                spark[(t - (end - 3600000)) / 60000] = s ? strtol(s, NULL, 10) : 0;
            }
        sp_buf *b = &q->rows[row];
        sp_buf_appends(b, ",\"spark\":[");
        for (int i = 0; i < 60; i++)
            sp_buf_appendf(b, "%s%ld", i ? "," : "", spark[i]);
        sp_buf_appends(b, "]}");
        if (row + 1 == q->n_rows)
            goto answer;
        return;
    }
series: /* of the rows kept (an admin's: every candidate, in order) */
    for (size_t i = 0; i < (q->who.admin ? q->n_ids : q->n_rows); i++)
        sp__send(q, "XREVRANGE %sv:{%s}:series + - COUNT 60", p, q->ids[i]);
    if (q->waiting > 0)
        return;
answer:
    sp_buf_appends(&q->body, "{\"by\":");
    sp_buf_append_json_str(&q->body, q->by, strlen(q->by));
    sp_buf_appends(&q->body, ",\"videos\":[");
    for (size_t i = 0; i < q->n_rows; i++) {
        if (i)
            sp_buf_appends(&q->body, ",");
        sp_buf_append(&q->body, q->rows[i].data, q->rows[i].len);
    }
    sp_buf_appends(&q->body, "]}");
}

static void sp__top_start(sp_api_req *q)
{
    long last = q->who.admin ? q->limit - 1 : -1; /* others: filter the whole board */
    sp__send(q, "ZREVRANGE %stop:%s 0 %ld WITHSCORES", q->d->cfg.redis_prefix, q->by, last);
}

/* ---- /api/v1/alerts ---- */

static void sp__alerts_reply(sp_api_req *q, const redisReply *r)
{
    sp_buf *b = &q->body;
    long n = 0;
    int more = 0;
    sp_buf_appends(b, "{\"alerts\":[");
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 2)
            continue;
        const redisReply *a = e->element[1]->element[1];
        if (!sp__is_str(a))
            continue;
        json_t *j = json_loadb(a->str, a->len, 0, NULL);
        json_t *c = json_object_get(j, "creator_id");
        json_t *at = json_object_get(j, "at_ms");
        int keep = json_is_integer(at) && json_integer_value(at) >= q->since &&
                   sp__sees(&q->who, json_string_value(c), json_string_length(c));
        json_decref(j);
        if (!keep)
            continue;
        if (n == q->limit) {
            more = 1;
            break;
        }
        sp_buf_appends(b, n++ ? "," : "");
        sp_buf_append(b, a->str, a->len);
    }
    sp_jsonarena_reset();
    sp_buf_appendf(b, "],\"more\":%s}", more ? "true" : "false");
}

static void sp__alerts_start(sp_api_req *q)
{
    /* Entry ids are Redis' clock when the alert was recorded. The live
     * edge records an alert as soon as its share is in, before its at_ms
     * (the edge that closes the share's 2 s bucket), and a share may be up
     * to max_future_ms ahead of the clock: start that much before since,
     * and filter on at_ms. */
    int64_t from = q->since - q->d->cfg.max_future_ms - 2000;
    sp__send(q, "XRANGE %salerts %lld + COUNT 20000", q->d->cfg.redis_prefix,
             (long long)(from > 0 ? from : 0));
}

static void sp__reply_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    sp_api_req *q = priv;
    (void)d;
    q->waiting--;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL)
            sp_warn("api", "redis: %s", reply->str);
        sp__fail(q, MHD_HTTP_SERVICE_UNAVAILABLE, "redis unavailable");
    } else if (!q->done) {
        switch (q->route) {
        case SP_R_VIDEO: sp__video_reply(q, reply); break;
        case SP_R_CREATOR: sp__creator_reply(q, reply); break;
        case SP_R_TOP: sp__top_reply(q, reply); break;
        case SP_R_ALERTS: sp__alerts_reply(q, reply); break;
        }
    }
    q->k++;
    if (q->waiting == 0 && !q->done)
        sp__finish(q);
    sp__settle(q);
}

/* ---- tokens ---- */

/* The caller's account from "Authorization: Bearer <token>", or -1. */
static int sp__authenticate(sp_daemon *d, struct MHD_Connection *c, sp__who *who)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return -1;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    while (n > 0 && tok[n - 1] == ' ')
        n--;
    if (n == 0)
        return -1;
    uint8_t digest[32];
    unsigned dlen = 0;
    if (EVP_Digest(tok, n, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        return -1;
    const sp_token *t = sp_tokens_find(&d->tokens, digest);
    if (t == NULL)
        return -1;
    who->admin = t->type == SP_ACCOUNT_ADMIN;
    who->details = sp_token_sees_share_details(t);
    snprintf(who->creator, sizeof(who->creator), "%s", t->creator ? t->creator : "*");
    return 0;
}

/* ---- event streams ---- */

struct sp_sse {
    sp_daemon *d;
    struct MHD_Connection *conn;
    sp_sse *next;
    sp__who who;
    sp_buf out;
    size_t off;        /* bytes of out already sent */
    int suspended;
    int closing;       /* end the stream once out is sent */
    int dropped;       /* fell too far behind, or the client left: close now */
    uv_poll_t poll;    /* the socket while suspended: MHD does not watch it */
};

static void sp__sse_wake(sp_sse *s)
{
    if (s->suspended) {
        s->suspended = 0;
        uv_poll_stop(&s->poll);
        MHD_resume_connection(s->conn);
        sp_http_kick(s->d);
    }
}

/* A stream's client sends nothing after its request: the socket turning
 * readable while suspended means it closed (a page reload, say). Without
 * this, its slot would stay taken until the next ping failed. */
static void sp__sse_poll_cb(uv_poll_t *h, int status, int events)
{
    sp_sse *s = h->data;
    (void)status;
    (void)events;
    s->dropped = 1;
    sp__sse_wake(s);
}

static void sp__sse_push(sp_sse *s, const char *text, size_t n)
{
    if (s->dropped || s->closing)
        return;
    size_t max = (size_t)s->d->cfg.http_sse_max_behind_kb * 1024;
    if (s->out.len - s->off + n > max) {
        s->dropped = 1;
        s->d->sse_dropped++;
        sp_warn("api", "event stream client %s fell %zu bytes behind: disconnected",
                s->who.admin ? "admin" : s->who.creator, max);
    } else {
        sp_buf_append(&s->out, text, n);
    }
    sp__sse_wake(s);
}

static ssize_t sp__sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    sp_sse *s = cls;
    (void)pos;
    if (s->dropped)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = s->out.len - s->off;
    if (avail == 0) {
        if (s->closing)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        uv_poll_start(&s->poll, UV_READABLE | UV_DISCONNECT, sp__sse_poll_cb);
        return 0;
    }
    size_t n = avail < max ? avail : max;
    memcpy(buf, s->out.data + s->off, n);
    s->off += n;
    if (s->off == s->out.len) {
        sp_buf_reset(&s->out);
        s->off = 0;
    }
    return (ssize_t)n;
}

static void sp__sse_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sp__sse_free(void *cls)
{
    sp_sse *s = cls;
    sp_sse **pp = &s->d->sse;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    s->d->n_sse--;
    sp_buf_free(&s->out);
    uv_close((uv_handle_t *)&s->poll, sp__sse_closed); /* stopped: MHD resumed it */
}

static void sp__sse_broadcast(sp_daemon *d, const char *creator, size_t clen,
                              const char *text, size_t n)
{
    for (sp_sse *s = d->sse; s; s = s->next)
        if (sp__sees(&s->who, creator, clen))
            sp__sse_push(s, text, n);
}

/* An updates message waiting for the creators of its videos. */
typedef struct sp__update {
    char *msg;           /* {"t":T,"videos":[...]}, parsed again when delivered */
    size_t len;
    int waiting;
} sp__update;

/* The creator of a video, from the cache, or NULL. */
static const char *sp__creator_of(sp_daemon *d, const char *video, size_t n)
{
    long i = sp_map_get(&d->creator_map, video, n);
    return i < 0 ? NULL : d->creator_cache[i].creator;
}

static void sp__creator_put(sp_daemon *d, const char *video, const char *creator, size_t n)
{
    if (sp__creator_of(d, video, strlen(video)) != NULL)
        return;
    if (d->n_creator_cache == SP_CREATOR_CACHE_MAX) {
        sp_map_clear(&d->creator_map);
        for (size_t i = 0; i < d->n_creator_cache; i++) {
            free(d->creator_cache[i].video);
            free(d->creator_cache[i].creator);
        }
        d->n_creator_cache = 0;
    }
    if (d->n_creator_cache == d->cap_creator_cache) {
        d->cap_creator_cache = d->cap_creator_cache ? 2 * d->cap_creator_cache : 1024;
        d->creator_cache = sp_xrealloc(d->creator_cache,
                                       d->cap_creator_cache * sizeof(*d->creator_cache));
    }
    sp_video_creator *vc = &d->creator_cache[d->n_creator_cache];
    vc->video = sp_xstrdup(video);
    vc->creator = sp_xstrndup(creator, n);
    sp_map_put(&d->creator_map, vc->video, strlen(vc->video), (long)d->n_creator_cache++);
}

/* Sends each client the videos of the update it may see. */
static void sp__update_deliver(sp_daemon *d, json_t *msg)
{
    json_t *videos = json_object_get(msg, "videos");
    json_t *t = json_object_get(msg, "t");
    sp_buf ev;
    sp_buf_init(&ev);
    for (sp_sse *s = d->sse; s; s = s->next) {
        sp_buf_reset(&ev);
        sp_buf_appendf(&ev, "event: update\ndata: {\"t\":%lld,\"videos\":[",
                       (long long)json_integer_value(t));
        size_t i, n = 0;
        json_t *v;
        json_array_foreach(videos, i, v) {
            const char *id = json_string_value(v);
            if (id == NULL)
                continue;
            const char *c = s->who.admin ? NULL : sp__creator_of(d, id, strlen(id));
            if (!s->who.admin && (c == NULL || strcmp(c, s->who.creator) != 0))
                continue;
            sp_buf_appends(&ev, n++ ? "," : "");
            sp_buf_append_json_str(&ev, id, strlen(id));
        }
        sp_buf_appends(&ev, "]}\n\n");
        if (n > 0)
            sp__sse_push(s, ev.data, ev.len);
    }
    sp_buf_free(&ev);
}

typedef struct sp__lookup {
    sp__update *u;
    char *video;
} sp__lookup;

static void sp__lookup_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    sp__lookup *lk = priv;
    sp__update *u = lk->u;
    if (reply != NULL && sp__is_str(reply))
        sp__creator_put(d, lk->video, reply->str, reply->len);
    free(lk->video);
    free(lk);
    if (--u->waiting == 0) {
        json_t *j = json_loadb(u->msg, u->len, 0, NULL);
        if (j != NULL)
            sp__update_deliver(d, j);
        json_decref(j);
        sp_jsonarena_reset();
        free(u->msg);
        free(u);
    }
}

static void sp__on_message(sp_daemon *d, const char *channel, const char *msg, size_t len)
{
    if (d->sse == NULL)
        return;
    size_t plen = strlen(d->cfg.redis_prefix);
    int alert = strcmp(channel + plen, "alerts") == 0;
    json_t *j = json_loadb(msg, len, 0, NULL);
    if (j == NULL) {
        sp_jsonarena_reset();
        return;
    }
    if (alert) {
        json_t *c = json_object_get(j, "creator_id");
        sp_buf ev;
        sp_buf_init(&ev);
        sp_buf_appends(&ev, "event: alert\ndata: ");
        sp_buf_append(&ev, msg, len);
        sp_buf_appends(&ev, "\n\n");
        sp__sse_broadcast(d, json_string_value(c), json_string_length(c), ev.data, ev.len);
        sp_buf_free(&ev);
        json_decref(j);
        sp_jsonarena_reset();
        return;
    }
    /* Which creators' videos are in it? Ask Redis for those not cached,
     * unless every client is an admin. */
    int need = 0;
    for (sp_sse *s = d->sse; s; s = s->next)
        need |= !s->who.admin;
    json_t *videos = json_object_get(j, "videos");
    sp__update *u = NULL;
    size_t i;
    json_t *v;
    if (need && d->api_redis.state == SP_REDIS_READY)
        json_array_foreach(videos, i, v) {
            const char *id = json_string_value(v);
            if (id == NULL || sp__creator_of(d, id, strlen(id)) != NULL)
                continue;
            if (u == NULL) {
                u = sp_xcalloc(1, sizeof(*u));
                u->msg = sp_xstrndup(msg, len);
                u->len = len;
            }
            sp__lookup *lk = sp_xmalloc(sizeof(*lk));
            lk->u = u;
            lk->video = sp_xstrdup(id);
            u->waiting++;
            sp_redis_sendf(&d->api_redis, sp__lookup_cb, lk, "HGET %sv:{%s} creator_id",
                           d->cfg.redis_prefix, id);
        }
    if (u == NULL) {
        sp__update_deliver(d, j);
        json_decref(j);
        sp_jsonarena_reset();
        return;
    }
    json_decref(j); /* delivered when the lookups are back */
    sp_jsonarena_reset();
}

static void sp__ping_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    for (sp_sse *s = d->sse; s; s = s->next)
        sp__sse_push(s, ": ping\n\n", 8);
}

static enum MHD_Result sp__sse_start(sp_daemon *d, struct MHD_Connection *c, const sp__who *who)
{
    if (d->n_sse >= (size_t)d->cfg.http_max_sse_clients)
        return sp_http_respond(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "{\"error\":\"too many event streams\"}\n");
    if (d->sub_redis.state != SP_REDIS_READY)
        return sp_http_respond(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "{\"error\":\"redis unavailable\"}\n");
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c,
                                                                 MHD_CONNECTION_INFO_CONNECTION_FD);
    sp_sse *s = sp_xcalloc(1, sizeof(*s));
    if (fd == NULL || uv_poll_init_socket(d->loop, &s->poll, fd->connect_fd) != 0) {
        free(s);
        return sp_http_respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"no stream\"}\n");
    }
    s->poll.data = s;
    s->d = d;
    s->conn = c;
    /* A fixed send buffer (no autotuning to megabytes): what a client has
     * not read waits in the daemon, where it is bounded and counted. */
    int sndbuf = SP_SSE_SNDBUF;
    setsockopt(fd->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    s->who = *who;
    sp_buf_init(&s->out);
    sp_buf_appends(&s->out, "retry: 2000\n\n");
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sp__sse_read, s, sp__sse_free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    s->next = d->sse;
    d->sse = s;
    d->n_sse++;
    /* If MHD refuses it, destroying the response frees s. */
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- routing ---- */

/* Takes the id at the end of a path; 0 if it is not a possible id. */
static int sp__take_id(const char *s, char *out)
{
    if (!sp_is_id(s))
        return 0;
    memcpy(out, s, strlen(s) + 1);
    return 1;
}

/* An integer query argument in [lo, hi]; def when absent. -1 if bad. */
static int sp__arg_int(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                       int64_t def, int64_t *out)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static enum MHD_Result sp__bad(struct MHD_Connection *c, const char *msg)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    return sp_http_respond(c, MHD_HTTP_BAD_REQUEST, body);
}

enum MHD_Result sp_api_handle(sp_daemon *d, struct MHD_Connection *c, const char *url,
                              void **state)
{
    sp__who who;
    d->api_requests++;
    if (sp__authenticate(d, c, &who) != 0) {
        d->api_unauthorized++;
        static const char body[] = "{\"error\":\"unauthorized\"}\n";
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "application/json");
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"sharepulse\"");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/api/v1/events") == 0)
        return sp__sse_start(d, c, &who);

    sp_api_req q0 = {0};
    int64_t x;
    if (strncmp(url, "/api/v1/videos/", 15) == 0) {
        if (!sp__take_id(url + 15, q0.id))
            return sp_http_respond(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"no such video\"}\n");
        q0.route = SP_R_VIDEO;
    } else if (strncmp(url, "/api/v1/creators/", 17) == 0) {
        if (!sp__take_id(url + 17, q0.id) || !sp__sees(&who, q0.id, strlen(q0.id)))
            return sp_http_respond(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"no such creator\"}\n");
        q0.route = SP_R_CREATOR;
    } else if (strcmp(url, "/api/v1/top") == 0) {
        const char *by = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "by");
        if (by == NULL)
            by = "velocity";
        if (strcmp(by, "velocity") != 0 && strcmp(by, "shares_1h") != 0)
            return sp__bad(c, "by: allowed values are velocity, shares_1h");
        if (sp__arg_int(c, "limit", 1, 100, 20, &x) != 0)
            return sp__bad(c, "limit: an integer from 1 to 100");
        snprintf(q0.by, sizeof(q0.by), "%s", by);
        q0.limit = (long)x;
        q0.route = SP_R_TOP;
    } else if (strcmp(url, "/api/v1/alerts") == 0) {
        if (sp__arg_int(c, "since", 0, INT64_MAX / 2, 0, &q0.since) != 0)
            return sp__bad(c, "since: milliseconds since the epoch, 0 or more");
        if (sp__arg_int(c, "limit", 1, 1000, 100, &x) != 0)
            return sp__bad(c, "limit: an integer from 1 to 1000");
        q0.limit = (long)x;
        q0.route = SP_R_ALERTS;
    } else {
        return sp_http_respond(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"not found\"}\n");
    }
    if (d->api_redis.state != SP_REDIS_READY)
        return sp_http_respond(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "{\"error\":\"redis unavailable\"}\n");

    sp_api_req *q = sp_xmalloc(sizeof(*q));
    *q = q0;
    q->d = d;
    q->conn = c;
    q->who = who;
    sp_buf_init(&q->body);
    q->next = d->api_reqs;
    d->api_reqs = q;
    *state = q;
    q->suspended = 1;
    MHD_suspend_connection(c);
    switch (q->route) {
    case SP_R_VIDEO: sp__video_start(q); break;
    case SP_R_CREATOR: sp__send(q, "HGETALL %sc:{%s}", d->cfg.redis_prefix, q->id); break;
    case SP_R_TOP: sp__top_start(q); break;
    case SP_R_ALERTS: sp__alerts_start(q); break;
    }
    return MHD_YES;
}

enum MHD_Result sp_api_continue(sp_daemon *d, struct MHD_Connection *c, sp_api_req *q)
{
    (void)d;
    if (!q->done) { /* MHD asked again before the answer: wait on */
        if (!q->suspended) {
            q->suspended = 1;
            MHD_suspend_connection(c);
        }
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(q->body.len, q->body.data, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (q->status >= 500)
        d->api_errors++;
    enum MHD_Result ret = MHD_queue_response(c, q->status, r);
    MHD_destroy_response(r);
    return ret;
}

void sp_api_completed(sp_daemon *d, sp_api_req *q)
{
    (void)d;
    q->conn = NULL;
    if (q->waiting == 0)
        sp__req_free(q);
}

/* ---- lifecycle ---- */

static void sp__api_redis_down(sp_redis *r)
{
    (void)r; /* requests in flight got NULL replies: they answered 503 */
}

static void sp__sub_down(sp_redis *r)
{
    /* Streams would silently miss messages: end them; clients reconnect. */
    for (sp_sse *s = r->d->sse; s; s = s->next) {
        s->closing = 1;
        sp__sse_wake(s);
    }
}

int sp_api_start(sp_daemon *d, char *errstr, size_t errsz)
{
    (void)errstr;
    (void)errsz;
    /* d->tokens were loaded with the config. */
    if (d->cfg.http_tokens_file[0] == '\0')
        sp_info("api", "no [http] tokens_file: the API answers 401 to every request");
    else
        sp_info("api", "tokens_file=%s tokens=%zu", d->cfg.http_tokens_file, d->tokens.n);
    sp_map_init(&d->creator_map);
    d->api_redis.on_down = sp__api_redis_down;
    sp_redis_start(d, &d->api_redis, "redis-api", SP_REDIS_API);
    d->sub_redis.on_message = sp__on_message;
    d->sub_redis.on_down = sp__sub_down;
    sp_redis_start(d, &d->sub_redis, "redis-sub", SP_REDIS_SUB);
    uv_timer_init(d->loop, &d->sse_timer);
    d->sse_timer.data = d;
    uv_timer_start(&d->sse_timer, sp__ping_cb, SP_SSE_PING_MS, SP_SSE_PING_MS);
    d->api_started = 1;
    return 0;
}

void sp_api_release_all(sp_daemon *d)
{
    /* MHD must not be stopped with suspended connections. */
    for (sp_api_req *q = d->api_reqs; q; q = q->next)
        if (q->conn != NULL) {
            sp__fail(q, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down");
            sp__resume(q);
        }
    for (sp_sse *s = d->sse; s; s = s->next) {
        s->closing = 1;
        sp__sse_wake(s);
    }
}

void sp_api_stop(sp_daemon *d)
{
    if (!d->api_started)
        return;
    d->api_started = 0;
    uv_close((uv_handle_t *)&d->sse_timer, NULL);
    /* Requests still awaiting replies get NULL ones now, and go. */
    for (sp_api_req *q = d->api_reqs; q; q = q->next)
        q->conn = NULL;
    sp_redis_close(&d->api_redis);
    sp_redis_close(&d->sub_redis);
    while (d->api_reqs)
        sp__req_free(d->api_reqs);
    for (size_t i = 0; i < d->n_creator_cache; i++) {
        free(d->creator_cache[i].video);
        free(d->creator_cache[i].creator);
    }
    free(d->creator_cache);
    d->creator_cache = NULL;
    d->n_creator_cache = d->cap_creator_cache = 0;
    sp_map_free(&d->creator_map);
}
