/* map.c - see map.h. Linear probing, load factor at most 1/2. */
#include "map.h"

#include <stdlib.h>
#include <string.h>

#include "sp_common.h"

struct sp__map_slot {
    const char *key; /* NULL: empty */
    size_t len;
    uint64_t hash;
    long index;
};

void sp_map_init(sp_map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void sp_map_free(sp_map *m)
{
    free(m->slots);
    sp_map_init(m);
}

void sp_map_clear(sp_map *m)
{
    if (m->slots != NULL)
        memset(m->slots, 0, m->cap * sizeof(*m->slots));
    m->count = 0;
}

long sp_map_get(const sp_map *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    uint64_t h = sp_hash(key, len);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct sp__map_slot *s = &m->slots[i];
        if (s->key == NULL)
            return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->index;
    }
}

static void sp__map_insert(struct sp__map_slot *slots, size_t cap,
                           const struct sp__map_slot *in)
{
    size_t i = in->hash & (cap - 1);
    while (slots[i].key != NULL)
        i = (i + 1) & (cap - 1);
    slots[i] = *in;
}

void sp_map_put(sp_map *m, const char *key, size_t len, long index)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct sp__map_slot *slots = sp_xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key != NULL)
                sp__map_insert(slots, cap, &m->slots[i]);
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    struct sp__map_slot s = {key, len, sp_hash(key, len), index};
    sp__map_insert(m->slots, m->cap, &s);
    m->count++;
}

void sp_map_del(sp_map *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return;
    size_t mask = m->cap - 1;
    uint64_t h = sp_hash(key, len);
    size_t i = h & mask;
    for (;; i = (i + 1) & mask) {
        const struct sp__map_slot *s = &m->slots[i];
        if (s->key == NULL)
            return;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            break;
    }
    /* Backward-shift deletion: move later members of the probe run into
     * the hole when their home slot does not lie between hole and them. */
    for (size_t j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = NULL;
    m->count--;
}
