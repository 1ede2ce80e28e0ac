/*
 * hub/store/store_sqlite.c - the SQLite backend of store.h: the database
 * itself and the statement helpers of store_priv.h.
 *
 * WAL journal with synchronous=FULL, so a COMMIT that returned is on disk
 * (kill -9 or power loss loses nothing committed; T10-L3b). secure_delete
 * overwrites deleted rows (T06-L5a, the hub's part). Schema changes are
 * numbered migrations recorded in PRAGMA user_version; each runs in its own
 * transaction, so a crash mid-migration leaves the previous version intact.
 * The audit table is append-only at the SQL level too (triggers refuse
 * UPDATE and DELETE); tampering below SQL is caught by the hash chain.
 *
 * The entities live in their own files: store_users.c (accounts, sessions,
 * throttles), store_devices.c (registry, groups, security status),
 * store_certs.c (trust anchors, device certificates, rotation),
 * store_events.c, store_audit.c, store_telemetry.c (schemas, streams,
 * telemetry, retention), store_commands.c, store_firmware.c (roots,
 * releases, download tokens, advisories, support), store_campaigns.c,
 * store_alerts.c (alerts, policies, webhooks, deliveries) and
 * store_owners.c (transfers, exports). What stays here besides the
 * database is what spans several of them: deleting an account, erasing a
 * device's data, and the rotation policy's query (docs/threat-matrix.md
 * names them in this file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hub/store/store_priv.h"

static const char *const MIGRATIONS[] = {
    /* 1: initial registry */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL CHECK(role IN ('admin','operator','owner')),"
    "  pwhash TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE sessions(token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL"
    "  REFERENCES users(id), created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);"
    "CREATE TABLE throttle(key TEXT PRIMARY KEY, failed INTEGER NOT NULL,"
    "  next_try_at INTEGER NOT NULL, locked_until INTEGER NOT NULL);"
    "CREATE TABLE trust_cas(id INTEGER PRIMARY KEY, model TEXT, kind TEXT NOT NULL"
    "  CHECK(kind IN ('issuing','manufacturer')), fingerprint TEXT NOT NULL,"
    "  subject TEXT NOT NULL, pem TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  UNIQUE(model, fingerprint));"
    "CREATE TABLE devices(id TEXT PRIMARY KEY, model TEXT NOT NULL, state TEXT NOT NULL,"
    "  owner_id INTEGER REFERENCES users(id), cert_fp TEXT NOT NULL UNIQUE,"
    "  cert_serial TEXT NOT NULL, cert_not_after INTEGER NOT NULL, cert_pem TEXT NOT NULL,"
    "  claim_hash TEXT UNIQUE, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  claimed_at INTEGER, last_seen INTEGER, online INTEGER NOT NULL DEFAULT 0,"
    "  hb_interval INTEGER NOT NULL);"
    "CREATE INDEX devices_owner ON devices(owner_id, id);"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device_id TEXT,"
    "  kind TEXT NOT NULL, severity TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX events_device ON events(device_id, id);"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,"
    "  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
    /* 2: telemetry (append-only rows; sequence state per device and stream,
     * not a unique index over all rows), schemas per model, commands. */
    "CREATE TABLE schemas(model TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE telemetry(id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL, ts INTEGER NOT NULL, recv_at INTEGER NOT NULL,"
    "  digest TEXT NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX telemetry_device_ts ON telemetry(device_id, ts);"
    "CREATE TRIGGER telemetry_no_update BEFORE UPDATE ON telemetry"
    "  BEGIN SELECT RAISE(ABORT, 'telemetry is append-only'); END;"
    "CREATE TABLE stream_state(device_id TEXT NOT NULL, stream TEXT NOT NULL,"
    "  last_seq INTEGER NOT NULL, last_ts INTEGER NOT NULL, PRIMARY KEY(device_id, stream))"
    "  WITHOUT ROWID;"
    "CREATE TABLE commands(id TEXT PRIMARY KEY, device_id TEXT NOT NULL, type TEXT NOT NULL,"
    "  args TEXT NOT NULL, issued_by TEXT NOT NULL, issued_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL, status TEXT NOT NULL, result TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX commands_device ON commands(device_id, issued_at);",
    /* 3: certificate rotation (next certificate admitted until the switch,
     * previous kept to verify what was signed before it). */
    "ALTER TABLE devices ADD COLUMN cert_next_fp TEXT;"
    "ALTER TABLE devices ADD COLUMN cert_next_pem TEXT;"
    "ALTER TABLE devices ADD COLUMN cert_prev_pem TEXT;"
    "ALTER TABLE devices ADD COLUMN cert_rotated_at INTEGER;"
    "ALTER TABLE devices ADD COLUMN rotate_asked_at INTEGER;"
    "CREATE UNIQUE INDEX devices_next_fp ON devices(cert_next_fp);",
    /* 4: the firmware repository (docs/updates.md): signed roots, one
     * version after the other, and releases with their images. */
    "CREATE TABLE fw_roots(version INTEGER PRIMARY KEY, doc TEXT NOT NULL,"
    "  expires INTEGER NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL);"
    "CREATE TABLE fw_releases(sha256 TEXT PRIMARY KEY, model TEXT NOT NULL,"
    "  fw_version TEXT NOT NULL, security_version INTEGER NOT NULL, floor INTEGER NOT NULL,"
    "  size INTEGER NOT NULL, expires INTEGER NOT NULL, doc TEXT NOT NULL,"
    "  added_by TEXT NOT NULL, added_at INTEGER NOT NULL, image_at INTEGER,"
    "  retired_at INTEGER, retire_reason TEXT);"
    "CREATE UNIQUE INDEX fw_releases_model_version ON fw_releases(model, fw_version);",
    /* 5: download tokens of update commands (only their hash is kept). */
    "CREATE TABLE update_tokens(token_hash TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
    "  sha256 TEXT NOT NULL, expires_at INTEGER NOT NULL);",
    /* 6: staged update campaigns and each device's part in them. */
    "CREATE TABLE campaigns(id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, model TEXT NOT NULL,"
    "  state TEXT NOT NULL, canary INTEGER NOT NULL, wave INTEGER NOT NULL,"
    "  interval_s INTEGER NOT NULL, max_fail_pct INTEGER NOT NULL, window_start INTEGER NOT NULL,"
    "  window_end INTEGER NOT NULL, waves_sent INTEGER NOT NULL, next_wave_at INTEGER NOT NULL,"
    "  reason TEXT NOT NULL, note TEXT NOT NULL, created_by TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE campaign_devices(campaign_id INTEGER NOT NULL, device_id TEXT NOT NULL,"
    "  wave INTEGER NOT NULL, status TEXT NOT NULL, command_id TEXT, error TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL, PRIMARY KEY(campaign_id, device_id)) WITHOUT ROWID;"
    "CREATE INDEX campaign_devices_command ON campaign_devices(command_id);"
    "CREATE INDEX campaign_devices_device ON campaign_devices(device_id, status);",
    /* 7: the firmware each device reports, security advisories, and each
     * model's security-support end. */
    "ALTER TABLE devices ADD COLUMN fw_version TEXT;"
    "CREATE INDEX devices_model_fw ON devices(model, fw_version);"
    "CREATE TABLE advisories(id INTEGER PRIMARY KEY, model TEXT NOT NULL, title TEXT NOT NULL,"
    "  severity TEXT NOT NULL, affected TEXT NOT NULL, fixed_version TEXT NOT NULL,"
    "  published_by TEXT NOT NULL, published_at INTEGER NOT NULL);"
    "CREATE TABLE model_support(model TEXT PRIMARY KEY, support_end INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);",
    /* 8: device groups (campaign targets). */
    "CREATE TABLE device_groups(grp TEXT NOT NULL, device_id TEXT NOT NULL,"
    "  PRIMARY KEY(grp, device_id)) WITHOUT ROWID;"
    "ALTER TABLE campaigns ADD COLUMN grp TEXT NOT NULL DEFAULT '';",
    /* 9: a campaign sends a device the update again after a failed download. */
    "ALTER TABLE campaign_devices ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;",
    /* 10: alerts (one live alert per rule and device, counted), the
     * response policy per rule and model, webhooks and their deliveries. */
    "CREATE TABLE alerts(id INTEGER PRIMARY KEY, rule TEXT NOT NULL, device_id TEXT NOT NULL,"
    "  severity TEXT NOT NULL, state TEXT NOT NULL, action TEXT NOT NULL DEFAULT '',"
    "  first_at INTEGER NOT NULL, last_at INTEGER NOT NULL, count INTEGER NOT NULL,"
    "  detail TEXT NOT NULL, acked_by TEXT NOT NULL DEFAULT '',"
    "  resolved_by TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '');"
    "CREATE UNIQUE INDEX alerts_live ON alerts(rule, device_id) WHERE state <> 'resolved';"
    "CREATE INDEX alerts_state ON alerts(state, id);"
    "CREATE TABLE rule_policies(rule TEXT NOT NULL, model TEXT NOT NULL, action TEXT NOT NULL,"
    "  act_after INTEGER NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(rule, model)) WITHOUT ROWID;"
    "CREATE TABLE webhooks(id INTEGER PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL,"
    "  created_by TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE deliveries(id INTEGER PRIMARY KEY, webhook_id INTEGER NOT NULL,"
    "  alert_id INTEGER NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,"
    "  tries INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX deliveries_due ON deliveries(state, next_at);",
    /* 11: ownership transfers (a single-use code per device) and the
     * exports of a previous owner's data. */
    "CREATE TABLE transfers(device_id TEXT PRIMARY KEY, code_hash TEXT NOT NULL UNIQUE,"
    "  from_user INTEGER NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE exports(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    "  device_id TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX exports_user ON exports(user_id, id);",
    /* 12: when each account last logged in (owner activity, for strays). */
    "ALTER TABLE users ADD COLUMN last_login INTEGER;",
    /* 13: the names of deleted accounts, never given out again (the audit
     * log names them). */
    "CREATE TABLE retired_names(name TEXT PRIMARY KEY, retired_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 14: each device's last verified security status (common/eat.h). */
    "CREATE TABLE device_status(device_id TEXT PRIMARY KEY, token TEXT NOT NULL,"
    "  claims TEXT NOT NULL, iat INTEGER NOT NULL, exp INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 15: what the hub has dealt with in each stream, beyond the highest
     * number (hub/device/seqwin.h): acknowledgements never pass a gap. */
    "ALTER TABLE stream_state ADD COLUMN acked INTEGER;"
    "ALTER TABLE stream_state ADD COLUMN window BLOB;"
    "ALTER TABLE stream_state ADD COLUMN gone_from INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE stream_state ADD COLUMN gone_to INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE stream_state ADD COLUMN gap_since INTEGER NOT NULL DEFAULT 0;",
};
#define N_MIGRATIONS ((int)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

/* --- statement helpers (store_priv.h) ------------------------------------- */

#define NOT_STEPPED (-1) /* db_rows.r before the first step */

static enum mamori_err bind_args(struct store *s, sqlite3_stmt *st, const struct db_arg *args,
                                 int n)
{
    int want = sqlite3_bind_parameter_count(st);
    if (n < want) {
        log_err("sqlite: %d argument(s) for %d parameter(s) in: %s", n, want, sqlite3_sql(st));
        return MAMORI_ERR_INTERNAL;
    }
    for (int i = 0; i < want; i++) {
        int r = SQLITE_OK;
        switch (args[i].type) {
        case DB_ARG_NULL:
            r = sqlite3_bind_null(st, i + 1);
            break;
        case DB_ARG_INT:
            r = sqlite3_bind_int64(st, i + 1, args[i].i);
            break;
        case DB_ARG_TEXT:
            r = sqlite3_bind_text(st, i + 1, args[i].text, -1, SQLITE_TRANSIENT);
            break;
        case DB_ARG_BLOB:
            r = sqlite3_bind_blob(st, i + 1, args[i].text, (int)args[i].i, SQLITE_TRANSIENT);
            break;
        }
        if (r != SQLITE_OK) {
            log_err("sqlite bind: %s", sqlite3_errmsg(s->db));
            return MAMORI_ERR_DB;
        }
    }
    return MAMORI_OK;
}

enum mamori_err db_prepare(struct store *s, const char *sql, const struct db_arg *args, int n,
                           sqlite3_stmt **st)
{
    if (!(*st = db_stmt_get(s, sql)))
        return MAMORI_ERR_DB;
    enum mamori_err rc = bind_args(s, *st, args, n);
    if (rc) {
        db_stmt_put(s, *st);
        *st = NULL;
    }
    return rc;
}

enum mamori_err db_err(struct store *s, int r)
{
    if (r == SQLITE_CONSTRAINT)
        return MAMORI_ERR_EXISTS;
    log_err("sqlite step: %s", sqlite3_errmsg(s->db));
    return MAMORI_ERR_DB;
}

enum mamori_err db_script(struct store *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_err("sqlite: %s", err ? err : "?");
        sqlite3_free(err);
        return MAMORI_ERR_DB;
    }
    return MAMORI_OK;
}

enum mamori_err db_exec(struct store *s, const char *sql, const struct db_arg *args, int n,
                        int64_t *changes)
{
    sqlite3_stmt *st;
    if (changes)
        *changes = 0;
    enum mamori_err rc = db_prepare(s, sql, args, n, &st);
    if (rc)
        return rc;
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? MAMORI_OK : db_err(s, r);
    if (!rc && changes)
        *changes = sqlite3_changes(s->db);
    db_stmt_put(s, st);
    return rc;
}

enum mamori_err db_exec_one(struct store *s, const char *sql, const struct db_arg *args, int n,
                            enum mamori_err if_not)
{
    int64_t changed;
    enum mamori_err rc = db_exec(s, sql, args, n, &changed);
    return rc ? rc : changed == 1 ? MAMORI_OK : if_not;
}

enum mamori_err db_insert(struct store *s, const char *sql, const struct db_arg *args, int n,
                          int64_t *rowid)
{
    if (rowid)
        *rowid = 0;
    enum mamori_err rc = db_exec(s, sql, args, n, NULL);
    if (!rc && rowid)
        *rowid = sqlite3_last_insert_rowid(s->db);
    return rc;
}

enum mamori_err db_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                         struct db_rows *q)
{
    q->s = s;
    q->r = NOT_STEPPED;
    return db_prepare(s, sql, args, n, &q->st);
}

bool db_next(struct db_rows *q)
{
    /* never past the end: a finished statement would start over */
    if (q->r != NOT_STEPPED && q->r != SQLITE_ROW)
        return false;
    q->r = sqlite3_step(q->st);
    return q->r == SQLITE_ROW;
}

enum mamori_err db_done(struct db_rows *q)
{
    enum mamori_err rc = MAMORI_OK;
    if (q->r != NOT_STEPPED && q->r != SQLITE_ROW && q->r != SQLITE_DONE)
        rc = db_err(q->s, q->r);
    db_stmt_put(q->s, q->st);
    q->st = NULL;
    return rc;
}

enum mamori_err db_one(struct store *s, const char *sql, const struct db_arg *args, int n,
                       db_fill_fn fill, void *out, size_t size)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    memset(out, 0, size); /* after binding: an argument may point into out */
    if (rc)
        return rc;
    bool found = db_next(&q);
    if (found)
        fill(q.st, out);
    rc = db_done(&q);
    if (!rc && !found)
        rc = MAMORI_ERR_NOTFOUND;
    if (rc)
        memset(out, 0, size);
    return rc;
}

static void fill_int(sqlite3_stmt *st, void *out)
{
    *(int64_t *)out = sqlite3_column_int64(st, 0);
}

enum mamori_err db_one_int(struct store *s, const char *sql, const struct db_arg *args, int n,
                           int64_t *out)
{
    return db_one(s, sql, args, n, fill_int, out, sizeof(*out));
}

enum mamori_err db_one_text(struct store *s, const char *sql, const struct db_arg *args, int n,
                            char *out, size_t outlen)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    memset(out, 0, outlen); /* after binding: an argument may point into out */
    if (rc)
        return rc;
    bool found = db_next(&q);
    if (found)
        db_col_text(q.st, 0, out, outlen);
    rc = db_done(&q);
    if (!rc && !found)
        rc = MAMORI_ERR_NOTFOUND;
    if (rc)
        memset(out, 0, outlen);
    return rc;
}

enum mamori_err db_one_dup(struct store *s, const char *sql, const struct db_arg *args, int n,
                           char **out)
{
    struct db_rows q;
    *out = NULL;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    if (rc)
        return rc;
    const char *t = db_next(&q) ? db_col_str(q.st, 0) : NULL;
    if (!t)
        rc = MAMORI_ERR_NOTFOUND; /* no row, or a NULL column */
    else if (!(*out = strdup(t)))
        rc = MAMORI_ERR_NOMEM;
    enum mamori_err step = db_done(&q);
    if (step)
        rc = step;
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

enum mamori_err db_many(struct store *s, const char *sql, const struct db_arg *args, int n,
                        db_fill_fn fill, void *out, size_t size, size_t max, size_t *count)
{
    struct db_rows q;
    *count = 0;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    if (rc)
        return rc;
    while (*count < max && db_next(&q)) {
        fill(q.st, (char *)out + *count * size);
        (*count)++;
    }
    rc = db_done(&q);
    if (rc)
        *count = 0;
    return rc;
}

void db_col_text(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
    if (!outlen)
        return;
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= outlen)
        n = outlen - 1;
    if (n)
        memcpy(out, t, n);
    out[n] = '\0';
}

void db_fill_id(sqlite3_stmt *st, void *out)
{
    db_col_text(st, 0, out, 24);
}

/* --- the database ---------------------------------------------------------- */

int store_schema_version(struct store *s)
{
    int64_t v;
    return db_one_int(s, "PRAGMA user_version", DB_NO_ARGS, &v) ? -1 : (int)v;
}

static enum mamori_err migrate(struct store *s)
{
    int v = store_schema_version(s);
    if (v < 0)
        return MAMORI_ERR_DB;
    if (v > N_MIGRATIONS) {
        log_err("database schema %d is newer than this binary (%d)", v, N_MIGRATIONS);
        return MAMORI_ERR_STATE;
    }
    for (int i = v; i < N_MIGRATIONS; i++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d;", i + 1);
        if (db_script(s, "BEGIN IMMEDIATE"))
            return MAMORI_ERR_DB;
        if (db_script(s, MIGRATIONS[i]) || db_script(s, pragma)) {
            (void)db_script(s, "ROLLBACK");
            return MAMORI_ERR_DB;
        }
        if (db_script(s, "COMMIT"))
            return MAMORI_ERR_DB;
        log_info("database migrated to schema %d", i + 1);
    }
    return MAMORI_OK;
}

enum mamori_err store_open(const char *path, struct store **out)
{
    *out = NULL;
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return MAMORI_ERR_NOMEM;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        goto out_fail;
    sqlite3_busy_timeout(s->db, 5000);
    if (!(s->path = strdup(path)))
        goto out_fail;
    /* cache_size: a batch of device messages dirties an index page and a
     * stream_state page per device in it; the cache holds them without
     * spilling mid-transaction. Checkpoints run beside the writer
     * (store_checkpoint, the hub's job); the connection's own, inside a
     * commit, only past 16,384 pages (64 MiB), for a process without that
     * job. */
    if (db_script(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                     "PRAGMA secure_delete=ON; PRAGMA cache_size=-16384;"
                     "PRAGMA wal_autocheckpoint=16384;"))
        goto out_fail;
    if (migrate(s))
        goto out_fail;
    *out = s;
    return MAMORI_OK;
out_fail:
    log_err("cannot open database %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
    db_stmt_clear(s);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
    return MAMORI_ERR_DB;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    db_stmt_clear(s);
    sqlite3_close(s->ckpt);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

enum mamori_err store_checkpoint(struct store *s)
{
    if (!s->ckpt && sqlite3_open_v2(s->path, &s->ckpt, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                    NULL) != SQLITE_OK) {
        log_warn("checkpoint connection: %s", s->ckpt ? sqlite3_errmsg(s->ckpt) : "?");
        sqlite3_close(s->ckpt);
        s->ckpt = NULL;
        return MAMORI_ERR_DB;
    }
    /* PASSIVE: copies what no reader still needs, never waits on the
     * writer; SQLITE_BUSY only says it could not copy everything now */
    int r = sqlite3_wal_checkpoint_v2(s->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (r != SQLITE_OK && r != SQLITE_BUSY) {
        log_warn("checkpoint: %s", sqlite3_errmsg(s->ckpt));
        return MAMORI_ERR_DB;
    }
    return MAMORI_OK;
}

/* Transactions nest: the outermost is BEGIN IMMEDIATE ... COMMIT, the
 * ones inside it are savepoints, which become durable only with the
 * outermost commit. depth follows SQLite's own view (a failed COMMIT
 * leaves the transaction open for the caller's rollback). */
enum mamori_err store_begin(struct store *s)
{
    if (sqlite3_get_autocommit(s->db))
        s->depth = 0;
    enum mamori_err rc = s->depth ? db_exec(s, "SAVEPOINT nested", DB_NO_ARGS, NULL)
                                  : db_exec(s, "BEGIN IMMEDIATE", DB_NO_ARGS, NULL);
    if (!rc)
        s->depth++;
    return rc;
}

enum mamori_err store_commit(struct store *s)
{
    if (s->depth == 0)
        return MAMORI_ERR_INTERNAL; /* nothing begun */
    enum mamori_err rc = s->depth > 1 ? db_exec(s, "RELEASE nested", DB_NO_ARGS, NULL)
                                      : db_exec(s, "COMMIT", DB_NO_ARGS, NULL);
    if (!rc)
        s->depth--;
    if (!rc && s->depth == 0 && s->erased) {
        /* secure_delete zeroes what is erased in the database; the WAL still
         * holds the pages as they were written before, until a checkpoint
         * resets it. Once: another reader may keep it from completing. */
        s->erased = false;
        if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) !=
            SQLITE_OK)
            log_warn("sqlite checkpoint: %s; the WAL holds erased rows until the next one",
                     sqlite3_errmsg(s->db));
    }
    return rc;
}

void store_rollback(struct store *s)
{
    if (s->depth == 0)
        return;
    if (s->depth == 1)
        s->erased = false;
    if (s->depth > 1)
        (void)db_script(s, "ROLLBACK TO nested; RELEASE nested");
    else
        (void)db_script(s, "ROLLBACK");
    s->depth--;
}

void store_abort(struct store *s)
{
    s->erased = false;
    if (!sqlite3_get_autocommit(s->db))
        (void)db_script(s, "ROLLBACK");
    s->depth = 0;
}

bool store_in_transaction(struct store *s)
{
    return !sqlite3_get_autocommit(s->db);
}

enum mamori_err store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
    return db_one_text(s, "SELECT value FROM meta WHERE key=?", DB_ARGS(db_text(key)), out, outlen);
}

enum mamori_err store_meta_set(struct store *s, const char *key, const char *value)
{
    return db_exec(s,
                   "INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
                   "value=excluded.value",
                   DB_ARGS(db_text(key), db_text(value)), NULL);
}

int64_t store_scalar(struct store *s, const char *sql, const char *arg)
{
    const struct db_arg a = db_text(arg);
    int64_t v;
    return db_one_int(s, sql, &a, arg ? 1 : 0, &v) ? -1 : v;
}

/* --- what spans several entities ------------------------------------------ */

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
        "INSERT OR IGNORE INTO retired_names(name,retired_at) SELECT name,?2 FROM users WHERE "
        "id=?1",
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
        "DELETE FROM commands WHERE device_id=?1 AND (status<>'pending' OR (?2 IS NOT NULL AND "
        "issued_by=?2))",
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
    if (rc)
        return rc;
    struct device_rec d;
    while (db_next(&q)) {
        store_device_row(q.st, &d);
        if (!cb(&d, arg))
            break;
    }
    return db_done(&q);
}
