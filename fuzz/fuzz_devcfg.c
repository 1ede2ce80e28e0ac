/* fuzz_devcfg: remote device settings documents (common/devcfg.c), as the
 * hub checks them before signing and the device before applying. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/devcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct devcfg c;
    char why[160];
    if (devcfg_parse(data, size, &c, why, sizeof(why)) == MAMORI_OK) {
        /* what was accepted is within its bounds */
        if ((c.heartbeat_s && c.heartbeat_s > 3600) || c.health_s < 5 || c.health_s > 3600 ||
            c.broker_port < 0 || c.broker_port > 65535 ||
            memchr(c.broker_host, '\0', sizeof(c.broker_host)) == NULL)
            __builtin_trap();
    }
    return 0;
}
