/* fuzz_eat: device security status tokens as the hub reads them
 * (common/eat.c): the compact form, base64url, the claims' profile. */
#include <stddef.h>
#include <stdint.h>

#include "common/eat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *claims = NULL;
    const char *why = NULL;
    if (eat_verify((const char *)data, size, NULL, NULL, &claims, &why) == MAMORI_OK)
        json_decref(claims);
    return 0;
}
