/* fuzz_schema: telemetry schema documents and the checks of bodies against
 * them (common/schema.c). Input: schema, a 0xff byte, then a body. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/json.h"
#include "common/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct schema s;
    static struct schema_rate r;
    const uint8_t *sep = memchr(data, 0xff, size);
    size_t slen = sep ? (size_t)(sep - data) : size;
    char why[160];
    if (schema_parse(data, slen, &s, why, sizeof(why)) != MAMORI_OK)
        return 0;
    json_t *back = schema_to_json(&s);
    json_decref(back);
    json_t *body = NULL;
    if (sep && json_parse_untrusted(sep + 1, size - slen - 1, 16384, &body, NULL, 0) == MAMORI_OK) {
        if (schema_check(&s, body, why, sizeof(why)) == MAMORI_OK)
            (void)schema_rate_ok(&s, &r, body, (int64_t)size * 1000, 0.1, true, why, sizeof(why));
        json_decref(body);
    }
    return 0;
}
