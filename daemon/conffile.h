/*
 * conffile.h - reads an INI file into an sp_config with inih, naming the
 * file and line of every error.
 */
#ifndef SP_CONFFILE_H
#define SP_CONFFILE_H

#include <stddef.h>

#include "config.h"

/* Reads path into cfg (on top of what cfg holds). Errors, including a file
 * that cannot be opened, are recorded in cfg. Returns cfg->n_errors. */
int sp_conffile_load(sp_config *cfg, const char *path);

/* The same for len bytes in memory, named name in errors (fuzzing, tests). */
int sp_conffile_load_mem(sp_config *cfg, const char *name, const char *data, size_t len);

#endif
