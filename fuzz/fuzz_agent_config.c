/* fuzz_agent_config: mamori-agent's configuration file (agent/config.c). */
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct agent_config c;
    char why[200];
    (void)agent_config_parse(data, size, &c, why, sizeof(why));
    return 0;
}
