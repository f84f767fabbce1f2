/* detector.c - see detector.h. */
#include "detector.h"

#include <math.h>

const char *const sp_level_names[SP_LEVEL__COUNT] = {"quiet", "rising", "surging", "viral"};

void sp_detector_fold(const sp_config *cfg, sp_detector *st, int64_t minute, int64_t shares)
{
    if (st->folded_upto == 0)
        st->folded_upto = minute;
    if (minute < st->folded_upto)
        return; /* already folded: a late event */
    double alpha = pow(0.5, 1.0 / cfg->baseline_half_life_min);
    /* Quiet minutes one at a time: the same arithmetic whether the minutes
     * are folded as they pass or many at once, so alerts do not depend on
     * when the daemon looked. */
    for (int64_t m = st->folded_upto; m < minute; m++)
        st->baseline *= alpha;
    st->baseline = alpha * st->baseline + (1.0 - alpha) * (double)shares;
    st->minutes += minute - st->folded_upto + 1;
    st->folded_upto = minute + 1;
}

/* The usual shares per minute: the bias-corrected mean, unfloored. */
static double sp__usual(const sp_config *cfg, const sp_detector *st)
{
    if (st->minutes <= 0)
        return 0;
    double alpha = pow(0.5, 1.0 / cfg->baseline_half_life_min);
    return st->baseline / (1.0 - pow(alpha, (double)st->minutes));
}

void sp_detector_signal(const sp_config *cfg, const sp_detector *st, int64_t shares_5m,
                        sp_signal *out)
{
    double usual = sp__usual(cfg, st);
    double b = usual > cfg->baseline_floor ? usual : cfg->baseline_floor;
    double s = (double)shares_5m, e = 5.0 * b;
    out->shares_5m = shares_5m;
    out->velocity = s / 5.0;
    out->baseline = b;
    out->ratio = out->velocity / b;
    out->z = (s - e) / sqrt(e);
    out->level = SP_LEVEL_QUIET;
    if (out->velocity >= cfg->min_velocity && out->z >= cfg->min_z) {
        if (out->ratio >= cfg->ratio_viral)
            out->level = SP_LEVEL_VIRAL;
        else if (out->ratio >= cfg->ratio_surging)
            out->level = SP_LEVEL_SURGING;
        else if (out->ratio >= cfg->ratio_rising)
            out->level = SP_LEVEL_RISING;
    }
}

sp_alert_kind sp_detector_step(const sp_config *cfg, sp_detector *st, int64_t at_ms,
                               const sp_signal *sig)
{
    int64_t prev = st->level;
    st->level = sig->level;
    if (sig->level != SP_LEVEL_QUIET) {
        st->quiet_since = 0;
        int64_t highest = st->alerted_level;
        /* The last alert is older than the cooldown; never at its own edge
         * (the live edge evaluates an edge again as its shares come in). */
        if (at_ms > st->alerted_at && at_ms - st->alerted_at >= cfg->cooldown_min * 60000)
            highest = SP_LEVEL_QUIET;
        if (sig->level > prev && sig->level > highest) {
            st->alerted_level = sig->level;
            st->alerted_at = at_ms;
            st->resolved = 0;
            return SP_ALERT_MOMENTUM;
        }
        return SP_ALERT_NONE;
    }
    if (st->alerted_level == SP_LEVEL_QUIET || st->resolved)
        return SP_ALERT_NONE;
    if (st->quiet_since == 0) {
        st->quiet_since = at_ms;
        return SP_ALERT_NONE;
    }
    if (at_ms - st->quiet_since < SP_RESOLVE_QUIET_MS)
        return SP_ALERT_NONE;
    st->resolved = 1;
    return cfg->send_resolved ? SP_ALERT_RESOLVED : SP_ALERT_NONE;
}

int sp_detector_open(const sp_config *cfg, const sp_detector *st)
{
    (void)cfg;
    return st->alerted_level != SP_LEVEL_QUIET && !st->resolved;
}
