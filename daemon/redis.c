/*
 * redis.c - the daemon's Redis connections, driven by the libuv loop: the
 * pipeline's (flushes), the API's (dashboard reads, so a slow read never
 * delays a flush) and the subscriber (the updates and alerts channels for
 * the API's event streams).
 *
 * hiredis 0.14's own libuv adapter drops poll errors, so a refused
 * connection would never be reported; this file has its own small adapter
 * that passes them on. hiredis has no timeouts and no reconnect: a timer
 * enforces the connect timeout and a limit on how long a reply may be
 * awaited, and reconnects with exponential backoff. A new pipeline
 * connection loads the apply script before it is READY; a subscriber is
 * READY once subscribed, and has no reply deadline (messages come when
 * they come).
 */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define SP_REDIS_BACKOFF_MIN_MS 100
#define SP_REDIS_BACKOFF_MAX_MS 5000

/* ---- the libuv adapter ---- */

typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
} sp__redis_ev;

static void sp__ev_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void sp__ev_poll_cb(uv_poll_t *h, int status, int events)
{
    sp__redis_ev *e = h->data;
    if (status < 0) {
        /* libuv stopped the handle. Let hiredis find the socket error: a
         * write attempt while connecting, a read once connected. */
        if (e->ac && !(e->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(e->ac);
        else if (e->ac)
            redisAsyncHandleRead(e->ac);
        return;
    }
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void sp__ev_update(sp__redis_ev *e, int add, int flag)
{
    int ev = add ? (e->events | flag) : (e->events & ~flag);
    if (ev == e->events)
        return;
    e->events = ev;
    if (ev)
        uv_poll_start(&e->poll, ev, sp__ev_poll_cb);
    else
        uv_poll_stop(&e->poll);
}

static void sp__ev_add_read(void *p) { sp__ev_update(p, 1, UV_READABLE); }
static void sp__ev_del_read(void *p) { sp__ev_update(p, 0, UV_READABLE); }
static void sp__ev_add_write(void *p) { sp__ev_update(p, 1, UV_WRITABLE); }
static void sp__ev_del_write(void *p) { sp__ev_update(p, 0, UV_WRITABLE); }

static void sp__ev_cleanup(void *p)
{
    sp__redis_ev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, sp__ev_close_cb);
}

static int sp__ev_attach(uv_loop_t *loop, redisAsyncContext *ac)
{
    sp__redis_ev *e = sp_xcalloc(1, sizeof(*e));
    if (uv_poll_init_socket(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.addRead = sp__ev_add_read;
    ac->ev.delRead = sp__ev_del_read;
    ac->ev.addWrite = sp__ev_add_write;
    ac->ev.delWrite = sp__ev_del_write;
    ac->ev.cleanup = sp__ev_cleanup;
    ac->ev.data = e;
    return 0;
}

/* ---- connection lifecycle ---- */

static void sp__redis_connect(sp_redis *r);

static void sp__redis_schedule(sp_redis *r)
{
    r->state = SP_REDIS_DOWN;
    r->ac = NULL;
    if (r->closing)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : SP_REDIS_BACKOFF_MIN_MS;
    if (r->backoff_ms > SP_REDIS_BACKOFF_MAX_MS)
        r->backoff_ms = SP_REDIS_BACKOFF_MAX_MS;
}

typedef struct {
    sp_redis *r;
    uint64_t generation;
    sp_redis_reply_cb *cb;
    void *priv;
} sp__call;

static void sp__reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sp__call *c = privdata;
    sp_redis *r = c->r;
    if (c->generation == r->generation) {
        if (r->inflight > 0)
            r->inflight--;
        r->progress_ms = uv_now(r->d->loop);
    }
    if (c->cb)
        c->cb(r->d, reply, c->priv);
    free(c);
}

static void sp__send_raw(sp_redis *r, const char *cmd, size_t len,
                         sp_redis_reply_cb *cb, void *priv)
{
    sp__call *c = sp_xmalloc(sizeof(*c));
    c->r = r;
    c->generation = r->generation;
    c->cb = cb;
    c->priv = priv;
    if (r->inflight++ == 0)
        r->progress_ms = uv_now(r->d->loop);
    if (redisAsyncFormattedCommand(r->ac, sp__reply_cb, c, cmd, len) != REDIS_OK) {
        r->inflight--;
        free(c);
        if (cb)
            cb(r->d, NULL, priv);
    }
}

void sp_redis_send(sp_redis *r, const char *cmd, size_t len,
                   sp_redis_reply_cb *cb, void *priv)
{
    SP_ASSERT(r->state == SP_REDIS_READY && r->role != SP_REDIS_SUB);
    sp__send_raw(r, cmd, len, cb, priv);
}

static void sp__vsendf(sp_redis *r, sp_redis_reply_cb *cb, void *priv,
                       const char *fmt, va_list ap)
{
    char *cmd;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    SP_ASSERT(len > 0);
    sp__send_raw(r, cmd, (size_t)len, cb, priv);
    free(cmd);
}

void sp_redis_sendf(sp_redis *r, sp_redis_reply_cb *cb, void *priv,
                    const char *fmt, ...)
{
    va_list ap;
    SP_ASSERT(r->state == SP_REDIS_READY && r->role != SP_REDIS_SUB);
    va_start(ap, fmt);
    sp__vsendf(r, cb, priv, fmt, ap);
    va_end(ap);
}

static void sp__ready(sp_redis *r)
{
    r->state = SP_REDIS_READY;
    r->backoff_ms = 0;
    if (r->on_ready)
        r->on_ready(r);
}

/* Setup commands carry the redis connection as priv. */
typedef struct {
    sp_redis *r;
    const char *what;
} sp__setup;

static void sp__setup_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    sp__setup *s = priv;
    sp_redis *r = s->r;
    const char *what = s->what;
    free(s);
    (void)d;
    if (reply == NULL)
        return; /* the connection died; the disconnect path handles it */
    if (reply->type == REDIS_REPLY_ERROR) {
        sp_error(r->name, "%s failed: %s", what, reply->str);
        sp_redis_reset(r, what);
        return;
    }
    if (strcmp(what, "SCRIPT LOAD") == 0) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            sp_redis_reset(r, "bad SCRIPT LOAD reply");
            return;
        }
        memcpy(r->sha, reply->str, 40);
        r->sha[40] = '\0';
        sp_info(r->name, "ready script=%s", r->sha);
        sp__ready(r);
    } else if (strcmp(what, "PING") == 0) {
        sp_info(r->name, "ready");
        sp__ready(r);
    }
}

static void sp__setup_send(sp_redis *r, const char *what, const char *fmt, ...)
{
    sp__setup *s = sp_xmalloc(sizeof(*s));
    s->r = r;
    s->what = what;
    va_list ap;
    va_start(ap, fmt);
    sp__vsendf(r, sp__setup_cb, s, fmt, ap);
    va_end(ap);
}

/* A subscriber's replies: the subscribe confirmations, then messages, all
 * to this one callback (hiredis keeps it per channel), and NULL for each
 * channel when the connection goes. */
static void sp__sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sp_redis *r = privdata;
    redisReply *rr = reply;
    if (rr == NULL || ac != r->ac)
        return;
    if (rr->type != REDIS_REPLY_ARRAY || rr->elements < 3 ||
        rr->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rr->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        if (r->state != SP_REDIS_READY && rr->element[2]->integer == r->n_channels) {
            sp_info(r->name, "subscribed");
            sp__ready(r);
        }
    } else if (strcmp(kind, "message") == 0 && r->on_message &&
               rr->element[1]->type == REDIS_REPLY_STRING &&
               rr->element[2]->type == REDIS_REPLY_STRING) {
        r->on_message(r->d, rr->element[1]->str, rr->element[2]->str,
                      (size_t)rr->element[2]->len);
    }
}

static void sp__connect_cb(const redisAsyncContext *ac, int status)
{
    sp_redis *r = ac->data;
    if (ac != r->ac)
        return;
    if (status != REDIS_OK) {
        r->errors++;
        sp__redis_schedule(r);
        sp_warn(r->name, "connect failed: %s retry_ms=%llu", ac->errstr,
                (unsigned long long)r->backoff_ms);
        return;
    }
    sp_info(r->name, "connected");
}

static void sp__disconnect_cb(const redisAsyncContext *ac, int status)
{
    sp_redis *r = ac->data;
    if (ac != r->ac)
        return;
    if (status != REDIS_OK && !r->closing) {
        r->errors++;
        sp_warn(r->name, "connection lost: %s", ac->errstr);
    }
    r->generation++;
    r->inflight = 0;
    sp__redis_schedule(r);
    if (r->on_down)
        r->on_down(r);
}

static void sp__redis_connect(sp_redis *r)
{
    const sp_config *cfg = &r->d->cfg;
    redisAsyncContext *ac;

    if (cfg->redis_unix_socket[0] != '\0')
        ac = redisAsyncConnectUnix(cfg->redis_unix_socket);
    else
        ac = redisAsyncConnect(cfg->redis_host, (int)cfg->redis_port);
    if (ac == NULL || ac->err) {
        sp_warn(r->name, "connect failed: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        sp__redis_schedule(r);
        return;
    }
    if (sp__ev_attach(r->d->loop, ac) != 0) {
        redisAsyncFree(ac);
        sp__redis_schedule(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->generation++;
    r->inflight = 0;
    r->state = SP_REDIS_CONNECTING;
    r->connect_started_ms = uv_now(r->d->loop);
    r->sha[0] = '\0';
    redisAsyncSetConnectCallback(ac, sp__connect_cb);
    redisAsyncSetDisconnectCallback(ac, sp__disconnect_cb);
    /* Commands queue up until the socket connects; hiredis sends them in
     * order, so the script is loaded before any batch can be sent. */
    if (cfg->redis_password[0] != '\0')
        sp__setup_send(r, "AUTH", "AUTH %s", cfg->redis_password);
    if (cfg->redis_db != 0)
        sp__setup_send(r, "SELECT", "SELECT %lld", (long long)cfg->redis_db);
    switch (r->role) {
    case SP_REDIS_PIPELINE:
        sp__setup_send(r, "SCRIPT LOAD", "SCRIPT LOAD %s", sp_apply_script);
        break;
    case SP_REDIS_API:
        sp__setup_send(r, "PING", "PING");
        break;
    case SP_REDIS_SUB:
        /* Not counted in flight: a subscriber has no reply deadline. */
        r->n_channels = 2;
        if (redisAsyncCommand(ac, sp__sub_cb, r, "SUBSCRIBE %s%s %s%s", cfg->redis_prefix,
                              "updates", cfg->redis_prefix, "alerts") != REDIS_OK)
            sp_redis_reset(r, "cannot subscribe");
        break;
    }
}

void sp_redis_reset(sp_redis *r, const char *why)
{
    if (r->ac == NULL)
        return;
    sp_warn(r->name, "dropping connection: %s", why);
    redisAsyncContext *ac = r->ac;
    r->generation++;
    r->inflight = 0;
    sp__redis_schedule(r);
    /* Pending callbacks run now with NULL replies. */
    redisAsyncFree(ac);
    if (r->on_down)
        r->on_down(r);
}

static void sp__timer_cb(uv_timer_t *t)
{
    sp_redis *r = t->data;
    uint64_t now = uv_now(r->d->loop);
    int64_t timeout = r->d->cfg.redis_timeout_ms;

    if (r->closing)
        return;
    switch (r->state) {
    case SP_REDIS_DOWN:
        if (r->down_since_ms == 0)
            r->down_since_ms = now;
        if (now - r->down_since_ms >= r->backoff_ms) {
            r->down_since_ms = 0;
            r->reconnects++;
            sp__redis_connect(r);
        }
        break;
    case SP_REDIS_CONNECTING:
        if (now - r->connect_started_ms > (uint64_t)timeout)
            sp_redis_reset(r, "connect timeout");
        break;
    case SP_REDIS_READY:
        if (r->inflight > 0 && now - r->progress_ms > (uint64_t)timeout)
            sp_redis_reset(r, "reply timeout");
        break;
    }
}

void sp_redis_start(sp_daemon *d, sp_redis *r, const char *name, sp_redis_role role)
{
    r->d = d;
    r->name = name;
    r->role = role;
    uv_timer_init(d->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, sp__timer_cb, 50, 50);
    r->started = 1;
    sp__redis_connect(r);
}

void sp_redis_close(sp_redis *r)
{
    if (!r->started)
        return;
    r->closing = 1;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, NULL);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->generation++;
        redisAsyncFree(ac);
    }
    r->state = SP_REDIS_DOWN;
    r->started = 0;
}
