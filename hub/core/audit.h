/*
 * hub/core/audit.h - the hub's append-only, hash-chained audit log (T12-L1a;
 * the log of T01-L2d, T06-L2d, T07-L2e, T09-L2c).
 *
 * Each entry carries hash = HMAC-SHA256(audit key, prev_hash || fields), with
 * every field length-prefixed, so editing, removing or reordering entries
 * breaks the chain at the first affected entry. The key lives in
 * DATA/secrets/audit.key (0600), outside the database: someone who can write
 * the database but not read the key cannot re-forge the chain. The last
 * (seq, hash) is also anchored in DATA/audit.head so that cutting entries off
 * the end is detected as well.
 */
#ifndef MAMORI_HUB_AUDIT_H
#define MAMORI_HUB_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "hub/store/store.h"

#define AUDIT_KEY_LEN 32

struct audit {
    struct store *store;
    uint8_t key[AUDIT_KEY_LEN];
    char head_path[4096];
};

/* Computes the entry hash of r (uses r->prev_hash and every field). */
enum mamori_err audit_entry_hash(const uint8_t key[AUDIT_KEY_LEN], const struct audit_rec *r,
                                 char out_hex[65]) MAMORI_MUST_CHECK;

/* Appends an entry (call inside the transaction of the change it records). */
enum mamori_err audit_append(struct audit *a, int64_t ts, const char *actor, const char *action,
                             const char *target, const char *reason,
                             const char *detail) MAMORI_MUST_CHECK;
/* Moves the head anchor to the last entry; call after the transaction
 * committed. The anchor only moves forward along the same chain: when the
 * entry it named is gone or changed, it is left alone (the evidence stays)
 * and MAMORI_ERR_VERIFY is returned. */
enum mamori_err audit_anchor(struct audit *a) MAMORI_MUST_CHECK;

enum audit_problem {
    AUDIT_INTACT = 0,
    AUDIT_MODIFIED,  /* entry content does not match its hash */
    AUDIT_REMOVED,   /* a sequence number is missing */
    AUDIT_REORDERED, /* entry does not link to its predecessor */
    AUDIT_TRUNCATED, /* entries after the anchored head are gone */
};

struct audit_verdict {
    enum audit_problem problem;
    int64_t first_bad_seq; /* first entry found bad (0 if intact) */
    int64_t entries;       /* entries checked */
    int64_t head_seq;      /* anchored head (0 when no anchor) */
};

const char *audit_problem_name(enum audit_problem p);
/* Walks the whole chain. Returns MAMORI_OK with the verdict filled in, or
 * an error when the chain could not be read at all. */
enum mamori_err audit_verify(struct audit *a, struct audit_verdict *v) MAMORI_MUST_CHECK;

#endif
