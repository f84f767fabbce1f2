/* libFuzzer target: the INI config reader (daemon/conffile.c) and the
 * config table (lib/config.c) on arbitrary bytes: load, validate, dump. */
#include <stdint.h>
#include <stdlib.h>

#include "conffile.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_config cfg;
    sp_config_init(&cfg);
    sp_conffile_load_mem(&cfg, "fuzz.conf", (const char *)data, size);
    sp_config_validate(&cfg, "fuzz.conf");
    free(sp_config_dump(&cfg));
    sp_config_free(&cfg);
    return 0;
}
