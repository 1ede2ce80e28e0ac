/*
 * hub/store/store_owners.c - ownership transfer and data rights
 * (hub/owners/owners.c): one live transfer per device, found by the SHA-256 of
 * its single-use code, and the exports of a previous owner's data.
 *
 * Setting a device's owner is in store_devices.c, erasing its data in
 * store_sqlite.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

enum mamori_err store_transfer_put(struct store *s, const struct transfer_rec *t)
{
    return db_exec(s,
                   "INSERT INTO transfers(device_id,code_hash,from_user,data,created_at,"
                   "expires_at) VALUES(?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET "
                   "code_hash=excluded.code_hash, from_user=excluded.from_user, "
                   "data=excluded.data, created_at=excluded.created_at, "
                   "expires_at=excluded.expires_at",
                   DB_ARGS(db_text(t->device_id), db_text(t->code_hash), db_int(t->from_user),
                           db_text(t->data), db_int(t->created_at), db_int(t->expires_at)),
                   NULL);
}

static void transfer_row(const struct db_row *st, void *out)
{
    struct transfer_rec *t = out;
    memset(t, 0, sizeof(*t));
    db_col_text(st, 0, t->device_id, sizeof(t->device_id));
    db_col_text(st, 1, t->code_hash, sizeof(t->code_hash));
    t->from_user = db_col_int(st, 2);
    db_col_text(st, 3, t->data, sizeof(t->data));
    t->created_at = db_col_int(st, 4);
    t->expires_at = db_col_int(st, 5);
}

enum mamori_err store_transfer_find(struct store *s, const char *device_id, const char *code_hash,
                                    struct transfer_rec *out)
{
    return db_one(s,
                  "SELECT device_id,code_hash,from_user,data,created_at,expires_at FROM "
                  "transfers WHERE device_id=?1 OR code_hash=?2",
                  DB_ARGS(db_text(device_id), db_text(code_hash)), transfer_row, out, sizeof(*out));
}

enum mamori_err store_transfer_del(struct store *s, const char *device_id)
{
    return db_exec(s, "DELETE FROM transfers WHERE device_id=?", DB_ARGS(db_text(device_id)), NULL);
}

/* --- exports ------------------------------------------------------------------- */

enum mamori_err store_export_add(struct store *s, int64_t user_id, const char *device_id,
                                 const char *body, int64_t now, int64_t *id)
{
    return db_insert(s, "INSERT INTO exports(user_id,device_id,created_at,body) VALUES(?,?,?,?)",
                     DB_ARGS(db_int(user_id), db_text(device_id), db_int(now), db_text(body)), id);
}

enum mamori_err store_exports(struct store *s, int64_t user_id, int64_t id,
                              bool (*cb)(int64_t id, const char *device_id, int64_t created_at,
                                         const char *body, void *arg),
                              void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s,
                                  "SELECT id,device_id,created_at,body FROM exports WHERE "
                                  "user_id=?1 AND (?2=0 OR id=?2) ORDER BY id",
                                  DB_ARGS(db_int(user_id), db_int(id)), &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_int(&q.row, 0), db_col_str(&q.row, 1), db_col_int(&q.row, 2),
                             db_col_str(&q.row, 3), arg))
        ;
    return db_done(&q);
}

enum mamori_err store_exports_erase(struct store *s, int64_t user_id)
{
    return db_exec(s, "DELETE FROM exports WHERE user_id=?", DB_ARGS(db_int(user_id)), NULL);
}
