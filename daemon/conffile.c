/* conffile.c - see conffile.h. */
#include "conffile.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    FILE *f;
    const char *path;
    int line;        /* number of the line inih is looking at */
    int section_line; /* line of the latest [section] header */
    sp_config *cfg;
} sp__ini;

static char *sp__reader(char *str, int num, void *stream)
{
    sp__ini *in = stream;
    if (fgets(str, num, in->f) == NULL)
        return NULL;
    in->line++;
    /* inih skips lines it cannot read silently in some builds; name them. */
    const char *s = str;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '[')
        in->section_line = in->line;
    if (*s != '\0' && *s != '\n' && *s != '\r' && *s != ';' && *s != '#' &&
        *s != '[' && strchr(s, '=') == NULL)
        sp_config_error(in->cfg, in->path, in->line,
                        "syntax error: expected \"key = value\", \"[section]\" or a comment");
    return str;
}

static int sp__handler(void *user, const char *section, const char *name,
                       const char *value)
{
    sp__ini *in = user;
    if (name == NULL)
        return 1; /* a section header alone */
    if (section[0] == '\0') {
        sp_config_error(in->cfg, in->path, in->line,
                        "key \"%s\" outside any section (allowed: under [kafka], "
                        "[redis], [pipeline], [momentum], [webhook.NAME], [http], [log])",
                        name);
        return 1;
    }
    sp_config_set(in->cfg, in->path, in->line, in->section_line, section, name, value);
    return 1;
}

static int sp__load(sp_config *cfg, const char *path, FILE *f)
{
    sp__ini in = {f, path, 0, 0, cfg};
    ini_allow_multiline = 0;
    int rc = ini_parse_stream(sp__reader, &in, sp__handler, &in);
    if (rc > 0 && cfg->n_errors == 0)
        sp_config_error(cfg, path, rc, "syntax error");
    else if (rc < 0)
        sp_config_error(cfg, path, 0, "cannot read");
    return cfg->n_errors;
}

/* Reads f (NULL: it could not be opened, errno says why) and closes it. */
static int sp__load_and_close(sp_config *cfg, const char *name, FILE *f)
{
    if (f == NULL) {
        sp_config_error(cfg, name, 0, "cannot open: %s", strerror(errno));
        return cfg->n_errors;
    }
    int n = sp__load(cfg, name, f);
    fclose(f);
    return n;
}

int sp_conffile_load(sp_config *cfg, const char *path)
{
    return sp__load_and_close(cfg, path, fopen(path, "r"));
}

int sp_conffile_load_mem(sp_config *cfg, const char *name, const char *data, size_t len)
{
    if (len == 0) /* fmemopen refuses an empty buffer; an empty file is valid */
        return cfg->n_errors;
    return sp__load_and_close(cfg, name, fmemopen((void *)data, len, "r"));
}
