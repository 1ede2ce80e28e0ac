/*
 * hub/store/store_devices.c - the device registry: records, ownership,
 * presence, reported firmware, the fleet queries of the hub's sweeps, and
 * each device's last verified security status.
 *
 * Certificates and their rotation are in store_certs.c; erasing what the
 * hub holds of a device's use is in store_sqlite.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

void store_device_row(const struct db_row *st, void *out)
{
    struct device_rec *d = out;
    memset(d, 0, sizeof(*d));
    db_col_text(st, 0, d->id, sizeof(d->id));
    db_col_text(st, 1, d->model, sizeof(d->model));
    db_col_text(st, 2, d->state, sizeof(d->state));
    d->owner_id = db_col_int(st, 3);
    db_col_text(st, 4, d->owner_name, sizeof(d->owner_name));
    db_col_text(st, 5, d->cert_fp, sizeof(d->cert_fp));
    db_col_text(st, 6, d->cert_serial, sizeof(d->cert_serial));
    d->cert_not_after = db_col_int(st, 7);
    d->created_at = db_col_int(st, 8);
    d->updated_at = db_col_int(st, 9);
    d->claimed_at = db_col_int(st, 10);
    d->last_seen = db_col_int(st, 11);
    d->online = (int)db_col_int(st, 12) != 0;
    d->hb_interval = (int)db_col_int(st, 13);
    db_col_text(st, 14, d->cert_next_fp, sizeof(d->cert_next_fp));
    d->cert_rotated_at = db_col_int(st, 15);
    d->rotate_asked_at = db_col_int(st, 16);
    db_col_text(st, 17, d->fw_version, sizeof(d->fw_version));
}

enum mamori_err store_device_add(struct store *s, const struct device_rec *d, const char *cert_pem,
                                 const char *claim_hash)
{
    return db_exec(s,
                   "INSERT INTO devices(id,model,state,cert_fp,cert_serial,cert_not_after,cert_pem,"
                   "claim_hash,created_at,updated_at,hb_interval) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                   DB_ARGS(db_text(d->id), db_text(d->model), db_text(d->state),
                           db_text(d->cert_fp), db_text(d->cert_serial), db_int(d->cert_not_after),
                           db_text(cert_pem), db_text(claim_hash), db_int(d->created_at),
                           db_int(d->created_at), db_int(d->hb_interval)),
                   NULL);
}

enum mamori_err store_device_get(struct store *s, const char *id, struct device_rec *out)
{
    return db_one(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.id=?", DB_ARGS(db_text(id)),
                  store_device_row, out, sizeof(*out));
}

enum mamori_err store_device_by_claim(struct store *s, const char *claim_hash,
                                      struct device_rec *out)
{
    return db_one(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.claim_hash=?",
                  DB_ARGS(db_text(claim_hash)), store_device_row, out, sizeof(*out));
}

enum mamori_err store_device_by_fp(struct store *s, const char *fp, struct device_rec *out)
{
    return db_one(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.cert_fp=?", DB_ARGS(db_text(fp)),
                  store_device_row, out, sizeof(*out));
}

enum mamori_err store_device_list(struct store *s, int64_t owner_id, const char *after, int limit,
                                  bool (*cb)(const struct device_rec *, void *), void *arg)
{
    struct db_rows q;
    const char *from = after ? after : "";
    enum mamori_err rc =
        owner_id ? db_query(s,
                            "SELECT " DEV_COLS DEV_FROM
                            "WHERE d.id>? AND d.owner_id=? ORDER BY d.id LIMIT ?",
                            DB_ARGS(db_text(from), db_int(owner_id), db_int(limit)), &q)
                 : db_query(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.id>? ORDER BY d.id LIMIT ?",
                            DB_ARGS(db_text(from), db_int(limit)), &q);
    return rc ? rc : store_device_each(&q, cb, arg);
}

enum mamori_err store_device_each(struct db_rows *q, bool (*cb)(const struct device_rec *, void *),
                                  void *arg)
{
    struct device_rec d;
    while (db_next(q)) {
        store_device_row(&q->row, &d);
        if (!cb(&d, arg))
            break;
    }
    return db_done(q);
}

int64_t store_device_count(struct store *s)
{
    int64_t n;
    return db_one_int(s, "SELECT count(*) FROM devices", DB_NO_ARGS, &n) ? -1 : n;
}

enum mamori_err store_device_set_state(struct store *s, const char *id, const char *state,
                                       int64_t now)
{
    return db_exec_one(s, "UPDATE devices SET state=?, updated_at=? WHERE id=?",
                       DB_ARGS(db_text(state), db_int(now), db_text(id)), MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_device_claim(struct store *s, const char *id, int64_t owner_id, int64_t now)
{
    return db_exec_one(s,
                       "UPDATE devices SET owner_id=?, claimed_at=?, updated_at=? "
                       "WHERE id=? AND owner_id IS NULL",
                       DB_ARGS(db_int(owner_id), db_int(now), db_int(now), db_text(id)),
                       MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_device_clear_claim(struct store *s, const char *id)
{
    return db_exec(s, "UPDATE devices SET claim_hash=NULL WHERE id=?", DB_ARGS(db_text(id)), NULL);
}

enum mamori_err store_device_set_owner(struct store *s, const char *id, int64_t owner_id,
                                       int64_t now)
{
    return db_exec_one(
        s, "UPDATE devices SET owner_id=?, claimed_at=?, updated_at=? WHERE id=?",
        DB_ARGS(owner_id ? db_int(owner_id) : db_null(), db_int(now), db_int(now), db_text(id)),
        MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_device_set_online(struct store *s, const char *id, bool online,
                                        int64_t last_seen)
{
    return db_exec(s, "UPDATE devices SET online=?, last_seen=? WHERE id=?",
                   DB_ARGS(db_int(online ? 1 : 0), db_int(last_seen), db_text(id)), NULL);
}

enum mamori_err store_device_fw_set(struct store *s, const char *id, const char *fw_version)
{
    /* MAMORI_ERR_EXISTS: unchanged */
    return db_exec_one(s,
                       "UPDATE devices SET fw_version=?2 WHERE id=?1 AND "
                       "coalesce(fw_version,'')<>?2",
                       DB_ARGS(db_text(id), db_text(fw_version)), MAMORI_ERR_EXISTS);
}

enum mamori_err store_devices_on(struct store *s, const char *model, const char *fw_version,
                                 bool (*cb)(const char *id, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s,
                                  "SELECT id FROM devices WHERE model=?1 AND (?2 IS NULL OR "
                                  "fw_version=?2) ORDER BY id LIMIT 100000",
                                  DB_ARGS(db_text(model), db_text(fw_version)), &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_str(&q.row, 0), arg))
        ;
    return db_done(&q);
}

/* --- the sweeps' queries: device ids, at most max ---------------------------- */

enum mamori_err store_devices_silent(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                     size_t *n)
{
    return db_many(s,
                   "SELECT id FROM devices WHERE state IN ('claimed','active') AND online=0 AND "
                   "coalesce(last_seen, claimed_at, created_at) < ?1 ORDER BY id LIMIT ?2",
                   DB_ARGS(db_int(before), db_int((int64_t)max)), db_fill_id, ids, sizeof(*ids),
                   max, n);
}

enum mamori_err store_devices_expiring(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                       size_t *n)
{
    return db_many(s,
                   "SELECT id FROM devices WHERE state NOT IN "
                   "('manufactured','revoked','decommissioned') AND cert_not_after < ?1 "
                   "ORDER BY cert_not_after LIMIT ?2",
                   DB_ARGS(db_int(before), db_int((int64_t)max)), db_fill_id, ids, sizeof(*ids),
                   max, n);
}

enum mamori_err store_devices_online_after(struct store *s, const char *after, char (*ids)[24],
                                           size_t max, size_t *n)
{
    return db_many(s,
                   "SELECT id FROM devices WHERE online=1 AND state IN ('claimed','active') AND "
                   "id>?1 ORDER BY id LIMIT ?2",
                   DB_ARGS(db_text(after ? after : ""), db_int((int64_t)max)), db_fill_id, ids,
                   sizeof(*ids), max, n);
}

enum mamori_err store_devices_owner_idle(struct store *s, int64_t before, char (*ids)[24],
                                         size_t max, size_t *n)
{
    return db_many(s,
                   "SELECT d.id FROM devices d JOIN users u ON u.id=d.owner_id WHERE d.state IN "
                   "('claimed','active') AND coalesce(u.last_login, d.claimed_at, 0) < ?1 "
                   "ORDER BY d.id LIMIT ?2",
                   DB_ARGS(db_int(before), db_int((int64_t)max)), db_fill_id, ids, sizeof(*ids),
                   max, n);
}

/* --- security status (common/eat.h) ------------------------------------------ */

enum mamori_err store_status_set(struct store *s, const struct status_rec *r)
{
    /* MAMORI_ERR_STATE: not newer than the one held */
    return db_exec_one(
        s,
        "INSERT INTO device_status(device_id,token,claims,iat,exp,received_at) "
        "VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(device_id) DO UPDATE SET token=excluded.token, "
        "claims=excluded.claims, iat=excluded.iat, exp=excluded.exp, "
        "received_at=excluded.received_at WHERE excluded.iat > device_status.iat",
        DB_ARGS(db_text(r->device_id), db_text(r->token), db_text(r->claims), db_int(r->iat),
                db_int(r->exp), db_int(r->received_at)),
        MAMORI_ERR_STATE);
}

static void status_row(const struct db_row *st, void *out)
{
    struct status_rec *r = out;
    db_col_text(st, 0, r->device_id, sizeof(r->device_id));
    db_col_text(st, 1, r->token, sizeof(r->token));
    db_col_text(st, 2, r->claims, sizeof(r->claims));
    r->iat = db_col_int(st, 3);
    r->exp = db_col_int(st, 4);
    r->received_at = db_col_int(st, 5);
}

enum mamori_err store_status_get(struct store *s, const char *id, struct status_rec *out)
{
    return db_one(s,
                  "SELECT device_id,token,claims,iat,exp,received_at FROM device_status WHERE "
                  "device_id=?1",
                  DB_ARGS(db_text(id)), status_row, out, sizeof(*out));
}
