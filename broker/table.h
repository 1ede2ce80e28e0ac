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
    /* T07-L2d, T07-L3a: the session open now under this device's client id
     * (client ids are bound to the identity, so there is at most one; a new
     * one takes it over): which client (compared, never dereferenced), on
     * which certificate, from which address. Kept on the device, never on
     * its alias. */
    const void *live;
    char live_fp[65];
    char live_addr[48];
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

/* Called for each device that must be disconnected now: a device the
 * registry denies (kick every session of it), and a device whose live
 * session holds a certificate that is no longer admitted (a rotation
 * switched away from it, or the device left the registry: T07-L3a). The
 * callee tells them apart by the device's mode in the active table. */
typedef void (*kick_fn)(const char *id, void *arg);

/* Applies one control message (untrusted bytes, though only the hub can
 * send them). Returns MAMORI_ERR_PARSE for a malformed message, which
 * changes nothing. */
enum mamori_err sync_apply(struct sync_state *s, const void *payload, size_t len, kick_fn kick,
                           void *kick_arg) MAMORI_MUST_CHECK;
void sync_free(struct sync_state *s);

/* T07-L2d, T11-L1a, P-MUT: a client id is bound to the certificate's
 * identity. A device's certificate may use only its own device id as
 * client id; the hub's certificate only the hub's client ids (its session,
 * PROTO_HUB_CLIENT_ID, and PROTO_HUB_CLIENT_ID "-<name>" for tools holding
 * the hub's certificate). Decided before the broker looks the client id
 * up, so a refused client never takes an existing session over. */
enum cid_verdict {
    CID_OK = 0,
    CID_OTHER_DEVICE, /* another device's id: a takeover of that device */
    CID_HUB,          /* a hub client id with a device's certificate */
    CID_NOT_OWN,      /* anything else, an empty (broker-assigned) id included */
    CID_NOT_HUB,      /* the hub's certificate with a client id not the hub's */
};
/* dev_id: the certificate's device id, or NULL for the hub's certificate.
 * cid: the client id the client sent (NULL: none). */
enum cid_verdict cid_decide(const char *dev_id, const char *cid);
const char *cid_verdict_name(enum cid_verdict v);

/* Session bookkeeping on d (a device, not an alias). session_open: the
 * client, admitted on certificate fp from addr, is d's live session now;
 * returns true when it takes over a live session from another address
 * (one identity in two places at once). session_close: client is gone
 * (forgotten only when it is the live one: a session taken over ends
 * after its successor was admitted). */
bool session_open(struct dev *d, const void *client, const char *fp, const char *addr);
void session_close(struct dev *d, const void *client);
/* Is certificate fp admitted for d now (its current one, or the next one
 * during a rotation)? */
bool dev_fp_admitted(const struct dev *d, const char *fp);

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
