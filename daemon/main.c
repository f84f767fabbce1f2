/*
 * main.c - sharepulsed: command line, configuration, signals, systemd
 * notifications and the daemon's lifecycle on one libuv loop.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "conffile.h"
#include "daemon.h"
#include "jsonarena.h"

#define SP_STOP_DEADLINE_MS 9000

int64_t sp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds of a clock. */
static int64_t sp__clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sp_trusted_wall_ms(void)
{
    static int64_t wall_ns, last_mono_ns;
    /* BOOTTIME: monotonic, and it keeps counting while the machine sleeps. */
    int64_t mono = sp__clock_ns(CLOCK_BOOTTIME), sys = sp__clock_ns(CLOCK_REALTIME);
    if (last_mono_ns == 0) {
        wall_ns = sys;
    } else {
        int64_t dt = mono - last_mono_ns, slew = dt / 10;
        int64_t gap = sys - (wall_ns + dt);
        wall_ns += dt + (gap > slew ? slew : gap < -slew ? -slew : gap);
    }
    last_mono_ns = mono;
    return wall_ns / 1000000;
}

void sp_daemon_count_bad(sp_daemon *d, const char *reason)
{
    d->bad_total++;
    for (int i = 0; i < SP_REASONS_MAX; i++) {
        sp_reason_count *r = &d->bad_by_reason[i];
        if (r->reason[0] == '\0')
            snprintf(r->reason, sizeof(r->reason), "%s", reason);
        if (strcmp(r->reason, reason) == 0) {
            r->n++;
            return;
        }
    }
}

static void sp__log_stats(sp_daemon *d, const char *what)
{
    char bad[1024];
    size_t len = 0;
    bad[0] = '\0';
    for (int i = 0; i < SP_REASONS_MAX && d->bad_by_reason[i].reason[0]; i++)
        len += (size_t)snprintf(bad + len, len < sizeof(bad) ? sizeof(bad) - len : 0,
                                " bad.%s=%" PRIu64, d->bad_by_reason[i].reason,
                                d->bad_by_reason[i].n);
    sp_info("daemon", "%s views=%" PRIu64 " likes=%" PRIu64 " comments=%" PRIu64
            " shares=%" PRIu64 " follows=%" PRIu64 " bad=%" PRIu64
            " flushes=%" PRIu64 " flushed_events=%" PRIu64 " pending=%" PRIu64
            " partitions=%zu%s", what,
            d->events_by_type[SP_EV_VIEW], d->events_by_type[SP_EV_LIKE],
            d->events_by_type[SP_EV_COMMENT], d->events_by_type[SP_EV_SHARE],
            d->events_by_type[SP_EV_FOLLOW], d->bad_total, d->flushes,
            d->flushed_events, d->pending_events, d->n_parts, bad);
}

/* ---- lifecycle ---- */

static void sp__finish_cb(uv_timer_t *t);

static void sp__close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs in its own loop turn, never inside a librdkafka or hiredis
 * callback chain, so both can be destroyed here. */
static void sp__finish_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    sp__log_stats(d, "stopped");
    sp__close_handle((uv_handle_t *)&d->stop_timer);
    sp__close_handle((uv_handle_t *)&d->flush_timer);
    sp__close_handle((uv_handle_t *)&d->stats_timer);
    sp__close_handle((uv_handle_t *)&d->watchdog_timer);
    sp__close_handle((uv_handle_t *)&d->tick_timer);
    sp_http_stop(d);
    sp__close_handle((uv_handle_t *)&d->sig_term);
    sp__close_handle((uv_handle_t *)&d->sig_int);
    sp__close_handle((uv_handle_t *)&d->sig_hup);
    sp_redis_close(&d->redis);
    sp_kafka_free(d); /* its last delivery reports may still reach alerts.c */
    sp_alerts_stop(d);
}

static void sp__stop_tick_cb(uv_timer_t *t)
{
    sp_daemon_check_progress(t->data);
}

void sp_daemon_stop(sp_daemon *d, int exit_code)
{
    if (d->stopping) {
        if (exit_code > d->exit_code)
            d->exit_code = exit_code;
        return;
    }
    d->stopping = 1;
    d->exit_code = exit_code;
    d->stop_started_ms = uv_now(d->loop);
    sd_notify(0, "STOPPING=1\nSTATUS=stopping: flushing and committing");
    sp_info("daemon", "stopping: flushing pending batches");
    uv_timer_start(&d->stop_timer, sp__stop_tick_cb, 50, 50);
}

void sp_daemon_check_progress(sp_daemon *d)
{
    sp_pipeline_progress_revoke(d);

    if (!d->ready_notified && d->redis.state == SP_REDIS_READY && d->assigned_once) {
        d->ready_notified = 1;
        sd_notify(0, "READY=1\nSTATUS=consuming");
        sp_info("daemon", "ready");
    }
    if (d->drain && !d->stopping && sp_pipeline_drained(d)) {
        sp_info("daemon", "drain complete");
        /* Every partition is at its end: the clock moves to the present and
         * the last flush writes what that changes (decay, detector edges). */
        d->drained = 1;
        sp_daemon_stop(d, 0);
    }
    if (!d->stopping || d->finishing)
        return;

    int late = uv_now(d->loop) - d->stop_started_ms > SP_STOP_DEADLINE_MS;
    sp_pipeline_flush(d);
    if (!d->kafka_closing && (sp_pipeline_idle(d) || late || d->exit_code != 0)) {
        if (!sp_pipeline_idle(d))
            sp_warn("daemon", "stop deadline reached with batches unacknowledged; "
                    "they will be consumed again on the next start");
        sp_kafka_close(d);
    }
    if (d->kafka_closing && (sp_kafka_closed(d) || late)) {
        d->finishing = 1;
        uv_timer_stop(&d->stop_timer);
        uv_timer_start(&d->stop_timer, sp__finish_cb, 0, 0);
    }
}

static void sp__flush_cb(uv_timer_t *t)
{
    sp_pipeline_flush(t->data);
}

static void sp__stats_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    sp__log_stats(d, "stats");
    sd_notifyf(0, "STATUS=consuming: %zu partition(s), %" PRIu64 " events applied, %" PRIu64
               " bad, redis %s", d->n_parts, d->flushed_events, d->bad_total,
               d->redis.state == SP_REDIS_READY ? "up" : "down");
}

/* Pinged from the loop, and only while healthy: a stalled loop or a
 * daemon that cannot reach Redis or Kafka gets restarted by systemd. */
static void sp__watchdog_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    sp_buf scratch;
    sp_buf_init(&scratch);
    if (sp_health_check(d, &scratch))
        sd_notify(0, "WATCHDOG=1");
    sp_buf_free(&scratch);
}

/* Measures how late the loop runs a 100 ms timer: the loop-lag figure of
 * /metrics and /healthz. */
static void sp__tick_cb(uv_timer_t *t)
{
    sp_daemon *d = t->data;
    uv_update_time(d->loop);
    uint64_t now = uv_now(d->loop);
    d->loop_lag_ms = now > d->tick_due_ms ? now - d->tick_due_ms : 0;
    d->tick_due_ms = now + 100;
}

static int sp__load_config(sp_config *cfg, const char *path, char **sets, int n_sets,
                           sp_tokens *tokens);

static void sp__redis_ready(sp_redis *r)
{
    sp_pipeline_on_redis_ready(r->d);
    sp_daemon_check_progress(r->d);
}

static void sp__signal_cb(uv_signal_t *s, int signum)
{
    sp_daemon *d = s->data;
    if (signum == SIGHUP) {
        struct timespec mono;
        clock_gettime(CLOCK_MONOTONIC, &mono);
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                   (unsigned long long)mono.tv_sec * 1000000ULL +
                       (unsigned long long)mono.tv_nsec / 1000ULL);
        sp_config fresh;
        sp_tokens tokens;
        sp_config_init(&fresh);
        if (sp__load_config(&fresh, d->config_path, d->sets, d->n_sets, &tokens) != 0) {
            sp_error("daemon", "reload refused, keeping the running config:\n%s",
                     fresh.errors);
        } else {
            d->cfg.min_velocity = fresh.min_velocity;
            d->cfg.min_z = fresh.min_z;
            d->cfg.ratio_rising = fresh.ratio_rising;
            d->cfg.ratio_surging = fresh.ratio_surging;
            d->cfg.ratio_viral = fresh.ratio_viral;
            d->cfg.baseline_half_life_min = fresh.baseline_half_life_min;
            d->cfg.baseline_floor = fresh.baseline_floor;
            d->cfg.cooldown_min = fresh.cooldown_min;
            d->cfg.send_resolved = fresh.send_resolved;
            sp_log_configure(fresh.log_level, fresh.log_format);
            int webhooks = fresh.n_webhooks;
            sp_alerts_reload(d, &fresh);
            /* The tokens file was judged with the rest: it is good. */
            sp_tokens_free(&d->tokens);
            d->tokens = tokens;
            free(d->cfg.http_tokens_file);
            d->cfg.http_tokens_file = sp_xstrdup(fresh.http_tokens_file);
            sp_info("daemon", "reloaded [momentum], [webhook.*] and [log]: min_velocity=%g "
                    "min_z=%g ratio_rising=%g ratio_surging=%g ratio_viral=%g cooldown_min=%lld "
                    "webhooks=%d log.level=%s tokens=%zu", d->cfg.min_velocity, d->cfg.min_z,
                    d->cfg.ratio_rising, d->cfg.ratio_surging, d->cfg.ratio_viral,
                    (long long)d->cfg.cooldown_min, webhooks, fresh.log_level, d->tokens.n);
        }
        sp_config_free(&fresh);
        sd_notify(0, "READY=1\nSTATUS=consuming (reloaded)");
        return;
    }
    if (d->stopping) {
        sp_warn("daemon", "second signal: stopping now");
        d->stop_started_ms = 0; /* past the deadline */
        sp_daemon_check_progress(d);
        return;
    }
    sp_info("daemon", "signal %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sp_daemon_stop(d, 0);
}

/* ---- command line ---- */

/* Loads the config, --set overrides and the tokens file it names (into
 * *tokens, empty without one; freed on error). Returns the error count. */
static int sp__load_config(sp_config *cfg, const char *path, char **sets, int n_sets,
                           sp_tokens *tokens)
{
    if (path != NULL)
        sp_conffile_load(cfg, path);
    for (int i = 0; i < n_sets; i++) {
        char *section, *key, *value;
        if (sp_config_split_override(sets[i], &section, &key, &value) != 0) {
            sp_config_error(cfg, "--set", i + 1,
                            "\"%s\": expected section.key=value", sets[i]);
            continue;
        }
        sp_config_set(cfg, "--set", i + 1, i + 1, section, key, value);
        free(section);
        free(key);
        free(value);
    }
    sp_config_validate(cfg, path ? path : "--set");
    /* The tokens file is part of the config: --check-config judges it. */
    tokens->v = NULL;
    tokens->n = 0;
    char *errors = NULL;
    if (cfg->http_tokens_file[0] != '\0' &&
        sp_tokens_load(tokens, cfg->http_tokens_file, &errors) != 0) {
        char *save = NULL;
        for (char *line = strtok_r(errors, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            sp_config_error(cfg, line, 0, "in [http] tokens_file");
        free(errors);
    }
    /* librdkafka judges its own properties. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 0; i < cfg->n_rdkafka; i++) {
        char e[512];
        if (rd_kafka_conf_set(conf, cfg->rdkafka[i].key, cfg->rdkafka[i].value, e,
                              sizeof(e)) != RD_KAFKA_CONF_OK)
            sp_config_error(cfg, cfg->rdkafka[i].line ? (path ? path : "--set") : "--set",
                            cfg->rdkafka[i].line, "[kafka] rdkafka.%s: %s",
                            cfg->rdkafka[i].key, e);
    }
    rd_kafka_conf_destroy(conf);
    if (cfg->n_errors > 0)
        sp_tokens_free(tokens);
    return cfg->n_errors;
}

static void sp__usage(FILE *f)
{
    fprintf(f,
            "Usage: sharepulsed [OPTIONS]\n"
            "\n"
            "Consumes engagement events from Kafka, keeps per-video counters in\n"
            "Redis exactly once, and flags share momentum.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE       INI config file (default: $SHAREPULSE_CONFIG,\n"
            "                          else built-in defaults)\n"
            "  --set SECTION.KEY=VALUE override a config key (repeatable);\n"
            "                          webhook.NAME is one section\n"
            "  --drain                 consume up to the end offsets seen at start,\n"
            "                          flush, commit and exit 0\n"
            "  --check-config          validate the config and exit (0, or 2 with\n"
            "                          every error)\n"
            "  --dump-config           print the effective config, secrets masked\n"
            "  --log-format text|json  log record format (overrides [log] format)\n"
            "  --version               print the version and exit\n"
            "  -h, --help              print this help and exit\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads [momentum], [webhook.*]\n"
            "and [log]. Exit status: 0 done, 1 runtime failure, 2 bad usage or\n"
            "config.\n");
}

int main(int argc, char **argv)
{
    enum { OPT_SET = 256, OPT_DRAIN, OPT_CHECK, OPT_DUMP, OPT_LOGFMT, OPT_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, OPT_SET},
        {"drain", no_argument, NULL, OPT_DRAIN},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"dump-config", no_argument, NULL, OPT_DUMP},
        {"log-format", required_argument, NULL, OPT_LOGFMT},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = getenv("SHAREPULSE_CONFIG");
    const char *log_format = NULL;
    int drain = 0, check = 0, dump = 0, c;

    char **sets = sp_xcalloc((size_t)argc, sizeof(char *));
    int n_sets = 0;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case OPT_SET: sets[n_sets++] = optarg; break;
        case OPT_DRAIN: drain = 1; break;
        case OPT_CHECK: check = 1; break;
        case OPT_DUMP: dump = 1; break;
        case OPT_LOGFMT: log_format = optarg; break;
        case OPT_VERSION:
            printf("sharepulsed %s (librdkafka %s, libuv %s)\n", SP_VERSION,
                   rd_kafka_version_str(), uv_version_string());
            free(sets);
            return 0;
        case 'h': sp__usage(stdout); free(sets); return 0;
        default: sp__usage(stderr); free(sets); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sharepulsed: unexpected argument \"%s\"\n", argv[optind]);
        free(sets);
        return 2;
    }
    if (path != NULL && *path == '\0')
        path = NULL;

    static sp_daemon daemon_;
    sp_daemon *d = &daemon_;
    sp_config_init(&d->cfg);
    d->config_path = path;
    d->drain = drain;
    d->sets = sets;
    d->n_sets = n_sets;
    if (sp__load_config(&d->cfg, path, sets, n_sets, &d->tokens) != 0) {
        fprintf(stderr, "%s", d->cfg.errors);
        fprintf(stderr, "sharepulsed: %d config error(s)\n", d->cfg.n_errors);
        sp_config_free(&d->cfg);
        free(sets);
        return 2;
    }
    if (log_format != NULL && strcmp(log_format, "text") != 0 &&
        strcmp(log_format, "json") != 0) {
        fprintf(stderr, "sharepulsed: --log-format: \"%s\" (allowed: text, json)\n",
                log_format);
        sp_config_free(&d->cfg);
        sp_tokens_free(&d->tokens);
        free(sets);
        return 2;
    }
    sp_log_configure(d->cfg.log_level, log_format ? log_format : d->cfg.log_format);
    if (check || dump) {
        if (dump) {
            char *s = sp_config_dump(&d->cfg);
            fputs(s, stdout);
            free(s);
        } else {
            printf("%s: ok\n", path ? path : "(defaults)");
        }
        sp_config_free(&d->cfg);
        sp_tokens_free(&d->tokens);
        free(sets);
        return 0;
    }

    sp_jsonarena_install();
    uv_loop_t loop;
    uv_loop_init(&loop);
    d->loop = &loop;
    uv_timer_init(&loop, &d->stop_timer);
    uv_timer_init(&loop, &d->flush_timer);
    uv_timer_init(&loop, &d->stats_timer);
    uv_timer_init(&loop, &d->watchdog_timer);
    uv_timer_init(&loop, &d->tick_timer);
    d->tick_timer.data = d;
    d->stop_timer.data = d->flush_timer.data = d->stats_timer.data = d;
    d->watchdog_timer.data = d;
    uv_signal_init(&loop, &d->sig_term);
    uv_signal_init(&loop, &d->sig_int);
    uv_signal_init(&loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, sp__signal_cb, SIGTERM);
    uv_signal_start(&d->sig_int, sp__signal_cb, SIGINT);
    uv_signal_start(&d->sig_hup, sp__signal_cb, SIGHUP);
    signal(SIGPIPE, SIG_IGN);

    sp_info("daemon", "starting version=%s brokers=%s topics=%s group=%s redis=%s:%lld drain=%d",
            SP_VERSION, d->cfg.kafka_brokers, d->cfg.kafka_topics, d->cfg.kafka_group,
            d->cfg.redis_unix_socket[0] ? d->cfg.redis_unix_socket : d->cfg.redis_host,
            (long long)d->cfg.redis_port, drain);

    char errstr[4096];
    d->redis.on_ready = sp__redis_ready;
    sp_redis_start(d, &d->redis, "redis", SP_REDIS_PIPELINE);
    if (sp_http_start(d, errstr, sizeof(errstr)) != 0 ||
        sp_alerts_start(d, errstr, sizeof(errstr)) != 0 ||
        sp_kafka_start(d, errstr, sizeof(errstr)) != 0) {
        sp_error("daemon", "%s", errstr);
        d->exit_code = 1;
        d->finishing = 1;
        uv_timer_start(&d->stop_timer, sp__finish_cb, 0, 0);
    } else {
        uv_timer_start(&d->flush_timer, sp__flush_cb, (uint64_t)d->cfg.flush_interval_ms,
                       (uint64_t)d->cfg.flush_interval_ms);
        uv_timer_start(&d->stats_timer, sp__stats_cb, 10000, 10000);
        d->tick_due_ms = uv_now(&loop) + 100;
        uv_timer_start(&d->tick_timer, sp__tick_cb, 100, 100);
        uint64_t wd_usec;
        if (sd_watchdog_enabled(0, &wd_usec) > 0)
            uv_timer_start(&d->watchdog_timer, sp__watchdog_cb, wd_usec / 2000,
                           wd_usec / 2000);
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc != 0) {
        /* A handle outlived the loop: a bug, and a failure for the tests. */
        sp_error("daemon", "BUG: uv_loop_close: %s", uv_strerror(rc));
        d->exit_code = 1;
    }
    sp_pipeline_free(d);
    sp_jsonarena_uninstall();
    int exit_code = d->exit_code;
    sp_config_free(&d->cfg);
    sp_tokens_free(&d->tokens);
    free(sets);
    return exit_code;
}
