/*
 * hub/store/store_certs.c - certificates: the trust anchors of device
 * certificates, each device's certificates (current, next while a rotation
 * is under way, previous), and the lists the CRL and the fleet audit are
 * made from.
 *
 * The rotation policy's query, store_device_rotation_due, is in
 * store_sqlite.c.
 */
#include <string.h>

#include "common/buf.h"
#include "hub/store/store_priv.h"

enum mamori_err store_ca_add(struct store *s, const char *model, const char *kind, const char *fp,
                             const char *subject, const char *pem, int64_t now)
{
    return db_exec(s,
                   "INSERT INTO trust_cas(model,kind,fingerprint,subject,pem,created_at) "
                   "VALUES(?,?,?,?,?,?)",
                   DB_ARGS(db_text(model), db_text(kind), db_text(fp), db_text(subject),
                           db_text(pem), db_int(now)),
                   NULL);
}

enum mamori_err store_ca_bundle(struct store *s, const char *model, char **pem_out)
{
    struct db_rows q;
    *pem_out = NULL;
    /* The issuing CA (model NULL) is valid for every model. */
    enum mamori_err rc =
        model ? db_query(s, "SELECT pem FROM trust_cas WHERE model IS NULL OR model=? ORDER BY id",
                         DB_ARGS(db_text(model)), &q)
              : db_query(s, "SELECT pem FROM trust_cas ORDER BY id", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    struct dbuf d;
    dbuf_init(&d, 4 * 1024 * 1024);
    while (!rc && db_next(&q))
        rc = dbuf_addstr(&d, db_col_str(&q.row, 0));
    enum mamori_err step = db_done(&q);
    if (!rc)
        rc = step;
    if (rc) {
        dbuf_free(&d);
        return rc;
    }
    *pem_out = dbuf_take(&d);
    return *pem_out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err
store_ca_list(struct store *s,
              bool (*cb)(const char *, const char *, const char *, const char *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s, "SELECT model,kind,fingerprint,subject FROM trust_cas ORDER BY id", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_str(&q.row, 0), db_col_str(&q.row, 1), db_col_str(&q.row, 2),
                             db_col_str(&q.row, 3), arg))
        ;
    return db_done(&q);
}

/* --- device certificates --------------------------------------------------- */

enum mamori_err store_device_cert(struct store *s, const char *id, char **pem_out)
{
    return db_one_dup(s, "SELECT cert_pem FROM devices WHERE id=?", DB_ARGS(db_text(id)), pem_out);
}

enum mamori_err store_device_cert_at(struct store *s, const char *id, enum store_cert_which w,
                                     char **pem_out)
{
    /* a NULL column (no next, or no previous, certificate) is "not found" */
    return db_one_dup(s,
                      w == STORE_CERT_NEXT       ? "SELECT cert_next_pem FROM devices WHERE id=?"
                      : w == STORE_CERT_PREVIOUS ? "SELECT cert_prev_pem FROM devices WHERE id=?"
                                                 : "SELECT cert_pem FROM devices WHERE id=?",
                      DB_ARGS(db_text(id)), pem_out);
}

enum mamori_err store_device_rotation_asked(struct store *s, const char *id, int64_t now)
{
    return db_exec_one(s, "UPDATE devices SET rotate_asked_at=? WHERE id=?",
                       DB_ARGS(db_int(now), db_text(id)), MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_device_rotation_begin(struct store *s, const char *id, const char *next_fp,
                                            const char *next_pem, int64_t now)
{
    return db_exec_one(s,
                       "UPDATE devices SET cert_next_fp=?, cert_next_pem=?, updated_at=? WHERE "
                       "id=? AND cert_fp<>?1",
                       DB_ARGS(db_text(next_fp), db_text(next_pem), db_int(now), db_text(id)),
                       MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_device_rotation_commit(struct store *s, const char *id, const char *next_fp,
                                             const char *serial, int64_t not_after, int64_t now)
{
    return db_exec_one(
        s,
        "UPDATE devices SET cert_prev_pem=cert_pem, cert_fp=cert_next_fp,"
        " cert_pem=cert_next_pem, cert_serial=?, cert_not_after=?, cert_next_fp=NULL,"
        " cert_next_pem=NULL, cert_rotated_at=?, updated_at=?3 WHERE id=? AND cert_next_fp=?",
        DB_ARGS(db_text(serial), db_int(not_after), db_int(now), db_text(id), db_text(next_fp)),
        MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_revoked_certs(struct store *s,
                                    bool (*cb)(const char *serial, int64_t when, bool retired,
                                               void *arg),
                                    void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s,
                 "SELECT cert_serial, updated_at, state FROM devices WHERE state IN "
                 "('revoked','decommissioned') AND cert_serial<>'' ORDER BY id LIMIT 1000000",
                 DB_NO_ARGS, &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_str(&q.row, 0), db_col_int(&q.row, 1),
                             strcmp(db_col_str(&q.row, 2), "decommissioned") == 0, arg))
        ;
    return db_done(&q);
}

enum mamori_err store_device_certs(struct store *s,
                                   bool (*cb)(const char *id, const char *state, const char *pem,
                                              void *arg),
                                   void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s, "SELECT id, state, cert_pem FROM devices ORDER BY id LIMIT 1000000", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    while (db_next(&q) &&
           cb(db_col_str(&q.row, 0), db_col_str(&q.row, 1), db_col_str(&q.row, 2), arg))
        ;
    return db_done(&q);
}
