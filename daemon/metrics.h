/*
 * metrics.h - the daemon's counters in the Prometheus text format
 * (version 0.0.4), and its health as /healthz reports it.
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdint.h>

#include "sp_common.h"

#define SP_HIST_BUCKETS 12

typedef struct sp_histogram {
    uint64_t counts[SP_HIST_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} sp_histogram;

extern const double sp_flush_buckets[SP_HIST_BUCKETS]; /* seconds; last +Inf */

void sp_histogram_observe(sp_histogram *h, double value);

struct sp_daemon;

/* Appends the whole /metrics page to out. */
void sp_metrics_render(struct sp_daemon *d, sp_buf *out);

/* Fills out with the /healthz JSON; returns 1 when healthy. */
int sp_health_check(struct sp_daemon *d, sp_buf *out);

#endif
