/*
 * conffile.h - reads an INI file into an sp_config with inih, naming the
 * file and line of every error.
 */
#ifndef SP_CONFFILE_H
#define SP_CONFFILE_H

#include "config.h"

/* Reads path into cfg (on top of what cfg holds). Errors, including a file
 * that cannot be opened, are recorded in cfg. Returns cfg->n_errors. */
int sp_conffile_load(sp_config *cfg, const char *path);

#endif
