/* libFuzzer target: the event parser (lib/event.c) on arbitrary bytes.
 * It must never crash, leak or read out of bounds, and every rejection
 * must carry one of the documented reason codes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const prefixes[] = {"bad_json", "not_object", "too_large",
                                           "unknown_type", "bad_field:", "future_ts"};
    sp_event ev;
    char reason[48] = "";
    if (sp_event_parse((const char *)data, size, 1795550000000LL, 300000, &ev, reason,
                       sizeof(reason)) != 0) {
        int known = 0;
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
            known |= strncmp(reason, prefixes[i], strlen(prefixes[i])) == 0;
        if (!known)
            abort();
    } else if (ev.type >= SP_EV__COUNT || (ev.type != SP_EV_FOLLOW && ev.video_id[0] == '\0')) {
        abort();
    }
    return 0;
}
