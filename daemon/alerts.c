/*
 * alerts.c - delivery of alerts to the sinks outside Redis: the Kafka
 * alerts_topic and the [webhook.NAME] receivers (SPEC 4).
 *
 * An alert is recorded, in the same atomic flush that fires it, as one
 * pending field per sink in its partition's window state hash,
 * "!k|<alert_id>" (Kafka) or "!w:<name>|<alert_id>" (a webhook), whose
 * value is the alert JSON. Once that flush is acknowledged, or once the
 * partition is assigned and its state read after a restart or a rebalance,
 * the delivery is queued here; when the sink has it, the field is deleted.
 * A delivery therefore survives a crash at any moment, and a sink gets an
 * alert twice only if the daemon dies between the sink's answer and that
 * delete (at least once; the same webhook-id and alert_id every time).
 *
 * Webhooks run on libcurl's multi-socket API, driven by the loop: curl's
 * sockets get uv_poll handles, its timeout a uv_timer. Requests are signed
 * as Standard Webhooks says. Connection errors, timeouts, 429 (honouring
 * Retry-After) and 5xx are retried with exponential backoff and jitter,
 * from 1 s up to 5 min, until max_age_s; other answers are final. A slow or
 * dead receiver only grows its own queue, capped by max_pending.
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "detector.h"

#define SP_RETRY_MIN_MS 1000
#define SP_RETRY_MAX_MS 300000
#define SP_WEBHOOK_INFLIGHT_MAX 8

static void sp__alerts_tick(uv_timer_t *t);

/* ---- queue ---- */

static sp_sink_stats *sp__stats(sp_daemon *d, int sink)
{
    return sink < 0 ? &d->kafka_alert_stats : &d->webhook_stats[sink];
}

static void sp__kick(sp_daemon *d)
{
    if (d->alerts_ready)
        uv_timer_start(&d->alerts_timer, sp__alerts_tick, 0, 100);
}

/* Deletes a delivery's pending field (best effort: if Redis is away, the
 * delivery is simply made again after a restart). */
static void sp__unpend(sp_daemon *d, const sp_delivery *dl)
{
    if (d->redis.state != SP_REDIS_READY)
        return;
    sp_batch_target t = {d->cfg.redis_prefix, d->cfg.kafka_group, dl->topic, dl->partition,
                         0, 0, 0, 0, 0};
    sp_buf key;
    sp_buf_init(&key);
    sp_batch_state_key(&t, &key);
    sp_redis_sendf(&d->redis, NULL, NULL, "HDEL %b %s", key.data, key.len, dl->field);
    sp_buf_free(&key);
}

static void sp__free(sp_delivery *dl)
{
    free(dl->topic);
    free(dl->field);
    free(dl->alert_id);
    free(dl->video);
    free(dl->json);
    free(dl);
}

/* Unlinks and frees dl; unpend: its sink is done with it. */
static void sp__forget(sp_daemon *d, sp_delivery *dl, int unpend)
{
    for (sp_delivery **pp = &d->deliveries; *pp != NULL; pp = &(*pp)->next)
        if (*pp == dl) {
            *pp = dl->next;
            break;
        }
    sp__stats(d, dl->sink)->queued--;
    if (unpend)
        sp__unpend(d, dl);
    sp__free(dl);
}

static int sp__has_level(const char *levels, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = levels; *p != '\0';) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (c != NULL);
    }
    return 0;
}

void sp_alerts_route(sp_daemon *d, const char *json, size_t len, sp_resp *r, sp_buf *pending)
{
    json_t *a = json_loadb(json, len, 0, NULL);
    const char *id = json_string_value(json_object_get(a, "alert_id"));
    const char *kind = json_string_value(json_object_get(a, "kind"));
    const char *level = json_string_value(json_object_get(a, "level"));
    if (id == NULL || kind == NULL || level == NULL) {
        json_decref(a);
        return;
    }
    int resolved = strcmp(kind, "resolved") == 0;
    if (resolved) {
        d->alerts_resolved++;
    } else {
        for (int l = 0; l < SP_LEVEL__COUNT; l++)
            if (strcmp(level, sp_level_names[l]) == 0)
                d->alerts_by_level[l]++;
    }
    sp_buf field;
    sp_buf_init(&field);
    for (int s = -1; s < d->cfg.n_webhooks; s++) {
        sp_buf_reset(&field);
        if (s < 0) {
            if (d->cfg.kafka_alerts_topic[0] == '\0')
                continue;
            sp_buf_appendf(&field, "!k|%s", id);
        } else {
            const sp_webhook_conf *w = &d->cfg.webhooks[s];
            if (!sp__has_level(w->levels, resolved ? "resolved" : level))
                continue;
            sp_buf_appendf(&field, "!w:%s|%s", w->name, id);
        }
        sp_resp_bulks(r, "s");
        sp_resp_bulk(r, field.data, field.len);
        sp_resp_bulk(r, json, len);
        sp_buf_append(pending, field.data, field.len);
        sp_buf_append(pending, "\t", 1);
        sp_buf_append(pending, json, len);
        sp_buf_append(pending, "\n", 1);
    }
    sp_buf_free(&field);
    json_decref(a);
}

void sp_alerts_queue(sp_daemon *d, const char *topic, int32_t partition, const char *field,
                     size_t flen, const char *json, size_t jlen)
{
    int sink = -2;
    const char *bar = memchr(field, '|', flen);
    if (bar == NULL)
        return;
    if (flen > 3 && memcmp(field, "!k|", 3) == 0 && d->cfg.kafka_alerts_topic[0] != '\0') {
        sink = -1;
    } else if (flen > 3 && memcmp(field, "!w:", 3) == 0) {
        for (int s = 0; s < d->cfg.n_webhooks; s++) {
            size_t n = strlen(d->cfg.webhooks[s].name);
            if ((size_t)(bar - field - 3) == n && memcmp(field + 3, d->cfg.webhooks[s].name, n) == 0)
                sink = s;
        }
    }
    for (sp_delivery *dl = d->deliveries; dl != NULL; dl = dl->next)
        if (dl->partition == partition && strlen(dl->field) == flen &&
            memcmp(dl->field, field, flen) == 0 && strcmp(dl->topic, topic) == 0)
            return; /* queued already (the state was read again) */

    sp_delivery *dl = sp_xcalloc(1, sizeof(*dl));
    dl->what = SP_PRODUCE_ALERT;
    dl->sink = sink < -1 ? -1 : sink;
    dl->topic = sp_xstrdup(topic);
    dl->partition = partition;
    dl->field = sp_xstrndup(field, flen);
    json_t *a = json_loadb(json, jlen, 0, NULL);
    const char *id = json_string_value(json_object_get(a, "alert_id"));
    const char *video = json_string_value(json_object_get(a, "video_id"));
    if (sink == -2 || id == NULL || video == NULL) {
        /* A sink no longer configured, or not an alert of ours. */
        sp_info("alerts", "dropping pending delivery %s: sink not configured", dl->field);
        sp__unpend(d, dl);
        sp__free(dl);
        json_decref(a);
        return;
    }
    dl->alert_id = sp_xstrdup(id);
    dl->video = sp_xstrdup(video);
    /* max_age_s counts from when this process queued it, on the trusted
     * clock: an old backlog's alerts are not expired unsent. */
    dl->queued_ms = sp_trusted_wall_ms();
    dl->json = sp_xstrndup(json, jlen);
    json_decref(a);

    sp_sink_stats *st = sp__stats(d, dl->sink);
    int64_t cap = dl->sink < 0 ? INT64_MAX : d->cfg.webhooks[dl->sink].max_pending;
    if ((int64_t)st->queued >= cap) {
        st->overflow++;
        unsigned long sup;
        if (sp_ratelimit_ok(&d->rl_alerts, sp_wall_ms(), 5000, &sup))
            sp_warn("alerts", "webhook %s queue full (max_pending=%" PRId64 "): dropping alert %s "
                    "suppressed=%lu", d->cfg.webhooks[dl->sink].name, cap, dl->alert_id, sup);
        sp__unpend(d, dl);
        sp__free(dl);
        return;
    }
    st->queued++;
    dl->due_ms = uv_now(d->loop);
    dl->next = d->deliveries;
    d->deliveries = dl;
    sp__kick(d);
}

void sp_alerts_drop_partition(sp_daemon *d, const char *topic, int32_t partition)
{
    sp_delivery **pp = &d->deliveries;
    while (*pp != NULL) {
        sp_delivery *dl = *pp;
        if (!dl->inflight && dl->partition == partition && strcmp(dl->topic, topic) == 0) {
            *pp = dl->next;
            sp__stats(d, dl->sink)->queued--;
            sp__free(dl);
        } else {
            pp = &dl->next;
        }
    }
}

/* ---- outcomes ---- */

static void sp__retry(sp_daemon *d, sp_delivery *dl, int64_t after_ms)
{
    if (after_ms < 0) {
        int64_t base = SP_RETRY_MIN_MS;
        for (int i = 1; i < dl->attempts && base < SP_RETRY_MAX_MS; i++)
            base *= 2;
        if (base > SP_RETRY_MAX_MS)
            base = SP_RETRY_MAX_MS;
        after_ms = base / 2 + (int64_t)(rand() % (int)(base / 2 + 1)); /* jitter */
    }
    dl->inflight = 0;
    dl->due_ms = uv_now(d->loop) + (uint64_t)after_ms;
    sp__stats(d, dl->sink)->retries++;
}

static const char *sp__sink_name(sp_daemon *d, int sink)
{
    return sink < 0 ? "kafka" : d->cfg.webhooks[sink].name;
}

void sp_alerts_on_kafka(sp_daemon *d, void *delivery, rd_kafka_resp_err_t err)
{
    sp_delivery *dl = delivery;
    if (err) {
        sp_warn("alerts", "alert %s to kafka failed, retrying: %s", dl->alert_id,
                rd_kafka_err2str(err));
        sp__retry(d, dl, -1);
        return;
    }
    d->kafka_alert_stats.delivered++;
    sp__forget(d, dl, 1);
}

static void sp__webhook_done(sp_daemon *d, sp_delivery *dl, CURLcode rc, long code,
                             int64_t retry_after_s)
{
    sp_sink_stats *st = &d->webhook_stats[dl->sink];
    const char *name = sp__sink_name(d, dl->sink);
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        st->delivered++;
        sp_debug("alerts", "webhook %s got %s status=%ld attempts=%d", name, dl->alert_id, code,
                 dl->attempts);
        sp__forget(d, dl, 1);
        return;
    }
    unsigned long sup;
    int say = sp_ratelimit_ok(&d->rl_alerts, sp_wall_ms(), 5000, &sup);
    if (rc != CURLE_OK || code == 429 || code >= 500) {
        if (say)
            sp_warn("alerts", "webhook %s alert %s attempt %d: %s; retrying suppressed=%lu",
                    name, dl->alert_id, dl->attempts,
                    rc != CURLE_OK ? curl_easy_strerror(rc) : code == 429 ? "429" : "5xx", sup);
        sp__retry(d, dl, code == 429 && retry_after_s >= 0 ? retry_after_s * 1000 : -1);
        return;
    }
    st->failed++;
    if (say)
        sp_warn("alerts", "webhook %s refused alert %s with status %ld; not retried "
                "suppressed=%lu", name, dl->alert_id, code, sup);
    sp__forget(d, dl, 1);
}

/* ---- Standard Webhooks signature ---- */

/* Appends "v1,<base64 HMAC-SHA256(key, msg)>" for every whsec_ secret. */
static void sp__sign(const char *secrets, const char *msg, size_t mlen, sp_buf *out)
{
    for (const char *p = secrets; *p != '\0';) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end != '\0' && *end != ' ')
            end++;
        const char *k = p;
        if ((size_t)(end - p) > 6 && strncmp(p, "whsec_", 6) == 0)
            k += 6;
        size_t klen = (size_t)(end - k);
        p = end;
        if (klen == 0 || klen % 4 != 0 || klen > 512)
            continue;
        unsigned char key[384], mac[EVP_MAX_MD_SIZE];
        int n = EVP_DecodeBlock(key, (const unsigned char *)k, (int)klen);
        if (n < 0)
            continue;
        n -= (k[klen - 1] == '=') + (k[klen - 2] == '=');
        unsigned int maclen = 0;
        HMAC(EVP_sha256(), key, n, (const unsigned char *)msg, mlen, mac, &maclen);
        char b64[4 * EVP_MAX_MD_SIZE / 3 + 8];
        EVP_EncodeBlock((unsigned char *)b64, mac, (int)maclen);
        sp_buf_appendf(out, "%sv1,%s", out->len > 0 ? " " : "", b64);
    }
}

/* ---- libcurl on the loop ---- */

typedef struct sp__csock {
    uv_poll_t poll;
    curl_socket_t fd;
    sp_daemon *d;
    struct sp__csock *next;
} sp__csock;

/* curl's sockets with a poll handle, so that a stop can close them all. */
static sp__csock *sp__csocks;

static void sp__curl_check(sp_daemon *d)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(d->curlm, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        sp_delivery *dl = NULL;
        long code = 0;
        curl_off_t ra = -1;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&dl);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra == 0)
            ra = -1;
        curl_multi_remove_handle(d->curlm, e);
        curl_easy_cleanup(e);
        curl_slist_free_all(dl->headers);
        dl->headers = NULL;
        dl->easy = NULL;
        sp__webhook_done(d, dl, rc, code, (int64_t)ra);
    }
}

static void sp__curl_poll_cb(uv_poll_t *h, int status, int events)
{
    sp__csock *cs = h->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    sp_daemon *d = cs->d;
    curl_multi_socket_action(d->curlm, cs->fd, flags, &running);
    sp__curl_check(d);
}

static void sp__free_handle(uv_handle_t *h)
{
    free(h->data);
}

static int sp__curl_socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    sp_daemon *d = userp;
    sp__csock *cs = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (cs != NULL) {
            for (sp__csock **pp = &sp__csocks; *pp != NULL; pp = &(*pp)->next)
                if (*pp == cs) {
                    *pp = cs->next;
                    break;
                }
            uv_poll_stop(&cs->poll);
            curl_multi_assign(d->curlm, s, NULL);
            uv_close((uv_handle_t *)&cs->poll, sp__free_handle);
        }
        return 0;
    }
    if (cs == NULL) {
        cs = sp_xcalloc(1, sizeof(*cs));
        cs->fd = s;
        cs->d = d;
        if (uv_poll_init_socket(d->loop, &cs->poll, s) != 0) {
            free(cs);
            return -1;
        }
        cs->poll.data = cs;
        cs->next = sp__csocks;
        sp__csocks = cs;
        curl_multi_assign(d->curlm, s, cs);
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(&cs->poll, ev, sp__curl_poll_cb);
    return 0;
}

static void sp__curl_timeout_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    int running;
    curl_multi_socket_action(d->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
    sp__curl_check(d);
}

static int sp__curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    sp_daemon *d = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&d->curl_timer);
    else
        uv_timer_start(&d->curl_timer, sp__curl_timeout_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t sp__discard(char *p, size_t size, size_t n, void *u)
{
    return size * n;
}

static int sp__curl_init(sp_daemon *d)
{
    if (d->curlm != NULL)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    d->curlm = curl_multi_init();
    if (d->curlm == NULL) {
        curl_global_cleanup();
        return -1;
    }
    curl_multi_setopt(d->curlm, CURLMOPT_SOCKETFUNCTION, sp__curl_socket_cb);
    curl_multi_setopt(d->curlm, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(d->curlm, CURLMOPT_TIMERFUNCTION, sp__curl_timer_cb);
    curl_multi_setopt(d->curlm, CURLMOPT_TIMERDATA, d);
    return 0;
}

static int sp__webhook_send(sp_daemon *d, sp_delivery *dl)
{
    if (sp__curl_init(d) != 0)
        return -1;
    const sp_webhook_conf *w = &d->cfg.webhooks[dl->sink];
    CURL *e = curl_easy_init();
    if (e == NULL)
        return -1;
    char ts[24];
    snprintf(ts, sizeof(ts), "%" PRId64, sp_wall_ms() / 1000);
    size_t blen = strlen(dl->json);
    sp_buf h, msg;
    sp_buf_init(&h);
    sp_buf_init(&msg);
    sp_buf_appendf(&msg, "%s.%s.", dl->alert_id, ts);
    sp_buf_append(&msg, dl->json, blen);
    sp_buf_appends(&h, "webhook-signature: ");
    size_t before = h.len;
    sp__sign(w->secret, msg.data, msg.len, &h);
    sp_buf_append(&h, "", 1);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    sp_buf line;
    sp_buf_init(&line);
    sp_buf_appendf(&line, "webhook-id: %s", dl->alert_id);
    hs = curl_slist_append(hs, line.data);
    sp_buf_reset(&line);
    sp_buf_appendf(&line, "webhook-timestamp: %s", ts);
    hs = curl_slist_append(hs, line.data);
    if (h.len - 1 > before)
        hs = curl_slist_append(hs, h.data);
    hs = curl_slist_append(hs, "User-Agent: sharepulse/" SP_VERSION);
    hs = curl_slist_append(hs, "Expect:");
    sp_buf_free(&line);
    sp_buf_free(&h);
    sp_buf_free(&msg);

    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, dl->json);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sp__discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)dl);
    dl->easy = e;
    dl->headers = hs;
    if (curl_multi_add_handle(d->curlm, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(hs);
        dl->easy = NULL;
        dl->headers = NULL;
        return -1;
    }
    return 0;
}

/* ---- the scheduler ---- */

static void sp__alerts_tick(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    uint64_t now = uv_now(d->loop);
    int64_t wall = sp_trusted_wall_ms();
    int inflight[SP_WEBHOOKS_MAX] = {0};
    for (sp_delivery *dl = d->deliveries; dl != NULL; dl = dl->next)
        if (dl->inflight && dl->sink >= 0)
            inflight[dl->sink]++;
    sp_delivery *next;
    for (sp_delivery *dl = d->deliveries; dl != NULL; dl = next) {
        next = dl->next;
        if (dl->inflight || dl->due_ms > now)
            continue;
        int64_t max_age = dl->sink < 0 ? INT64_MAX / 2 : d->cfg.webhooks[dl->sink].max_age_s * 1000;
        if (wall - dl->queued_ms > max_age) {
            sp_warn("alerts", "webhook %s: giving up alert %s after %d attempts (max_age_s)",
                    sp__sink_name(d, dl->sink), dl->alert_id, dl->attempts);
            sp__stats(d, dl->sink)->expired++;
            sp__forget(d, dl, 1);
            continue;
        }
        if (dl->sink >= 0 && inflight[dl->sink] >= SP_WEBHOOK_INFLIGHT_MAX)
            continue;
        dl->attempts++;
        dl->inflight = 1;
        int rc = dl->sink < 0 ? sp_kafka_produce_alert(d, dl) : sp__webhook_send(d, dl);
        if (rc != 0)
            sp__retry(d, dl, -1);
        else if (dl->sink >= 0)
            inflight[dl->sink]++;
    }
    if (d->deliveries == NULL)
        uv_timer_stop(&d->alerts_timer);
}

int sp_alerts_start(sp_daemon *d, char *errstr, size_t errsz)
{
    uv_timer_init(d->loop, &d->alerts_timer);
    uv_timer_init(d->loop, &d->curl_timer);
    d->alerts_timer.data = d->curl_timer.data = d;
    d->alerts_ready = 1;
    if (d->cfg.n_webhooks > 0 && sp__curl_init(d) != 0) {
        snprintf(errstr, errsz, "libcurl failed to initialise");
        return -1;
    }
    return 0;
}

void sp_alerts_reload(sp_daemon *d, sp_config *fresh)
{
    /* Deliveries follow their webhook by name; a removed webhook's are
     * dropped (in flight ones aborted) and their pending fields deleted. */
    int map[SP_WEBHOOKS_MAX];
    sp_sink_stats stats[SP_WEBHOOKS_MAX];
    memset(stats, 0, sizeof(stats));
    for (int i = 0; i < d->cfg.n_webhooks; i++) {
        map[i] = -1;
        for (int j = 0; j < fresh->n_webhooks; j++)
            if (strcmp(d->cfg.webhooks[i].name, fresh->webhooks[j].name) == 0) {
                map[i] = j;
                stats[j] = d->webhook_stats[i];
            }
    }
    sp_delivery *next;
    for (sp_delivery *dl = d->deliveries; dl != NULL; dl = next) {
        next = dl->next;
        if (dl->sink < 0)
            continue;
        if (map[dl->sink] >= 0) {
            dl->sink = map[dl->sink];
            continue;
        }
        if (dl->easy != NULL) {
            curl_multi_remove_handle(d->curlm, dl->easy);
            curl_easy_cleanup(dl->easy);
            curl_slist_free_all(dl->headers);
            dl->easy = NULL;
        }
        sp_info("alerts", "webhook removed by reload: dropping alert %s", dl->alert_id);
        sp__forget(d, dl, 1);
    }
    memcpy(d->webhook_stats, stats, sizeof(stats));
    sp_config_take_webhooks(&d->cfg, fresh);
}

static void sp__close_noop(uv_handle_t *h)
{
}

void sp_alerts_stop(sp_daemon *d)
{
    /* Pending deliveries stay recorded in Redis for the next run. */
    for (sp_delivery *dl = d->deliveries; dl != NULL; dl = dl->next)
        if (dl->easy != NULL) {
            curl_multi_remove_handle(d->curlm, dl->easy);
            curl_easy_cleanup(dl->easy);
            curl_slist_free_all(dl->headers);
        }
    if (d->curlm != NULL) {
        curl_multi_cleanup(d->curlm);
        d->curlm = NULL;
        curl_global_cleanup();
    }
    while (sp__csocks != NULL) {
        sp__csock *cs = sp__csocks;
        sp__csocks = cs->next;
        uv_close((uv_handle_t *)&cs->poll, sp__free_handle);
    }
    while (d->deliveries != NULL) {
        sp_delivery *dl = d->deliveries;
        d->deliveries = dl->next;
        sp__free(dl);
    }
    if (d->alerts_ready) {
        uv_close((uv_handle_t *)&d->alerts_timer, sp__close_noop);
        uv_close((uv_handle_t *)&d->curl_timer, sp__close_noop);
        d->alerts_ready = 0;
    }
}
