/* hub/io/route.c - see route.h. */
#include "hub/io/route.h"

#include <string.h>

#include "common/buf.h"

bool route_split(const char *url, struct route *rt)
{
    static const char prefix[] = "/api/v1/";
    size_t n = strlen(url), pl = sizeof(prefix) - 1;
    rt->n = 0;
    if (n >= sizeof(rt->buf) || n <= pl || strncmp(url, prefix, pl) != 0 || url[n - 1] == '/')
        return false;
    memcpy(rt->buf, url + pl, n - pl + 1);
    struct mbuf b = mbuf_init(rt->buf, n - pl);
    while (mbuf_left(&b)) {
        const uint8_t *s;
        size_t l;
        if (rt->n == ROUTE_MAX_SEGS)
            return false;
        mbuf_split(&b, '/', &s, &l);
        if (l == 0)
            return false; /* "//" or a trailing "/" */
        rt->buf[(const char *)s - rt->buf + l] = '\0';
        rt->seg[rt->n++] = (const char *)s;
    }
    return rt->n > 0;
}

bool route_is(const struct route *rt, int i, const char *lit)
{
    return i >= 0 && i < rt->n && strcmp(rt->seg[i], lit) == 0;
}

int64_t route_int(const char *v, int64_t def, int64_t lo, int64_t hi)
{
    if (!v || !*v || strlen(v) > 18)
        return def;
    int64_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return def;
        n = n * 10 + (*p - '0');
    }
    return n < lo ? lo : n > hi ? hi : n;
}
