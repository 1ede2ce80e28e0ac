/*
 * common/buf.h - bounded cursor over untrusted bytes, and a capped growable
 * output buffer.
 *
 * Every parser of network or file input reads through struct mbuf: it never
 * reads past len, and every read reports MAMORI_ERR_TRUNCATED instead of
 * overrunning. struct dbuf grows up to a hard cap fixed at init and fails with
 * MAMORI_ERR_TOOBIG beyond it (the same idea as curl's dynbuf).
 */
#ifndef MAMORI_COMMON_BUF_H
#define MAMORI_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

struct mbuf {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

static inline struct mbuf mbuf_init(const void *p, size_t len)
{
    struct mbuf b = {(const uint8_t *)p, p ? len : 0, 0};
    return b;
}
static inline size_t mbuf_left(const struct mbuf *b)
{
    return b->len - b->pos;
}

enum mamori_err mbuf_u8(struct mbuf *b, uint8_t *out) MAMORI_MUST_CHECK;
enum mamori_err mbuf_u16be(struct mbuf *b, uint16_t *out) MAMORI_MUST_CHECK;
enum mamori_err mbuf_u32be(struct mbuf *b, uint32_t *out) MAMORI_MUST_CHECK;
/* Points *out at the next n bytes (no copy) and advances. */
enum mamori_err mbuf_take(struct mbuf *b, size_t n, const uint8_t **out) MAMORI_MUST_CHECK;
/* Copies the next n bytes into out and advances. */
enum mamori_err mbuf_copy(struct mbuf *b, void *out, size_t n) MAMORI_MUST_CHECK;
/* Splits at the next occurrence of sep: seg and seglen get the bytes before it
 * and the cursor moves past sep; without sep, the rest is returned. */
void mbuf_split(struct mbuf *b, uint8_t sep, const uint8_t **seg, size_t *seglen);
/* True when the remaining bytes are exactly lit (length-checked). */
bool mbuf_eq(const uint8_t *p, size_t n, const char *lit);

struct dbuf {
    char *p;
    size_t len;
    size_t cap;  /* allocated */
    size_t max;  /* hard cap on len */
    bool failed; /* a previous append failed: all further appends fail */
};

void dbuf_init(struct dbuf *d, size_t max);
enum mamori_err dbuf_add(struct dbuf *d, const void *p, size_t n) MAMORI_MUST_CHECK;
enum mamori_err dbuf_addstr(struct dbuf *d, const char *s) MAMORI_MUST_CHECK;
enum mamori_err dbuf_printf(struct dbuf *d, const char *fmt, ...) MAMORI_MUST_CHECK
    __attribute__((format(printf, 2, 3)));
/* Frees the buffer (wiping it first: it may have held secrets). */
void dbuf_free(struct dbuf *d);
/* Gives ownership of the NUL-terminated contents to the caller. */
char *dbuf_take(struct dbuf *d);

#endif
