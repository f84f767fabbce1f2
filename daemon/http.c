/*
 * http.c - the daemon's HTTP server: libmicrohttpd without a thread of its
 * own, driven by the libuv loop. MHD's epoll fd is watched with uv_poll;
 * whenever it is readable MHD_run() serves what is ready, and a timer is
 * re-armed from MHD_get_timeout() after every run. Handlers answer from
 * memory and never block.
 *
 *   GET /healthz   200 or 503, JSON with the reasons
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /          the live dashboard page (daemon/dashboard.html, compiled in)
 *   GET /api/v1/   the dashboard API (api.c), answered once Redis has
 *
 * An API request suspends its connection while Redis answers; resuming
 * wakes MHD through its inter-thread pipe, which is in the epoll set.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "metrics.h"

extern const char sp_dashboard_html[];
extern const size_t sp_dashboard_html_len;

static enum MHD_Result sp__respond(struct MHD_Connection *c, unsigned status,
                                   const char *type, sp_buf *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body->len, body->data ? body->data : "", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result sp_http_respond(struct MHD_Connection *c, unsigned status, const char *json)
{
    sp_buf body = {(char *)json, strlen(json), 0};
    return sp__respond(c, status, "application/json", &body);
}

static enum MHD_Result sp__handler(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version,
                                   const char *upload, size_t *upload_size, void **state)
{
    sp_daemon *d = cls;
    sp_buf body;
    enum MHD_Result ret;

    (void)version;
    (void)upload;
    (void)upload_size;
    if (*state != NULL)
        return sp_api_continue(d, c, *state);
    sp_buf_init(&body);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        sp_buf_appends(&body, "{\"error\":\"method not allowed\"}\n");
        ret = sp__respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", &body);
    } else if (strcmp(url, "/healthz") == 0) {
        int ok = sp_health_check(d, &body);
        ret = sp__respond(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                          "application/json", &body);
    } else if (strcmp(url, "/metrics") == 0) {
        sp_metrics_render(d, &body);
        ret = sp__respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &body);
    } else if (strncmp(url, "/api/", 5) == 0) {
        ret = sp_api_handle(d, c, url, state);
    } else if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        sp_buf page = {(char *)sp_dashboard_html, sp_dashboard_html_len, 0};
        ret = sp__respond(c, MHD_HTTP_OK, "text/html; charset=utf-8", &page);
    } else {
        sp_buf_appends(&body, "{\"error\":\"not found\"}\n");
        ret = sp__respond(c, MHD_HTTP_NOT_FOUND, "application/json", &body);
    }
    sp_buf_free(&body);
    return ret;
}

static void sp__completed(void *cls, struct MHD_Connection *c, void **state,
                          enum MHD_RequestTerminationCode why)
{
    (void)c;
    (void)why;
    if (*state != NULL)
        sp_api_completed(cls, *state);
    *state = NULL;
}

static void sp__http_run(sp_daemon *d);

static void sp__http_poll_cb(uv_poll_t *h, int status, int events)
{
    sp__http_run(h->data);
}

static void sp__http_timer_cb(uv_timer_t *t)
{
    sp__http_run(t->data);
}

static void sp__http_kick_cb(uv_timer_t *t)
{
    sp__http_run(t->data);
}

void sp_http_kick(sp_daemon *d)
{
    if (d->http != NULL && !uv_is_active((uv_handle_t *)&d->http_kick))
        uv_timer_start(&d->http_kick, sp__http_kick_cb, 0, 0);
}

static void sp__http_run(sp_daemon *d)
{
    MHD_run(d->http);
    MHD_UNSIGNED_LONG_LONG ms;
    uv_timer_stop(&d->http_timer);
    if (MHD_get_timeout(d->http, &ms) == MHD_YES)
        uv_timer_start(&d->http_timer, sp__http_timer_cb, ms, 0);
}

static void sp__mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    sp_warn("http", "%s", msg);
}

int sp_http_start(sp_daemon *d, char *errstr, size_t errsz)
{
    const char *listen = d->cfg.http_listen;
    if (listen[0] == '\0')
        return 0; /* off */
    const char *colon = strrchr(listen, ':');
    if (colon == NULL) {
        snprintf(errstr, errsz, "[http] listen \"%s\": expected host:port", listen);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[') { /* [::1]:9321 */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (gai != 0) {
        snprintf(errstr, errsz, "[http] listen \"%s\": %s", listen, gai_strerror(gai));
        return -1;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d->http = MHD_start_daemon(flags, 0, NULL, NULL, sp__handler, d,
                               MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)(d->cfg.http_max_sse_clients + 64),
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                               MHD_OPTION_EXTERNAL_LOGGER, sp__mhd_log, NULL,
                               MHD_OPTION_NOTIFY_COMPLETED, sp__completed, d,
                               MHD_OPTION_END);
    freeaddrinfo(ai);
    if (d->http == NULL) {
        snprintf(errstr, errsz, "[http] listen \"%s\": cannot listen (in use?)", listen);
        return -1;
    }
    const union MHD_DaemonInfo *fd = MHD_get_daemon_info(d->http, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(d->http, MHD_DAEMON_INFO_BIND_PORT);
    uv_poll_init(d->loop, &d->http_poll, fd->epoll_fd);
    d->http_poll.data = d;
    uv_poll_start(&d->http_poll, UV_READABLE, sp__http_poll_cb);
    uv_timer_init(d->loop, &d->http_timer);
    d->http_timer.data = d;
    uv_timer_init(d->loop, &d->http_kick);
    d->http_kick.data = d;
    d->http_port = port ? port->port : 0;
    sp_info("http", "listening on %s:%u", host[0] ? host : "*", d->http_port);
    return sp_api_start(d, errstr, errsz);
}

void sp_http_stop(sp_daemon *d)
{
    if (d->http == NULL)
        return;
    sp_api_release_all(d);
    uv_close((uv_handle_t *)&d->http_poll, NULL);
    uv_close((uv_handle_t *)&d->http_timer, NULL);
    uv_close((uv_handle_t *)&d->http_kick, NULL);
    MHD_stop_daemon(d->http);
    d->http = NULL;
    sp_api_stop(d);
}
