/* libFuzzer target: the API tokens file parser (lib/tokens.c) on arbitrary
 * bytes. It must never crash, leak or read out of bounds; a file it takes
 * has only well-formed tokens, and one it refuses names file and line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_tokens t;
    char *errors = NULL;
    if (sp_tokens_parse(&t, "fuzz", (const char *)data, size, &errors) != 0) {
        if (errors == NULL || strncmp(errors, "fuzz:", 5) != 0 || t.n != 0)
            abort();
        free(errors);
        return 0;
    }
    for (size_t i = 0; i < t.n; i++) {
        const sp_token *k = &t.v[i];
        if ((k->type == SP_ACCOUNT_ADMIN) != (k->creator == NULL) ||
            (k->creator != NULL && !sp_is_id(k->creator)) || sp_tokens_find(&t, k->digest) != k)
            abort();
    }
    sp_tokens_free(&t);
    return 0;
}
