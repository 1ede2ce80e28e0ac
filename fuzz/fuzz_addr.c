/*
 * fuzz_addr: the broker address parser of --broker and --mqtt-public
 * (broker_addr_parse, hub/io/broker.h). Invariants checked: an accepted
 * address has a port of 1-65535 and a host of 1 to n - 1 bytes taken from
 * the input, without the brackets, commas or spaces that would break a
 * list or a URL; a refused one leaves the port untouched.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub/io/broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char host[64];
    int port = -1;
    if (broker_addr_parse(s, host, sizeof(host), &port)) {
        size_t hl = strlen(host);
        if (port < 1 || port > 65535 || hl == 0 || hl >= sizeof(host) || !strstr(s, host) ||
            strpbrk(host, "[], /"))
            __builtin_trap();
    } else if (port != -1) {
        __builtin_trap();
    }
    free(s);
    return 0;
}
