/* fuzz_json: json_parse_untrusted (every API body, MQTT payload and file). */
#include <stddef.h>
#include <stdint.h>

#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    char err[128];
    if (json_parse_untrusted(data, size, 64 * 1024, &v, err, sizeof(err)) == MAMORI_OK) {
        const char *s;
        uint64_t u;
        (void)json_get_str(v, "username", 64, &s);
        (void)json_get_u64(v, "seq", &u);
        json_decref(v);
    }
    return 0;
}
