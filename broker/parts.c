/* broker/parts.c - see parts.h. */
#include "broker/parts.h"

#include <string.h>

#include "common/proto.h"

enum mamori_err parts_set(struct parts *p, const char *cid, const void *payload, size_t len)
{
    const char *s = payload;
    uint64_t bits = 0;
    size_t n = cid ? strnlen(cid, PARTS_CID_MAX + 1) : 0;
    if (n == 0 || n > PARTS_CID_MAX || len != 16)
        return MAMORI_ERR_PARSE;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        unsigned v = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (v > 15)
            return MAMORI_ERR_PARSE;
        bits = bits << 4 | v;
    }
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->hub[i].cid, cid) == 0) {
            p->hub[i].bits = bits;
            return MAMORI_OK;
        }
    if (p->n == PARTS_HUBS)
        return MAMORI_ERR_TOOBIG;
    memcpy(p->hub[p->n].cid, cid, n + 1);
    p->hub[p->n++].bits = bits;
    return MAMORI_OK;
}

/* cid is prefix followed by "-data" or "-events" */
static bool data_session_of(const char *cid, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(cid, prefix, n) == 0 &&
           (strcmp(cid + n, "-data") == 0 || strcmp(cid + n, "-events") == 0);
}

bool parts_allow(const struct parts *p, const char *cid, const char *device_id)
{
    for (size_t i = 0; cid && i < p->n; i++)
        if (data_session_of(cid, p->hub[i].cid))
            return (p->hub[i].bits >> proto_partition(device_id)) & 1u;
    return true;
}
