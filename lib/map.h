/*
 * map.h - a small open-addressing hash map from byte strings to indexes.
 *
 * The map does not own keys: the caller keeps them alive (the batch keeps
 * them in its arena). Values are indexes into the caller's own vector, so
 * iteration in insertion order is the caller's vector order.
 */
#ifndef SP_MAP_H
#define SP_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_map {
    struct sp__map_slot *slots;
    size_t cap;   /* a power of two, or 0 */
    size_t count;
} sp_map;

void sp_map_init(sp_map *m);
void sp_map_free(sp_map *m);
void sp_map_clear(sp_map *m);   /* Forgets all keys, keeps the storage. */

/* Returns the index stored for key, or -1. */
long sp_map_get(const sp_map *m, const char *key, size_t len);

/* Stores index for key, which must not be present. key is borrowed and
 * must outlive the map's use of it. */
void sp_map_put(sp_map *m, const char *key, size_t len, long index);

/* Removes key if present. */
void sp_map_del(sp_map *m, const char *key, size_t len);

#endif
