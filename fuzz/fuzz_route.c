/* fuzz_route: the API's URL router and query-integer parser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hub/io/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char url[ROUTE_MAX_URL + 64];
    if (size >= sizeof(url))
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    struct route rt;
    if (route_split(url, &rt)) {
        if (rt.n < 1 || rt.n > ROUTE_MAX_SEGS)
            __builtin_trap();
        for (int i = 0; i < rt.n; i++)
            if (!rt.seg[i][0] || strchr(rt.seg[i], '/'))
                __builtin_trap(); /* segments are never empty and never span a '/' */
        (void)route_is(&rt, 0, "devices");
    }
    int64_t v = route_int(url, 7, 1, 500);
    if (v != 7 && (v < 1 || v > 500))
        __builtin_trap();
    return 0;
}
