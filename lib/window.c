/* window.c - see window.h. */
#include "window.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>
#include <stdio.h>

#include "detector.h"
#include "map.h"

const char *const sp_win_field_names[SP_WIN_FIELDS] = {
    "views_1m",    "views_5m",    "views_1h",    "views_24h",
    "likes_1m",    "likes_5m",    "likes_1h",    "likes_24h",
    "comments_1m", "comments_5m", "comments_1h", "comments_24h",
    "shares_1m",   "shares_5m",   "shares_1h",   "shares_24h"};

enum { SP__FINE, SP__MINUTE, SP__COARSE, SP__LEVELS };
static const int64_t sp__level_ms[SP__LEVELS] = {2000, SP_SERIES_MS, 1800000};
static const int64_t sp__level_keep[SP__LEVELS] = {150, 60, 48};

/* The windows 1m 5m 1h 24h: their level and length in buckets. */
static const struct {
    int level;
    int64_t n;
} sp__windows[4] = {{SP__FINE, 30}, {SP__FINE, 150}, {SP__MINUTE, 60}, {SP__COARSE, 48}};

enum { SP__VIDEO, SP__CREATOR, SP__HASHTAG };
#define SP__METRICS 4 /* views likes comments shares; follows or shares alone */

typedef struct {
    uint32_t idx; /* bucket index: event time / bucket length */
    uint32_t n[SP__METRICS];
} sp__cell;

typedef struct {
    sp__cell *c;
    uint32_t len, cap;
} sp__cells;

typedef struct sp__ent {
    char *key;              /* "v:<video>", "c:<creator>", "h:<hashtag>" */
    size_t klen;
    int kind;
    int dirty;
    int touched;            /* an event since its last write (not the clock) */
    size_t vpos;            /* index in w->ents */
    long hpos;              /* index in w->heap, -1 when not scheduled */
    int64_t due;            /* clock at which its values change next */
    int64_t series_upto;    /* minutes before this index are in the series */
    int64_t written[SP_WIN_FIELDS];
    sp__cells lv[SP__LEVELS];
    /* videos only: share momentum */
    sp_detector det;
    int64_t det_eval;       /* last 2 s edge the detector stepped at */
    int det_active;         /* stepped at every edge (shares enough, or a level) */
    char *creator;          /* latest creator_id seen, for alerts */
    char shown[48];         /* level, baseline, momentum last written */
} sp__ent;

struct sp_win {
    sp_map map;             /* key -> sp__ent * */
    sp__ent **ents;
    size_t n_ents, cap_ents;
    sp__ent **heap;
    size_t n_heap, cap_heap;
    sp__ent **dirty;
    size_t n_dirty, cap_dirty;
    size_t clock_budget;    /* clock-only writes per encode, 0 = all */
    size_t backlog;         /* clock-only entities the last encode left */
    size_t n_cells;
    int64_t clock;
    sp_resp held;           /* alert records waiting for the next encode */
    sp_buf held_json;       /* and their JSON, one per line */
    sp_buf scratch;
    int64_t wm;             /* newest event time taken in (state "#wm") */
    int64_t wm_written;
};

/* Fields an entity kind writes: (window, metric) of each. */
static int sp__fields(int kind)
{
    return kind == SP__VIDEO ? SP_WIN_FIELDS : 1;
}

static void sp__field_spec(int kind, int f, int *win, int *metric)
{
    if (kind == SP__VIDEO) {
        *win = f % 4;
        *metric = f / 4;
    } else {
        *win = kind == SP__CREATOR ? 3 : 2; /* follows_24h, shares_1h */
        *metric = 0;
    }
}

static int64_t sp__floordiv(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Lowest bucket index a window of n buckets counts at clock. */
static int64_t sp__lower(int64_t clock, int level, int64_t n)
{
    return sp__floordiv(clock, sp__level_ms[level]) - n + 1;
}

/* ---- the heap of next changes ---- */

static void sp__heap_swap(sp_win *w, size_t a, size_t b)
{
    sp__ent *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->hpos = (long)a;
    w->heap[b]->hpos = (long)b;
}

static void sp__heap_fix(sp_win *w, size_t i)
{
    while (i > 0 && w->heap[(i - 1) / 2]->due > w->heap[i]->due) {
        sp__heap_swap(w, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->n_heap && w->heap[l]->due < w->heap[m]->due)
            m = l;
        if (r < w->n_heap && w->heap[r]->due < w->heap[m]->due)
            m = r;
        if (m == i)
            return;
        sp__heap_swap(w, i, m);
        i = m;
    }
}

static void sp__heap_remove(sp_win *w, sp__ent *e)
{
    if (e->hpos < 0)
        return;
    size_t i = (size_t)e->hpos;
    e->hpos = -1;
    if (i != --w->n_heap) {
        w->heap[i] = w->heap[w->n_heap];
        w->heap[i]->hpos = (long)i;
        sp__heap_fix(w, i);
    }
}

static void sp__schedule(sp_win *w, sp__ent *e, int64_t due)
{
    if (due == INT64_MAX) {
        sp__heap_remove(w, e);
        return;
    }
    e->due = due;
    if (e->hpos < 0) {
        if (w->n_heap == w->cap_heap) {
            w->cap_heap = w->cap_heap ? w->cap_heap * 2 : 256;
            w->heap = sp_xrealloc(w->heap, w->cap_heap * sizeof(*w->heap));
        }
        e->hpos = (long)w->n_heap;
        w->heap[w->n_heap++] = e;
    }
    sp__heap_fix(w, (size_t)e->hpos);
}

/* ---- entities ---- */

sp_win *sp_win_new(void)
{
    sp_win *w = sp_xcalloc(1, sizeof(*w));
    sp_map_init(&w->map);
    sp_resp_init(&w->held);
    sp_buf_init(&w->held_json);
    sp_buf_init(&w->scratch);
    return w;
}

static void sp__ent_free(sp__ent *e)
{
    for (int l = 0; l < SP__LEVELS; l++)
        free(e->lv[l].c);
    free(e->creator);
    free(e->key);
    free(e);
}

void sp_win_free(sp_win *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_ents; i++)
        sp__ent_free(w->ents[i]);
    sp_map_free(&w->map);
    free(w->ents);
    free(w->heap);
    free(w->dirty);
    sp_resp_free(&w->held);
    sp_buf_free(&w->held_json);
    sp_buf_free(&w->scratch);
    free(w);
}

static sp__ent *sp__ent_get(sp_win *w, int kind, const char *id, int create)
{
    char key[SP_ID_MAX + 3];
    size_t len = strlen(id);
    SP_ASSERT(len <= SP_ID_MAX);
    key[0] = kind == SP__VIDEO ? 'v' : kind == SP__CREATOR ? 'c' : 'h';
    key[1] = ':';
    memcpy(key + 2, id, len + 1);
    long v = sp_map_get(&w->map, key, len + 2);
    if (v != -1)
        return (sp__ent *)(intptr_t)v;
    if (!create)
        return NULL;
    sp__ent *e = sp_xcalloc(1, sizeof(*e));
    e->key = sp_xstrndup(key, len + 2);
    e->klen = len + 2;
    e->kind = kind;
    e->hpos = -1;
    e->vpos = w->n_ents;
    if (w->n_ents == w->cap_ents) {
        w->cap_ents = w->cap_ents ? w->cap_ents * 2 : 256;
        w->ents = sp_xrealloc(w->ents, w->cap_ents * sizeof(*w->ents));
    }
    w->ents[w->n_ents++] = e;
    sp_map_put(&w->map, e->key, e->klen, (long)(intptr_t)e);
    return e;
}

static void sp__ent_remove(sp_win *w, sp__ent *e)
{
    sp__heap_remove(w, e);
    sp_map_del(&w->map, e->key, e->klen);
    w->ents[e->vpos] = w->ents[--w->n_ents];
    w->ents[e->vpos]->vpos = e->vpos;
    for (int l = 0; l < SP__LEVELS; l++)
        w->n_cells -= e->lv[l].len;
    sp__ent_free(e);
}

static void sp__mark(sp_win *w, sp__ent *e)
{
    if (e->dirty)
        return;
    sp__heap_remove(w, e);
    e->dirty = 1;
    if (w->n_dirty == w->cap_dirty) {
        w->cap_dirty = w->cap_dirty ? w->cap_dirty * 2 : 256;
        w->dirty = sp_xrealloc(w->dirty, w->cap_dirty * sizeof(*w->dirty));
    }
    w->dirty[w->n_dirty++] = e;
}

/* The cell of bucket idx, inserted in order if new. */
static sp__cell *sp__cell_at(sp_win *w, sp__cells *cs, uint32_t idx)
{
    uint32_t i = cs->len;
    while (i > 0 && cs->c[i - 1].idx > idx) /* mostly appends */
        i--;
    if (i > 0 && cs->c[i - 1].idx == idx)
        return &cs->c[i - 1];
    if (cs->len == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 2;
        cs->c = sp_xrealloc(cs->c, cs->cap * sizeof(*cs->c));
    }
    memmove(&cs->c[i + 1], &cs->c[i], (cs->len - i) * sizeof(*cs->c));
    memset(&cs->c[i], 0, sizeof(*cs->c));
    cs->c[i].idx = idx;
    cs->len++;
    w->n_cells++;
    return &cs->c[i];
}

/* Counts one event at ts in a level, unless the level no longer keeps it. */
static int sp__count(sp_win *w, sp__ent *e, int level, int metric, int64_t ts)
{
    int64_t idx = ts / sp__level_ms[level];
    if (w->clock > 0 && idx < sp__lower(w->clock, level, sp__level_keep[level]))
        return 0;
    if (idx > UINT32_MAX)
        return 0;
    sp__cell_at(w, &e->lv[level], (uint32_t)idx)->n[metric]++;
    return 1;
}

static void sp__early(sp_win *w, const sp_config *cfg, sp__ent *e, int64_t ts);

/* Marks an entity that an event changed: it is written with the batch
 * that holds the event, whatever the clock budget. */
static void sp__touch(sp_win *w, sp__ent *e)
{
    sp__mark(w, e);
    e->touched = 1;
}

void sp_win_add(sp_win *w, const sp_event *ev, const sp_config *cfg)
{
    if (ev->ts_ms < 0)
        return;
    if (ev->ts_ms > w->wm)
        w->wm = ev->ts_ms;
    if (ev->type == SP_EV_FOLLOW) {
        if (w->clock > 0 &&
            ev->ts_ms / sp__level_ms[SP__COARSE] <
                sp__lower(w->clock, SP__COARSE, sp__level_keep[SP__COARSE]))
            return;
        sp__ent *c = sp__ent_get(w, SP__CREATOR, ev->creator_id, 1);
        if (sp__count(w, c, SP__COARSE, 0, ev->ts_ms))
            sp__touch(w, c);
        return;
    }
    sp__ent *v = sp__ent_get(w, SP__VIDEO, ev->video_id, 0);
    int fresh = v == NULL, counted = 0;
    if (fresh)
        v = sp__ent_get(w, SP__VIDEO, ev->video_id, 1);
    for (int l = 0; l < SP__LEVELS; l++)
        counted |= sp__count(w, v, l, (int)ev->type, ev->ts_ms);
    if (counted) {
        sp__touch(w, v);
        if (ev->creator_id[0] != '\0' &&
            (v->creator == NULL || strcmp(v->creator, ev->creator_id) != 0)) {
            free(v->creator);
            v->creator = sp_xstrdup(ev->creator_id);
        }
    } else if (fresh) {
        sp__ent_remove(w, v); /* too old for every window */
    }
    if (ev->type != SP_EV_SHARE)
        return;
    if (counted && cfg != NULL)
        sp__early(w, cfg, v, ev->ts_ms);
    for (int i = 0; i < ev->n_hashtags; i++) {
        if (w->clock > 0 &&
            ev->ts_ms / sp__level_ms[SP__MINUTE] <
                sp__lower(w->clock, SP__MINUTE, sp__level_keep[SP__MINUTE]))
            break;
        sp__ent *h = sp__ent_get(w, SP__HASHTAG, ev->hashtags[i], 1);
        if (sp__count(w, h, SP__MINUTE, 0, ev->ts_ms))
            sp__touch(w, h);
    }
}

/* ---- values and schedule ---- */

static void sp__values(const sp_win *w, const sp__ent *e, int64_t out[SP_WIN_FIELDS])
{
    int nf = sp__fields(e->kind);
    for (int f = 0; f < nf; f++) {
        int win, metric;
        sp__field_spec(e->kind, f, &win, &metric);
        int level = sp__windows[win].level;
        int64_t lower = sp__lower(w->clock, level, sp__windows[win].n);
        const sp__cells *cs = &e->lv[level];
        int64_t sum = 0;
        for (uint32_t i = cs->len; i > 0 && (int64_t)cs->c[i - 1].idx >= lower; i--)
            sum += cs->c[i - 1].n[metric];
        out[f] = sum;
    }
}

/* The next clock at which a value changes or a series minute ends. */
static int64_t sp__next_change(const sp_win *w, const sp__ent *e)
{
    int64_t due = INT64_MAX;
    for (int win = 0; win < 4; win++) {
        if ((e->kind == SP__CREATOR && win != 3) || (e->kind == SP__HASHTAG && win != 2))
            continue;
        int level = sp__windows[win].level;
        int64_t n = sp__windows[win].n;
        int64_t lower = sp__lower(w->clock, level, n);
        const sp__cells *cs = &e->lv[level];
        for (uint32_t i = 0; i < cs->len; i++)
            if ((int64_t)cs->c[i].idx >= lower) {
                int64_t t = ((int64_t)cs->c[i].idx + n) * sp__level_ms[level];
                if (t < due)
                    due = t;
                break;
            }
    }
    if (e->kind == SP__VIDEO) {
        const sp__cells *cs = &e->lv[SP__MINUTE];
        for (uint32_t i = 0; i < cs->len; i++)
            if ((int64_t)cs->c[i].idx >= e->series_upto) {
                int64_t t = ((int64_t)cs->c[i].idx + 1) * SP_SERIES_MS;
                if (t < due)
                    due = t;
                break;
            }
    }
    return due;
}

static void sp__prune(sp_win *w, sp__ent *e)
{
    for (int l = 0; l < SP__LEVELS; l++) {
        sp__cells *cs = &e->lv[l];
        int64_t lower = sp__lower(w->clock, l, sp__level_keep[l]);
        uint32_t k = 0;
        while (k < cs->len && (int64_t)cs->c[k].idx < lower)
            k++;
        if (k > 0) {
            memmove(cs->c, cs->c + k, (cs->len - k) * sizeof(*cs->c));
            cs->len -= k;
            w->n_cells -= k;
        }
    }
}

void sp_win_advance(sp_win *w, int64_t clock_ms)
{
    if (clock_ms <= w->clock)
        return;
    w->clock = clock_ms;
    while (w->n_heap > 0 && w->heap[0]->due <= clock_ms)
        sp__mark(w, w->heap[0]);
}

int64_t sp_win_clock(const sp_win *w)
{
    return w->clock;
}

size_t sp_win_dirty(const sp_win *w)
{
    return w->n_dirty;
}

void sp_win_set_clock_budget(sp_win *w, size_t n)
{
    w->clock_budget = n;
}

size_t sp_win_backlog(const sp_win *w)
{
    return w->backlog;
}

size_t sp_win_entities(const sp_win *w)
{
    return w->n_ents;
}

size_t sp_win_bytes(const sp_win *w)
{
    size_t n = sizeof(*w) + w->map.cap * 32 +
               (w->cap_ents + w->cap_heap + w->cap_dirty) * sizeof(void *) +
               w->n_cells * sizeof(sp__cell);
    for (size_t i = 0; i < w->n_ents; i++)
        n += sizeof(sp__ent) + w->ents[i]->klen + 1;
    return n;
}

int sp_win_video_values(const sp_win *w, const char *video, int64_t out[SP_WIN_FIELDS])
{
    sp__ent *e = sp__ent_get((sp_win *)w, SP__VIDEO, video, 0);
    if (e == NULL)
        return -1;
    sp__values(w, e, out);
    return 0;
}

/* ---- state ---- */

/* "1 <series_upto> <written>... then per level <n> (<idx> <count>...)...",
 * and for a video its detector: "<baseline> <folded_upto> <minutes> <level>
 * <alerted_level> <alerted_at> <quiet_since> <resolved> <det_eval>
 * <creator or ~>". */
static void sp__state(const sp__ent *e, sp_buf *out)
{
    int nf = sp__fields(e->kind);
    int nm = e->kind == SP__VIDEO ? SP__METRICS : 1;
    sp_buf_appends(out, "1 ");
    sp_buf_append_i64(out, e->series_upto);
    for (int f = 0; f < nf; f++) {
        sp_buf_append(out, " ", 1);
        sp_buf_append_i64(out, e->written[f]);
    }
    for (int l = 0; l < SP__LEVELS; l++) {
        const sp__cells *cs = &e->lv[l];
        sp_buf_append(out, " ", 1);
        sp_buf_append_i64(out, cs->len);
        for (uint32_t i = 0; i < cs->len; i++) {
            sp_buf_append(out, " ", 1);
            sp_buf_append_i64(out, cs->c[i].idx);
            for (int m = 0; m < nm; m++) {
                sp_buf_append(out, " ", 1);
                sp_buf_append_i64(out, cs->c[i].n[m]);
            }
        }
    }
    if (e->kind == SP__VIDEO) {
        const sp_detector *d = &e->det;
        sp_buf_appendf(out, " %.17g %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                       " %" PRId64 " %" PRId64 " %" PRId64 " %s", d->baseline, d->folded_upto,
                       d->minutes, d->level,
                       d->alerted_level, d->alerted_at, d->quiet_since, d->resolved,
                       e->det_eval, e->creator ? e->creator : "~");
    }
}

static int sp__num(const char **p, const char *end, int64_t lo, int64_t hi, int64_t *v)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    int neg = s < end && *s == '-';
    s += neg;
    if (s == end || *s < '0' || *s > '9')
        return SP_EPARSE;
    int64_t x = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            return SP_EPARSE;
        x = x * 10 + (*s++ - '0');
    }
    if (neg)
        x = -x;
    if (x < lo || x > hi || (s < end && *s != ' '))
        return SP_EPARSE;
    *p = s;
    *v = x;
    return 0;
}

int sp_win_load(sp_win *w, const char *field, size_t flen, const char *blob, size_t blen)
{
    if (flen == 3 && memcmp(field, "#wm", 3) == 0) {
        const char *p = blob, *end = blob + blen;
        int64_t v;
        if (sp__num(&p, end, 0, INT64_C(1) << 53, &v) != 0 || p != end)
            return SP_EPARSE;
        if (v > w->wm)
            w->wm = v;
        w->wm_written = w->wm;
        return 0;
    }
    if (flen < 3 || flen > SP_ID_MAX + 2 || field[1] != ':' ||
        memchr(field, '\0', flen) != NULL)
        return SP_EPARSE;
    int kind = field[0] == 'v' ? SP__VIDEO : field[0] == 'c' ? SP__CREATOR
             : field[0] == 'h' ? SP__HASHTAG : -1;
    if (kind < 0)
        return SP_EPARSE;
    char id[SP_ID_MAX + 1];
    memcpy(id, field + 2, flen - 2);
    id[flen - 2] = '\0';
    if (sp__ent_get(w, kind, id, 0) != NULL)
        return SP_EPARSE; /* loaded twice */

    const char *p = blob, *end = blob + blen;
    int64_t v, upto, written[SP_WIN_FIELDS];
    int nf = sp__fields(kind);
    int nm = kind == SP__VIDEO ? SP__METRICS : 1;
    if (sp__num(&p, end, 1, 1, &v) || sp__num(&p, end, 0, INT64_MAX, &upto))
        return SP_EPARSE;
    for (int f = 0; f < nf; f++)
        if (sp__num(&p, end, 0, INT64_MAX, &written[f]))
            return SP_EPARSE;
    sp__ent *e = sp__ent_get(w, kind, id, 1);
    e->series_upto = upto;
    memcpy(e->written, written, (size_t)nf * sizeof(*written));
    for (int l = 0; l < SP__LEVELS; l++) {
        int64_t n;
        if (sp__num(&p, end, 0, 100000, &n))
            goto bad;
        for (int64_t i = 0; i < n; i++) {
            int64_t idx, cnt;
            if (sp__num(&p, end, 0, UINT32_MAX, &idx))
                goto bad;
            sp__cell *c = sp__cell_at(w, &e->lv[l], (uint32_t)idx);
            for (int m = 0; m < nm; m++) {
                if (sp__num(&p, end, 0, UINT32_MAX, &cnt))
                    goto bad;
                c->n[m] = (uint32_t)cnt;
            }
        }
    }
    if (kind == SP__VIDEO) {
        char num[40];
        while (p < end && *p == ' ')
            p++;
        size_t k = 0;
        while (p + k < end && p[k] != ' ' && k < sizeof(num) - 1)
            k++;
        memcpy(num, p, k);
        num[k] = '\0';
        char *stop;
        double b = strtod(num, &stop);
        if (k == 0 || *stop != '\0' || !(b >= 0 && b < 1e12))
            goto bad;
        p += k;
        int64_t f[8];
        static const int64_t hi[8] = {INT64_MAX, INT64_MAX, SP_LEVEL__COUNT - 1,
                                      SP_LEVEL__COUNT - 1, INT64_MAX, INT64_MAX, 1, INT64_MAX};
        for (int j = 0; j < 8; j++)
            if (sp__num(&p, end, 0, hi[j], &f[j]))
                goto bad;
        e->det.baseline = b;
        e->det.folded_upto = f[0];
        e->det.minutes = f[1];
        e->det.level = f[2];
        e->det.alerted_level = f[3];
        e->det.alerted_at = f[4];
        e->det.quiet_since = f[5];
        e->det.resolved = f[6];
        e->det_eval = f[7];
        while (p < end && *p == ' ')
            p++;
        const char *c = p;
        while (p < end && *p != ' ')
            p++;
        if (p == c || (size_t)(p - c) > SP_ID_MAX)
            goto bad;
        if (!(p - c == 1 && *c == '~'))
            e->creator = sp_xstrndup(c, (size_t)(p - c));
    }
    if (p != end)
        goto bad;
    /* Re-evaluated at the first clock: values may have moved meanwhile. */
    sp__schedule(w, e, 0);
    return 0;
bad:
    sp__ent_remove(w, e);
    return SP_EPARSE;
}

/* ---- momentum ---- */

#define SP__FINE_MS 2000

/* Shares in the 150 fine buckets before edge g: the 5 minutes before it. */
static int64_t sp__shares_5m(const sp__ent *e, int64_t g)
{
    int64_t hi = g / SP__FINE_MS, lo = hi - 150, sum = 0;
    const sp__cells *cs = &e->lv[SP__FINE];
    for (uint32_t i = cs->len; i > 0 && (int64_t)cs->c[i - 1].idx >= lo; i--)
        if ((int64_t)cs->c[i - 1].idx < hi)
            sum += cs->c[i - 1].n[SP_EV_SHARE];
    return sum;
}

/* Folds into st the minutes of e that ended 5 minutes before g. */
static void sp__fold(const sp_config *cfg, const sp__ent *e, sp_detector *st, int64_t g)
{
    int64_t upto = sp__floordiv(g - 5 * SP_SERIES_MS, SP_SERIES_MS); /* minutes < upto */
    const sp__cells *cs = &e->lv[SP__MINUTE];
    if (st->folded_upto == 0) {
        /* A new video's history starts with its first minute, once that
         * minute is folded: taken then, it no longer depends on which of
         * its first events happened to be in when the daemon looked. */
        if (cs->len == 0 || (int64_t)cs->c[0].idx >= upto)
            return;
        st->folded_upto = cs->c[0].idx;
    }
    for (uint32_t i = 0; i < cs->len && (int64_t)cs->c[i].idx < upto; i++)
        if ((int64_t)cs->c[i].idx >= st->folded_upto && cs->c[i].n[SP_EV_SHARE] > 0)
            sp_detector_fold(cfg, st, cs->c[i].idx, cs->c[i].n[SP_EV_SHARE]);
    if (st->folded_upto < upto)
        sp_detector_fold(cfg, st, upto - 1, 0); /* quiet minutes decay it */
}

/* Holds an alert for the next encode: its record and its JSON line. */
static void sp__alert(sp_win *w, const sp__ent *e, sp_alert_kind kind, int64_t g,
                      const sp_signal *sig)
{
    sp_buf *json = &w->scratch;
    int64_t level = kind == SP_ALERT_MOMENTUM ? (int64_t)sig->level : e->det.alerted_level;
    const char *kname = kind == SP_ALERT_MOMENTUM ? "momentum" : "resolved";
    const char *id = e->key + 2;
    /* The hour as the hash's _1h fields count it at clock g: the 59
     * complete minutes before g's minute, and that minute up to g from the
     * 2 s buckets (never less than shares_5m). */
    int64_t h[SP__METRICS] = {0, 0, 0, 0}, m_hi = sp__floordiv(g, SP_SERIES_MS);
    const sp__cells *cs = &e->lv[SP__MINUTE];
    for (uint32_t i = 0; i < cs->len; i++)
        if ((int64_t)cs->c[i].idx >= m_hi - 59 && (int64_t)cs->c[i].idx < m_hi)
            for (int m = 0; m < SP__METRICS; m++)
                h[m] += cs->c[i].n[m];
    const sp__cells *fs = &e->lv[SP__FINE];
    int64_t f_lo = m_hi * (SP_SERIES_MS / SP__FINE_MS), f_hi = g / SP__FINE_MS;
    for (uint32_t i = 0; i < fs->len; i++)
        if ((int64_t)fs->c[i].idx >= f_lo && (int64_t)fs->c[i].idx < f_hi)
            for (int m = 0; m < SP__METRICS; m++)
                h[m] += fs->c[i].n[m];
    /* A function of the log: the video, the kind, the level, the edge. */
    sp_buf_reset(json);
    sp_buf_appendf(json, "%s%c%s%c%s%c%" PRId64, id, 0, kname, 0, sp_level_names[level], 0, g);
    uint64_t hash = sp_hash(json->data, json->len);

    sp_buf_reset(json);
    sp_buf_appendf(json, "{\"alert_id\":\"al_%016" PRIx64 "\",\"kind\":\"%s\",\"level\":\"%s\","
                   "\"video_id\":", hash, kname, sp_level_names[level]);
    sp_buf_append_json_str(json, id, e->klen - 2);
    sp_buf_appends(json, ",\"creator_id\":");
    if (e->creator != NULL)
        sp_buf_append_json_str(json, e->creator, strlen(e->creator));
    else
        sp_buf_appends(json, "null");
    double er = h[0] > 0 ? (double)(h[1] + h[2] + h[3]) / (double)h[0] : 0;
    double sr = h[0] > 0 ? (double)h[3] / (double)h[0] : 0;
    sp_buf_appendf(json, ",\"at_ms\":%" PRId64 ",\"velocity\":%.2f,\"baseline\":%.2f,"
                   "\"ratio\":%.2f,\"z\":%.2f,\"shares_5m\":%" PRId64 ",\"shares_1h\":%" PRId64
                   ",\"views_1h\":%" PRId64 ",\"er_1h\":%.4f,\"share_rate_1h\":%.4f,\"reason\":\"",
                   g, sig->velocity, sig->baseline, sig->ratio, sig->z, sig->shares_5m, h[3], h[0],
                   er, sr);
    if (kind == SP_ALERT_MOMENTUM)
        sp_buf_appendf(json, "%.1f shares/min over 5 min against a usual %.1f/min (z %.1f); "
                       "engagement %.1f%%\"}", sig->velocity, sig->baseline, sig->z, er * 100);
    else
        sp_buf_appendf(json, "quiet for 10 minutes after %s; now %.1f shares/min against a "
                       "usual %.1f/min\"}", sp_level_names[level], sig->velocity, sig->baseline);
    sp_resp_bulks(&w->held, "a");
    sp_resp_bulk(&w->held, id, e->klen - 2);
    sp_resp_bulk(&w->held, json->data, json->len);
    sp_buf_append(&w->held_json, json->data, json->len);
    sp_buf_append(&w->held_json, "\n", 1);
}

/* One step of st at edge g, with S the shares of the 5 minutes before g. */
static sp_alert_kind sp__step(const sp_config *cfg, const sp__ent *e, sp_detector *st,
                              int64_t g, int64_t s, sp_signal *sig)
{
    sp__fold(cfg, e, st, g);
    sp_detector_signal(cfg, st, s, sig);
    return sp_detector_step(cfg, st, g, sig);
}

/* Steps a video's detector at every 2 s edge after det_eval up to g_to,
 * with the buckets as they are now. */
static void sp__steps(sp_win *w, const sp_config *cfg, sp__ent *e, int64_t g_to)
{
    if (e->det_eval == 0) {
        /* A new video is stepped from its first bucket on, so that where
         * it starts depends on the log, not on when the daemon looked. */
        const sp__cells *fine = &e->lv[SP__FINE];
        int64_t first = fine->len > 0 ? (int64_t)fine->c[0].idx * SP__FINE_MS : g_to;
        e->det_eval = (first < g_to ? first : g_to) - SP__FINE_MS;
    }
    /* A video not stepped for over a day (its partition away that long, a
     * day's gap in event time, a damaged state) resumes a day and ten
     * minutes before g_to: no window holds anything older, a resolved still
     * fires, and the steps stay bounded. */
    if (g_to - e->det_eval > SP_DAY_MS + 10 * SP_SERIES_MS)
        e->det_eval = g_to - SP_DAY_MS - 10 * SP_SERIES_MS;
    for (int64_t g = e->det_eval + SP__FINE_MS; g <= g_to; g += SP__FINE_MS) {
        sp_signal sig;
        sp_alert_kind k = sp__step(cfg, e, &e->det, g, sp__shares_5m(e, g), &sig);
        if (k != SP_ALERT_NONE)
            sp__alert(w, e, k, g, &sig);
        e->det_eval = g;
    }
}

/*
 * The live edge, at every share taken in. The clock steps an edge g only
 * once T (the low watermark minus allowed_lateness_ms) has passed it, which
 * puts the lateness between a crossing and its alert. Here the edge g that
 * closes the share's 2 s bucket is evaluated at once, with the shares seen
 * so far:
 *  - the edges the partition's own watermark minus the lateness has passed
 *    are complete (anything older would be late) and are stepped for real,
 *    as the clock will step them;
 *  - the edges after those, up to g, are stepped on a copy, and a momentum
 *    alert the copy fires goes out now. Shares only add to S at an edge,
 *    and its baseline holds only minutes that ended 5 minutes before, so
 *    the level the clock will find there is at least this one: the clock's
 *    step fires nothing again (the alerted level is recorded), only a
 *    higher level if more shares come. Should the copy end an episode
 *    (resolved) first, it stops there and leaves the rest to the clock.
 * Each decision is a function of the partition's log up to this share,
 * not of when flushes happen or where T is. With allowed_lateness_ms above
 * about two minutes (SP__EARLY_MAX_EDGES edges) there is no live edge:
 * alerts wait for the clock.
 */
#define SP__EARLY_MAX_EDGES 64

static void sp__early(sp_win *w, const sp_config *cfg, sp__ent *e, int64_t ts)
{
    int64_t g = (ts / SP__FINE_MS + 1) * SP__FINE_MS;
    if (e->det_eval != 0 && g <= e->det_eval)
        return; /* stepped already: a late share */
    int64_t s = sp__shares_5m(e, g);
    if ((double)s < 5 * cfg->min_velocity)
        return; /* below min_velocity: quiet at g whatever the baseline */
    int64_t own = sp__floordiv(w->wm - cfg->allowed_lateness_ms, SP__FINE_MS) * SP__FINE_MS;
    if (e->det_eval == 0 || own > e->det_eval)
        sp__steps(w, cfg, e, own < g ? own : g - SP__FINE_MS);
    if (g - e->det_eval > SP__EARLY_MAX_EDGES * SP__FINE_MS)
        return; /* a lateness of minutes: the copy would cost too much per share */
    sp_detector at = e->det;
    for (int64_t k = e->det_eval + SP__FINE_MS; k <= g; k += SP__FINE_MS) {
        sp_signal sig;
        sp_alert_kind kind = sp__step(cfg, e, &at, k, k == g ? s : sp__shares_5m(e, k), &sig);
        if (kind == SP_ALERT_RESOLVED)
            return; /* an episode ends first: the clock's to tell */
        if (kind == SP_ALERT_MOMENTUM) {
            sp__alert(w, e, kind, k, &sig);
            e->det.alerted_level = at.alerted_level;
            e->det.alerted_at = at.alerted_at;
            e->det.resolved = at.resolved;
        }
    }
}

/* Steps a video's detector at every 2 s edge up to the clock, and writes
 * its level, baseline and momentum when they changed. */
static void sp__detect(sp_win *w, const sp_config *cfg, sp__ent *e, sp_resp *r)
{
    int64_t g_end = sp__floordiv(w->clock, SP__FINE_MS) * SP__FINE_MS;
    int64_t total = 0;
    for (uint32_t i = 0; i < e->lv[SP__FINE].len; i++)
        total += e->lv[SP__FINE].c[i].n[SP_EV_SHARE];
    e->det_active = !((double)total < 5 * cfg->min_velocity && e->det.level == SP_LEVEL_QUIET &&
                      !sp_detector_open(cfg, &e->det));
    if (!e->det_active) {
        sp__fold(cfg, e, &e->det, g_end); /* quiet at every edge: nothing to step */
        if (g_end > e->det_eval)
            e->det_eval = g_end;
    } else {
        sp__steps(w, cfg, e, g_end);
    }
    sp_signal now;
    sp_detector_signal(cfg, &e->det, sp__shares_5m(e, g_end), &now);
    char shown[sizeof(e->shown)];
    snprintf(shown, sizeof(shown), "%s %.2f %.2f", sp_level_names[e->det.level], now.baseline,
             now.ratio);
    if (strcmp(shown, e->shown) != 0) {
        memcpy(e->shown, shown, sizeof(shown));
        char *b = strchr(shown, ' '), *m = strchr(b + 1, ' ');
        *b++ = '\0';
        *m++ = '\0';
        sp_resp_bulks(r, "m");
        sp_resp_bulk(r, e->key + 2, e->klen - 2);
        sp_resp_bulks(r, shown);
        sp_resp_bulks(r, b);
        sp_resp_bulks(r, m);
    }
}

/* ---- encoding ---- */

static void sp__encode_ent(sp_win *w, const sp_config *cfg, sp__ent *e, sp_resp *r,
                           sp_buf *updated)
{
    sp_buf *scratch = &w->scratch;
    int nf = sp__fields(e->kind);
    const char *id = e->key + 2;
    size_t idlen = e->klen - 2;

    if (w->clock > 0) {
        int64_t now[SP_WIN_FIELDS], delta[SP_WIN_FIELDS];
        int changed = 0;
        sp__values(w, e, now);
        for (int f = 0; f < nf; f++) {
            delta[f] = now[f] - e->written[f];
            changed |= delta[f] != 0;
            e->written[f] = now[f];
        }
        if (e->kind == SP__VIDEO) {
            /* Minutes that ended since the last write. */
            const sp__cells *cs = &e->lv[SP__MINUTE];
            int64_t ended = sp__floordiv(w->clock, SP_SERIES_MS);
            /* Only minutes the level still keeps (the last hour), as for
             * events that arrive late. */
            int64_t oldest = sp__lower(w->clock, SP__MINUTE, sp__level_keep[SP__MINUTE]);
            uint32_t first = 0, n = 0;
            while (first < cs->len && (int64_t)cs->c[first].idx < e->series_upto)
                first++;
            while (first + n < cs->len && (int64_t)cs->c[first + n].idx < ended)
                n++;
            uint32_t skip = 0;
            while (skip < n && (int64_t)cs->c[first + skip].idx < oldest)
                skip++;
            if (changed || n > skip) {
                int nd = 0;
                for (int f = 0; f < nf; f++)
                    nd += delta[f] != 0;
                sp_resp_bulks(r, "w");
                sp_resp_bulk(r, id, idlen);
                sp_resp_bulki(r, nd);
                for (int f = 0; f < nf; f++)
                    if (delta[f] != 0) {
                        sp_resp_bulki(r, f + 1);
                        sp_resp_bulki(r, delta[f]);
                    }
                sp_resp_bulki(r, (int64_t)(n - skip));
                for (uint32_t i = first + skip; i < first + n; i++) {
                    sp_resp_bulki(r, (int64_t)cs->c[i].idx * SP_SERIES_MS);
                    for (int m = 0; m < SP__METRICS; m++)
                        sp_resp_bulki(r, cs->c[i].n[m]);
                }
                if (updated->len > 0)
                    sp_buf_append(updated, ",", 1);
                sp_buf_append_json_str(updated, id, idlen);
            }
            if (ended > e->series_upto)
                e->series_upto = ended;
            if (cfg != NULL)
                sp__detect(w, cfg, e, r);
        } else if (changed) {
            sp_resp_bulks(r, e->kind == SP__CREATOR ? "f" : "h");
            sp_resp_bulk(r, id, idlen);
            sp_resp_bulki(r, delta[0]);
        }
        sp__prune(w, e);
    }

    int empty = 1;
    for (int l = 0; l < SP__LEVELS; l++)
        empty &= e->lv[l].len == 0;
    for (int f = 0; f < nf; f++)
        empty &= e->written[f] == 0;
    if (e->kind == SP__VIDEO && cfg != NULL && sp_detector_open(cfg, &e->det))
        empty = 0; /* its resolution is still to come */
    sp_resp_bulks(r, "s");
    sp_resp_bulk(r, e->key, e->klen);
    if (empty) {
        sp_resp_bulks(r, "");
        sp__ent_remove(w, e);
        return;
    }
    sp_buf_reset(scratch);
    sp__state(e, scratch);
    sp_resp_bulk(r, scratch->data, scratch->len);
    int64_t due = w->clock > 0 ? sp__next_change(w, e) : 0;
    /* A video the detector watches is stepped at every edge as the clock
     * passes it, with or without new events, so its alerts come on time. */
    if (e->kind == SP__VIDEO && e->det_active && e->det_eval + SP__FINE_MS < due)
        due = e->det_eval + SP__FINE_MS;
    if (e->kind == SP__VIDEO && e->det.quiet_since > 0 && !e->det.resolved &&
        e->det.alerted_level != SP_LEVEL_QUIET) {
        int64_t t = e->det.quiet_since + SP_RESOLVE_QUIET_MS;
        if (t < due)
            due = t <= w->clock ? w->clock + SP__FINE_MS : t;
    }
    sp__schedule(w, e, due);
}

void sp_win_encode(sp_win *w, const sp_config *cfg, sp_resp *r, sp_buf *updated,
                   sp_buf *alerts)
{
    /* Every entity an event changed goes with the batch that holds the
     * event; of those only the clock changed (decay, an ended minute, a
     * detector edge), at most clock_budget, oldest first. The rest stay
     * dirty, in order, for the next encode: a wave of them (a minute's
     * end for every video of the last minute) is spread over several
     * short flushes instead of one long script that the next alert would
     * wait behind. */
    size_t budget = w->clock_budget > 0 ? w->clock_budget : SIZE_MAX, kept = 0;
    for (size_t i = 0; i < w->n_dirty; i++) {
        sp__ent *e = w->dirty[i];
        if (!e->touched) {
            if (budget == 0) {
                w->dirty[kept++] = e;
                continue;
            }
            budget--;
        }
        e->dirty = 0;
        e->touched = 0;
        sp__encode_ent(w, cfg, e, r, updated);
    }
    w->n_dirty = kept;
    w->backlog = kept;
    /* The newest event time, which places the live edge's real steps:
     * stored with the state it belongs to, so a restart places them where
     * an uninterrupted run does. */
    if (w->wm != w->wm_written) {
        sp_resp_bulks(r, "s");
        sp_resp_bulks(r, "#wm");
        sp_resp_bulki(r, w->wm);
        w->wm_written = w->wm;
    }
    /* The alerts of the live edge (taken in since the last encode) and of
     * the steps above, in the order they fired. */
    if (w->held.argc == 0)
        return;
    sp_buf_append(&r->body, w->held.body.data, w->held.body.len);
    r->argc += w->held.argc;
    sp_buf_reset(&w->held.body);
    w->held.argc = 0;
    if (alerts != NULL)
        sp_buf_append(alerts, w->held_json.data, w->held_json.len);
    sp_buf_reset(&w->held_json);
}
