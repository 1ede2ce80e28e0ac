/* common/buf.c - bounded cursor and capped output buffer (see buf.h). */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"

enum mamori_err mbuf_take(struct mbuf *b, size_t n, const uint8_t **out)
{
    if (n > mbuf_left(b))
        return MAMORI_ERR_TRUNCATED;
    *out = b->p + b->pos;
    b->pos += n;
    return MAMORI_OK;
}

enum mamori_err mbuf_copy(struct mbuf *b, void *out, size_t n)
{
    const uint8_t *p;
    enum mamori_err rc = mbuf_take(b, n, &p);
    if (rc)
        return rc;
    if (n)
        memcpy(out, p, n);
    return MAMORI_OK;
}

enum mamori_err mbuf_u8(struct mbuf *b, uint8_t *out)
{
    return mbuf_copy(b, out, 1);
}

enum mamori_err mbuf_u16be(struct mbuf *b, uint16_t *out)
{
    uint8_t v[2];
    enum mamori_err rc = mbuf_copy(b, v, 2);
    if (rc)
        return rc;
    *out = (uint16_t)((v[0] << 8) | v[1]);
    return MAMORI_OK;
}

enum mamori_err mbuf_u32be(struct mbuf *b, uint32_t *out)
{
    uint8_t v[4];
    enum mamori_err rc = mbuf_copy(b, v, 4);
    if (rc)
        return rc;
    *out = ((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) | ((uint32_t)v[2] << 8) | v[3];
    return MAMORI_OK;
}

void mbuf_split(struct mbuf *b, uint8_t sep, const uint8_t **seg, size_t *seglen)
{
    const uint8_t *start = b->p + b->pos;
    size_t left = mbuf_left(b);
    const uint8_t *hit = left ? memchr(start, sep, left) : NULL;
    if (!hit) {
        *seg = start;
        *seglen = left;
        b->pos = b->len;
        return;
    }
    *seg = start;
    *seglen = (size_t)(hit - start);
    b->pos += *seglen + 1;
}

bool mbuf_eq(const uint8_t *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && (l == 0 || memcmp(p, lit, l) == 0);
}

void dbuf_init(struct dbuf *d, size_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
}

enum mamori_err dbuf_add(struct dbuf *d, const void *p, size_t n)
{
    if (d->failed)
        return MAMORI_ERR_TOOBIG;
    if (n > d->max - d->len) {
        d->failed = true;
        return MAMORI_ERR_TOOBIG;
    }
    if (d->len + n + 1 > d->cap) {
        size_t ncap = d->cap ? d->cap : 64;
        while (ncap < d->len + n + 1)
            ncap *= 2;
        if (ncap > d->max + 1)
            ncap = d->max + 1;
        char *np = malloc(ncap);
        if (!np) {
            d->failed = true;
            return MAMORI_ERR_NOMEM;
        }
        if (d->p) {
            memcpy(np, d->p, d->len);
            crypto_wipe(d->p, d->cap);
            free(d->p);
        }
        d->p = np;
        d->cap = ncap;
    }
    if (n)
        memcpy(d->p + d->len, p, n);
    d->len += n;
    d->p[d->len] = '\0';
    return MAMORI_OK;
}

enum mamori_err dbuf_addstr(struct dbuf *d, const char *s)
{
    return dbuf_add(d, s, strlen(s));
}

enum mamori_err dbuf_printf(struct dbuf *d, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return MAMORI_ERR_INVAL;
    if ((size_t)n < sizeof(tmp)) {
        enum mamori_err rc = dbuf_add(d, tmp, (size_t)n);
        crypto_wipe(tmp, sizeof(tmp));
        return rc;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return MAMORI_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    enum mamori_err rc = dbuf_add(d, big, (size_t)n);
    crypto_wipe(big, (size_t)n);
    free(big);
    return rc;
}

void dbuf_free(struct dbuf *d)
{
    if (d->p) {
        crypto_wipe(d->p, d->cap);
        free(d->p);
    }
    d->p = NULL;
    d->len = d->cap = 0;
}

char *dbuf_take(struct dbuf *d)
{
    char *p = d->p;
    if (!p)
        p = calloc(1, 1);
    d->p = NULL;
    d->len = d->cap = 0;
    return p;
}
