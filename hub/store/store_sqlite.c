/*
 * hub/store/store_sqlite.c - the SQLite backend of store.h.
 *
 * WAL journal with synchronous=FULL, so a COMMIT that returned is on disk
 * (kill -9 or power loss loses nothing committed; T10-L3b). secure_delete
 * overwrites deleted rows (T06-L5a, the hub's part). Schema changes are
 * numbered migrations recorded in PRAGMA user_version; each runs in its own
 * transaction, so a crash mid-migration leaves the previous version intact.
 * The audit table is append-only at the SQL level too (triggers refuse
 * UPDATE and DELETE); tampering below SQL is caught by the hash chain.
 */
#include "hub/store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/log.h"

struct store {
    sqlite3 *db;
};

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
};
#define N_MIGRATIONS ((int)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= outlen)
        n = outlen - 1;
    if (n)
        memcpy(out, t, n);
    out[n] = '\0';
}

static enum mamori_err prep(struct store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
        log_err("sqlite prepare: %s", sqlite3_errmsg(s->db));
        return MAMORI_ERR_DB;
    }
    return MAMORI_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Runs a statement that returns no rows. */
static enum mamori_err step_done(struct store *s, sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_DONE)
        return MAMORI_OK;
    if (r == SQLITE_CONSTRAINT)
        return MAMORI_ERR_EXISTS;
    log_err("sqlite step: %s", sqlite3_errmsg(s->db));
    return MAMORI_ERR_DB;
}

/* Runs sql with a single text parameter, expecting no rows. */
static enum mamori_err exec_text(struct store *s, const char *sql, const char *v)
{
    sqlite3_stmt *st;
    if (prep(s, sql, &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, v);
    return step_done(s, st);
}

/* Runs sql with ?1 = a and, when it has one, ?2 = b, expecting no rows;
 * the rows it changed in *changes (may be NULL). */
static enum mamori_err exec_i64(struct store *s, const char *sql, int64_t a, int64_t b,
                                int64_t *changes)
{
    sqlite3_stmt *st;
    if (prep(s, sql, &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, a);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, b);
    enum mamori_err rc = step_done(s, st);
    if (!rc && changes)
        *changes = sqlite3_changes(s->db);
    return rc;
}

static enum mamori_err exec(struct store *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_err("sqlite: %s", err ? err : "?");
        sqlite3_free(err);
        return MAMORI_ERR_DB;
    }
    return MAMORI_OK;
}

int store_schema_version(struct store *s)
{
    sqlite3_stmt *st;
    int v = -1;
    if (prep(s, "PRAGMA user_version", &st))
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
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
        if (exec(s, "BEGIN IMMEDIATE"))
            return MAMORI_ERR_DB;
        if (exec(s, MIGRATIONS[i]) || exec(s, pragma)) {
            exec(s, "ROLLBACK");
            return MAMORI_ERR_DB;
        }
        if (exec(s, "COMMIT"))
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
    if (exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                "PRAGMA secure_delete=ON;"))
        goto out_fail;
    if (migrate(s))
        goto out_fail;
    *out = s;
    return MAMORI_OK;
out_fail:
    log_err("cannot open database %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
    sqlite3_close(s->db);
    free(s);
    return MAMORI_ERR_DB;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

enum mamori_err store_begin(struct store *s)
{
    return exec(s, "BEGIN IMMEDIATE");
}
enum mamori_err store_commit(struct store *s)
{
    return exec(s, "COMMIT");
}
void store_rollback(struct store *s)
{
    (void)exec(s, "ROLLBACK");
}

const char *store_role_name(enum store_role r)
{
    switch (r) {
    case ROLE_ADMIN:
        return "admin";
    case ROLE_OPERATOR:
        return "operator";
    case ROLE_OWNER:
        return "owner";
    }
    return "?";
}

bool store_role_parse(const char *v, enum store_role *out)
{
    for (int r = ROLE_ADMIN; r <= ROLE_OWNER; r++) {
        if (strcmp(v, store_role_name((enum store_role)r)) == 0) {
            *out = (enum store_role)r;
            return true;
        }
    }
    return false;
}

enum mamori_err store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT value FROM meta WHERE key=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, key);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        copy_col(st, 0, out, outlen);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_meta_set(struct store *s, const char *key, const char *value)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
             "value=excluded.value",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, key);
    bind_text(st, 2, value);
    return step_done(s, st);
}

enum mamori_err store_user_add(struct store *s, const char *name, enum store_role role,
                               const char *pwhash, int64_t now, int64_t *id_out)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO users(name,role,pwhash,created_at) VALUES(?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, name);
    bind_text(st, 2, store_role_name(role));
    bind_text(st, 3, pwhash);
    sqlite3_bind_int64(st, 4, now);
    enum mamori_err rc = step_done(s, st);
    if (!rc && id_out)
        *id_out = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static void user_row(sqlite3_stmt *st, void *out)
{
    struct user_rec *u = out;
    char role[16];
    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, u->name, sizeof(u->name));
    copy_col(st, 2, role, sizeof(role));
    if (!store_role_parse(role, &u->role))
        u->role = ROLE_OWNER; /* CHECK constraint makes this unreachable */
    copy_col(st, 3, u->pwhash, sizeof(u->pwhash));
    u->created_at = sqlite3_column_int64(st, 4);
}

#define USER_COLS "id,name,role,pwhash,created_at"

/* Steps a prepared query expected to return at most one row; fill copies
 * it out. Finalizes st. MAMORI_ERR_NOTFOUND when there is no row. */
static enum mamori_err one_row(sqlite3_stmt *st, void (*fill)(sqlite3_stmt *, void *), void *out)
{
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        fill(st, out);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_user_get(struct store *s, const char *name, struct user_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " USER_COLS " FROM users WHERE name=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, name);
    return one_row(st, user_row, out);
}

enum mamori_err store_user_by_id(struct store *s, int64_t id, struct user_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " USER_COLS " FROM users WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    return one_row(st, user_row, out);
}

enum mamori_err store_user_list(struct store *s, bool (*cb)(const struct user_rec *, void *),
                                void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " USER_COLS " FROM users ORDER BY name", &st))
        return MAMORI_ERR_DB;
    struct user_rec u;
    while (sqlite3_step(st) == SQLITE_ROW) {
        user_row(st, &u);
        bool more = cb(&u, arg);
        memset(u.pwhash, 0, sizeof(u.pwhash));
        if (!more)
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

static int64_t count_of(struct store *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (prep(s, sql, &st))
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

int64_t store_user_count(struct store *s)
{
    return count_of(s, "SELECT count(*) FROM users");
}

int64_t store_device_count(struct store *s)
{
    return count_of(s, "SELECT count(*) FROM devices");
}

enum mamori_err store_session_add(struct store *s, const char *token_hash, int64_t user_id,
                                  int64_t now, int64_t expires)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO sessions(token_hash,user_id,created_at,expires_at) VALUES(?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, token_hash);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, expires);
    return step_done(s, st);
}

enum mamori_err store_session_get(struct store *s, const char *token_hash, int64_t now,
                                  int64_t *user_id)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT user_id FROM sessions WHERE token_hash=? AND expires_at>?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, token_hash);
    sqlite3_bind_int64(st, 2, now);
    enum mamori_err rc = MAMORI_ERR_AUTH;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *user_id = sqlite3_column_int64(st, 0);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_session_del(struct store *s, const char *token_hash)
{
    return exec_text(s, "DELETE FROM sessions WHERE token_hash=?", token_hash);
}

enum mamori_err store_session_purge(struct store *s, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "DELETE FROM sessions WHERE expires_at<=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, now);
    return step_done(s, st);
}

enum mamori_err store_throttle_get(struct store *s, const char *key, struct throttle_rec *out)
{
    sqlite3_stmt *st;
    memset(out, 0, sizeof(*out));
    if (prep(s, "SELECT failed,next_try_at,locked_until FROM throttle WHERE key=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->failed = sqlite3_column_int(st, 0);
        out->next_try_at = sqlite3_column_int64(st, 1);
        out->locked_until = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_throttle_set(struct store *s, const char *key, const struct throttle_rec *t)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO throttle(key,failed,next_try_at,locked_until) VALUES(?,?,?,?) "
             "ON CONFLICT(key) DO UPDATE SET failed=excluded.failed,"
             "next_try_at=excluded.next_try_at,locked_until=excluded.locked_until",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, key);
    sqlite3_bind_int(st, 2, t->failed);
    sqlite3_bind_int64(st, 3, t->next_try_at);
    sqlite3_bind_int64(st, 4, t->locked_until);
    return step_done(s, st);
}

enum mamori_err store_throttle_clear(struct store *s, const char *key)
{
    return exec_text(s, "DELETE FROM throttle WHERE key=?", key);
}

enum mamori_err store_ca_add(struct store *s, const char *model, const char *kind, const char *fp,
                             const char *subject, const char *pem, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO trust_cas(model,kind,fingerprint,subject,pem,created_at) "
             "VALUES(?,?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    bind_text(st, 2, kind);
    bind_text(st, 3, fp);
    bind_text(st, 4, subject);
    bind_text(st, 5, pem);
    sqlite3_bind_int64(st, 6, now);
    return step_done(s, st);
}

enum mamori_err store_ca_bundle(struct store *s, const char *model, char **pem_out)
{
    sqlite3_stmt *st;
    *pem_out = NULL;
    /* The issuing CA (model NULL) is valid for every model. */
    if (prep(s,
             model ? "SELECT pem FROM trust_cas WHERE model IS NULL OR model=? ORDER BY id"
                   : "SELECT pem FROM trust_cas ORDER BY id",
             &st))
        return MAMORI_ERR_DB;
    if (model)
        bind_text(st, 1, model);
    struct dbuf d;
    dbuf_init(&d, 4 * 1024 * 1024);
    enum mamori_err rc = MAMORI_OK;
    while (!rc && sqlite3_step(st) == SQLITE_ROW)
        rc = dbuf_addstr(&d, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
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
    sqlite3_stmt *st;
    if (prep(s, "SELECT model,kind,fingerprint,subject FROM trust_cas ORDER BY id", &st))
        return MAMORI_ERR_DB;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (!cb((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
                arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

#define DEV_COLS                                                                                   \
    "d.id,d.model,d.state,coalesce(d.owner_id,0),coalesce(u.name,''),d.cert_fp,d.cert_serial,"     \
    "d.cert_not_after,d.created_at,d.updated_at,coalesce(d.claimed_at,0),coalesce(d.last_seen,0)," \
    "d.online,d.hb_interval,coalesce(d.cert_next_fp,''),coalesce(d.cert_rotated_at,0),"            \
    "coalesce(d.rotate_asked_at,0),coalesce(d.fw_version,'')"
#define DEV_FROM " FROM devices d LEFT JOIN users u ON u.id=d.owner_id "

static void dev_row(sqlite3_stmt *st, void *out)
{
    struct device_rec *d = out;
    memset(d, 0, sizeof(*d));
    copy_col(st, 0, d->id, sizeof(d->id));
    copy_col(st, 1, d->model, sizeof(d->model));
    copy_col(st, 2, d->state, sizeof(d->state));
    d->owner_id = sqlite3_column_int64(st, 3);
    copy_col(st, 4, d->owner_name, sizeof(d->owner_name));
    copy_col(st, 5, d->cert_fp, sizeof(d->cert_fp));
    copy_col(st, 6, d->cert_serial, sizeof(d->cert_serial));
    d->cert_not_after = sqlite3_column_int64(st, 7);
    d->created_at = sqlite3_column_int64(st, 8);
    d->updated_at = sqlite3_column_int64(st, 9);
    d->claimed_at = sqlite3_column_int64(st, 10);
    d->last_seen = sqlite3_column_int64(st, 11);
    d->online = sqlite3_column_int(st, 12) != 0;
    d->hb_interval = sqlite3_column_int(st, 13);
    copy_col(st, 14, d->cert_next_fp, sizeof(d->cert_next_fp));
    d->cert_rotated_at = sqlite3_column_int64(st, 15);
    d->rotate_asked_at = sqlite3_column_int64(st, 16);
    copy_col(st, 17, d->fw_version, sizeof(d->fw_version));
}

enum mamori_err store_device_add(struct store *s, const struct device_rec *d, const char *cert_pem,
                                 const char *claim_hash)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO devices(id,model,state,cert_fp,cert_serial,cert_not_after,cert_pem,"
             "claim_hash,created_at,updated_at,hb_interval) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, d->id);
    bind_text(st, 2, d->model);
    bind_text(st, 3, d->state);
    bind_text(st, 4, d->cert_fp);
    bind_text(st, 5, d->cert_serial);
    sqlite3_bind_int64(st, 6, d->cert_not_after);
    bind_text(st, 7, cert_pem);
    bind_text(st, 8, claim_hash);
    sqlite3_bind_int64(st, 9, d->created_at);
    sqlite3_bind_int64(st, 10, d->created_at);
    sqlite3_bind_int(st, 11, d->hb_interval);
    return step_done(s, st);
}

enum mamori_err store_device_get(struct store *s, const char *id, struct device_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.id=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, id);
    return one_row(st, dev_row, out);
}

enum mamori_err store_device_by_claim(struct store *s, const char *claim_hash,
                                      struct device_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.claim_hash=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, claim_hash);
    return one_row(st, dev_row, out);
}

enum mamori_err store_device_by_fp(struct store *s, const char *fp, struct device_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " DEV_COLS DEV_FROM "WHERE d.cert_fp=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, fp);
    return one_row(st, dev_row, out);
}

enum mamori_err store_device_list(struct store *s, int64_t owner_id, const char *after, int limit,
                                  bool (*cb)(const struct device_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             owner_id ? "SELECT " DEV_COLS DEV_FROM
                        "WHERE d.id>? AND d.owner_id=? ORDER BY d.id LIMIT ?"
                      : "SELECT " DEV_COLS DEV_FROM "WHERE d.id>? ORDER BY d.id LIMIT ?",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, after ? after : "");
    if (owner_id) {
        sqlite3_bind_int64(st, 2, owner_id);
        sqlite3_bind_int(st, 3, limit);
    } else {
        sqlite3_bind_int(st, 2, limit);
    }
    struct device_rec d;
    while (sqlite3_step(st) == SQLITE_ROW) {
        dev_row(st, &d);
        if (!cb(&d, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

static enum mamori_err changed_one(struct store *s, sqlite3_stmt *st)
{
    enum mamori_err rc = step_done(s, st);
    if (!rc && sqlite3_changes(s->db) != 1)
        rc = MAMORI_ERR_NOTFOUND;
    return rc;
}

enum mamori_err store_device_set_state(struct store *s, const char *id, const char *state,
                                       int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE devices SET state=?, updated_at=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, state);
    sqlite3_bind_int64(st, 2, now);
    bind_text(st, 3, id);
    return changed_one(s, st);
}

enum mamori_err store_device_claim(struct store *s, const char *id, int64_t owner_id, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE devices SET owner_id=?, claimed_at=?, updated_at=? "
             "WHERE id=? AND owner_id IS NULL",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, owner_id);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, id);
    return changed_one(s, st);
}

enum mamori_err store_device_clear_claim(struct store *s, const char *id)
{
    return exec_text(s, "UPDATE devices SET claim_hash=NULL WHERE id=?", id);
}

enum mamori_err store_device_set_online(struct store *s, const char *id, bool online,
                                        int64_t last_seen)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE devices SET online=?, last_seen=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int(st, 1, online ? 1 : 0);
    sqlite3_bind_int64(st, 2, last_seen);
    bind_text(st, 3, id);
    return step_done(s, st);
}

enum mamori_err store_event_add(struct store *s, int64_t ts, const char *device_id,
                                const char *kind, const char *severity, const char *detail)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO events(ts,device_id,kind,severity,detail) VALUES(?,?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, ts);
    bind_text(st, 2, device_id);
    bind_text(st, 3, kind);
    bind_text(st, 4, severity);
    bind_text(st, 5, detail ? detail : "");
    return step_done(s, st);
}

enum mamori_err store_event_list(struct store *s, const char *device_id, int64_t owner_id,
                                 int64_t after, int limit,
                                 bool (*cb)(const struct event_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT e.id,e.ts,coalesce(e.device_id,''),e.kind,e.severity,e.detail FROM events e "
             "LEFT JOIN devices d ON d.id=e.device_id WHERE e.id>?1 "
             "AND (?2 IS NULL OR e.device_id=?2) AND (?3=0 OR d.owner_id=?3) "
             "ORDER BY e.id LIMIT ?4",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, after);
    bind_text(st, 2, device_id);
    sqlite3_bind_int64(st, 3, owner_id);
    sqlite3_bind_int(st, 4, limit);
    struct event_rec e;
    while (sqlite3_step(st) == SQLITE_ROW) {
        memset(&e, 0, sizeof(e));
        e.id = sqlite3_column_int64(st, 0);
        e.ts = sqlite3_column_int64(st, 1);
        copy_col(st, 2, e.device_id, sizeof(e.device_id));
        copy_col(st, 3, e.kind, sizeof(e.kind));
        copy_col(st, 4, e.severity, sizeof(e.severity));
        copy_col(st, 5, e.detail, sizeof(e.detail));
        if (!cb(&e, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

#define AUDIT_COLS "seq,ts,actor,action,target,reason,detail,prev_hash,hash"

static void audit_row(sqlite3_stmt *st, void *out)
{
    struct audit_rec *a = out;
    memset(a, 0, sizeof(*a));
    a->seq = sqlite3_column_int64(st, 0);
    a->ts = sqlite3_column_int64(st, 1);
    copy_col(st, 2, a->actor, sizeof(a->actor));
    copy_col(st, 3, a->action, sizeof(a->action));
    copy_col(st, 4, a->target, sizeof(a->target));
    copy_col(st, 5, a->reason, sizeof(a->reason));
    copy_col(st, 6, a->detail, sizeof(a->detail));
    copy_col(st, 7, a->prev_hash, sizeof(a->prev_hash));
    copy_col(st, 8, a->hash, sizeof(a->hash));
}

enum mamori_err store_audit_last(struct store *s, struct audit_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " AUDIT_COLS " FROM audit ORDER BY seq DESC LIMIT 1", &st))
        return MAMORI_ERR_DB;
    return one_row(st, audit_row, out);
}

enum mamori_err store_audit_get(struct store *s, int64_t seq, struct audit_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " AUDIT_COLS " FROM audit WHERE seq=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, seq);
    return one_row(st, audit_row, out);
}

enum mamori_err store_audit_append(struct store *s, const struct audit_rec *r)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO audit(" AUDIT_COLS ") VALUES(?,?,?,?,?,?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, r->seq);
    sqlite3_bind_int64(st, 2, r->ts);
    bind_text(st, 3, r->actor);
    bind_text(st, 4, r->action);
    bind_text(st, 5, r->target);
    bind_text(st, 6, r->reason);
    bind_text(st, 7, r->detail);
    bind_text(st, 8, r->prev_hash);
    bind_text(st, 9, r->hash);
    return step_done(s, st);
}

enum mamori_err store_audit_list(struct store *s, int64_t after, int limit,
                                 bool (*cb)(const struct audit_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " AUDIT_COLS " FROM audit WHERE seq>? ORDER BY seq LIMIT ?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int(st, 2, limit);
    struct audit_rec a;
    while (sqlite3_step(st) == SQLITE_ROW) {
        audit_row(st, &a);
        if (!cb(&a, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

/* ---- telemetry schemas, telemetry, stream state, commands ---- */

enum mamori_err store_schema_set(struct store *s, const char *model, const char *doc, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO schemas(model,doc,updated_at) VALUES(?,?,?) "
             "ON CONFLICT(model) DO UPDATE SET doc=excluded.doc, updated_at=excluded.updated_at",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    bind_text(st, 2, doc);
    sqlite3_bind_int64(st, 3, now);
    return step_done(s, st);
}

/* Runs sql (one text parameter) and copies the first column of its row
 * (malloc'd); MAMORI_ERR_NOTFOUND without a row. */
static enum mamori_err one_text(struct store *s, const char *sql, const char *key, char **out)
{
    sqlite3_stmt *st;
    *out = NULL;
    if (prep(s, sql, &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, key);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        *out = t ? strdup((const char *)t) : NULL;
        rc = *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_schema_get(struct store *s, const char *model, char **doc_out)
{
    return one_text(s, "SELECT doc FROM schemas WHERE model=?", model, doc_out);
}

enum mamori_err store_stream_get(struct store *s, const char *device_id, const char *stream,
                                 uint64_t *last_seq, int64_t *last_ts)
{
    sqlite3_stmt *st;
    *last_seq = 0;
    *last_ts = 0;
    if (prep(s, "SELECT last_seq,last_ts FROM stream_state WHERE device_id=? AND stream=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, device_id);
    bind_text(st, 2, stream);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *last_seq = (uint64_t)sqlite3_column_int64(st, 0);
        *last_ts = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_stream_set(struct store *s, const char *device_id, const char *stream,
                                 uint64_t last_seq, int64_t last_ts)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO stream_state(device_id,stream,last_seq,last_ts) VALUES(?,?,?,?) "
             "ON CONFLICT(device_id,stream) DO UPDATE SET last_seq=excluded.last_seq,"
             " last_ts=excluded.last_ts",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, device_id);
    bind_text(st, 2, stream);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)last_seq);
    sqlite3_bind_int64(st, 4, last_ts);
    return step_done(s, st);
}

enum mamori_err store_telemetry_add(struct store *s, const struct telemetry_rec *t)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO telemetry(device_id,seq,ts,recv_at,digest,body) VALUES(?,?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, t->device_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)t->seq);
    sqlite3_bind_int64(st, 3, t->ts);
    sqlite3_bind_int64(st, 4, t->recv_at);
    bind_text(st, 5, t->digest);
    bind_text(st, 6, t->body);
    return step_done(s, st);
}

bool store_telemetry_has(struct store *s, const char *device_id, int64_t ts, uint64_t seq,
                         const char *digest)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT 1 FROM telemetry WHERE device_id=? AND ts=? AND seq=? AND digest=? LIMIT 1",
             &st))
        return false;
    bind_text(st, 1, device_id);
    sqlite3_bind_int64(st, 2, ts);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    bind_text(st, 4, digest);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

enum mamori_err store_telemetry_list(struct store *s, const char *device_id, int64_t from_ts,
                                     int64_t to_ts, int64_t after_id, int limit,
                                     bool (*cb)(const struct telemetry_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    /* (device_id, ts) index; id breaks ties so the cursor is stable. */
    if (prep(s,
             "SELECT id,seq,ts,recv_at,digest,body FROM telemetry WHERE device_id=?1 "
             "AND ts>=?2 AND ts<=?3 AND (ts>?5 OR (ts=?5 AND id>?4)) ORDER BY ts,id LIMIT ?6",
             &st))
        return MAMORI_ERR_DB;
    int64_t after_ts = from_ts - 1;
    if (after_id > 0) {
        sqlite3_stmt *q;
        if (prep(s, "SELECT ts FROM telemetry WHERE id=?", &q)) {
            sqlite3_finalize(st);
            return MAMORI_ERR_DB;
        }
        sqlite3_bind_int64(q, 1, after_id);
        if (sqlite3_step(q) == SQLITE_ROW)
            after_ts = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    bind_text(st, 1, device_id);
    sqlite3_bind_int64(st, 2, from_ts);
    sqlite3_bind_int64(st, 3, to_ts);
    sqlite3_bind_int64(st, 4, after_id);
    sqlite3_bind_int64(st, 5, after_ts);
    sqlite3_bind_int(st, 6, limit);
    struct telemetry_rec t;
    while (sqlite3_step(st) == SQLITE_ROW) {
        memset(&t, 0, sizeof(t));
        snprintf(t.device_id, sizeof(t.device_id), "%s", device_id);
        t.id = sqlite3_column_int64(st, 0);
        t.seq = (uint64_t)sqlite3_column_int64(st, 1);
        t.ts = sqlite3_column_int64(st, 2);
        t.recv_at = sqlite3_column_int64(st, 3);
        copy_col(st, 4, t.digest, sizeof(t.digest));
        t.body = (const char *)sqlite3_column_text(st, 5);
        if (!t.body || !cb(&t, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

int64_t store_telemetry_count(struct store *s, const char *device_id)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (prep(s, "SELECT count(*) FROM telemetry WHERE device_id=?", &st))
        return -1;
    bind_text(st, 1, device_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void cmd_row(sqlite3_stmt *st, void *out)
{
    struct command_rec *c = out;
    memset(c, 0, sizeof(*c));
    copy_col(st, 0, c->id, sizeof(c->id));
    copy_col(st, 1, c->device_id, sizeof(c->device_id));
    copy_col(st, 2, c->type, sizeof(c->type));
    copy_col(st, 3, c->args, sizeof(c->args));
    copy_col(st, 4, c->issued_by, sizeof(c->issued_by));
    c->issued_at = sqlite3_column_int64(st, 5);
    c->expires_at = sqlite3_column_int64(st, 6);
    copy_col(st, 7, c->status, sizeof(c->status));
    copy_col(st, 8, c->result, sizeof(c->result));
    c->updated_at = sqlite3_column_int64(st, 9);
}

#define CMD_COLS "id,device_id,type,args,issued_by,issued_at,expires_at,status,result,updated_at"

enum mamori_err store_command_add(struct store *s, const struct command_rec *c)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO commands(" CMD_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, c->id);
    bind_text(st, 2, c->device_id);
    bind_text(st, 3, c->type);
    bind_text(st, 4, c->args);
    bind_text(st, 5, c->issued_by);
    sqlite3_bind_int64(st, 6, c->issued_at);
    sqlite3_bind_int64(st, 7, c->expires_at);
    bind_text(st, 8, c->status);
    bind_text(st, 9, c->result);
    sqlite3_bind_int64(st, 10, c->updated_at);
    return step_done(s, st);
}

enum mamori_err store_command_get(struct store *s, const char *id, struct command_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " CMD_COLS " FROM commands WHERE id=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, id);
    return one_row(st, cmd_row, out);
}

enum mamori_err store_command_finish(struct store *s, const char *id, const char *status,
                                     const char *result, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE commands SET status=?, result=?, updated_at=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, status);
    bind_text(st, 2, result);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, id);
    return changed_one(s, st);
}

enum mamori_err store_command_list(struct store *s, const char *device_id, bool pending_only,
                                   int64_t now, int limit,
                                   bool (*cb)(const struct command_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT " CMD_COLS " FROM commands WHERE device_id=?1 "
             "AND (?2=0 OR (status='pending' AND expires_at>?3)) "
             "ORDER BY issued_at DESC, id LIMIT ?4",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, device_id);
    sqlite3_bind_int(st, 2, pending_only ? 1 : 0);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int(st, 4, limit);
    struct command_rec c;
    while (sqlite3_step(st) == SQLITE_ROW) {
        cmd_row(st, &c);
        if (!cb(&c, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_device_cert(struct store *s, const char *id, char **pem_out)
{
    return one_text(s, "SELECT cert_pem FROM devices WHERE id=?", id, pem_out);
}

enum mamori_err store_device_cert_at(struct store *s, const char *id, enum store_cert_which w,
                                     char **pem_out)
{
    enum mamori_err rc =
        one_text(s,
                 w == STORE_CERT_NEXT       ? "SELECT cert_next_pem FROM devices WHERE id=?"
                 : w == STORE_CERT_PREVIOUS ? "SELECT cert_prev_pem FROM devices WHERE id=?"
                                            : "SELECT cert_pem FROM devices WHERE id=?",
                 id, pem_out);
    /* A NULL column is "none" too. */
    return rc == MAMORI_ERR_NOMEM && !*pem_out ? MAMORI_ERR_NOTFOUND : rc;
}

enum mamori_err store_device_rotation_asked(struct store *s, const char *id, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE devices SET rotate_asked_at=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, now);
    bind_text(st, 2, id);
    return changed_one(s, st);
}

enum mamori_err store_device_rotation_begin(struct store *s, const char *id, const char *next_fp,
                                            const char *next_pem, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE devices SET cert_next_fp=?, cert_next_pem=?, updated_at=? WHERE id=? "
             "AND cert_fp<>?1",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, next_fp);
    bind_text(st, 2, next_pem);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, id);
    return changed_one(s, st);
}

enum mamori_err store_device_rotation_commit(struct store *s, const char *id, const char *next_fp,
                                             const char *serial, int64_t not_after, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE devices SET cert_prev_pem=cert_pem, cert_fp=cert_next_fp,"
             " cert_pem=cert_next_pem, cert_serial=?, cert_not_after=?, cert_next_fp=NULL,"
             " cert_next_pem=NULL, cert_rotated_at=?, updated_at=?3 WHERE id=? AND cert_next_fp=?",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, serial);
    sqlite3_bind_int64(st, 2, not_after);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, id);
    bind_text(st, 5, next_fp);
    return changed_one(s, st);
}

enum mamori_err store_device_rotation_due(struct store *s, int64_t now, int64_t renew_s,
                                          int64_t max_age_s, int64_t retry_s, int limit,
                                          bool (*cb)(const struct device_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT " DEV_COLS DEV_FROM
             "WHERE d.state='active' AND coalesce(d.rotate_asked_at,0) <= ?1 - ?4"
             " AND (d.cert_not_after <= ?1 + ?2 OR (?3 > 0 AND"
             " coalesce(d.cert_rotated_at, d.created_at) <= ?1 - ?3))"
             " ORDER BY d.cert_not_after LIMIT ?5",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, renew_s);
    sqlite3_bind_int64(st, 3, max_age_s);
    sqlite3_bind_int64(st, 4, retry_s);
    sqlite3_bind_int(st, 5, limit);
    struct device_rec d;
    while (sqlite3_step(st) == SQLITE_ROW) {
        dev_row(st, &d);
        if (!cb(&d, arg))
            break;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

/* --- the firmware repository --------------------------------------------- */

enum mamori_err store_fw_root_add(struct store *s, uint64_t version, int64_t expires,
                                  const char *doc, const char *by, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO fw_roots(version,doc,expires,added_by,added_at) VALUES(?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)version);
    bind_text(st, 2, doc);
    sqlite3_bind_int64(st, 3, expires);
    bind_text(st, 4, by);
    sqlite3_bind_int64(st, 5, now);
    return step_done(s, st);
}

enum mamori_err store_fw_root_latest(struct store *s, char **doc_out)
{
    return one_text(s,
                    "SELECT doc FROM fw_roots WHERE ?1 IS NOT NULL ORDER BY version DESC LIMIT 1",
                    "", doc_out);
}

enum mamori_err store_fw_roots(struct store *s, bool (*cb)(uint64_t, int64_t, const char *, void *),
                               void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT version,expires,doc FROM fw_roots ORDER BY version", &st))
        return MAMORI_ERR_DB;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW &&
           cb((uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
              (const char *)sqlite3_column_text(st, 2), arg))
        ;
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_fw_release_add(struct store *s, const struct fw_release_rec *r)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO fw_releases(sha256,model,fw_version,security_version,floor,size,"
             "expires,doc,added_by,added_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, r->sha256);
    bind_text(st, 2, r->model);
    bind_text(st, 3, r->fw_version);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->security_version);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)r->floor);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->size);
    sqlite3_bind_int64(st, 7, r->expires);
    bind_text(st, 8, r->doc);
    bind_text(st, 9, r->added_by);
    sqlite3_bind_int64(st, 10, r->added_at);
    return step_done(s, st);
}

#define FW_COLS                                                                                    \
    "sha256,model,fw_version,security_version,floor,size,expires,doc,added_by,added_at,"           \
    "coalesce(image_at,0),coalesce(retired_at,0),coalesce(retire_reason,'')"

static void fw_row(sqlite3_stmt *st, struct fw_release_rec *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->sha256, sizeof(r->sha256), "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(r->model, sizeof(r->model), "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(r->fw_version, sizeof(r->fw_version), "%s", (const char *)sqlite3_column_text(st, 2));
    r->security_version = (uint64_t)sqlite3_column_int64(st, 3);
    r->floor = (uint64_t)sqlite3_column_int64(st, 4);
    r->size = (uint64_t)sqlite3_column_int64(st, 5);
    r->expires = sqlite3_column_int64(st, 6);
    r->doc = (const char *)sqlite3_column_text(st, 7);
    snprintf(r->added_by, sizeof(r->added_by), "%s", (const char *)sqlite3_column_text(st, 8));
    r->added_at = sqlite3_column_int64(st, 9);
    r->image_at = sqlite3_column_int64(st, 10);
    r->retired_at = sqlite3_column_int64(st, 11);
    snprintf(r->retire_reason, sizeof(r->retire_reason), "%s",
             (const char *)sqlite3_column_text(st, 12));
}

enum mamori_err store_fw_release_get(struct store *s, const char *sha256,
                                     struct fw_release_rec *out, char **doc_out)
{
    sqlite3_stmt *st;
    if (doc_out)
        *doc_out = NULL;
    if (prep(s, "SELECT " FW_COLS " FROM fw_releases WHERE sha256=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, sha256);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        fw_row(st, out);
        rc = MAMORI_OK;
        if (doc_out && !(*doc_out = strdup(out->doc)))
            rc = MAMORI_ERR_NOMEM;
        out->doc = NULL;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_fw_releases(struct store *s, const char *model,
                                  bool (*cb)(const struct fw_release_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT " FW_COLS " FROM fw_releases WHERE ?1 IS NULL OR model=?1 "
             "ORDER BY model, security_version DESC, added_at DESC LIMIT 1000",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    int r;
    struct fw_release_rec rec;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        fw_row(st, &rec);
        if (!cb(&rec, arg))
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_fw_release_mark(struct store *s, const char *sha256, bool retire,
                                      const char *reason, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             retire ? "UPDATE fw_releases SET retired_at=?2, retire_reason=?3 WHERE sha256=?1 "
                      "AND retired_at IS NULL"
                    : "UPDATE fw_releases SET image_at=?2 WHERE sha256=?1 AND image_at IS NULL "
                      "AND ?3 IS NULL",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, sha256);
    sqlite3_bind_int64(st, 2, now);
    bind_text(st, 3, retire ? reason : NULL);
    enum mamori_err rc = step_done(s, st);
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = MAMORI_ERR_STATE; /* no such release, or already so */
    return rc;
}

enum mamori_err store_update_token_add(struct store *s, const char *token_hash,
                                       const char *device_id, const char *sha256,
                                       int64_t expires_at)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO update_tokens(token_hash,device_id,sha256,expires_at) VALUES(?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, token_hash);
    bind_text(st, 2, device_id);
    bind_text(st, 3, sha256);
    sqlite3_bind_int64(st, 4, expires_at);
    return step_done(s, st);
}

enum mamori_err store_update_token_get(struct store *s, const char *token_hash, char device_id[24],
                                       char sha256[65], int64_t *expires_at)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT device_id,sha256,expires_at FROM update_tokens WHERE token_hash=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, token_hash);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(device_id, 24, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(sha256, 65, "%s", (const char *)sqlite3_column_text(st, 1));
        *expires_at = sqlite3_column_int64(st, 2);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- update campaigns ----------------------------------------------------- */

enum mamori_err store_campaign_add(struct store *s, struct campaign_rec *c)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO campaigns(sha256,model,state,canary,wave,interval_s,max_fail_pct,"
             "window_start,window_end,waves_sent,next_wave_at,reason,note,created_by,created_at,"
             "updated_at,grp) VALUES(?,?,?,?,?,?,?,?,?,0,0,?,'',?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, c->sha256);
    bind_text(st, 2, c->model);
    bind_text(st, 3, c->state);
    sqlite3_bind_int(st, 4, c->canary);
    sqlite3_bind_int(st, 5, c->wave);
    sqlite3_bind_int(st, 6, c->interval_s);
    sqlite3_bind_int(st, 7, c->max_fail_pct);
    sqlite3_bind_int(st, 8, c->window_start);
    sqlite3_bind_int(st, 9, c->window_end);
    bind_text(st, 10, c->reason);
    bind_text(st, 11, c->created_by);
    sqlite3_bind_int64(st, 12, c->created_at);
    sqlite3_bind_int64(st, 13, c->created_at);
    bind_text(st, 14, c->group);
    enum mamori_err rc = step_done(s, st);
    if (rc)
        return rc;
    c->id = sqlite3_last_insert_rowid(s->db);
    /* every device of the model that may take commands, in a stable order */
    if (prep(s,
             "INSERT INTO campaign_devices(campaign_id,device_id,wave,status,error,updated_at) "
             "SELECT ?1, id, -1, 'pending', '', ?2 FROM devices WHERE model=?3 "
             "AND state IN ('claimed','active','quarantined') AND (?4 = '' OR id IN "
             "(SELECT device_id FROM device_groups WHERE grp=?4)) ORDER BY id",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, c->id);
    sqlite3_bind_int64(st, 2, c->created_at);
    bind_text(st, 3, c->model);
    bind_text(st, 4, c->group);
    return step_done(s, st);
}

#define CAMPAIGN_COLS                                                                              \
    "id,sha256,model,state,canary,wave,interval_s,max_fail_pct,window_start,window_end,"           \
    "waves_sent,next_wave_at,reason,note,created_by,created_at,updated_at,grp"

static void campaign_row(sqlite3_stmt *st, struct campaign_rec *c)
{
    memset(c, 0, sizeof(*c));
    c->id = sqlite3_column_int64(st, 0);
    snprintf(c->sha256, sizeof(c->sha256), "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(c->model, sizeof(c->model), "%s", (const char *)sqlite3_column_text(st, 2));
    snprintf(c->state, sizeof(c->state), "%s", (const char *)sqlite3_column_text(st, 3));
    c->canary = sqlite3_column_int(st, 4);
    c->wave = sqlite3_column_int(st, 5);
    c->interval_s = sqlite3_column_int(st, 6);
    c->max_fail_pct = sqlite3_column_int(st, 7);
    c->window_start = sqlite3_column_int(st, 8);
    c->window_end = sqlite3_column_int(st, 9);
    c->waves_sent = sqlite3_column_int(st, 10);
    c->next_wave_at = sqlite3_column_int64(st, 11);
    snprintf(c->reason, sizeof(c->reason), "%s", (const char *)sqlite3_column_text(st, 12));
    snprintf(c->note, sizeof(c->note), "%s", (const char *)sqlite3_column_text(st, 13));
    snprintf(c->created_by, sizeof(c->created_by), "%s", (const char *)sqlite3_column_text(st, 14));
    c->created_at = sqlite3_column_int64(st, 15);
    c->updated_at = sqlite3_column_int64(st, 16);
    snprintf(c->group, sizeof(c->group), "%s", (const char *)sqlite3_column_text(st, 17));
}

enum mamori_err store_campaigns(struct store *s, const char *state,
                                bool (*cb)(const struct campaign_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE ?1 IS NULL OR state=?1 "
             "ORDER BY id DESC LIMIT 500",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, state);
    int r;
    struct campaign_rec c;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        campaign_row(st, &c);
        if (!cb(&c, arg))
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_campaign_get(struct store *s, int64_t id, struct campaign_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        campaign_row(st, out);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_campaign_set(struct store *s, int64_t id, const char *state, int waves_sent,
                                   int64_t next_wave_at, const char *note, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE campaigns SET state=?2, waves_sent=?3, next_wave_at=?4, note=?5, "
             "updated_at=?6 WHERE id=?1",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, state);
    sqlite3_bind_int(st, 3, waves_sent);
    sqlite3_bind_int64(st, 4, next_wave_at);
    bind_text(st, 5, note);
    sqlite3_bind_int64(st, 6, now);
    return step_done(s, st);
}

enum mamori_err store_campaign_counts(struct store *s, int64_t id, struct campaign_counts *n)
{
    sqlite3_stmt *st;
    memset(n, 0, sizeof(*n));
    if (prep(s, "SELECT status, count(*) FROM campaign_devices WHERE campaign_id=? GROUP BY status",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        int v = sqlite3_column_int(st, 1);
        if (strcmp(k, "pending") == 0)
            n->pending = v;
        else if (strcmp(k, "sent") == 0 || strcmp(k, "installed") == 0)
            n->in_flight += v;
        else if (strcmp(k, "committed") == 0)
            n->committed = v;
        else if (strcmp(k, "skipped") == 0)
            n->skipped = v;
        else
            n->failed += v;
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_campaign_next(struct store *s, int64_t id, int n,
                                    bool (*cb)(const char *device_id, void *), void *arg)
{
    sqlite3_stmt *st;
    if (n < 1 || n > 100000)
        return MAMORI_ERR_INVAL;
    /* the ids first: cb issues commands while no statement is open */
    char(*ids)[24] = calloc((size_t)n, sizeof(*ids));
    if (!ids)
        return MAMORI_ERR_NOMEM;
    if (prep(s,
             "SELECT device_id FROM campaign_devices WHERE campaign_id=? AND status='pending' "
             "ORDER BY tries, device_id LIMIT ?",
             &st)) {
        free(ids);
        return MAMORI_ERR_DB;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, n);
    int k = 0;
    while (k < n && sqlite3_step(st) == SQLITE_ROW)
        snprintf(ids[k++], 24, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    for (int i = 0; i < k && cb(ids[i], arg); i++)
        ;
    free(ids);
    return MAMORI_OK;
}

enum mamori_err store_campaign_device_retry(struct store *s, int64_t id, const char *device_id,
                                            int max_tries, const char *error, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE campaign_devices SET status=CASE WHEN tries + 1 < ?3 THEN 'pending' "
             "ELSE 'failed' END, tries=tries+1, error=?4, updated_at=?5 "
             "WHERE campaign_id=?1 AND device_id=?2",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, device_id);
    sqlite3_bind_int(st, 3, max_tries);
    bind_text(st, 4, error);
    sqlite3_bind_int64(st, 5, now);
    return step_done(s, st);
}

enum mamori_err store_campaign_device_set(struct store *s, int64_t id, const char *device_id,
                                          int wave, const char *status, const char *command_id,
                                          const char *error, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "UPDATE campaign_devices SET wave=CASE WHEN ?3 >= 0 THEN ?3 ELSE wave END, "
             "status=?4, command_id=coalesce(?5, command_id), error=?6, updated_at=?7 "
             "WHERE campaign_id=?1 AND device_id=?2",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, device_id);
    sqlite3_bind_int(st, 3, wave);
    bind_text(st, 4, status);
    bind_text(st, 5, command_id);
    bind_text(st, 6, error);
    sqlite3_bind_int64(st, 7, now);
    return step_done(s, st);
}

enum mamori_err store_campaign_device_find(struct store *s, const char *device_id,
                                           const char *command_id, const char *status,
                                           int64_t *campaign_id)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT campaign_id FROM campaign_devices WHERE device_id=?1 AND "
             "(?2 IS NULL OR command_id=?2) AND (?3 IS NULL OR status=?3) "
             "ORDER BY campaign_id DESC LIMIT 1",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, device_id);
    bind_text(st, 2, command_id);
    bind_text(st, 3, status);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *campaign_id = sqlite3_column_int64(st, 0);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_campaign_devices(struct store *s, int64_t id,
                                       bool (*cb)(const char *device_id, int wave,
                                                  const char *status, const char *error, void *arg),
                                       void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT device_id, wave, status, error FROM campaign_devices WHERE campaign_id=? "
             "ORDER BY device_id LIMIT 10000",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW &&
           cb((const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1),
              (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
              arg))
        ;
    sqlite3_finalize(st);
    return MAMORI_OK;
}

/* --- firmware versions, advisories, support periods ---------------------- */

enum mamori_err store_device_fw_set(struct store *s, const char *id, const char *fw_version)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE devices SET fw_version=?2 WHERE id=?1 AND coalesce(fw_version,'')<>?2",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, id);
    bind_text(st, 2, fw_version);
    enum mamori_err rc = step_done(s, st);
    return !rc && sqlite3_changes(s->db) == 0 ? MAMORI_ERR_EXISTS : rc; /* unchanged */
}

enum mamori_err store_devices_on(struct store *s, const char *model, const char *fw_version,
                                 bool (*cb)(const char *id, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT id FROM devices WHERE model=?1 AND (?2 IS NULL OR fw_version=?2) ORDER BY id "
             "LIMIT 100000",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    bind_text(st, 2, fw_version);
    while (sqlite3_step(st) == SQLITE_ROW && cb((const char *)sqlite3_column_text(st, 0), arg))
        ;
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_advisory_add(struct store *s, struct advisory_rec *a)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO advisories(model,title,severity,affected,fixed_version,published_by,"
             "published_at) VALUES(?,?,?,?,?,?,?)",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, a->model);
    bind_text(st, 2, a->title);
    bind_text(st, 3, a->severity);
    bind_text(st, 4, a->affected);
    bind_text(st, 5, a->fixed_version);
    bind_text(st, 6, a->published_by);
    sqlite3_bind_int64(st, 7, a->published_at);
    enum mamori_err rc = step_done(s, st);
    if (!rc)
        a->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

enum mamori_err store_advisories(struct store *s, const char *model,
                                 bool (*cb)(const struct advisory_rec *, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT id,model,title,severity,affected,fixed_version,published_by,published_at "
             "FROM advisories WHERE ?1 IS NULL OR model=?1 ORDER BY id DESC LIMIT 1000",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    struct advisory_rec a;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&a, 0, sizeof(a));
        a.id = sqlite3_column_int64(st, 0);
        copy_col(st, 1, a.model, sizeof(a.model));
        copy_col(st, 2, a.title, sizeof(a.title));
        copy_col(st, 3, a.severity, sizeof(a.severity));
        copy_col(st, 4, a.affected, sizeof(a.affected));
        copy_col(st, 5, a.fixed_version, sizeof(a.fixed_version));
        copy_col(st, 6, a.published_by, sizeof(a.published_by));
        a.published_at = sqlite3_column_int64(st, 7);
        if (!cb(&a, arg))
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_support_set(struct store *s, const char *model, int64_t end, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO model_support(model,support_end,updated_at) VALUES(?,?,?) "
             "ON CONFLICT(model) DO UPDATE SET support_end=excluded.support_end, "
             "updated_at=excluded.updated_at",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    sqlite3_bind_int64(st, 2, end);
    sqlite3_bind_int64(st, 3, now);
    return step_done(s, st);
}

enum mamori_err store_support_get(struct store *s, const char *model, int64_t *end)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT support_end FROM model_support WHERE model=?", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, model);
    enum mamori_err rc = MAMORI_ERR_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *end = sqlite3_column_int64(st, 0);
        rc = MAMORI_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum mamori_err store_group_set(struct store *s, const char *group, const char *device_id,
                                bool member)
{
    sqlite3_stmt *st;
    if (prep(s,
             member ? "INSERT OR IGNORE INTO device_groups(grp,device_id) VALUES(?,?)"
                    : "DELETE FROM device_groups WHERE grp=? AND device_id=?",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, group);
    bind_text(st, 2, device_id);
    return step_done(s, st);
}

enum mamori_err store_group_devices(struct store *s, const char *group,
                                    bool (*cb)(const char *device_id, void *), void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT device_id FROM device_groups WHERE grp=? ORDER BY device_id LIMIT 100000",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, group);
    while (sqlite3_step(st) == SQLITE_ROW && cb((const char *)sqlite3_column_text(st, 0), arg))
        ;
    sqlite3_finalize(st);
    return MAMORI_OK;
}

/* --- alerts, policies, webhooks (hub/alerts.c) ---------------------------- */

#define ALERT_COLS                                                                                 \
    "id,rule,device_id,severity,state,action,first_at,last_at,count,detail,acked_by,resolved_by,"  \
    "note"

static void alert_row(sqlite3_stmt *st, struct alert_rec *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, a->rule, sizeof(a->rule));
    copy_col(st, 2, a->device_id, sizeof(a->device_id));
    copy_col(st, 3, a->severity, sizeof(a->severity));
    copy_col(st, 4, a->state, sizeof(a->state));
    copy_col(st, 5, a->action, sizeof(a->action));
    a->first_at = sqlite3_column_int64(st, 6);
    a->last_at = sqlite3_column_int64(st, 7);
    a->count = sqlite3_column_int64(st, 8);
    copy_col(st, 9, a->detail, sizeof(a->detail));
    copy_col(st, 10, a->acked_by, sizeof(a->acked_by));
    copy_col(st, 11, a->resolved_by, sizeof(a->resolved_by));
    copy_col(st, 12, a->note, sizeof(a->note));
}

/* One row of ALERT_COLS by a query with one integer or text parameter. */
static enum mamori_err alert_one(struct store *s, const char *sql, int64_t id, const char *rule,
                                 const char *device_id, struct alert_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s, sql, &st))
        return MAMORI_ERR_DB;
    if (rule) {
        bind_text(st, 1, rule);
        bind_text(st, 2, device_id);
    } else {
        sqlite3_bind_int64(st, 1, id);
    }
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        alert_row(st, out);
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? MAMORI_OK : r == SQLITE_DONE ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_DB;
}

enum mamori_err store_alert_raise(struct store *s, const char *rule, const char *device_id,
                                  const char *severity, const char *detail, int64_t now,
                                  struct alert_rec *out, bool *created)
{
    sqlite3_stmt *st;
    /* the live alert for (rule, device) counts one more; else a new one */
    if (prep(s,
             "UPDATE alerts SET count=count+1, last_at=?3, detail=?4 WHERE rule=?1 AND "
             "device_id=?2 AND state<>'resolved'",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, rule);
    bind_text(st, 2, device_id);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, detail);
    enum mamori_err rc = step_done(s, st);
    if (rc)
        return rc;
    *created = sqlite3_changes(s->db) == 0;
    if (*created) {
        if (prep(s,
                 "INSERT INTO alerts(rule,device_id,severity,state,first_at,last_at,count,detail) "
                 "VALUES(?1,?2,?3,'open',?4,?4,1,?5)",
                 &st))
            return MAMORI_ERR_DB;
        bind_text(st, 1, rule);
        bind_text(st, 2, device_id);
        bind_text(st, 3, severity);
        sqlite3_bind_int64(st, 4, now);
        bind_text(st, 5, detail);
        if ((rc = step_done(s, st)))
            return rc;
    }
    return store_alert_live(s, rule, device_id, out);
}

enum mamori_err store_alert_live(struct store *s, const char *rule, const char *device_id,
                                 struct alert_rec *out)
{
    return alert_one(
        s, "SELECT " ALERT_COLS " FROM alerts WHERE rule=?1 AND device_id=?2 AND state<>'resolved'",
        0, rule, device_id, out);
}

enum mamori_err store_alert_get(struct store *s, int64_t id, struct alert_rec *out)
{
    return alert_one(s, "SELECT " ALERT_COLS " FROM alerts WHERE id=?1", id, NULL, NULL, out);
}

enum mamori_err store_alerts(struct store *s, const char *state, const char *device_id,
                             int64_t after, int limit, bool (*cb)(const struct alert_rec *, void *),
                             void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT " ALERT_COLS " FROM alerts WHERE (?1 IS NULL OR state=?1) AND (?2 IS NULL "
             "OR device_id=?2) AND id>?3 ORDER BY id LIMIT ?4",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, state);
    bind_text(st, 2, device_id);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int(st, 4, limit);
    struct alert_rec a;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        alert_row(st, &a);
        if (!cb(&a, arg))
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_alert_set(struct store *s, int64_t id, const char *state, const char *by,
                                const char *note)
{
    sqlite3_stmt *st;
    bool ack = strcmp(state, "acknowledged") == 0;
    if (prep(s,
             ack ? "UPDATE alerts SET state=?2, acked_by=?3, note=?4 WHERE id=?1 AND state='open'"
                 : "UPDATE alerts SET state=?2, resolved_by=?3, note=?4 WHERE id=?1 AND "
                   "state<>'resolved'",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, state);
    bind_text(st, 3, by);
    bind_text(st, 4, note);
    enum mamori_err rc = step_done(s, st);
    return rc ? rc : sqlite3_changes(s->db) ? MAMORI_OK : MAMORI_ERR_STATE;
}

enum mamori_err store_alerts_action_due(struct store *s, struct alert_rec *out, size_t max,
                                        size_t *n)
{
    sqlite3_stmt *st;
    *n = 0;
    if (prep(s, "SELECT " ALERT_COLS " FROM alerts WHERE action LIKE 'due:%' ORDER BY id LIMIT ?",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int(st, 1, (int)max);
    while (*n < max && sqlite3_step(st) == SQLITE_ROW)
        alert_row(st, &out[(*n)++]);
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_alert_action(struct store *s, int64_t id, const char *action)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE alerts SET action=?2 WHERE id=?1", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, action);
    return step_done(s, st);
}

enum mamori_err store_policy_set(struct store *s, const struct policy_rec *p, const char *by,
                                 int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO rule_policies(rule,model,action,act_after,updated_by,updated_at) "
             "VALUES(?,?,?,?,?,?) ON CONFLICT(rule,model) DO UPDATE SET action=excluded.action, "
             "act_after=excluded.act_after, updated_by=excluded.updated_by, "
             "updated_at=excluded.updated_at",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, p->rule);
    bind_text(st, 2, p->model);
    bind_text(st, 3, p->action);
    sqlite3_bind_int(st, 4, p->act_after);
    bind_text(st, 5, by);
    sqlite3_bind_int64(st, 6, now);
    return step_done(s, st);
}

static void policy_row(sqlite3_stmt *st, struct policy_rec *p)
{
    memset(p, 0, sizeof(*p));
    copy_col(st, 0, p->rule, sizeof(p->rule));
    copy_col(st, 1, p->model, sizeof(p->model));
    copy_col(st, 2, p->action, sizeof(p->action));
    p->act_after = sqlite3_column_int(st, 3);
}

enum mamori_err store_policy_get(struct store *s, const char *rule, const char *model,
                                 struct policy_rec *out)
{
    sqlite3_stmt *st;
    /* the model's own policy first, then the default ('') */
    if (prep(s,
             "SELECT rule,model,action,act_after FROM rule_policies WHERE rule=?1 AND model IN "
             "(?2,'') ORDER BY model DESC LIMIT 1",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, rule);
    bind_text(st, 2, model);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        policy_row(st, out);
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? MAMORI_OK : r == SQLITE_DONE ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_DB;
}

enum mamori_err store_policies(struct store *s, bool (*cb)(const struct policy_rec *, void *),
                               void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT rule,model,action,act_after FROM rule_policies ORDER BY rule,model", &st))
        return MAMORI_ERR_DB;
    struct policy_rec p;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        policy_row(st, &p);
        if (!cb(&p, arg))
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_webhook_add(struct store *s, struct webhook_rec *w)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO webhooks(url,secret,created_by,created_at) VALUES(?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, w->url);
    bind_text(st, 2, w->secret);
    bind_text(st, 3, w->created_by);
    sqlite3_bind_int64(st, 4, w->created_at);
    enum mamori_err rc = step_done(s, st);
    if (!rc)
        w->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

enum mamori_err store_webhook_del(struct store *s, int64_t id)
{
    sqlite3_stmt *st;
    if (prep(s, "DELETE FROM webhooks WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    enum mamori_err rc = step_done(s, st);
    if (!rc && !sqlite3_changes(s->db))
        return MAMORI_ERR_NOTFOUND;
    if (!rc && prep(s,
                    "UPDATE deliveries SET state='dropped' WHERE webhook_id=? AND "
                    "state='pending'",
                    &st) == MAMORI_OK) {
        sqlite3_bind_int64(st, 1, id);
        rc = step_done(s, st);
    }
    return rc;
}

enum mamori_err store_webhooks(struct store *s, bool (*cb)(const struct webhook_rec *, void *),
                               void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT id,url,secret,created_by,created_at FROM webhooks ORDER BY id", &st))
        return MAMORI_ERR_DB;
    struct webhook_rec w;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&w, 0, sizeof(w));
        w.id = sqlite3_column_int64(st, 0);
        copy_col(st, 1, w.url, sizeof(w.url));
        copy_col(st, 2, w.secret, sizeof(w.secret));
        copy_col(st, 3, w.created_by, sizeof(w.created_by));
        w.created_at = sqlite3_column_int64(st, 4);
        bool go = cb(&w, arg);
        crypto_wipe(w.secret, sizeof(w.secret));
        if (!go)
            break;
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_delivery_add(struct store *s, int64_t webhook_id, int64_t alert_id,
                                   const char *payload, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO deliveries(webhook_id,alert_id,payload,state,next_at,created_at) "
             "VALUES(?,?,?,'pending',?4,?4)",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, webhook_id);
    sqlite3_bind_int64(st, 2, alert_id);
    bind_text(st, 3, payload);
    sqlite3_bind_int64(st, 4, now);
    return step_done(s, st);
}

enum mamori_err store_deliveries_due(struct store *s, int64_t now, struct delivery_rec *out,
                                     size_t max, size_t *n)
{
    sqlite3_stmt *st;
    *n = 0;
    if (prep(s,
             "SELECT d.id,d.webhook_id,d.alert_id,d.payload,d.tries,d.created_at,w.url,w.secret "
             "FROM deliveries d JOIN webhooks w ON w.id=d.webhook_id WHERE d.state='pending' AND "
             "d.next_at<=? ORDER BY d.next_at LIMIT ?",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, (int)max);
    int r;
    while (*n < max && (r = sqlite3_step(st)) == SQLITE_ROW) {
        struct delivery_rec *d = &out[(*n)++];
        memset(d, 0, sizeof(*d));
        d->id = sqlite3_column_int64(st, 0);
        d->webhook_id = sqlite3_column_int64(st, 1);
        d->alert_id = sqlite3_column_int64(st, 2);
        copy_col(st, 3, d->payload, sizeof(d->payload));
        d->tries = sqlite3_column_int(st, 4);
        d->created_at = sqlite3_column_int64(st, 5);
        copy_col(st, 6, d->url, sizeof(d->url));
        copy_col(st, 7, d->secret, sizeof(d->secret));
    }
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_delivery_set(struct store *s, int64_t id, const char *state, int tries,
                                   int64_t next_at, const char *error)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE deliveries SET state=?2, tries=?3, next_at=?4, error=?5 WHERE id=?1", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, state);
    sqlite3_bind_int(st, 3, tries);
    sqlite3_bind_int64(st, 4, next_at);
    bind_text(st, 5, error);
    return step_done(s, st);
}

/* --- ownership transfer and data rights (hub/owners.c) -------------------- */

enum mamori_err store_transfer_put(struct store *s, const struct transfer_rec *t)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO transfers(device_id,code_hash,from_user,data,created_at,expires_at) "
             "VALUES(?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET "
             "code_hash=excluded.code_hash, from_user=excluded.from_user, data=excluded.data, "
             "created_at=excluded.created_at, expires_at=excluded.expires_at",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, t->device_id);
    bind_text(st, 2, t->code_hash);
    sqlite3_bind_int64(st, 3, t->from_user);
    bind_text(st, 4, t->data);
    sqlite3_bind_int64(st, 5, t->created_at);
    sqlite3_bind_int64(st, 6, t->expires_at);
    return step_done(s, st);
}

enum mamori_err store_transfer_find(struct store *s, const char *device_id, const char *code_hash,
                                    struct transfer_rec *out)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT device_id,code_hash,from_user,data,created_at,expires_at FROM transfers "
             "WHERE device_id=?1 OR code_hash=?2",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, device_id);
    bind_text(st, 2, code_hash);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        copy_col(st, 0, out->device_id, sizeof(out->device_id));
        copy_col(st, 1, out->code_hash, sizeof(out->code_hash));
        out->from_user = sqlite3_column_int64(st, 2);
        copy_col(st, 3, out->data, sizeof(out->data));
        out->created_at = sqlite3_column_int64(st, 4);
        out->expires_at = sqlite3_column_int64(st, 5);
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? MAMORI_OK : r == SQLITE_DONE ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_DB;
}

enum mamori_err store_transfer_del(struct store *s, const char *device_id)
{
    return exec_text(s, "DELETE FROM transfers WHERE device_id=?", device_id);
}

enum mamori_err store_device_set_owner(struct store *s, const char *id, int64_t owner_id,
                                       int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE devices SET owner_id=?, claimed_at=?, updated_at=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    if (owner_id)
        sqlite3_bind_int64(st, 1, owner_id);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, id);
    return changed_one(s, st);
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
        sqlite3_stmt *st;
        if (prep(s, SQL[i], &st))
            return MAMORI_ERR_DB;
        bind_text(st, 1, id);
        if (i == 2)
            bind_text(st, 2, cancel_by);
        enum mamori_err rc = step_done(s, st);
        if (rc)
            return rc;
    }
    return MAMORI_OK;
}

enum mamori_err store_export_add(struct store *s, int64_t user_id, const char *device_id,
                                 const char *body, int64_t now, int64_t *id)
{
    sqlite3_stmt *st;
    if (prep(s, "INSERT INTO exports(user_id,device_id,created_at,body) VALUES(?,?,?,?)", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, user_id);
    bind_text(st, 2, device_id);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, body);
    enum mamori_err rc = step_done(s, st);
    if (!rc && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

enum mamori_err store_exports(struct store *s, int64_t user_id, int64_t id,
                              bool (*cb)(int64_t id, const char *device_id, int64_t created_at,
                                         const char *body, void *arg),
                              void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT id,device_id,created_at,body FROM exports WHERE user_id=?1 AND (?2=0 OR "
             "id=?2) ORDER BY id",
             &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, id);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW &&
           cb(sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
              sqlite3_column_int64(st, 2), (const char *)sqlite3_column_text(st, 3), arg))
        ;
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_exports_erase(struct store *s, int64_t user_id)
{
    sqlite3_stmt *st;
    if (prep(s, "DELETE FROM exports WHERE user_id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, user_id);
    return step_done(s, st);
}

enum mamori_err store_revoked_certs(struct store *s,
                                    bool (*cb)(const char *serial, int64_t when, bool retired,
                                               void *arg),
                                    void *arg)
{
    sqlite3_stmt *st;
    if (prep(s,
             "SELECT cert_serial, updated_at, state FROM devices WHERE state IN "
             "('revoked','decommissioned') AND cert_serial<>'' ORDER BY id LIMIT 1000000",
             &st))
        return MAMORI_ERR_DB;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW &&
           cb((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
              strcmp((const char *)sqlite3_column_text(st, 2), "decommissioned") == 0, arg))
        ;
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

/* Device ids from a query whose ?1 is an integer (or, with text, a text)
 * and ?2 the limit. */
static enum mamori_err ids_query(struct store *s, const char *sql, int64_t v, const char *text,
                                 char (*ids)[24], size_t max, size_t *n)
{
    sqlite3_stmt *st;
    *n = 0;
    if (prep(s, sql, &st))
        return MAMORI_ERR_DB;
    if (text)
        bind_text(st, 1, text);
    else
        sqlite3_bind_int64(st, 1, v);
    sqlite3_bind_int(st, 2, (int)max);
    while (*n < max && sqlite3_step(st) == SQLITE_ROW)
        copy_col(st, 0, ids[(*n)++], 24);
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err store_devices_silent(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                     size_t *n)
{
    return ids_query(s,
                     "SELECT id FROM devices WHERE state IN ('claimed','active') AND online=0 AND "
                     "coalesce(last_seen, claimed_at, created_at) < ?1 ORDER BY id LIMIT ?2",
                     before, NULL, ids, max, n);
}

enum mamori_err store_device_certs(struct store *s,
                                   bool (*cb)(const char *id, const char *state, const char *pem,
                                              void *arg),
                                   void *arg)
{
    sqlite3_stmt *st;
    if (prep(s, "SELECT id, state, cert_pem FROM devices ORDER BY id LIMIT 1000000", &st))
        return MAMORI_ERR_DB;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW &&
           cb((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
              (const char *)sqlite3_column_text(st, 2), arg))
        ;
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err store_devices_expiring(struct store *s, int64_t before, char (*ids)[24], size_t max,
                                       size_t *n)
{
    return ids_query(s,
                     "SELECT id FROM devices WHERE state NOT IN "
                     "('manufactured','revoked','decommissioned') AND cert_not_after < ?1 "
                     "ORDER BY cert_not_after LIMIT ?2",
                     before, NULL, ids, max, n);
}

int64_t store_scalar(struct store *s, const char *sql, const char *arg)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (prep(s, sql, &st))
        return -1;
    if (arg)
        bind_text(st, 1, arg);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

enum mamori_err store_devices_online_after(struct store *s, const char *after, char (*ids)[24],
                                           size_t max, size_t *n)
{
    return ids_query(s,
                     "SELECT id FROM devices WHERE online=1 AND state IN ('claimed','active') AND "
                     "id>?1 ORDER BY id LIMIT ?2",
                     0, after, ids, max, n);
}

enum mamori_err store_command_delete(struct store *s, const char *id)
{
    return exec_text(s, "DELETE FROM commands WHERE id=?", id);
}

enum mamori_err store_user_seen(struct store *s, int64_t id, int64_t now)
{
    sqlite3_stmt *st;
    if (prep(s, "UPDATE users SET last_login=? WHERE id=?", &st))
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, id);
    return step_done(s, st);
}

enum mamori_err store_devices_owner_idle(struct store *s, int64_t before, char (*ids)[24],
                                         size_t max, size_t *n)
{
    return ids_query(s,
                     "SELECT d.id FROM devices d JOIN users u ON u.id=d.owner_id WHERE d.state IN "
                     "('claimed','active') AND coalesce(u.last_login, d.claimed_at, 0) < ?1 "
                     "ORDER BY d.id LIMIT ?2",
                     before, NULL, ids, max, n);
}

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
        enum mamori_err rc = exec_i64(s, SQL[i], id, now, &n);
        if (rc)
            return rc == MAMORI_ERR_EXISTS ? MAMORI_ERR_STATE : rc;
    }
    return n == 1 ? MAMORI_OK : MAMORI_ERR_NOTFOUND;
}

bool store_name_retired(struct store *s, const char *name)
{
    return store_scalar(s, "SELECT count(*) FROM retired_names WHERE name=?1", name) != 0;
}

enum mamori_err store_alerts_prune(struct store *s, int64_t before_ms, int64_t *alerts,
                                   int64_t *deliveries)
{
    enum mamori_err rc =
        exec_i64(s, "DELETE FROM deliveries WHERE state<>'pending' AND created_at<?1", before_ms, 0,
                 deliveries);
    return rc ? rc
              : exec_i64(s, "DELETE FROM alerts WHERE state='resolved' AND last_at<?1", before_ms,
                         0, alerts);
}

enum mamori_err store_status_set(struct store *s, const struct status_rec *r)
{
    sqlite3_stmt *st;
    if (prep(s,
             "INSERT INTO device_status(device_id,token,claims,iat,exp,received_at) "
             "VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(device_id) DO UPDATE SET token=excluded.token, "
             "claims=excluded.claims, iat=excluded.iat, exp=excluded.exp, "
             "received_at=excluded.received_at WHERE excluded.iat > device_status.iat",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, r->device_id);
    bind_text(st, 2, r->token);
    bind_text(st, 3, r->claims);
    sqlite3_bind_int64(st, 4, r->iat);
    sqlite3_bind_int64(st, 5, r->exp);
    sqlite3_bind_int64(st, 6, r->received_at);
    enum mamori_err rc = step_done(s, st);
    return rc ? rc : sqlite3_changes(s->db) == 1 ? MAMORI_OK : MAMORI_ERR_STATE;
}

enum mamori_err store_status_get(struct store *s, const char *id, struct status_rec *out)
{
    sqlite3_stmt *st;
    memset(out, 0, sizeof(*out));
    if (prep(s,
             "SELECT device_id,token,claims,iat,exp,received_at FROM device_status WHERE "
             "device_id=?1",
             &st))
        return MAMORI_ERR_DB;
    bind_text(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        copy_col(st, 0, out->device_id, sizeof(out->device_id));
        copy_col(st, 1, out->token, sizeof(out->token));
        copy_col(st, 2, out->claims, sizeof(out->claims));
        out->iat = sqlite3_column_int64(st, 3);
        out->exp = sqlite3_column_int64(st, 4);
        out->received_at = sqlite3_column_int64(st, 5);
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? MAMORI_OK : r == SQLITE_DONE ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_DB;
}

enum mamori_err store_data_prune(struct store *s, int64_t before_ms, int chunk, int64_t *telemetry,
                                 int64_t *events)
{
    /* the oldest rows first (rowids grow with time), a chunk at a time, so
     * no sweep holds the store long; a chunk with none old costs little */
    enum mamori_err rc =
        exec_i64(s,
                 "DELETE FROM telemetry WHERE rowid IN (SELECT rowid FROM telemetry ORDER BY rowid "
                 "LIMIT ?2) AND recv_at < ?1",
                 before_ms, chunk, telemetry);
    return rc ? rc
              : exec_i64(s,
                         "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events ORDER BY "
                         "rowid LIMIT ?2) AND ts < ?1 / 1000",
                         before_ms, chunk, events);
}
