/*
 * hub/device/seqwin.h - which sequence numbers of a device's stream the hub
 * has dealt with (stored, refused, or given up as gone).
 *
 * The hub acknowledges "everything up to N" and the device then deletes
 * those messages from its outbox, so N must never pass a number the hub
 * has not dealt with: a message the broker dropped in overload, or one
 * still on its way, would be lost. acked is that N; above it, a window of
 * SEQWIN_BITS remembers what arrived out of order. A gap closes when the
 * missing numbers arrive (the device sends again what stays
 * unacknowledged), when the device reports it dropped them itself
 * (outbox_dropped), or, as a last resort, when it stays open longer than
 * the caller's limit. Pure logic; the caller persists the state.
 */
#ifndef MAMORI_HUB_DEVICE_SEQWIN_H
#define MAMORI_HUB_DEVICE_SEQWIN_H

#include <stdbool.h>
#include <stdint.h>

#define SEQWIN_BITS 1024 /* at least the device's in-flight window (lib/: 64) */

struct seqwin {
    uint64_t acked;                  /* every number up to this one is dealt with */
    uint64_t bits[SEQWIN_BITS / 64]; /* bit i: acked + 1 + i is dealt with */
    uint64_t gone_from, gone_to;     /* numbers the device dropped itself (0, 0: none) */
    int64_t gap_since_ms;            /* a gap below a number dealt with, since (0: none) */
};

/* seq was dealt with already. */
bool seqwin_seen(const struct seqwin *w, uint64_t seq);
/* Marks seq dealt with at now_ms; acked moves over every number now
 * contiguous. A number beyond the window gives up the oldest missing ones
 * to make room. */
void seqwin_mark(struct seqwin *w, uint64_t seq, int64_t now_ms);
/* The device dropped from..to itself: those are gone. */
void seqwin_gone(struct seqwin *w, uint64_t from, uint64_t to, int64_t now_ms);
/* A gap open longer than after_ms is given up; true (with the first and
 * last numbers given up) when one was. */
bool seqwin_expire(struct seqwin *w, int64_t now_ms, int64_t after_ms, uint64_t *from,
                   uint64_t *to);
/* The highest number dealt with (acked when there is no gap). */
uint64_t seqwin_top(const struct seqwin *w);

#endif
