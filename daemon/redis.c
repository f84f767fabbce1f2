/*
 * redis.c - the daemon's one Redis connection, driven by the libuv loop.
 *
 * hiredis 0.14's own libuv adapter drops poll errors, so a refused
 * connection would never be reported; this file has its own small adapter
 * that passes them on. hiredis has no timeouts and no reconnect: a timer
 * enforces the connect timeout and a limit on how long a reply may be
 * awaited, and reconnects with exponential backoff. Every new connection
 * loads the apply script before it is READY.
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

static void sp__redis_connect(sp_daemon *d);

static void sp__redis_schedule(sp_daemon *d)
{
    sp_redis *r = &d->redis;
    r->state = SP_REDIS_DOWN;
    r->ac = NULL;
    if (r->closing)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : SP_REDIS_BACKOFF_MIN_MS;
    if (r->backoff_ms > SP_REDIS_BACKOFF_MAX_MS)
        r->backoff_ms = SP_REDIS_BACKOFF_MAX_MS;
}

typedef struct {
    sp_daemon *d;
    uint64_t generation;
    sp_redis_reply_cb *cb;
    void *priv;
} sp__call;

static void sp__reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sp__call *c = privdata;
    sp_daemon *d = c->d;
    if (c->generation == d->redis.generation) {
        if (d->redis.inflight > 0)
            d->redis.inflight--;
        d->redis.progress_ms = uv_now(d->loop);
    }
    if (c->cb)
        c->cb(d, reply, c->priv);
    free(c);
}

static void sp__send_raw(sp_daemon *d, const char *cmd, size_t len,
                         sp_redis_reply_cb *cb, void *priv)
{
    sp_redis *r = &d->redis;
    sp__call *c = sp_xmalloc(sizeof(*c));
    c->d = d;
    c->generation = r->generation;
    c->cb = cb;
    c->priv = priv;
    if (r->inflight++ == 0)
        r->progress_ms = uv_now(d->loop);
    if (redisAsyncFormattedCommand(r->ac, sp__reply_cb, c, cmd, len) != REDIS_OK) {
        r->inflight--;
        free(c);
        if (cb)
            cb(d, NULL, priv);
    }
}

void sp_redis_send(sp_daemon *d, const char *cmd, size_t len,
                   sp_redis_reply_cb *cb, void *priv)
{
    SP_ASSERT(d->redis.state == SP_REDIS_READY);
    sp__send_raw(d, cmd, len, cb, priv);
}

void sp_redis_sendf(sp_daemon *d, sp_redis_reply_cb *cb, void *priv,
                    const char *fmt, ...)
{
    char *cmd;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    SP_ASSERT(len > 0);
    sp__send_raw(d, cmd, (size_t)len, cb, priv);
    free(cmd);
}

static void sp__setup_cb(sp_daemon *d, redisReply *reply, void *priv)
{
    const char *what = priv;
    if (reply == NULL)
        return; /* the connection died; the disconnect path handles it */
    if (reply->type == REDIS_REPLY_ERROR) {
        sp_error("redis", "%s failed: %s", what, reply->str);
        sp_redis_reset(d, what);
        return;
    }
    if (strcmp(what, "SCRIPT LOAD") == 0) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            sp_redis_reset(d, "bad SCRIPT LOAD reply");
            return;
        }
        memcpy(d->redis.sha, reply->str, 40);
        d->redis.sha[40] = '\0';
        d->redis.state = SP_REDIS_READY;
        d->redis.backoff_ms = 0;
        sp_info("redis", "ready script=%s", d->redis.sha);
        sp_pipeline_on_redis_ready(d);
        sp_daemon_check_progress(d);
    }
}

static void sp__connect_cb(const redisAsyncContext *ac, int status)
{
    sp_daemon *d = ac->data;
    if (ac != d->redis.ac)
        return;
    if (status != REDIS_OK) {
        d->redis.errors++;
        sp__redis_schedule(d);
        sp_warn("redis", "connect failed: %s retry_ms=%llu", ac->errstr,
                (unsigned long long)d->redis.backoff_ms);
        return;
    }
    sp_info("redis", "connected");
}

static void sp__disconnect_cb(const redisAsyncContext *ac, int status)
{
    sp_daemon *d = ac->data;
    if (ac != d->redis.ac)
        return;
    if (status != REDIS_OK && !d->redis.closing) {
        d->redis.errors++;
        sp_warn("redis", "connection lost: %s", ac->errstr);
    }
    d->redis.generation++;
    d->redis.inflight = 0;
    sp__redis_schedule(d);
}

static void sp__redis_connect(sp_daemon *d)
{
    sp_redis *r = &d->redis;
    const sp_config *cfg = &d->cfg;
    redisAsyncContext *ac;

    if (cfg->redis_unix_socket[0] != '\0')
        ac = redisAsyncConnectUnix(cfg->redis_unix_socket);
    else
        ac = redisAsyncConnect(cfg->redis_host, (int)cfg->redis_port);
    if (ac == NULL || ac->err) {
        sp_warn("redis", "connect failed: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        sp__redis_schedule(d);
        return;
    }
    if (sp__ev_attach(d->loop, ac) != 0) {
        redisAsyncFree(ac);
        sp__redis_schedule(d);
        return;
    }
    ac->data = d;
    r->ac = ac;
    r->generation++;
    r->inflight = 0;
    r->state = SP_REDIS_CONNECTING;
    r->connect_started_ms = uv_now(d->loop);
    r->sha[0] = '\0';
    redisAsyncSetConnectCallback(ac, sp__connect_cb);
    redisAsyncSetDisconnectCallback(ac, sp__disconnect_cb);
    /* Commands queue up until the socket connects; hiredis sends them in
     * order, so the script is loaded before any batch can be sent. */
    if (cfg->redis_password[0] != '\0')
        sp_redis_sendf(d, sp__setup_cb, "AUTH", "AUTH %s", cfg->redis_password);
    if (cfg->redis_db != 0)
        sp_redis_sendf(d, sp__setup_cb, "SELECT", "SELECT %lld",
                       (long long)cfg->redis_db);
    sp_redis_sendf(d, sp__setup_cb, "SCRIPT LOAD", "SCRIPT LOAD %s",
                   sp_apply_script);
}

void sp_redis_reset(sp_daemon *d, const char *why)
{
    sp_redis *r = &d->redis;
    if (r->ac == NULL)
        return;
    sp_warn("redis", "dropping connection: %s", why);
    redisAsyncContext *ac = r->ac;
    r->generation++;
    r->inflight = 0;
    sp__redis_schedule(d);
    /* Pending callbacks run now with NULL replies. */
    redisAsyncFree(ac);
}

static void sp__timer_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    sp_redis *r = &d->redis;
    uint64_t now = uv_now(d->loop);

    if (r->closing)
        return;
    switch (r->state) {
    case SP_REDIS_DOWN:
        if (r->down_since_ms == 0)
            r->down_since_ms = now;
        if (now - r->down_since_ms >= r->backoff_ms) {
            r->down_since_ms = 0;
            r->reconnects++;
            sp__redis_connect(d);
        }
        break;
    case SP_REDIS_CONNECTING:
        if (now - r->connect_started_ms > (uint64_t)d->cfg.redis_timeout_ms)
            sp_redis_reset(d, "connect timeout");
        break;
    case SP_REDIS_READY:
        if (r->inflight > 0 &&
            now - r->progress_ms > (uint64_t)d->cfg.redis_timeout_ms)
            sp_redis_reset(d, "reply timeout");
        break;
    }
}

void sp_redis_start(sp_daemon *d)
{
    uv_timer_init(d->loop, &d->redis.timer);
    d->redis.timer.data = d;
    uv_timer_start(&d->redis.timer, sp__timer_cb, 50, 50);
    sp__redis_connect(d);
}

void sp_redis_close(sp_daemon *d)
{
    sp_redis *r = &d->redis;
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
}
