/* hub/device/seqwin.c - see seqwin.h. */
#include "hub/device/seqwin.h"

#include <string.h>

#define WORDS (SEQWIN_BITS / 64)

static bool bit(const struct seqwin *w, unsigned i)
{
    return (w->bits[i / 64] >> (i % 64)) & 1u;
}

/* Drops the first k positions of the window (acked moves by k). */
static void shift(struct seqwin *w, uint64_t k)
{
    if (k >= SEQWIN_BITS) {
        memset(w->bits, 0, sizeof(w->bits));
    } else if (k > 0) {
        unsigned words = (unsigned)(k / 64), b = (unsigned)(k % 64);
        for (unsigned i = 0; i < WORDS; i++) {
            uint64_t lo = i + words < WORDS ? w->bits[i + words] : 0;
            uint64_t hi = i + words + 1 < WORDS ? w->bits[i + words + 1] : 0;
            w->bits[i] = b ? (lo >> b) | (hi << (64 - b)) : lo;
        }
    }
    w->acked += k;
}

static bool any(const struct seqwin *w)
{
    for (unsigned i = 0; i < WORDS; i++)
        if (w->bits[i])
            return true;
    return false;
}

/* acked moves over what is contiguous: dealt with, or in the gone range. */
static void settle(struct seqwin *w, int64_t now_ms)
{
    for (;;) {
        if (w->gone_to && w->gone_from <= w->acked + 1 && w->gone_to > w->acked) {
            shift(w, w->gone_to - w->acked);
            w->gone_from = w->gone_to = 0;
            continue;
        }
        if (w->gone_to && w->gone_to <= w->acked)
            w->gone_from = w->gone_to = 0;
        unsigned run = 0;
        while (run < SEQWIN_BITS && bit(w, run))
            run++;
        if (!run)
            break;
        shift(w, run);
    }
    if (!any(w))
        w->gap_since_ms = 0;
    else if (!w->gap_since_ms)
        w->gap_since_ms = now_ms ? now_ms : 1;
}

bool seqwin_seen(const struct seqwin *w, uint64_t seq)
{
    if (seq <= w->acked)
        return true;
    uint64_t i = seq - w->acked - 1;
    return i < SEQWIN_BITS && bit(w, (unsigned)i);
}

void seqwin_mark(struct seqwin *w, uint64_t seq, int64_t now_ms)
{
    if (seq <= w->acked)
        return;
    if (seq - w->acked > SEQWIN_BITS) /* no room: the oldest missing are given up */
        shift(w, seq - w->acked - SEQWIN_BITS);
    uint64_t i = seq - w->acked - 1;
    w->bits[i / 64] |= 1ull << (i % 64);
    settle(w, now_ms);
}

void seqwin_gone(struct seqwin *w, uint64_t from, uint64_t to, int64_t now_ms)
{
    if (!from || to < from || to <= w->acked)
        return;
    /* one range is kept; a later report replaces an earlier one that is
     * not reached yet only if it starts lower (the earlier gap first) */
    if (!w->gone_to || from < w->gone_from) {
        w->gone_from = from;
        w->gone_to = to;
    }
    settle(w, now_ms);
}

bool seqwin_expire(struct seqwin *w, int64_t now_ms, int64_t after_ms, uint64_t *from, uint64_t *to)
{
    if (!w->gap_since_ms || now_ms - w->gap_since_ms <= after_ms)
        return false;
    *from = w->acked + 1;
    unsigned first = 0;
    while (first < SEQWIN_BITS && !bit(w, first))
        first++;
    *to = w->acked + first; /* the last missing before what was dealt with */
    shift(w, first);
    w->gap_since_ms = 0;
    settle(w, now_ms);
    return true;
}

uint64_t seqwin_top(const struct seqwin *w)
{
    for (unsigned i = SEQWIN_BITS; i > 0; i--)
        if (bit(w, i - 1))
            return w->acked + i;
    return w->acked;
}
