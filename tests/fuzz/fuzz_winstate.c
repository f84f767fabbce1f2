/* libFuzzer target: the window state reader (sp_win_load in lib/window.c),
 * which parses what a partition's state hash holds when the partition is
 * assigned: Redis data that another version, a bug or a person may have
 * written. Each input line is "<field>\t<value>"; every line is loaded, then
 * the clock is moved and everything encoded with the detector on, as an
 * assignment does, then shares of each loaded video are taken in (the live
 * edge) and the clock moved a day on. It must never crash, hang, leak or
 * read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sp_common.h"
#include "window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sp_config cfg;
    static int init;
    if (!init) {
        sp_config_init(&cfg);
        init = 1;
    }
    sp_win *w = sp_win_new();
    const char *p = (const char *)data, *end = p + size;
    int64_t loaded = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *tab = memchr(p, '\t', (size_t)(eol - p));
        if (tab != NULL && sp_win_load(w, p, (size_t)(tab - p), tab + 1,
                                       (size_t)(eol - tab - 1)) == 0 && p[0] != '#')
            loaded++;
        p = nl ? nl + 1 : end;
    }
    if (loaded > 0 && sp_win_entities(w) == 0)
        abort(); /* a state it took is held */
    /* The clock of a live partition: somewhere in 2026, then a day on. */
    int64_t t0 = 1795550000000LL;
    sp_resp r;
    sp_buf updated, alerts;
    sp_resp_init(&r);
    sp_buf_init(&updated);
    sp_buf_init(&alerts);
    sp_win_advance(w, t0);
    sp_win_encode(w, &cfg, &r, &updated, &alerts);
    /* Shares of the loaded videos just after the clock: the live edge
     * steps their detectors from whatever state they came with. */
    for (p = (const char *)data; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *tab = memchr(p, '\t', (size_t)(eol - p));
        size_t idlen = tab ? (size_t)(tab - p) - 2 : 0;
        if (tab != NULL && tab - p > 2 && p[0] == 'v' && p[1] == ':' && idlen <= SP_ID_MAX) {
            sp_event ev;
            memset(&ev, 0, sizeof(ev));
            ev.type = SP_EV_SHARE;
            memcpy(ev.video_id, p + 2, idlen);
            ev.video_id[idlen] = '\0';
            if (sp_is_id(ev.video_id))
                for (int i = 0; i < 40; i++) {
                    ev.ts_ms = t0 + 500 + 100 * i;
                    sp_win_add(w, &ev, &cfg);
                }
        }
        p = nl ? nl + 1 : end;
    }
    sp_win_encode(w, &cfg, &r, &updated, &alerts);
    sp_win_advance(w, t0 + SP_DAY_MS + 3600000);
    sp_win_encode(w, &cfg, &r, &updated, &alerts);
    sp_resp_free(&r);
    sp_buf_free(&updated);
    sp_buf_free(&alerts);
    sp_win_free(w);
    return 0;
}
