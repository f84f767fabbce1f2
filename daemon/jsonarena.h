/*
 * jsonarena.h - a bump allocator for Jansson on the loop thread.
 *
 * Parsing one event with Jansson makes a dozen small allocations that all
 * die when the parse returns; with malloc and free they cost about a third
 * of the parse. sp_jsonarena_install() points Jansson's allocator at an
 * arena whose free is a no-op; sp_jsonarena_reset() releases everything at
 * once and must be called only when no Jansson value is alive. Jansson's
 * allocator is process-wide, so this is daemon state, not lib/ state: only
 * the loop thread may use Jansson once it is installed.
 */
#ifndef SP_JSONARENA_H
#define SP_JSONARENA_H

void sp_jsonarena_install(void);
void sp_jsonarena_reset(void);
void sp_jsonarena_uninstall(void); /* back to malloc; frees the arena */

#endif
