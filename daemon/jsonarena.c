/* jsonarena.c - see jsonarena.h. */
#include "jsonarena.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "sp_common.h"

#define SP__ARENA_CHUNK (256 * 1024)
#define SP__ALIGN 16

typedef struct sp__achunk {
    struct sp__achunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} sp__achunk;

/* Jansson's allocator hooks take no user data, hence file-level state. */
static sp__achunk *sp__arena;

static void *sp__arena_malloc(size_t n)
{
    n = (n + SP__ALIGN - 1) & ~(size_t)(SP__ALIGN - 1);
    sp__achunk *c = sp__arena;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > SP__ARENA_CHUNK ? n : SP__ARENA_CHUNK;
        c = sp_xmalloc(sizeof(*c) + cap);
        c->next = sp__arena;
        c->used = 0;
        c->cap = cap;
        sp__arena = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void sp__arena_free(void *p)
{
    (void)p; /* released by sp_jsonarena_reset() */
}

void sp_jsonarena_install(void)
{
    json_set_alloc_funcs(sp__arena_malloc, sp__arena_free);
}

void sp_jsonarena_reset(void)
{
    /* Keep the newest chunk (the one in use), free the rest: a rare huge
     * message does not pin its memory. */
    sp__achunk *c = sp__arena;
    if (c == NULL)
        return;
    sp__achunk *rest = c->next;
    c->next = NULL;
    c->used = 0;
    if (c->cap > SP__ARENA_CHUNK) {
        free(c);
        sp__arena = NULL;
    }
    while (rest != NULL) {
        sp__achunk *next = rest->next;
        free(rest);
        rest = next;
    }
}

void sp_jsonarena_uninstall(void)
{
    sp_jsonarena_reset();
    free(sp__arena);
    sp__arena = NULL;
    json_set_alloc_funcs(malloc, free);
}
