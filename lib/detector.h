/*
 * detector.h - share momentum of one video (SPEC 4), pure.
 *
 * velocity v = S / 5 with S the shares of the last 5 minutes; baseline b =
 * an exponentially weighted mean of per-minute shares (half-life
 * baseline_half_life_min) over the minutes that ended at least 5 minutes
 * ago, floored at baseline_floor; E = 5 b; z = (S - E) / sqrt(E). The mean
 * starts from the video's first minute and is bias-corrected (divided by
 * 1 - alpha^minutes, as Adam does), so a video seen for 20 minutes has a
 * usable baseline rather than a fraction of one. The level
 * is rising / surging / viral when v >= min_velocity, z >= min_z and v / b
 * reaches ratio_rising / ratio_surging / ratio_viral; quiet otherwise.
 *
 * The state machine is stepped at points of event time (the window code
 * uses every 2 s bucket edge), so its alerts are a function of the log:
 *  - a momentum alert fires when the video enters a level (from a lower one)
 *    that is above the highest level it alerted at within cooldown_min;
 *  - after an alert, 10 minutes of quiet fire one resolved alert (if
 *    send_resolved).
 */
#ifndef SP_DETECTOR_H
#define SP_DETECTOR_H

#include <stdint.h>

#include "config.h"

typedef enum {
    SP_LEVEL_QUIET,
    SP_LEVEL_RISING,
    SP_LEVEL_SURGING,
    SP_LEVEL_VIRAL,
    SP_LEVEL__COUNT
} sp_level;

extern const char *const sp_level_names[SP_LEVEL__COUNT];

#define SP_RESOLVE_QUIET_MS (10 * 60000LL)

/* One video's durable detector state. Zeroed = new. */
typedef struct sp_detector {
    double baseline;        /* EWMA of per-minute shares, from 0 */
    int64_t folded_upto;    /* minutes (index) before this are in baseline */
    int64_t minutes;        /* minutes folded, for the bias correction */
    int64_t level;          /* at the last step */
    int64_t alerted_level;  /* highest level alerted in this episode */
    int64_t alerted_at;     /* event time of that alert, ms */
    int64_t quiet_since;    /* first quiet step after an alert; 0: none */
    int64_t resolved;       /* the episode's resolved alert was sent */
} sp_detector;

/* What one step saw. */
typedef struct sp_signal {
    int64_t shares_5m;
    double velocity, baseline, ratio, z; /* baseline floored */
    sp_level level;
} sp_signal;

typedef enum { SP_ALERT_NONE, SP_ALERT_MOMENTUM, SP_ALERT_RESOLVED } sp_alert_kind;

/* Folds one ended minute's shares into the baseline; minutes must come in
 * order, and empty minutes may be skipped (they decay it). */
void sp_detector_fold(const sp_config *cfg, sp_detector *st, int64_t minute,
                      int64_t shares);

/* The signal for shares_5m against the current baseline. */
void sp_detector_signal(const sp_config *cfg, const sp_detector *st,
                        int64_t shares_5m, sp_signal *out);

/* Steps the state machine at event time at_ms with sig. Returns the alert
 * that fires there, if any. */
sp_alert_kind sp_detector_step(const sp_config *cfg, sp_detector *st,
                               int64_t at_ms, const sp_signal *sig);

/* True while an alert episode waits for its resolution (the window code
 * must step the video until then even without new events). */
int sp_detector_open(const sp_config *cfg, const sp_detector *st);

#endif
