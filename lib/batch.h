/*
 * batch.h - one partition's pre-aggregated events, and the Redis unit that
 * applies them exactly once.
 *
 * Events of one Kafka partition are added to a batch as they are consumed;
 * the batch keeps per-video and per-creator deltas, not the events. When
 * flushed, sp_batch_encode() writes the arguments of one call of the apply
 * script (sp_apply_script). The script checks that the partition's stored
 * offset in the offsets hash equals the batch's starting offset, applies
 * every delta, and stores the batch's end offset, all atomically. Sending
 * the same encoded batch twice is harmless: the second call answers "dup".
 *
 * A batch is not thread-safe; the daemon uses it on the loop thread only.
 */
#ifndef SP_BATCH_H
#define SP_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "map.h"
#include "sp_common.h"

#define SP_SHARERS_MAX 100      /* length of :sharers lists */
#define SP_PLATFORMS_MAX 16     /* distinct shares:ext:<platform> per video */

typedef struct sp_batch sp_batch;

/* Creates an empty batch. Free with sp_batch_free(). */
sp_batch *sp_batch_new(void);
void sp_batch_free(sp_batch *b); /* NULL is a no-op */

/* Empties the batch for reuse, keeping its storage. */
void sp_batch_reset(sp_batch *b);

/* Adds one valid event. ev is borrowed. */
void sp_batch_add(sp_batch *b, const sp_event *ev);

/* Counts one bad message (it only advances the offset). */
void sp_batch_add_bad(sp_batch *b);

/* Number of good events / bad messages / distinct videos in the batch. */
uint64_t sp_batch_events(const sp_batch *b);
uint64_t sp_batch_bad(const sp_batch *b);
size_t sp_batch_videos(const sp_batch *b);

/* Approximate heap bytes the batch holds (for the memory cap). */
size_t sp_batch_bytes(const sp_batch *b);

/* Where the apply script finds and stores the partition's position. */
typedef struct sp_batch_target {
    const char *prefix;   /* key prefix, e.g. "sp:" */
    const char *group;    /* consumer group, for sp:offsets:{GROUP} */
    const char *topic;
    int32_t partition;
    int64_t from_offset;  /* offset stored now; -1 = none stored yet */
    int64_t to_offset;    /* next offset to consume after this batch */
    int64_t from_seq;     /* flush sequence stored now; 0 = none yet */
    int64_t clock_ms;     /* the clock T the window records were computed at */
    int64_t top_n;        /* length of the leaderboards */
} sp_batch_target;

/*
 * Appends to r the command name and header of one
 *   EVALSHA <sha> 0 <args...>     (or EVAL <script> 0 ... if sha is NULL)
 * call of the apply script, then the batch's records. Window records
 * (sp_win_encode) and the updates record may follow; sp_resp_finish()
 * completes the command.
 *
 * The script fences on two markers, both advanced by every flush: the
 * partition's offset in sp:offsets:{GROUP} and its flush sequence in the
 * window state hash (sp_batch_state_key). The sequence lets a flush that
 * only carries window decay (no new message, same offset) be fenced too.
 * The reply is an array whose first element is "ok" (applied), "dup"
 * (already applied earlier) or "fenced" (the stored offset, second
 * element, or sequence is not the batch's starting one).
 */
void sp_batch_encode(const sp_batch *b, const sp_batch_target *t,
                     const char *sha, sp_resp *r);

/* Appends the name of the partition's window state hash,
 * <prefix>win:{<group>}:<topic>:<partition>. */
void sp_batch_state_key(const sp_batch_target *t, sp_buf *out);

/* The apply script's Lua source. */
extern const char sp_apply_script[];

#endif
