/*
 * broker/table.h - the broker plugin's view of the registry, and the
 * per-device decisions made from it. No mosquitto types here, so the logic
 * is unit-tested and fuzzed on its own.
 *
 * Devices are indexed by certificate fingerprint (how a connecting client is
 * identified: the certificate is the identity, never the client id or user
 * name) and by device id (how a connected client is found again, through
 * the user name the plugin itself assigned at CONNECT).
 */
#ifndef MAMORI_BROKER_TABLE_H
#define MAMORI_BROKER_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

enum dev_mode { MODE_DENY = 0, MODE_FULL = 1, MODE_RESTRICTED = 2 };

struct dev {
    char fp[65];
    char id[24];
    enum dev_mode mode;
    /* token bucket (messages) */
    double tokens;
    int64_t last_ms;
    uint32_t denied_in_row;
    bool kick_pending;
    /* T07-L2d: sessions of this identity open now, and the client id of
     * the last one (a second session under another client id is the same
     * identity in two places: a clone) */
    uint32_t sessions;
    char last_cid[64];
    struct dev *next_fp, *next_id; /* hash chains */
    /* During a certificate rotation the next certificate is admitted too:
     * an alias entry, indexed by its fingerprint only, stands for the
     * device (alias_of); the device points to it (alias). */
    struct dev *alias, *alias_of;
};

struct dev_table {
    struct dev **by_fp;
    struct dev **by_id;
    size_t nbuckets;
    size_t count;
};

enum mamori_err table_init(struct dev_table *t, size_t nbuckets) MAMORI_MUST_CHECK;
void table_free(struct dev_table *t);
struct dev *table_by_fp(const struct dev_table *t, const char *fp);
struct dev *table_by_id(const struct dev_table *t, const char *id);
/* Inserts or updates the device with this id (replacing its fingerprint if
 * it changed, e.g. after a certificate rotation). fp_next (NULL or "": none)
 * is the certificate a rotation is switching to, admitted alongside fp. */
enum mamori_err table_set(struct dev_table *t, const char *fp, const char *id, enum dev_mode mode,
                          const char *fp_next) MAMORI_MUST_CHECK;

/* The sync protocol (docs/protocol.md): the hub sends begin, batch..., end with
 * a generation number; the pending table replaces the active one only when
 * "end" arrives with the matching count, so a half-received snapshot never
 * takes effect. "set" messages change single devices. */
struct sync_state {
    struct dev_table active;
    struct dev_table pending;
    uint64_t pending_gen;
    bool pending_open;
    bool synced;         /* false until the first complete snapshot: fail closed (P-FAILSEC) */
    uint64_t synced_gen; /* generation of the last snapshot taken over (0: none) */
};

/* Called for each device that must be disconnected now. */
typedef void (*kick_fn)(const char *id, void *arg);

/* Applies one control message (untrusted bytes, though only the hub can
 * send them). Returns MAMORI_ERR_PARSE for a malformed message, which
 * changes nothing. */
enum mamori_err sync_apply(struct sync_state *s, const void *payload, size_t len, kick_fn kick,
                           void *kick_arg) MAMORI_MUST_CHECK;
void sync_free(struct sync_state *s);

enum acl_access { ACL_READ = 1, ACL_WRITE = 2, ACL_SUBSCRIBE = 4, ACL_UNSUBSCRIBE = 8 };

enum acl_verdict {
    ACL_ALLOW = 0,
    ACL_DENY_TOPIC, /* outside the device's own subtree / not allowed in its mode */
    ACL_DENY_SIZE,  /* payload over the cap */
    ACL_DENY_RATE,  /* over the message rate */
    ACL_DENY_STATE, /* device not allowed to operate (revoked, locked...) */
};

struct limits {
    uint32_t max_payload;
    double rate;         /* messages per second */
    double burst;        /* bucket size */
    uint32_t kick_after; /* consecutive rate denials before a kick */
};

/* Decides one access of device d (T06-L2b, T07-L2d, T10-L1a, T11-L3a). */
enum acl_verdict acl_decide(struct dev *d, const struct limits *lim, int access, const char *topic,
                            uint32_t payloadlen, int64_t now_ms);
const char *acl_verdict_name(enum acl_verdict v);

#endif
