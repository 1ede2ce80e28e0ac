/*
 * lib/outbox.h - the device's persistent, bounded, crash-safe outbox
 * (store-and-forward; T10-L3c, T10-L3d, ETSI EN 303 645 5.9).
 *
 * Messages are stored as complete envelopes {"v":1,"seq":N,"ts":ms,"body":...}
 * in an SQLite database (WAL, synchronous=FULL): a put that returned is on
 * disk and survives kill -9 and power loss; a put interrupted at any write
 * step is either wholly there or wholly absent (tests/unit/test_outbox.c
 * injects a crash at every write step). Each stream has its own sequence
 * numbers, assigned in the same transaction as the insert.
 *
 * Messages leave the outbox only when the hub acknowledges their sequence
 * number (outbox_ack), never on the broker's PUBACK, so a hub or broker
 * crash loses nothing; the hub deduplicates resends by sequence.
 *
 * Bounded: at max_msgs, the oldest telemetry is dropped to make room; events
 * and log records are never dropped (they may take the outbox to twice
 * max_msgs, beyond which puts fail with MAMORI_ERR_TOOBIG). Drops are
 * counted and reported by the device as an "outbox_dropped" event.
 */
#ifndef MAMORI_LIB_OUTBOX_H
#define MAMORI_LIB_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

enum outbox_stream { OUTBOX_TM = 0, OUTBOX_EV = 1, OUTBOX_LOG = 2, OUTBOX_NSTREAMS };

#define OUTBOX_DEFAULT_MAX 100000
#define OUTBOX_BODY_MAX    (15 * 1024)

struct outbox;

/* Opens or creates the outbox at path (mode 0600). vfs: NULL for the
 * default (tests pass a crash-injecting one). max_msgs 0: the default. */
enum mamori_err outbox_open(const char *path, size_t max_msgs, const char *vfs,
                            struct outbox **out) MAMORI_MUST_CHECK;
void outbox_close(struct outbox *ob);

/* Appends n bodies (JSON objects, each at most OUTBOX_BODY_MAX bytes) to a
 * stream in one transaction, stamped ts_ms; durable when it returns. The
 * first sequence number given is stored in *first_seq (may be NULL). */
enum mamori_err outbox_put(struct outbox *ob, enum outbox_stream s, const char *const *bodies,
                           size_t n, uint64_t ts_ms, uint64_t *first_seq) MAMORI_MUST_CHECK;

/* Calls cb for up to max messages with id > after_id, oldest first. The
 * payload is valid only during the call; cb returns false to stop. */
typedef bool (*outbox_cb)(int64_t id, enum outbox_stream s, uint64_t seq, const void *payload,
                          size_t len, void *arg);
enum mamori_err outbox_peek(struct outbox *ob, int64_t after_id, size_t max, outbox_cb cb,
                            void *arg) MAMORI_MUST_CHECK;

/* The hub holds every message of stream s up to seq: delete them. */
enum mamori_err outbox_ack(struct outbox *ob, enum outbox_stream s, uint64_t seq) MAMORI_MUST_CHECK;

struct outbox_stats {
    uint64_t queued; /* messages waiting */
    uint64_t next_seq[OUTBOX_NSTREAMS];
    uint64_t dropped_total;      /* telemetry dropped for room, ever */
    uint64_t dropped_unreported; /* since the last take_drops */
    uint64_t dropped_first_seq, dropped_last_seq;
};
enum mamori_err outbox_stats(struct outbox *ob, struct outbox_stats *out) MAMORI_MUST_CHECK;

/* When telemetry was dropped since the last report, queues one
 * "outbox_dropped" event with the count and sequence range and clears the
 * count, in one transaction. *queued tells whether it did. */
enum mamori_err outbox_report_drops(struct outbox *ob, uint64_t ts_ms,
                                    bool *queued) MAMORI_MUST_CHECK;

#endif
