/*
 * hub/store/store_sqlite.c - the SQLite engine of store.h (the embedded
 * default): the database file, its migrations and the driver the helpers
 * of store_priv.h run on (store_db.c).
 *
 * WAL journal with synchronous=FULL, so a COMMIT that returned is on disk
 * (kill -9 or power loss loses nothing committed; T10-L3b). secure_delete
 * overwrites deleted rows (T06-L5a, the hub's part). Schema changes are
 * numbered migrations recorded in PRAGMA user_version; each runs in its own
 * transaction, so a crash mid-migration leaves the previous version intact.
 * The audit table is append-only at the SQL level too (triggers refuse
 * UPDATE and DELETE); tampering below SQL is caught by the hash chain.
 *
 * The entities live in their own files (store_users.c, store_devices.c,
 * ...; see store.h); the helpers and transactions are in store_db.c, what
 * spans several entities in store_span.c.
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

/* --- statements ------------------------------------------------------------ */

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

static enum mamori_err sq_script(struct store *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_err("sqlite: %s", err ? err : "?");
        sqlite3_free(err);
        return MAMORI_ERR_DB;
    }
    return MAMORI_OK;
}

static enum mamori_err sq_exec(struct store *s, const char *sql, const struct db_arg *args, int n,
                               int64_t *changes, int64_t *rowid)
{
    sqlite3_stmt *st;
    enum mamori_err rc = db_prepare(s, sql, args, n, &st);
    if (rc)
        return rc;
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? MAMORI_OK : db_err(s, r);
    if (!rc && changes)
        *changes = sqlite3_changes(s->db);
    if (!rc && rowid)
        *rowid = sqlite3_last_insert_rowid(s->db);
    db_stmt_put(s, st);
    return rc;
}

static enum mamori_err sq_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                                struct db_rows *q)
{
    q->r = NOT_STEPPED;
    return db_prepare(s, sql, args, n, &q->row.st);
}

static bool sq_next(struct db_rows *q)
{
    /* never past the end: a finished statement would start over */
    if (q->r != NOT_STEPPED && q->r != SQLITE_ROW)
        return false;
    q->r = sqlite3_step(q->row.st);
    return q->r == SQLITE_ROW;
}

static enum mamori_err sq_done(struct db_rows *q)
{
    enum mamori_err rc = MAMORI_OK;
    if (q->r != NOT_STEPPED && q->r != SQLITE_ROW && q->r != SQLITE_DONE)
        rc = db_err(q->s, q->r);
    db_stmt_put(q->s, q->row.st);
    q->row.st = NULL;
    return rc;
}

static bool sq_col_null(const struct db_row *r, int col)
{
    return sqlite3_column_type(r->st, col) == SQLITE_NULL;
}

static int64_t sq_col_int(const struct db_row *r, int col)
{
    return sqlite3_column_int64(r->st, col);
}

static const char *sq_col_str(const struct db_row *r, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(r->st, col);
    *len = t ? (size_t)sqlite3_column_bytes(r->st, col) : 0;
    return t;
}

static const void *sq_col_blob(const struct db_row *r, int col, size_t *len)
{
    const void *b = sqlite3_column_blob(r->st, col);
    int n = b ? sqlite3_column_bytes(r->st, col) : 0;
    *len = n > 0 ? (size_t)n : 0;
    return b;
}

static bool sq_in_transaction(struct store *s)
{
    return !sqlite3_get_autocommit(s->db);
}

/* After the outermost commit: secure_delete zeroes what is erased in the
 * database; the WAL still holds the pages as they were written before,
 * until a checkpoint resets it. Once: another reader may keep it from
 * completing. */
static void sq_committed(struct store *s)
{
    if (!s->erased)
        return;
    s->erased = false;
    if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) != SQLITE_OK)
        log_warn("sqlite checkpoint: %s; the WAL holds erased rows until the next one",
                 sqlite3_errmsg(s->db));
}

static enum mamori_err sq_checkpoint(struct store *s)
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

static void sq_close(struct store *s)
{
    db_stmt_clear(s);
    sqlite3_close(s->ckpt);
    sqlite3_close(s->db);
    free(s->path);
    s->ckpt = s->db = NULL;
    s->path = NULL;
}

static int sq_schema_version(struct store *s)
{
    int64_t v;
    return db_one_int(s, "PRAGMA user_version", DB_NO_ARGS, &v) ? -1 : (int)v;
}

const struct db_driver db_sqlite_driver = {
    .name = "sqlite",
    .query = sq_query,
    .next = sq_next,
    .done = sq_done,
    .exec = sq_exec,
    .script = sq_script,
    .in_transaction = sq_in_transaction,
    .begin_sql = "BEGIN IMMEDIATE",
    .rows_max = 1,
    .committed = sq_committed,
    .checkpoint = sq_checkpoint,
    .close = sq_close,
    .schema_version = sq_schema_version,
    .col_null = sq_col_null,
    .col_int = sq_col_int,
    .col_str = sq_col_str,
    .col_blob = sq_col_blob,
};

/* --- the database ---------------------------------------------------------- */

/* Runs the migrations this file has not had, each in its own transaction;
 * the version is read inside it, so processes opening a new file together
 * migrate it once. */
static enum mamori_err migrate(struct store *s)
{
    for (;;) {
        if (sq_script(s, "BEGIN IMMEDIATE"))
            return MAMORI_ERR_DB;
        int v = sq_schema_version(s);
        if (v < 0 || v >= N_MIGRATIONS) {
            (void)sq_script(s, v == N_MIGRATIONS ? "COMMIT" : "ROLLBACK");
            if (v > N_MIGRATIONS)
                log_err("database schema %d is newer than this binary (%d)", v, N_MIGRATIONS);
            return v < 0 ? MAMORI_ERR_DB : v > N_MIGRATIONS ? MAMORI_ERR_STATE : MAMORI_OK;
        }
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d;", v + 1);
        if (sq_script(s, MIGRATIONS[v]) || sq_script(s, pragma)) {
            (void)sq_script(s, "ROLLBACK");
            return MAMORI_ERR_DB;
        }
        if (sq_script(s, "COMMIT"))
            return MAMORI_ERR_DB;
        log_info("database migrated to schema %d", v + 1);
    }
}

/* The WAL journal. Switching a new file to it takes the file for a moment,
 * and another connection opening it then is told SQLITE_BUSY at once, its
 * busy handler never asked: it tries again, every 10 ms for up to 5 s. */
static enum mamori_err sq_wal(struct store *s)
{
    int r = SQLITE_BUSY;
    for (int i = 0; i < 500 && r == SQLITE_BUSY; i++) {
        r = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (r == SQLITE_BUSY)
            sqlite3_sleep(10);
    }
    if (r != SQLITE_OK)
        log_err("sqlite journal: %s", sqlite3_errmsg(s->db));
    return r == SQLITE_OK ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err db_sqlite_open(struct store *s, const char *path)
{
    s->drv = &db_sqlite_driver;
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
    if (sq_wal(s) || sq_script(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                                  "PRAGMA secure_delete=ON; PRAGMA cache_size=-16384;"
                                  "PRAGMA wal_autocheckpoint=16384;"))
        goto out_fail;
    if (migrate(s))
        goto out_fail;
    return MAMORI_OK;
out_fail:
    log_err("cannot open database %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
    return MAMORI_ERR_DB;
}
