/* fuzz_devlog: device log records as the hub reads them (common/devlog.c). */
#include <stddef.h>
#include <stdint.h>

#include "common/devlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct devlog_rec r;
    (void)devlog_parse(data, size, NULL, &r);
    return 0;
}
