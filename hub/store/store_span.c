/*
 * hub/store/store_span.c - what spans several entities: deleting an
 * account, erasing a device's data, and the rotation policy's query
 * (docs/threat-matrix.md names them in this file). The same SQL on every
 * engine.
 */
#include <stdbool.h>

#include "hub/store/store_priv.h"

enum mamori_err store_user_delete(struct store *s, int64_t id, int64_t now)
{
    /* Everything that is the account's; a device still owned by it fails
     * the last statement (foreign key) and the caller rolls back. */
    static const char *const SQL[] = {
        "DELETE FROM sessions WHERE user_id=?1",
        "DELETE FROM exports WHERE user_id=?1",
        "DELETE FROM transfers WHERE from_user=?1",
        "DELETE FROM throttle WHERE key IN ('claim:'||?1, 'transfer:'||?1, "
        "  'u:'||(SELECT name FROM users WHERE id=?1))",
        "INSERT INTO retired_names(name,retired_at) SELECT name,?2 FROM users WHERE id=?1 "
        "ON CONFLICT DO NOTHING",
        "DELETE FROM users WHERE id=?1",
    };
    int64_t n = 0;
    for (size_t i = 0; i < sizeof(SQL) / sizeof(SQL[0]); i++) {
        enum mamori_err rc = db_exec(s, SQL[i], DB_ARGS(db_int(id), db_int(now)), &n);
        if (rc)
            return rc == MAMORI_ERR_EXISTS ? MAMORI_ERR_STATE : rc;
    }
    s->erased = true;
    return n == 1 ? MAMORI_OK : MAMORI_ERR_NOTFOUND;
}

enum mamori_err store_device_data_erase(struct store *s, const char *id, const char *cancel_by)
{
    static const char *const SQL[] = {
        "DELETE FROM telemetry WHERE device_id=?1",
        "DELETE FROM events WHERE device_id=?1",
        ("DELETE FROM commands WHERE device_id=?1 AND (status<>'pending' OR (?2 IS NOT NULL AND "
         "issued_by=?2))"),
    };
    for (size_t i = 0; i < sizeof(SQL) / sizeof(SQL[0]); i++) {
        enum mamori_err rc = db_exec(s, SQL[i], DB_ARGS(db_text(id), db_text(cancel_by)), NULL);
        if (rc)
            return rc;
    }
    s->erased = true;
    return MAMORI_OK;
}

/* The rotation policy's query (hub/device/rotation.c); the rest of certificate
 * rotation is in store_certs.c. */
enum mamori_err store_device_rotation_due(struct store *s, int64_t now, int64_t renew_s,
                                          int64_t max_age_s, int64_t retry_s, int limit,
                                          bool (*cb)(const struct device_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s,
        "SELECT " DEV_COLS DEV_FROM
        "WHERE d.state='active' AND coalesce(d.rotate_asked_at,0) <= ?1 - ?4"
        " AND (d.cert_not_after <= ?1 + ?2 OR (?3 > 0 AND"
        " coalesce(d.cert_rotated_at, d.created_at) <= ?1 - ?3))"
        " ORDER BY d.cert_not_after LIMIT ?5",
        DB_ARGS(db_int(now), db_int(renew_s), db_int(max_age_s), db_int(retry_s), db_int(limit)),
        &q);
    return rc ? rc : store_device_each(&q, cb, arg);
}