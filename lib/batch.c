/* batch.c - see batch.h. */
#include "batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Strings of a batch live in an arena freed all at once on reset. */
typedef struct sp__chunk {
    struct sp__chunk *next;
    size_t used, cap;
    char data[];
} sp__chunk;

typedef struct {
    char cc[3];
    int64_t n;
} sp__region;

typedef struct {
    const char *name;
    int64_t n;
} sp__platform;

typedef struct {
    const char *id;
    size_t id_len;
    const char *creator;       /* latest creator_id seen, or NULL */
    int64_t count[SP_EV__COUNT];
    int64_t watch_ms;
    int64_t event_ms;
    int64_t share_types[SP_SHARE__COUNT];
    int64_t ages[SP_AGE__COUNT];
    sp__region *regions;
    size_t n_regions;
    sp__platform *platforms;
    size_t n_platforms;
    const char **users;        /* viewers, for the reach HyperLogLog */
    size_t n_users, cap_users;
    const char *sharers[SP_SHARERS_MAX]; /* ring of the newest entries */
    size_t n_sharers;                    /* total added; ring index = n % MAX */
} sp__video;

typedef struct {
    const char *id;
    size_t id_len;
    int64_t follows;
} sp__creator;

struct sp_batch {
    sp__chunk *chunks;
    size_t arena_bytes;
    sp_map video_map, creator_map;
    sp__video *videos;
    size_t n_videos, cap_videos;
    sp__creator *creators;
    size_t n_creators, cap_creators;
    uint64_t events, bad;
};

static char *sp__arena_alloc(sp_batch *b, size_t n)
{
    sp__chunk *c = b->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 64 * 1024 ? n : 64 * 1024;
        c = sp_xmalloc(sizeof(*c) + cap);
        c->next = b->chunks;
        c->used = 0;
        c->cap = cap;
        b->chunks = c;
        b->arena_bytes += cap;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

static const char *sp__arena_str(sp_batch *b, const char *s, size_t n)
{
    char *p = sp__arena_alloc(b, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

sp_batch *sp_batch_new(void)
{
    sp_batch *b = sp_xcalloc(1, sizeof(*b));
    sp_map_init(&b->video_map);
    sp_map_init(&b->creator_map);
    return b;
}

static void sp__batch_clear(sp_batch *b, int keep)
{
    for (size_t i = 0; i < b->n_videos; i++) {
        free(b->videos[i].regions);
        free(b->videos[i].platforms);
        free(b->videos[i].users);
    }
    sp__chunk *c = b->chunks;
    /* Keep the newest chunk for reuse; free the rest. */
    while (c != NULL) {
        sp__chunk *next = c->next;
        if (keep && c == b->chunks) {
            c->used = 0;
            c->next = NULL;
        } else {
            free(c);
        }
        c = next;
    }
    if (!keep)
        b->chunks = NULL;
    b->arena_bytes = b->chunks ? b->chunks->cap : 0;
    b->n_videos = b->n_creators = 0;
    b->events = b->bad = 0;
    sp_map_clear(&b->video_map);
    sp_map_clear(&b->creator_map);
}

void sp_batch_reset(sp_batch *b)
{
    sp__batch_clear(b, 1);
}

void sp_batch_free(sp_batch *b)
{
    if (b == NULL)
        return;
    sp__batch_clear(b, 0);
    sp_map_free(&b->video_map);
    sp_map_free(&b->creator_map);
    free(b->videos);
    free(b->creators);
    free(b);
}

static sp__video *sp__video_get(sp_batch *b, const char *id)
{
    size_t len = strlen(id);
    long i = sp_map_get(&b->video_map, id, len);
    if (i >= 0)
        return &b->videos[i];
    if (b->n_videos == b->cap_videos) {
        b->cap_videos = b->cap_videos ? b->cap_videos * 2 : 256;
        b->videos = sp_xrealloc(b->videos, b->cap_videos * sizeof(*b->videos));
    }
    sp__video *v = &b->videos[b->n_videos];
    memset(v, 0, sizeof(*v));
    v->id = sp__arena_str(b, id, len);
    v->id_len = len;
    v->event_ms = -1;
    sp_map_put(&b->video_map, v->id, len, (long)b->n_videos);
    b->n_videos++;
    return v;
}

static sp__creator *sp__creator_get(sp_batch *b, const char *id)
{
    size_t len = strlen(id);
    long i = sp_map_get(&b->creator_map, id, len);
    if (i >= 0)
        return &b->creators[i];
    if (b->n_creators == b->cap_creators) {
        b->cap_creators = b->cap_creators ? b->cap_creators * 2 : 64;
        b->creators =
            sp_xrealloc(b->creators, b->cap_creators * sizeof(*b->creators));
    }
    sp__creator *c = &b->creators[b->n_creators];
    memset(c, 0, sizeof(*c));
    c->id = sp__arena_str(b, id, len);
    c->id_len = len;
    sp_map_put(&b->creator_map, c->id, len, (long)b->n_creators);
    b->n_creators++;
    return c;
}

static void sp__video_add_region(sp__video *v, const char *cc)
{
    for (size_t i = 0; i < v->n_regions; i++)
        if (memcmp(v->regions[i].cc, cc, 2) == 0) {
            v->regions[i].n++;
            return;
        }
    v->regions =
        sp_xrealloc(v->regions, (v->n_regions + 1) * sizeof(*v->regions));
    memcpy(v->regions[v->n_regions].cc, cc, 3);
    v->regions[v->n_regions++].n = 1;
}

static void sp__video_add_platform(sp_batch *b, sp__video *v, const char *p)
{
    for (size_t i = 0; i < v->n_platforms; i++)
        if (strcmp(v->platforms[i].name, p) == 0) {
            v->platforms[i].n++;
            return;
        }
    v->platforms = sp_xrealloc(v->platforms,
                               (v->n_platforms + 1) * sizeof(*v->platforms));
    v->platforms[v->n_platforms].name = sp__arena_str(b, p, strlen(p));
    v->platforms[v->n_platforms++].n = 1;
}

static void sp__video_add_sharer(sp_batch *b, sp__video *v,
                                 const sp_event *ev)
{
    sp_buf j;
    char tail[64];
    sp_buf_init(&j);
    sp_buf_appends(&j, "{\"user_id\":");
    sp_buf_append_json_str(&j, ev->user_id, strlen(ev->user_id));
    sp_buf_appendf(&j, ",\"share_type\":\"%s\",\"ts\":",
                   sp_share_type_names[ev->share_type]);
    snprintf(tail, sizeof(tail), "%" PRId64 "}", ev->ts_ms);
    sp_buf_appends(&j, tail);
    v->sharers[v->n_sharers % SP_SHARERS_MAX] = sp__arena_str(b, j.data, j.len);
    v->n_sharers++;
    sp_buf_free(&j);
}

void sp_batch_add(sp_batch *b, const sp_event *ev)
{
    b->events++;
    if (ev->type == SP_EV_FOLLOW) {
        sp__creator_get(b, ev->creator_id)->follows++;
        return;
    }
    sp__video *v = sp__video_get(b, ev->video_id);
    v->count[ev->type]++;
    if (ev->ts_ms > v->event_ms)
        v->event_ms = ev->ts_ms;
    if (ev->creator_id[0] != '\0' &&
        (v->creator == NULL || strcmp(v->creator, ev->creator_id) != 0))
        v->creator = sp__arena_str(b, ev->creator_id, strlen(ev->creator_id));

    switch (ev->type) {
    case SP_EV_VIEW:
        if (ev->watch_ms > 0)
            v->watch_ms += ev->watch_ms;
        if (ev->region[0] != '\0')
            sp__video_add_region(v, ev->region);
        if (ev->age_bucket >= 0)
            v->ages[ev->age_bucket]++;
        if (ev->user_id[0] != '\0') {
            if (v->n_users == v->cap_users) {
                v->cap_users = v->cap_users ? v->cap_users * 2 : 8;
                v->users =
                    sp_xrealloc(v->users, v->cap_users * sizeof(*v->users));
            }
            v->users[v->n_users++] =
                sp__arena_str(b, ev->user_id, strlen(ev->user_id));
        }
        break;
    case SP_EV_SHARE:
        v->share_types[ev->share_type]++;
        if (ev->share_type == SP_SHARE_EXTERNAL && ev->platform[0] != '\0')
            sp__video_add_platform(b, v, ev->platform);
        /* Privacy (SPEC 3): only public share types keep the sharer. */
        if (sp_share_type_is_public(ev->share_type) && ev->user_id[0] != '\0')
            sp__video_add_sharer(b, v, ev);
        break;
    default:
        break;
    }
}

void sp_batch_add_bad(sp_batch *b)
{
    b->bad++;
}

uint64_t sp_batch_events(const sp_batch *b)
{
    return b->events;
}

uint64_t sp_batch_bad(const sp_batch *b)
{
    return b->bad;
}

size_t sp_batch_videos(const sp_batch *b)
{
    return b->n_videos;
}

size_t sp_batch_bytes(const sp_batch *b)
{
    size_t n = b->arena_bytes + b->cap_videos * sizeof(sp__video) +
               b->cap_creators * sizeof(sp__creator);
    for (size_t i = 0; i < b->n_videos; i++)
        n += b->videos[i].cap_users * sizeof(char *);
    return n;
}

/* ---- encoding ---- */

/* Field/delta pairs of the video hash, counted first then written. */
static size_t sp__video_hash_pairs(const sp__video *v, sp_resp *r)
{
    static const char *const totals[SP_EV__COUNT] = {"views", "likes",
                                                     "comments", "shares",
                                                     NULL};
    size_t n = 0;
    for (int t = 0; t < SP_EV__COUNT; t++)
        if (totals[t] != NULL && v->count[t] != 0) {
            if (r) {
                sp_resp_bulks(r, totals[t]);
                sp_resp_bulki(r, v->count[t]);
            }
            n++;
        }
    if (v->watch_ms != 0) {
        if (r) {
            sp_resp_bulks(r, "watch_ms");
            sp_resp_bulki(r, v->watch_ms);
        }
        n++;
    }
    for (int s = 0; s < SP_SHARE__COUNT; s++)
        if (v->share_types[s] != 0) {
            if (r) {
                char f[32];
                snprintf(f, sizeof(f), "shares:%s", sp_share_type_names[s]);
                sp_resp_bulks(r, f);
                sp_resp_bulki(r, v->share_types[s]);
            }
            n++;
        }
    return n;
}

static size_t sp__video_demo_pairs(const sp__video *v, sp_resp *r)
{
    size_t n = 0;
    for (size_t i = 0; i < v->n_regions; i++, n++)
        if (r) {
            char f[16];
            snprintf(f, sizeof(f), "region:%s", v->regions[i].cc);
            sp_resp_bulks(r, f);
            sp_resp_bulki(r, v->regions[i].n);
        }
    for (int a = 0; a < SP_AGE__COUNT; a++)
        if (v->ages[a] != 0) {
            if (r) {
                char f[16];
                snprintf(f, sizeof(f), "age:%s", sp_age_bucket_names[a]);
                sp_resp_bulks(r, f);
                sp_resp_bulki(r, v->ages[a]);
            }
            n++;
        }
    return n;
}

void sp_batch_encode(const sp_batch *b, const sp_batch_target *t,
                     const char *sha, sp_resp *r)
{
    if (sha != NULL) {
        sp_resp_bulks(r, "EVALSHA");
        sp_resp_bulks(r, sha);
    } else {
        sp_resp_bulks(r, "EVAL");
        sp_resp_bulks(r, sp_apply_script);
    }
    sp_resp_bulks(r, "0");

    sp_buf key;
    sp_buf_init(&key);
    sp_buf_appendf(&key, "%soffsets:{%s}", t->prefix, t->group);
    sp_resp_bulk(r, key.data, key.len);
    sp_buf_reset(&key);
    sp_buf_appendf(&key, "%s:%d", t->topic, (int)t->partition);
    sp_resp_bulk(r, key.data, key.len);
    if (t->from_offset >= 0)
        sp_resp_bulki(r, t->from_offset);
    else
        sp_resp_bulks(r, "");
    sp_resp_bulki(r, t->to_offset);
    sp_resp_bulks(r, t->prefix);
    sp_buf_reset(&key);
    sp_batch_state_key(t, &key);
    sp_resp_bulk(r, key.data, key.len);
    sp_buf_free(&key);
    if (t->from_seq > 0)
        sp_resp_bulki(r, t->from_seq);
    else
        sp_resp_bulks(r, "");
    sp_resp_bulki(r, t->from_seq + 1);
    sp_resp_bulki(r, t->clock_ms);
    sp_resp_bulki(r, t->top_n);

    for (size_t i = 0; i < b->n_videos; i++) {
        const sp__video *v = &b->videos[i];
        sp_resp_bulks(r, "v");
        sp_resp_bulk(r, v->id, v->id_len);
        sp_resp_bulks(r, v->creator ? v->creator : "");
        sp_resp_bulki(r, v->event_ms);
        sp_resp_bulki(r, (int64_t)sp__video_hash_pairs(v, NULL));
        sp__video_hash_pairs(v, r);
        sp_resp_bulki(r, (int64_t)sp__video_demo_pairs(v, NULL));
        sp__video_demo_pairs(v, r);
        sp_resp_bulki(r, (int64_t)v->n_users);
        for (size_t u = 0; u < v->n_users; u++)
            sp_resp_bulks(r, v->users[u]);
        /* Sharers oldest first: the script LPUSHes, so the newest ends up
         * at the head. Only the newest SP_SHARERS_MAX matter. */
        size_t ns = v->n_sharers < SP_SHARERS_MAX ? v->n_sharers
                                                  : SP_SHARERS_MAX;
        sp_resp_bulki(r, (int64_t)ns);
        for (size_t k = v->n_sharers - ns; k < v->n_sharers; k++)
            sp_resp_bulks(r, v->sharers[k % SP_SHARERS_MAX]);
        sp_resp_bulki(r, (int64_t)v->n_platforms);
        for (size_t p = 0; p < v->n_platforms; p++) {
            sp_resp_bulks(r, v->platforms[p].name);
            sp_resp_bulki(r, v->platforms[p].n);
        }
    }
    for (size_t i = 0; i < b->n_creators; i++) {
        sp_resp_bulks(r, "c");
        sp_resp_bulk(r, b->creators[i].id, b->creators[i].id_len);
        sp_resp_bulki(r, b->creators[i].follows);
    }
}

void sp_batch_state_key(const sp_batch_target *t, sp_buf *out)
{
    sp_buf_appendf(out, "%swin:{%s}:%s:%d", t->prefix, t->group, t->topic, (int)t->partition);
}
