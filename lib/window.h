/*
 * window.h - one partition's rolling windows, by event time (SPEC 2, 3).
 *
 * Events are counted in buckets ("cells") of three granularities:
 *
 *   level   bucket   kept     serves
 *   fine      2 s    5 min    1m (30 buckets), 5m (150 buckets)
 *   minute    1 min  1 h      1h (60 buckets), the per-minute series
 *   coarse   30 min  24 h     24h (48 buckets)
 *
 * At clock T, a window of n buckets of g ms counts every bucket whose index
 * is at least floor(T / g) - n + 1: the current bucket and the n - 1 before
 * it, plus anything newer than T. An event therefore counts as soon as it
 * is taken in, and leaves a window at most one bucket before T - W reaches
 * it (never after). An event older than a level keeps is not counted there.
 *
 * Entities are videos (views, likes, comments, shares in all windows; the
 * series), creators (follows, 24h) and hashtags (shares, 1h). Each keeps
 * the values it last wrote to Redis. sp_win_encode() writes, for every
 * entity that changed, the difference between the values now and those
 * written: Redis adds them up (HINCRBY-like), so windows stay right when
 * one video's events arrive on several partitions. It also writes each
 * changed entity's state, which sp_win_load() reads back on assignment.
 *
 * A min-heap on each entity's next change (the moment its oldest bucket
 * leaves a window, or a minute of its series ends) makes the decay of idle
 * entities cost nothing until they are due. Pure: the caller passes T.
 */
#ifndef SP_WINDOW_H
#define SP_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "sp_common.h"

/* A video's window fields, metric-major: views_1m views_5m views_1h
 * views_24h likes_1m ... shares_24h. */
#define SP_WIN_FIELDS 16
extern const char *const sp_win_field_names[SP_WIN_FIELDS];

#define SP_SERIES_MS 60000LL
#define SP_DAY_MS 86400000LL

typedef struct sp_win sp_win;

sp_win *sp_win_new(void);
void sp_win_free(sp_win *w); /* NULL is a no-op */

/* Counts one valid event: its video's metric, a follow's creator, a
 * share's hashtags. ev is borrowed. With cfg, a share also evaluates its
 * video's momentum at the edge closing its 2 s bucket (the live edge, see
 * window.c): an alert due there is held for the next sp_win_encode(). */
void sp_win_add(sp_win *w, const sp_event *ev, const sp_config *cfg);

/* Restores one entity from its stored state (field and value of the state
 * hash), or the newest event time taken in (field "#wm"). Returns 0, or
 * SP_EPARSE if either is not ours. */
int sp_win_load(sp_win *w, const char *field, size_t flen, const char *blob,
                size_t blen);

/* Moves the clock to clock_ms (it never goes back) and marks the entities
 * whose values change by then. */
void sp_win_advance(sp_win *w, int64_t clock_ms);
int64_t sp_win_clock(const sp_win *w); /* 0 until first advanced */

/* Entities waiting to be written, and entities held. */
size_t sp_win_dirty(const sp_win *w);

/* At most n entities whose values changed with the clock alone (no event
 * since their last write) are written per sp_win_encode(); the others wait
 * for the next one, oldest first. 0 (the default) writes them all. Those
 * an event changed are always written with the batch holding the event. */
void sp_win_set_clock_budget(sp_win *w, size_t n);
/* Clock-only entities the last sp_win_encode() left for the next. */
size_t sp_win_backlog(const sp_win *w);
size_t sp_win_entities(const sp_win *w);
/* Approximate heap bytes held. */
size_t sp_win_bytes(const sp_win *w);

/*
 * Appends the records of every entity waiting to be written to r (see
 * apply_script.c for their layout) and marks them written. Until the clock
 * is known (0) only their state is written. For every video whose values
 * changed, appends its id as a JSON string, comma-separated, to updated.
 * With cfg, also steps each video's momentum detector ([momentum]) and
 * writes its level, baseline, momentum and alerts (detector.h); NULL
 * leaves the detector out. Each alert's JSON is also appended to alerts
 * (if not NULL), one per line, for the sinks outside Redis.
 */
void sp_win_encode(sp_win *w, const sp_config *cfg, sp_resp *r, sp_buf *updated,
                   sp_buf *alerts);

/* The values a video's fields have at the current clock, as the daemon
 * counts them (its contribution). Returns 0, or -1 if the video is not
 * held. For tests and the detector. */
int sp_win_video_values(const sp_win *w, const char *video,
                        int64_t out[SP_WIN_FIELDS]);

#endif
