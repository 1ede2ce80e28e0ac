/*
 * hub/io/route.h - the API's URL parsing: untrusted bytes, so it lives on its
 * own behind a bounded cursor and has its own fuzz target (fuzz_route).
 */
#ifndef MAMORI_HUB_ROUTE_H
#define MAMORI_HUB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_MAX_SEGS 8
#define ROUTE_MAX_URL  512

struct route {
    const char *seg[ROUTE_MAX_SEGS]; /* NUL-terminated, inside buf */
    int n;
    char buf[ROUTE_MAX_URL];
};

/* Splits "/api/v1/a/b/c" into segments. False for anything outside
 * /api/v1/, too long, with more than ROUTE_MAX_SEGS segments or an empty
 * segment. */
bool route_split(const char *url, struct route *rt);
/* True when segment i exists and equals lit. */
bool route_is(const struct route *rt, int i, const char *lit);
/* Parses a query value as a decimal integer clamped to [lo, hi]; def when
 * absent or not a plain decimal number. */
int64_t route_int(const char *v, int64_t def, int64_t lo, int64_t hi);

#endif
