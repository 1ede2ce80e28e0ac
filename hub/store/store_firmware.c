/*
 * hub/store/store_firmware.c - the firmware repository (docs/updates.md):
 * signed roots, releases and their images, the download tokens of update
 * commands, security advisories and each model's security-support end.
 */
#include <stdlib.h>
#include <string.h>

#include "hub/store/store_priv.h"

/* --- roots ------------------------------------------------------------------ */

enum mamori_err store_fw_root_add(struct store *s, uint64_t version, int64_t expires,
                                  const char *doc, const char *by, int64_t now)
{
    return db_exec(
        s, "INSERT INTO fw_roots(version,doc,expires,added_by,added_at) VALUES(?,?,?,?,?)",
        DB_ARGS(db_u64(version), db_text(doc), db_int(expires), db_text(by), db_int(now)), NULL);
}

enum mamori_err store_fw_root_latest(struct store *s, char **doc_out)
{
    return db_one_dup(s, "SELECT doc FROM fw_roots ORDER BY version DESC LIMIT 1", DB_NO_ARGS,
                      doc_out);
}

enum mamori_err store_fw_roots(struct store *s, bool (*cb)(uint64_t, int64_t, const char *, void *),
                               void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s, "SELECT version,expires,doc FROM fw_roots ORDER BY version", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    while (db_next(&q) &&
           cb((uint64_t)db_col_int(&q.row, 0), db_col_int(&q.row, 1), db_col_str(&q.row, 2), arg))
        ;
    return db_done(&q);
}

/* --- releases ----------------------------------------------------------------- */

enum mamori_err store_fw_release_add(struct store *s, const struct fw_release_rec *r)
{
    return db_exec(s,
                   "INSERT INTO fw_releases(sha256,model,fw_version,security_version,floor,size,"
                   "expires,doc,added_by,added_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
                   DB_ARGS(db_text(r->sha256), db_text(r->model), db_text(r->fw_version),
                           db_u64(r->security_version), db_u64(r->floor), db_u64(r->size),
                           db_int(r->expires), db_text(r->doc), db_text(r->added_by),
                           db_int(r->added_at)),
                   NULL);
}

#define FW_COLS                                                                                    \
    "sha256,model,fw_version,security_version,floor,size,expires,doc,added_by,added_at,"           \
    "coalesce(image_at,0),coalesce(retired_at,0),coalesce(retire_reason,'')"

/* r->doc points into the row: valid until the next step. */
static void fw_row(const struct db_row *st, struct fw_release_rec *r)
{
    memset(r, 0, sizeof(*r));
    db_col_text(st, 0, r->sha256, sizeof(r->sha256));
    db_col_text(st, 1, r->model, sizeof(r->model));
    db_col_text(st, 2, r->fw_version, sizeof(r->fw_version));
    r->security_version = (uint64_t)db_col_int(st, 3);
    r->floor = (uint64_t)db_col_int(st, 4);
    r->size = (uint64_t)db_col_int(st, 5);
    r->expires = db_col_int(st, 6);
    r->doc = db_col_str(st, 7);
    db_col_text(st, 8, r->added_by, sizeof(r->added_by));
    r->added_at = db_col_int(st, 9);
    r->image_at = db_col_int(st, 10);
    r->retired_at = db_col_int(st, 11);
    db_col_text(st, 12, r->retire_reason, sizeof(r->retire_reason));
}

enum mamori_err store_fw_release_get(struct store *s, const char *sha256,
                                     struct fw_release_rec *out, char **doc_out)
{
    struct db_rows q;
    if (doc_out)
        *doc_out = NULL;
    enum mamori_err rc = db_query(s, "SELECT " FW_COLS " FROM fw_releases WHERE sha256=?",
                                  DB_ARGS(db_text(sha256)), &q);
    memset(out, 0, sizeof(*out)); /* after binding: sha256 may be out->sha256 */
    if (rc)
        return rc;
    bool found = db_next(&q);
    if (found) {
        fw_row(&q.row, out);
        if (doc_out && !(*doc_out = strdup(out->doc)))
            rc = MAMORI_ERR_NOMEM;
        out->doc = NULL;
    }
    enum mamori_err step = db_done(&q);
    if (step)
        rc = step;
    else if (!found)
        rc = MAMORI_ERR_NOTFOUND;
    if (rc) {
        memset(out, 0, sizeof(*out));
        if (doc_out) {
            free(*doc_out);
            *doc_out = NULL;
        }
    }
    return rc;
}

enum mamori_err store_fw_releases(struct store *s, const char *model,
                                  bool (*cb)(const struct fw_release_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s,
                                  "SELECT " FW_COLS " FROM fw_releases WHERE ?1 IS NULL OR "
                                  "model=?1 ORDER BY model, security_version DESC, added_at DESC "
                                  "LIMIT 1000",
                                  DB_ARGS(db_text(model)), &q);
    if (rc)
        return rc;
    struct fw_release_rec rec;
    while (db_next(&q)) {
        fw_row(&q.row, &rec);
        if (!cb(&rec, arg))
            break;
    }
    return db_done(&q);
}

enum mamori_err store_fw_release_mark(struct store *s, const char *sha256, bool retire,
                                      const char *reason, int64_t now)
{
    /* MAMORI_ERR_STATE: no such release, or already so */
    return db_exec_one(s,
                       retire ? "UPDATE fw_releases SET retired_at=?2, retire_reason=?3 WHERE "
                                "sha256=?1 AND retired_at IS NULL"
                              : "UPDATE fw_releases SET image_at=?2 WHERE sha256=?1 AND image_at "
                                "IS NULL AND ?3 IS NULL",
                       DB_ARGS(db_text(sha256), db_int(now), db_text(retire ? reason : NULL)),
                       MAMORI_ERR_STATE);
}

/* --- download tokens ------------------------------------------------------------- */

enum mamori_err store_update_token_add(struct store *s, const char *token_hash,
                                       const char *device_id, const char *sha256,
                                       int64_t expires_at)
{
    return db_exec(
        s,
        "INSERT INTO update_tokens(token_hash,device_id,sha256,expires_at) "
        "VALUES(?,?,?,?)",
        DB_ARGS(db_text(token_hash), db_text(device_id), db_text(sha256), db_int(expires_at)),
        NULL);
}

struct token_row {
    char device_id[24];
    char sha256[65];
    int64_t expires_at;
};

static void token_row(const struct db_row *st, void *out)
{
    struct token_row *t = out;
    db_col_text(st, 0, t->device_id, sizeof(t->device_id));
    db_col_text(st, 1, t->sha256, sizeof(t->sha256));
    t->expires_at = db_col_int(st, 2);
}

enum mamori_err store_update_token_get(struct store *s, const char *token_hash, char device_id[24],
                                       char sha256[65], int64_t *expires_at)
{
    struct token_row t;
    enum mamori_err rc =
        db_one(s, "SELECT device_id,sha256,expires_at FROM update_tokens WHERE token_hash=?",
               DB_ARGS(db_text(token_hash)), token_row, &t, sizeof(t));
    memcpy(device_id, t.device_id, sizeof(t.device_id)); /* all zero on error */
    memcpy(sha256, t.sha256, sizeof(t.sha256));
    *expires_at = t.expires_at;
    return rc;
}

/* --- advisories and support periods ------------------------------------------------ */

enum mamori_err store_advisory_add(struct store *s, struct advisory_rec *a)
{
    return db_insert(s,
                     "INSERT INTO advisories(model,title,severity,affected,fixed_version,"
                     "published_by,published_at) VALUES(?,?,?,?,?,?,?)",
                     DB_ARGS(db_text(a->model), db_text(a->title), db_text(a->severity),
                             db_text(a->affected), db_text(a->fixed_version),
                             db_text(a->published_by), db_int(a->published_at)),
                     &a->id);
}

static void advisory_row(const struct db_row *st, struct advisory_rec *a)
{
    memset(a, 0, sizeof(*a));
    a->id = db_col_int(st, 0);
    db_col_text(st, 1, a->model, sizeof(a->model));
    db_col_text(st, 2, a->title, sizeof(a->title));
    db_col_text(st, 3, a->severity, sizeof(a->severity));
    db_col_text(st, 4, a->affected, sizeof(a->affected));
    db_col_text(st, 5, a->fixed_version, sizeof(a->fixed_version));
    db_col_text(st, 6, a->published_by, sizeof(a->published_by));
    a->published_at = db_col_int(st, 7);
}

enum mamori_err store_advisories(struct store *s, const char *model,
                                 bool (*cb)(const struct advisory_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s,
                 "SELECT id,model,title,severity,affected,fixed_version,published_by,published_at "
                 "FROM advisories WHERE ?1 IS NULL OR model=?1 ORDER BY id DESC LIMIT 1000",
                 DB_ARGS(db_text(model)), &q);
    if (rc)
        return rc;
    struct advisory_rec a;
    while (db_next(&q)) {
        advisory_row(&q.row, &a);
        if (!cb(&a, arg))
            break;
    }
    return db_done(&q);
}

enum mamori_err store_support_set(struct store *s, const char *model, int64_t end, int64_t now)
{
    return db_exec(s,
                   "INSERT INTO model_support(model,support_end,updated_at) VALUES(?,?,?) "
                   "ON CONFLICT(model) DO UPDATE SET support_end=excluded.support_end, "
                   "updated_at=excluded.updated_at",
                   DB_ARGS(db_text(model), db_int(end), db_int(now)), NULL);
}

enum mamori_err store_support_get(struct store *s, const char *model, int64_t *end)
{
    return db_one_int(s, "SELECT support_end FROM model_support WHERE model=?",
                      DB_ARGS(db_text(model)), end);
}
