/* fuzz_route: the API's URL splitter, its route matcher (over a table of
 * every pattern shape) and the query-integer parser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hub/io/api_table.h"
#include "hub/io/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct api_route TABLE[] = {
    {"GET", "/health", ROUTE_PUBLIC, NULL},
    {"GET", "/devices/:id", ROUTE_USER, NULL},
    {"POST", "/devices/:id/lock", ROUTE_USER, NULL},
    {"GET", "/devices/:id/telemetry", ROUTE_USER, NULL},
    {"PUT", "/firmware/releases/:sha256/image", ROUTE_STAFF, NULL},
    {"DELETE", "/users/:name", ROUTE_ADMIN, NULL},
    {"GET", "/a/:b/c/:d/e/:f/g/:h", ROUTE_USER, NULL},
};
static const char *const METHODS[] = {"GET", "POST", "PUT", "DELETE"};

/* Every match names an entry whose method and shape fit, with its params
 * inside the URL's segments; a 405 names only methods of the table. */
static void check_match(const struct route *rt, const char *method)
{
    struct api_match m;
    memset(&m, 0, sizeof(m));
    enum api_found f = api_match(TABLE, sizeof(TABLE) / sizeof(TABLE[0]), method, rt, &m);
    if (f == API_FOUND) {
        if (!m.route || strcmp(m.route->method, method) || m.nargs < 0 || m.nargs > rt->n)
            __builtin_trap();
        for (int i = 0; i < m.nargs; i++)
            if (!m.arg[i] || m.arg[i] < rt->buf || m.arg[i] >= rt->buf + sizeof(rt->buf))
                __builtin_trap();
    } else if (f == API_NO_METHOD) {
        if (!m.allow[0] || strlen(m.allow) >= sizeof(m.allow))
            __builtin_trap();
    }
}

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
        check_match(&rt, METHODS[size % 4]);
    }
    int64_t v = route_int(url, 7, 1, 500);
    if (v != 7 && (v < 1 || v > 500))
        __builtin_trap();
    return 0;
}
