/*
 * hub/store/store.h - the registry's storage interface.
 *
 * One struct store per process; every call is made with the hub lock held
 * (hub.h), so implementations need no locking of their own. Implemented by
 * two engines over the same entity files (store_users.c, store_devices.c,
 * ...) and helpers (store_db.c): SQLite, the embedded default
 * (store_sqlite.c: WAL, synchronous=FULL), and PostgreSQL (store_pg.c,
 * libpq: commits durable before they return). Either way a committed
 * change survives kill -9 of the hub.
 *
 * Strings returned inside records are copied into fixed-size fields; nothing
 * returned points into the backend's memory (except the strings a list
 * passes its callback, valid during the call).
 *
 * Out-parameters: a call that returns anything but MAMORI_OK (NOTFOUND and
 * the other refusals included) leaves every out-parameter zeroed, never
 * half-filled: a record all zero bytes (empty strings, 0), an integer or
 * count 0, a bool false, a malloc'd *..._out NULL; the id an ..._add writes
 * into the record it is given (campaign, advisory, webhook) is 0. Input
 * strings are read before outputs are cleared, so one may point into the
 * record being filled (store_device_get(s, d.id, &d)). Two calls answer
 * MAMORI_OK with zeros when nothing is stored: store_throttle_get and
 * store_stream_get. A list call (callback) that fails part-way may have
 * called its callback for some rows already; one that fills an array
 * reports 0 rows on failure. Calls returning a count answer -1 on error.
 */
#ifndef MAMORI_HUB_STORE_H
#define MAMORI_HUB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

struct store;

#define STORE_NAME_MAX   64
#define STORE_REASON_MAX 512

enum store_role { ROLE_ADMIN = 0, ROLE_OPERATOR = 1, ROLE_OWNER = 2 };
const char *store_role_name(enum store_role r);
bool store_role_parse(const char *s, enum store_role *out);

struct user_rec {
    int64_t id;
    char name[STORE_NAME_MAX + 1];
    enum store_role role;
    char pwhash[256];
    int64_t created_at;
};

struct device_rec {
    char id[24];
    char model[STORE_NAME_MAX + 1];
    char state[24];
    int64_t owner_id; /* 0 = none */
    char owner_name[STORE_NAME_MAX + 1];
    char cert_fp[65];
    char cert_serial[48];
    int64_t cert_not_after;
    int64_t created_at;
    int64_t updated_at;
    int64_t claimed_at;
    int64_t last_seen;
    bool online;
    int hb_interval;
    char cert_next_fp[65];   /* "" unless a certificate rotation is under way */
    int64_t cert_rotated_at; /* last switch (0: never, the factory certificate) */
    int64_t rotate_asked_at; /* last "rotate" sent by the rotation policy */
    char fw_version[65];     /* as the device last reported it ("" unknown) */
};

struct audit_rec {
    int64_t seq;
    int64_t ts;
    char actor[STORE_NAME_MAX + 16];
    char action[48];
    char target[64];
    char reason[STORE_REASON_MAX + 1];
    char detail[1024];
    char prev_hash[65];
    char hash[65];
};

struct event_rec {
    int64_t id;
    int64_t ts;
    char device_id[24];
    char kind[48];
    char severity[16];
    char detail[1024];
};

struct throttle_rec {
    int failed;
    int64_t next_try_at;
    int64_t locked_until;
};

/* Opens (creating if needed) the database at path and applies every pending
 * migration, each in its own transaction. */
/* where: "postgresql://..." or "postgres://..." (a libpq connection URI:
 * PostgreSQL), "sqlite:PATH" or a bare PATH (SQLite, created if missing).
 * Either is migrated to this binary's schema before it is returned. */
enum mamori_err store_open(const char *where, struct store **out) MAMORI_MUST_CHECK;
bool store_is_postgresql(const char *where);
const char *store_engine(const struct store *s); /* "sqlite" or "postgresql" */
void store_close(struct store *s);
int store_schema_version(struct store *s);

/* Several hubs over one database (store_cluster.c). PostgreSQL lets any
 * number of hubs share the store; they share out the work with leases:
 * session-level advisory locks held on the store's own connection. A lease
 * lasts as long as that connection, so a hub that dies or loses the
 * database loses its leases with it, and what the hub writes is fenced by
 * them: a transaction runs on one connection, never across a reconnection,
 * so one begun on the session that holds a lease commits while the lease
 * holds. A lease is (space, key), both 31-bit; a shared one may have many
 * holders. SQLite has one hub (DATA/hub.lock): every lease is its own,
 * and there are no notices. */
bool store_shared(const struct store *s);
/* The connection's session: grows when the connection is reopened, and
 * every lease and LISTEN of the old one is gone with it. */
uint64_t store_session(const struct store *s);
enum mamori_err store_lease_take(struct store *s, int space, int key, bool shared,
                                 bool *got) MAMORI_MUST_CHECK;
enum mamori_err store_lease_drop(struct store *s, int space, int key) MAMORI_MUST_CHECK;
/* How many sessions hold lease (space, key) now. */
enum mamori_err store_lease_holders(struct store *s, int space, int key,
                                    int64_t *n) MAMORI_MUST_CHECK;
/* Notices between hubs: a name of [a-z_] (1-63), a payload of at most
 * STORE_NOTICE_MAX bytes, sent when the transaction it is sent in commits
 * (at once outside one), to every session listening. */
#define STORE_NOTICE_MAX 256
typedef void (*store_notice_fn)(const char *channel, const char *payload, void *arg);
enum mamori_err store_listen(struct store *s, const char *channel) MAMORI_MUST_CHECK;
enum mamori_err store_notify(struct store *s, const char *channel,
                             const char *payload) MAMORI_MUST_CHECK;
/* Hands fn the notices received so far from other sessions (its own are
 * dropped), without waiting; how many. */
size_t store_notices(struct store *s, store_notice_fn fn, void *arg);

/* Transactions. They nest: inside an open one, begin/commit/rollback
 * work on a savepoint, whose changes are durable only when the outermost
 * transaction commits (a batch of device messages is one transaction; the
 * audited changes made while recording it are savepoints in it). */
enum mamori_err store_begin(struct store *s) MAMORI_MUST_CHECK;
enum mamori_err store_commit(struct store *s) MAMORI_MUST_CHECK;
void store_rollback(struct store *s);
/* True while a transaction is open: what is written now is not durable. */
bool store_in_transaction(struct store *s);
/* Rolls back every open transaction (one left open by mistake). */
void store_abort(struct store *s);

enum mamori_err store_meta_get(struct store *s, const char *key, char *out,
                               size_t outlen) MAMORI_MUST_CHECK;
enum mamori_err store_meta_set(struct store *s, const char *key,
                               const char *value) MAMORI_MUST_CHECK;

/* Users and sessions. */
enum mamori_err store_user_add(struct store *s, const char *name, enum store_role role,
                               const char *pwhash, int64_t now, int64_t *id_out) MAMORI_MUST_CHECK;
enum mamori_err store_user_get(struct store *s, const char *name,
                               struct user_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_user_by_id(struct store *s, int64_t id,
                                 struct user_rec *out) MAMORI_MUST_CHECK;
/* Calls cb for each user in name order (cb returns false to stop). */
enum mamori_err store_user_list(struct store *s, bool (*cb)(const struct user_rec *, void *),
                                void *arg) MAMORI_MUST_CHECK;
int64_t store_user_count(struct store *s);
/* Deletes an account and what is only its: sessions, exports, transfers it
 * started, its throttles; its name is retired (never given out again).
 * MAMORI_ERR_STATE while a device still names it as owner. In a
 * transaction. */
enum mamori_err store_user_delete(struct store *s, int64_t id, int64_t now) MAMORI_MUST_CHECK;
/* A device's last verified security status (common/eat.h). set refuses
 * (MAMORI_ERR_STATE) one not newer (iat) than the one held. */
struct status_rec {
    char device_id[24];
    char token[2049];  /* EAT_MAX + 1 */
    char claims[1025]; /* EAT_CLAIMS_MAX + 1 */
    int64_t iat, exp, received_at;
};
enum mamori_err store_status_set(struct store *s, const struct status_rec *r) MAMORI_MUST_CHECK;
enum mamori_err store_status_get(struct store *s, const char *id,
                                 struct status_rec *out) MAMORI_MUST_CHECK;
/* Whether name belonged to a deleted account. */
bool store_name_retired(struct store *s, const char *name);

enum mamori_err store_session_add(struct store *s, const char *token_hash, int64_t user_id,
                                  int64_t now, int64_t expires) MAMORI_MUST_CHECK;
/* Finds an unexpired session; MAMORI_ERR_AUTH when none. */
enum mamori_err store_session_get(struct store *s, const char *token_hash, int64_t now,
                                  int64_t *user_id) MAMORI_MUST_CHECK;
enum mamori_err store_session_del(struct store *s, const char *token_hash) MAMORI_MUST_CHECK;
enum mamori_err store_session_purge(struct store *s, int64_t now) MAMORI_MUST_CHECK;

enum mamori_err store_throttle_get(struct store *s, const char *key,
                                   struct throttle_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_throttle_set(struct store *s, const char *key,
                                   const struct throttle_rec *t) MAMORI_MUST_CHECK;
enum mamori_err store_throttle_clear(struct store *s, const char *key) MAMORI_MUST_CHECK;

/* Trust anchors for device certificates (issuing CA, manufacturer CAs). */
enum mamori_err store_ca_add(struct store *s, const char *model, const char *kind, const char *fp,
                             const char *subject, const char *pem, int64_t now) MAMORI_MUST_CHECK;
/* Concatenated PEM of every CA valid for model (model NULL: all). Malloc'd. */
enum mamori_err store_ca_bundle(struct store *s, const char *model,
                                char **pem_out) MAMORI_MUST_CHECK;
enum mamori_err store_ca_list(struct store *s,
                              bool (*cb)(const char *model, const char *kind, const char *fp,
                                         const char *subject, void *),
                              void *arg) MAMORI_MUST_CHECK;

/* Devices. */
enum mamori_err store_device_add(struct store *s, const struct device_rec *d, const char *cert_pem,
                                 const char *claim_hash) MAMORI_MUST_CHECK;
enum mamori_err store_device_get(struct store *s, const char *id,
                                 struct device_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_device_by_claim(struct store *s, const char *claim_hash,
                                      struct device_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_device_by_fp(struct store *s, const char *fp,
                                   struct device_rec *out) MAMORI_MUST_CHECK;
/* Lists devices with id > after (cursor), at most limit, owned by owner_id
 * (0: all). */
enum mamori_err store_device_list(struct store *s, int64_t owner_id, const char *after, int limit,
                                  bool (*cb)(const struct device_rec *, void *),
                                  void *arg) MAMORI_MUST_CHECK;
enum mamori_err store_device_set_state(struct store *s, const char *id, const char *state,
                                       int64_t now) MAMORI_MUST_CHECK;
/* Sets the owner; fails (NOTFOUND) when the device already has one, which is
 * what makes a claim code single-use. The code's hash stays, so a second
 * use is answered "already claimed" rather than "unknown code". */
enum mamori_err store_device_claim(struct store *s, const char *id, int64_t owner_id,
                                   int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_device_clear_claim(struct store *s, const char *id) MAMORI_MUST_CHECK;
enum mamori_err store_device_set_online(struct store *s, const char *id, bool online,
                                        int64_t last_seen) MAMORI_MUST_CHECK;
int64_t store_device_count(struct store *s);
/* The registered certificate of a device (PEM, malloc'd). */
enum mamori_err store_device_cert(struct store *s, const char *id,
                                  char **pem_out) MAMORI_MUST_CHECK;

/* Certificate rotation. The next certificate is admitted alongside the
 * current one until the device confirms the switch; the previous one is
 * kept (not admitted) to verify records the device signed before it. */
enum store_cert_which { STORE_CERT_CURRENT, STORE_CERT_NEXT, STORE_CERT_PREVIOUS };
enum mamori_err store_device_cert_at(struct store *s, const char *id, enum store_cert_which w,
                                     char **pem_out) MAMORI_MUST_CHECK;
enum mamori_err store_device_rotation_asked(struct store *s, const char *id,
                                            int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_device_rotation_begin(struct store *s, const char *id, const char *next_fp,
                                            const char *next_pem, int64_t now) MAMORI_MUST_CHECK;
/* Makes the next certificate the current one (NOTFOUND unless next_fp is
 * the one under way). */
enum mamori_err store_device_rotation_commit(struct store *s, const char *id, const char *next_fp,
                                             const char *serial, int64_t not_after,
                                             int64_t now) MAMORI_MUST_CHECK;
/* Active devices whose certificate is due: it expires within renew_s, or
 * was issued more than max_age_s ago (0: no age limit); at most one ask per
 * retry_s. */
enum mamori_err store_device_rotation_due(struct store *s, int64_t now, int64_t renew_s,
                                          int64_t max_age_s, int64_t retry_s, int limit,
                                          bool (*cb)(const struct device_rec *, void *),
                                          void *arg) MAMORI_MUST_CHECK;

/* Events (alerts and observations). */
enum mamori_err store_event_add(struct store *s, int64_t ts, const char *device_id,
                                const char *kind, const char *severity,
                                const char *detail) MAMORI_MUST_CHECK;
enum mamori_err store_event_list(struct store *s, const char *device_id, int64_t owner_id,
                                 int64_t after, int limit,
                                 bool (*cb)(const struct event_rec *, void *),
                                 void *arg) MAMORI_MUST_CHECK;

/* Audit log rows (the chain itself is computed by hub/core/audit.c). */
enum mamori_err store_audit_last(struct store *s, struct audit_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_audit_get(struct store *s, int64_t seq,
                                struct audit_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_audit_append(struct store *s, const struct audit_rec *r) MAMORI_MUST_CHECK;
enum mamori_err store_audit_list(struct store *s, int64_t after, int limit,
                                 bool (*cb)(const struct audit_rec *, void *),
                                 void *arg) MAMORI_MUST_CHECK;

/* Telemetry schemas per model (the document text, see common/schema.h). */
enum mamori_err store_schema_set(struct store *s, const char *model, const char *doc,
                                 int64_t now) MAMORI_MUST_CHECK;
/* *doc_out is malloc'd; MAMORI_ERR_NOTFOUND when the model has none. */
enum mamori_err store_schema_get(struct store *s, const char *model,
                                 char **doc_out) MAMORI_MUST_CHECK;

/* The firmware repository (docs/updates.md). Roots: one row per version,
 * the signed document as received. */
enum mamori_err store_fw_root_add(struct store *s, uint64_t version, int64_t expires,
                                  const char *doc, const char *by, int64_t now) MAMORI_MUST_CHECK;
/* *doc_out is malloc'd; MAMORI_ERR_NOTFOUND when there is no root yet. */
enum mamori_err store_fw_root_latest(struct store *s, char **doc_out) MAMORI_MUST_CHECK;
/* Every root, oldest first (the chain a device walks). */
enum mamori_err store_fw_roots(struct store *s,
                               bool (*cb)(uint64_t version, int64_t expires, const char *doc,
                                          void *arg),
                               void *arg) MAMORI_MUST_CHECK;
struct fw_release_rec {
    char sha256[65];
    char model[65];
    char fw_version[65];
    uint64_t security_version, floor, size;
    int64_t expires;
    const char *doc; /* list callbacks: valid during the call; get: NULL (see doc_out) */
    char added_by[65];
    int64_t added_at, image_at, retired_at; /* 0: not yet */
    char retire_reason[257];
};
/* MAMORI_ERR_EXISTS: same image or same model and version already there. */
enum mamori_err store_fw_release_add(struct store *s,
                                     const struct fw_release_rec *r) MAMORI_MUST_CHECK;
/* doc_out (may be NULL) gets the signed document, malloc'd. */
enum mamori_err store_fw_release_get(struct store *s, const char *sha256,
                                     struct fw_release_rec *out, char **doc_out) MAMORI_MUST_CHECK;
/* model NULL: every model. Newest security version first. */
enum mamori_err store_fw_releases(struct store *s, const char *model,
                                  bool (*cb)(const struct fw_release_rec *, void *),
                                  void *arg) MAMORI_MUST_CHECK;
/* retire: marks it retired (reason kept); else marks its image present.
 * MAMORI_ERR_STATE when there is no such release or it is already so. */
enum mamori_err store_fw_release_mark(struct store *s, const char *sha256, bool retire,
                                      const char *reason, int64_t now) MAMORI_MUST_CHECK;

/* Download tokens of update commands: only the SHA-256 of the token is
 * kept, with the device and image it opens. */
enum mamori_err store_update_token_add(struct store *s, const char *token_hash,
                                       const char *device_id, const char *sha256,
                                       int64_t expires_at) MAMORI_MUST_CHECK;
enum mamori_err store_update_token_get(struct store *s, const char *token_hash, char device_id[24],
                                       char sha256[65], int64_t *expires_at) MAMORI_MUST_CHECK;

/* The firmware a device reports (MAMORI_ERR_EXISTS when unchanged). */
enum mamori_err store_device_fw_set(struct store *s, const char *id,
                                    const char *fw_version) MAMORI_MUST_CHECK;
/* Devices of model running fw_version (NULL: every device of the model). */
enum mamori_err store_devices_on(struct store *s, const char *model, const char *fw_version,
                                 bool (*cb)(const char *id, void *), void *arg) MAMORI_MUST_CHECK;
/* Security advisories (affected: a JSON array of versions) and each
 * model's security-support end (Unix seconds). */
struct advisory_rec {
    int64_t id;
    char model[STORE_NAME_MAX + 1];
    char title[201];
    char severity[16];
    char affected[2048];
    char fixed_version[65];
    char published_by[STORE_NAME_MAX + 1];
    int64_t published_at;
};
enum mamori_err store_advisory_add(struct store *s, struct advisory_rec *a) MAMORI_MUST_CHECK;
enum mamori_err store_advisories(struct store *s, const char *model,
                                 bool (*cb)(const struct advisory_rec *, void *),
                                 void *arg) MAMORI_MUST_CHECK;
enum mamori_err store_support_set(struct store *s, const char *model, int64_t end,
                                  int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_support_get(struct store *s, const char *model,
                                  int64_t *end) MAMORI_MUST_CHECK;

/* Device groups (campaign targets). */
enum mamori_err store_group_set(struct store *s, const char *group, const char *device_id,
                                bool member) MAMORI_MUST_CHECK;
enum mamori_err store_group_devices(struct store *s, const char *group,
                                    bool (*cb)(const char *device_id, void *),
                                    void *arg) MAMORI_MUST_CHECK;

/* Staged update campaigns (hub/fleet/campaign.c). */
struct campaign_rec {
    int64_t id;
    char sha256[65];
    char model[STORE_NAME_MAX + 1];
    char state[16]; /* running, paused, done, cancelled */
    int canary, wave, interval_s, max_fail_pct, window_start, window_end, waves_sent;
    int64_t next_wave_at;
    char reason[STORE_REASON_MAX + 1];
    char note[256]; /* why it paused, or how it ended */
    char created_by[STORE_NAME_MAX + 1];
    int64_t created_at, updated_at;
    char group[STORE_NAME_MAX + 1]; /* "" : every device of the model */
};
struct campaign_counts {
    int pending, in_flight, committed, failed, skipped;
};
/* Adds the campaign (c->id set) with every device of its model that may
 * take commands, each "pending". */
enum mamori_err store_campaign_add(struct store *s, struct campaign_rec *c) MAMORI_MUST_CHECK;
enum mamori_err store_campaigns(struct store *s, const char *state,
                                bool (*cb)(const struct campaign_rec *, void *),
                                void *arg) MAMORI_MUST_CHECK;
enum mamori_err store_campaign_get(struct store *s, int64_t id,
                                   struct campaign_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_campaign_set(struct store *s, int64_t id, const char *state, int waves_sent,
                                   int64_t next_wave_at, const char *note,
                                   int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_campaign_counts(struct store *s, int64_t id,
                                      struct campaign_counts *n) MAMORI_MUST_CHECK;
/* The next n pending devices, those tried least first. */
enum mamori_err store_campaign_next(struct store *s, int64_t id, int n,
                                    bool (*cb)(const char *device_id, void *),
                                    void *arg) MAMORI_MUST_CHECK;
/* A try that did not reach the release (download failed): pending again
 * until max_tries, then failed. */
enum mamori_err store_campaign_device_retry(struct store *s, int64_t id, const char *device_id,
                                            int max_tries, const char *error,
                                            int64_t now) MAMORI_MUST_CHECK;
/* wave < 0 keeps it; command_id NULL keeps it. */
enum mamori_err store_campaign_device_set(struct store *s, int64_t id, const char *device_id,
                                          int wave, const char *status, const char *command_id,
                                          const char *error, int64_t now) MAMORI_MUST_CHECK;
/* The newest campaign of device_id matching command_id and status (each
 * NULL: any). */
enum mamori_err store_campaign_device_find(struct store *s, const char *device_id,
                                           const char *command_id, const char *status,
                                           int64_t *campaign_id) MAMORI_MUST_CHECK;
enum mamori_err store_campaign_devices(struct store *s, int64_t id,
                                       bool (*cb)(const char *device_id, int wave,
                                                  const char *status, const char *error, void *arg),
                                       void *arg) MAMORI_MUST_CHECK;

/* Per device and stream ("tm", "ev", "log"): the highest sequence number
 * accepted and its device timestamp, and what the hub has dealt with
 * (hub/device/seqwin.h): every number up to acked, the window of numbers
 * above it (bit i: acked + 1 + i), a range the device dropped itself, and
 * since when a gap is open. All zero when none yet; has_acked is false for
 * a state written before acked was kept (then acked is last_seq). */
#define STORE_STREAM_WINDOW 128 /* bytes */
struct stream_rec {
    uint64_t last_seq;
    int64_t last_ts;
    bool has_acked;
    uint64_t acked;
    uint8_t window[STORE_STREAM_WINDOW];
    uint64_t gone_from, gone_to;
    int64_t gap_since_ms;
};
enum mamori_err store_stream_get(struct store *s, const char *device_id, const char *stream,
                                 struct stream_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_stream_set(struct store *s, const char *device_id, const char *stream,
                                 const struct stream_rec *r) MAMORI_MUST_CHECK;
/* n stream states at once (a batch): what n store_stream_set would do, in
 * fewer statements. row(i, ctx, ...) gives the i-th; a device and stream
 * appear at most once. */
typedef void (*store_stream_row_fn)(size_t i, void *ctx, const char **device_id,
                                    const char **stream, struct stream_rec *out);
enum mamori_err store_stream_set_many(struct store *s, size_t n, store_stream_row_fn row,
                                      void *ctx) MAMORI_MUST_CHECK;

/* Accepted telemetry: append-only (UPDATE is refused by a trigger). */
struct telemetry_rec {
    int64_t id;
    char device_id[24];
    uint64_t seq;
    int64_t ts;       /* device clock, ms */
    int64_t recv_at;  /* hub clock, ms */
    char digest[65];  /* SHA-256 of the envelope as received */
    const char *body; /* JSON text; valid only during the callback */
};
enum mamori_err store_telemetry_add(struct store *s,
                                    const struct telemetry_rec *t) MAMORI_MUST_CHECK;
/* n rows at once (a batch): what n store_telemetry_add would do, in fewer
 * statements. row(i, ctx, out) fills the i-th. */
typedef void (*store_telemetry_row_fn)(size_t i, void *ctx, struct telemetry_rec *out);
enum mamori_err store_telemetry_add_many(struct store *s, size_t n, store_telemetry_row_fn row,
                                         void *ctx) MAMORI_MUST_CHECK;
/* True when this exact message (device, ts, seq, digest) is stored. */
bool store_telemetry_has(struct store *s, const char *device_id, int64_t ts, uint64_t seq,
                         const char *digest);
/* Whether the device has a row with sequence number seq and a timestamp
 * within [ts_lo, ts_hi] (whatever its content). */
bool store_telemetry_seq_near(struct store *s, const char *device_id, uint64_t seq, int64_t ts_lo,
                              int64_t ts_hi);
/* Rows of device_id with from_ts <= ts <= to_ts, in (ts, id) order, after
 * the row with id after_id (0: from the start). */
enum mamori_err store_telemetry_list(struct store *s, const char *device_id, int64_t from_ts,
                                     int64_t to_ts, int64_t after_id, int limit,
                                     bool (*cb)(const struct telemetry_rec *, void *),
                                     void *arg) MAMORI_MUST_CHECK;
int64_t store_telemetry_count(struct store *s, const char *device_id);

/* Remote commands (hub/device/command.c). */
struct command_rec {
    char id[33]; /* 128-bit nonce, hex */
    char device_id[24];
    char type[16];
    char args[4096];
    char issued_by[STORE_NAME_MAX + 1];
    int64_t issued_at;  /* ms */
    int64_t expires_at; /* ms */
    char status[16];    /* pending, ok, failed, refused, expired */
    char result[2048];
    int64_t updated_at;
};
enum mamori_err store_command_add(struct store *s, const struct command_rec *c) MAMORI_MUST_CHECK;
enum mamori_err store_command_get(struct store *s, const char *id,
                                  struct command_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_command_finish(struct store *s, const char *id, const char *status,
                                     const char *result, int64_t now) MAMORI_MUST_CHECK;
/* Newest first; pending_only: status pending and not expired at now. */
enum mamori_err store_command_list(struct store *s, const char *device_id, bool pending_only,
                                   int64_t now, int limit,
                                   bool (*cb)(const struct command_rec *, void *),
                                   void *arg) MAMORI_MUST_CHECK;

/* Alerts (hub/alerts/alerts.c): one live (open or acknowledged) alert per rule
 * and device, counted; resolved ones stay as history. */
struct alert_rec {
    int64_t id;
    char rule[32], device_id[24], severity[16], state[16], action[16];
    int64_t first_at, last_at, count; /* ms */
    char detail[1024];
    char acked_by[STORE_NAME_MAX + 1], resolved_by[STORE_NAME_MAX + 1];
    char note[STORE_REASON_MAX + 1];
};
enum mamori_err store_alert_raise(struct store *s, const char *rule, const char *device_id,
                                  const char *severity, const char *detail, int64_t now,
                                  struct alert_rec *out, bool *created) MAMORI_MUST_CHECK;
enum mamori_err store_alert_get(struct store *s, int64_t id,
                                struct alert_rec *out) MAMORI_MUST_CHECK;
/* The live (open or acknowledged) alert of rule for device_id. */
enum mamori_err store_alert_live(struct store *s, const char *rule, const char *device_id,
                                 struct alert_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_alerts(struct store *s, const char *state, const char *device_id,
                             int64_t after, int limit, bool (*cb)(const struct alert_rec *, void *),
                             void *arg) MAMORI_MUST_CHECK;
/* open -> acknowledged, or any live -> resolved (MAMORI_ERR_STATE otherwise). */
enum mamori_err store_alert_set(struct store *s, int64_t id, const char *state, const char *by,
                                const char *note) MAMORI_MUST_CHECK;
enum mamori_err store_alert_action(struct store *s, int64_t id,
                                   const char *action) MAMORI_MUST_CHECK;
/* Alerts whose response is due ("due:quarantine", "due:lock"), oldest first. */
enum mamori_err store_alerts_action_due(struct store *s, struct alert_rec *out, size_t max,
                                        size_t *n) MAMORI_MUST_CHECK;
struct policy_rec {
    char rule[32];
    char model[STORE_NAME_MAX + 1]; /* "" : every model without its own */
    char action[16];                /* notify, quarantine, lock */
    int act_after;                  /* the action once the alert counted this many */
};
enum mamori_err store_policy_set(struct store *s, const struct policy_rec *p, const char *by,
                                 int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_policy_get(struct store *s, const char *rule, const char *model,
                                 struct policy_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_policies(struct store *s, bool (*cb)(const struct policy_rec *, void *),
                               void *arg) MAMORI_MUST_CHECK;
struct webhook_rec {
    int64_t id;
    char url[512];
    char secret[80];
    char created_by[STORE_NAME_MAX + 1];
    int64_t created_at;
};
enum mamori_err store_webhook_add(struct store *s, struct webhook_rec *w) MAMORI_MUST_CHECK;
enum mamori_err store_webhook_del(struct store *s, int64_t id) MAMORI_MUST_CHECK;
enum mamori_err store_webhooks(struct store *s, bool (*cb)(const struct webhook_rec *, void *),
                               void *arg) MAMORI_MUST_CHECK;
struct delivery_rec {
    int64_t id, webhook_id, alert_id, created_at;
    int tries;
    char url[512], secret[80];
    char payload[2048];
};
/* Retention of the device data: telemetry received, and events recorded,
 * before before_ms go, at most chunk of each per call (the oldest first);
 * a call that removes fewer than chunk of both has caught up. */
enum mamori_err store_data_prune(struct store *s, int64_t before_ms, int chunk, int64_t *telemetry,
                                 int64_t *events) MAMORI_MUST_CHECK;
/* Retention: resolved alerts last seen before before_ms and finished
 * deliveries created before it go; the counts deleted are returned. */
enum mamori_err store_alerts_prune(struct store *s, int64_t before_ms, int64_t *alerts,
                                   int64_t *deliveries) MAMORI_MUST_CHECK;
enum mamori_err store_delivery_add(struct store *s, int64_t webhook_id, int64_t alert_id,
                                   const char *payload, int64_t now) MAMORI_MUST_CHECK;
enum mamori_err store_deliveries_due(struct store *s, int64_t now, struct delivery_rec *out,
                                     size_t max, size_t *n) MAMORI_MUST_CHECK;
enum mamori_err store_delivery_set(struct store *s, int64_t id, const char *state, int tries,
                                   int64_t next_at, const char *error) MAMORI_MUST_CHECK;

/* Ownership transfer (hub/owners/owners.c): one live transfer per device, found
 * by the SHA-256 of its single-use code. */
struct transfer_rec {
    char device_id[24];
    char code_hash[65];
    int64_t from_user;
    char data[8]; /* "export" or "erase": what becomes of the previous owner's data */
    int64_t created_at, expires_at;
};
enum mamori_err store_transfer_put(struct store *s, const struct transfer_rec *t) MAMORI_MUST_CHECK;
/* By device (device_id) or by code (code_hash); either may be NULL. */
enum mamori_err store_transfer_find(struct store *s, const char *device_id, const char *code_hash,
                                    struct transfer_rec *out) MAMORI_MUST_CHECK;
enum mamori_err store_transfer_del(struct store *s, const char *device_id) MAMORI_MUST_CHECK;
/* owner_id 0: no owner any more (a decommissioned device). */
enum mamori_err store_device_set_owner(struct store *s, const char *id, int64_t owner_id,
                                       int64_t now) MAMORI_MUST_CHECK;
/* Erases what the hub holds of a device's use: telemetry, events, finished
 * commands, and the pending ones issued by cancel_by (a user name:
 * withdrawn, never sent again).
 * The audit log and the registry entry stay. */
enum mamori_err store_device_data_erase(struct store *s, const char *id,
                                        const char *cancel_by) MAMORI_MUST_CHECK;
enum mamori_err store_export_add(struct store *s, int64_t user_id, const char *device_id,
                                 const char *body, int64_t now, int64_t *id) MAMORI_MUST_CHECK;
enum mamori_err store_exports_erase(struct store *s, int64_t user_id) MAMORI_MUST_CHECK;
/* The user's exports (id 0: all of them). */
enum mamori_err store_exports(struct store *s, int64_t user_id, int64_t id,
                              bool (*cb)(int64_t id, const char *device_id, int64_t created_at,
                                         const char *body, void *arg),
                              void *arg) MAMORI_MUST_CHECK;

/* The certificates of revoked and decommissioned devices (their CRL):
 * serial, when the device left, and whether it was retired (decommissioned)
 * rather than revoked. */
enum mamori_err store_revoked_certs(struct store *s,
                                    bool (*cb)(const char *serial, int64_t when, bool retired,
                                               void *arg),
                                    void *arg) MAMORI_MUST_CHECK;

/* Claimed or active devices offline since before (s): stray candidates. */
enum mamori_err store_devices_silent(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                     size_t *n) MAMORI_MUST_CHECK;

/* Every device's id, state and certificate (fleet audit). */
enum mamori_err store_device_certs(struct store *s,
                                   bool (*cb)(const char *id, const char *state, const char *pem,
                                              void *arg),
                                   void *arg) MAMORI_MUST_CHECK;

/* Live devices whose certificate expires before `before` (s), soonest first. */
enum mamori_err store_devices_expiring(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                       size_t *n) MAMORI_MUST_CHECK;

/* The first column of the first row of a fixed query, as an integer; -1
 * when there is none. arg, when not NULL, is its one text parameter (?1);
 * NULL: the query has none. For counts in reports: sql is always a literal
 * in the caller, never built from input. */
int64_t store_scalar(struct store *s, const char *sql, const char *arg);
/* Copies the WAL's committed pages into the database on a connection of
 * its own, beside the writer (which never waits for it): the commits of
 * ingest batches then never carry a checkpoint. Call from one thread only,
 * without the store's lock (the hub's "store_checkpoint" job). */
enum mamori_err store_checkpoint(struct store *s) MAMORI_MUST_CHECK;

/* Online claimed/active devices with id > after (cursor), in id order. */
enum mamori_err store_devices_online_after(struct store *s, const char *after, char (*ids)[24],
                                           size_t max, size_t *n) MAMORI_MUST_CHECK;

enum mamori_err store_command_delete(struct store *s, const char *id) MAMORI_MUST_CHECK;

enum mamori_err store_user_seen(struct store *s, int64_t id, int64_t now) MAMORI_MUST_CHECK;
/* Claimed/active devices whose owner last logged in before `before` (s). */
enum mamori_err store_devices_owner_idle(struct store *s, int64_t before, char (*ids)[24],
                                         size_t max, size_t *n) MAMORI_MUST_CHECK;

#endif
