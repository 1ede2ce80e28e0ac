/*
 * hub/store/store_pg.c - the PostgreSQL engine of store.h (libpq), chosen
 * by store_open("postgresql://..."). The entity files and helpers are the
 * SQLite engine's (store_db.c); this file runs their SQL on PostgreSQL.
 *
 * - Parameters: the helpers' ?N (and bare ?) become $N, outside quoted
 *   text. Integers are sent as int8, text as text, blobs in binary as
 *   bytea; a NULL's type is left to the server to infer from where it
 *   stands, and is text where nothing says (?1 IS NULL). Results come
 *   back as text: integers parsed, booleans 't'/'f' read as 1/0, bytea
 *   decoded from its hex form.
 * - Statements are prepared once per connection and kept, keyed by their
 *   text (PQprepare; a full probe run gives its first slot up).
 * - An INSERT whose new id is asked for gets "RETURNING id".
 * - Commits are durable before they return (synchronous_commit on), as
 *   SQLite's synchronous=FULL: an acknowledgement follows a commit.
 * - A constraint violation (SQLSTATE class 23) is MAMORI_ERR_EXISTS, as a
 *   SQLite constraint is. Unlike SQLite, a failed statement spoils the
 *   whole open transaction: the caller's rollback is all that is left.
 * - A lost connection is reset before the next statement outside a
 *   transaction (its prepared statements are then prepared again); inside
 *   one, never: the statements fail until the caller rolls back, so no
 *   part of a transaction runs on its own.
 * - Erasure: PostgreSQL has no secure_delete. An erased row's bytes stay
 *   in its heap page until the page is reused (after VACUUM) and in the
 *   WAL until the segment is recycled (docs/operations.md).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/log.h"
#include "hub/store/store_priv.h"

#define PG_SQL_MAX        8192 /* a statement's text after translation */
#define PG_PARAMS_MAX     640  /* DB_ROWS_MAX rows of DB_ROWS_COLS columns */
#define PG_CACHE          256  /* prepared statements per connection; a power of two */
#define PG_PROBE          8
#define PG_MIGRATION_LOCK "7146" /* the advisory lock migrations run under */
#define PG_SERIAL_LOCK    "7147" /* the one appends to the audit chain run under */
#define INT8OID           20
#define BYTEAOID          17
#define TEXTOID           25

_Static_assert(PG_PARAMS_MAX >= DB_ROWS_MAX * DB_ROWS_COLS, "a chunk of rows fits one statement");

struct pg_cache {
    char *sql[PG_CACHE]; /* the translated text of the statement named "m<i>" */
};

static PGconn *conn(const struct store *s)
{
    return (PGconn *)s->pg;
}

/* --- statements ------------------------------------------------------------ */

/* sql with ?N / ? as $N into out; *nparams gets the highest N. Quoted
 * text and identifiers are copied as they are. */
static bool translate(const char *sql, bool returning, char *out, size_t cap, int *nparams)
{
    size_t o = 0;
    int next = 0, max = 0;
    char quote = 0;
    for (const char *p = sql; *p; p++) {
        char buf[16];
        const char *w = buf;
        size_t wl;
        if (quote) {
            if (*p == quote)
                quote = 0;
            buf[0] = *p;
            wl = 1;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
            buf[0] = *p;
            wl = 1;
        } else if (*p == '?') {
            int k = 0;
            while (isdigit((unsigned char)p[1]) && k < 1000)
                k = k * 10 + (*++p - '0');
            if (k == 0)
                k = ++next;
            if (k > PG_PARAMS_MAX)
                return false;
            if (k > max)
                max = k;
            wl = (size_t)snprintf(buf, sizeof(buf), "$%d", k);
        } else {
            w = p;
            wl = 1;
        }
        if (o + wl >= cap)
            return false;
        memcpy(out + o, w, wl);
        o += wl;
    }
    const char *tail = returning ? " RETURNING id" : "";
    size_t tl = strlen(tail);
    if (quote || o + tl >= cap)
        return false;
    memcpy(out + o, tail, tl + 1);
    *nparams = max;
    return true;
}

static void cache_clear(struct store *s)
{
    if (!s->pg_cache)
        return;
    for (size_t i = 0; i < PG_CACHE; i++) {
        free(s->pg_cache->sql[i]);
        s->pg_cache->sql[i] = NULL;
    }
}

static enum mamori_err pg_fail(struct store *s, PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && strncmp(state, "23", 2) == 0)
        return MAMORI_ERR_EXISTS;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    log_err("postgresql %s: %s", what, msg && *msg ? msg : PQerrorMessage(conn(s)));
    return MAMORI_ERR_DB;
}

/* Outside a transaction, a connection found broken is reset (and its
 * prepared statements forgotten). */
static void revive(struct store *s)
{
    /* inside a transaction, never: what follows would run outside it */
    if (PQstatus(conn(s)) == CONNECTION_OK || s->depth > 0)
        return;
    log_warn("postgresql connection lost; reconnecting");
    s->session++; /* what the old session held (leases, LISTEN) is gone */
    cache_clear(s);
    PQreset(conn(s));
    if (PQstatus(conn(s)) == CONNECTION_OK)
        log_info("postgresql connection back");
}

static enum mamori_err pg_script(struct store *s, const char *sql)
{
    revive(s);
    PGresult *r = PQexec(conn(s), sql);
    ExecStatusType st = PQresultStatus(r);
    enum mamori_err rc =
        st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? MAMORI_OK : pg_fail(s, r, "script");
    PQclear(r);
    return rc;
}

static bool indeterminate(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state && (strcmp(state, "42P18") == 0 || strcmp(state, "42P08") == 0);
}

/* Prepares text as name. A NULL argument whose type nothing in the text
 * gives (?1 IS NULL) is then taken as text. Inside a transaction this
 * runs under a savepoint, so a refused text fails only its own statement,
 * as on SQLite, not the whole transaction. */
static bool prepare(struct store *s, const char *name, const char *text, int np, const Oid *types)
{
    bool in_tx = PQtransactionStatus(conn(s)) == PQTRANS_INTRANS;
    if (in_tx && pg_script(s, "SAVEPOINT mamori_prepare"))
        return false;
    PGresult *r = PQprepare(conn(s), name, text, np, types);
    if (indeterminate(r)) {
        Oid typed[PG_PARAMS_MAX];
        for (int a = 0; a < np; a++)
            typed[a] = types[a] ? types[a] : TEXTOID;
        PQclear(r);
        r = in_tx && pg_script(s, "ROLLBACK TO SAVEPOINT mamori_prepare")
                ? NULL
                : PQprepare(conn(s), name, text, np, typed);
    }
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        (void)pg_fail(s, r, "prepare");
        log_err("postgresql: in: %.200s", text);
    }
    PQclear(r);
    if (in_tx && !ok)
        (void)pg_script(s, "ROLLBACK TO SAVEPOINT mamori_prepare");
    if (in_tx && pg_script(s, "RELEASE SAVEPOINT mamori_prepare"))
        ok = false;
    return ok;
}

/* The name of the prepared statement for text, prepared now when new
 * (over the oldest of a short probe run when the run is full); NULL on
 * error. */
static const char *prepared(struct store *s, const char *text, int np, const Oid *types,
                            char name[16])
{
    size_t first = db_sql_hash(text) & (PG_CACHE - 1), k = first;
    for (size_t i = 0; i < PG_PROBE; i++) {
        k = (first + i) & (PG_CACHE - 1);
        const char *have = s->pg_cache->sql[k];
        if (!have || strcmp(have, text) == 0)
            break;
        k = first; /* all taken: the first slot makes room */
    }
    snprintf(name, 16, "m%zu", k);
    char *have = s->pg_cache->sql[k];
    if (have && strcmp(have, text) == 0)
        return name;
    if (have) {
        char sql[32];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
        PQclear(PQexec(conn(s), sql));
        free(have);
        s->pg_cache->sql[k] = NULL;
    }
    char *copy = strdup(text);
    if (!copy || !prepare(s, name, text, np, types)) {
        free(copy);
        return NULL;
    }
    s->pg_cache->sql[k] = copy;
    return name;
}

/* Runs sql with args; the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) in
 * *out, NULL on error (logged). */
static enum mamori_err run(struct store *s, const char *sql, const struct db_arg *args, int n,
                           bool returning, PGresult **out)
{
    *out = NULL;
    char text[PG_SQL_MAX];
    int np;
    if (!translate(sql, returning, text, sizeof(text), &np)) {
        log_err("postgresql: statement too long or unbalanced: %.80s", sql);
        return MAMORI_ERR_INTERNAL;
    }
    if (n < np) {
        log_err("postgresql: %d argument(s) for %d parameter(s) in: %s", n, np, sql);
        return MAMORI_ERR_INTERNAL;
    }
    Oid types[PG_PARAMS_MAX];
    const char *vals[PG_PARAMS_MAX];
    int lens[PG_PARAMS_MAX], fmts[PG_PARAMS_MAX];
    char nums[PG_PARAMS_MAX][24];
    for (int i = 0; i < np; i++) {
        types[i] = 0;
        vals[i] = NULL;
        lens[i] = fmts[i] = 0;
        switch (args[i].type) {
        case DB_ARG_NULL:
            break;
        case DB_ARG_INT:
            types[i] = INT8OID;
            snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)args[i].i);
            vals[i] = nums[i];
            break;
        case DB_ARG_TEXT:
            types[i] = TEXTOID;
            vals[i] = args[i].text;
            break;
        case DB_ARG_BLOB:
            types[i] = BYTEAOID;
            vals[i] = args[i].text ? args[i].text : "";
            lens[i] = (int)args[i].i;
            fmts[i] = 1;
            break;
        }
    }
    revive(s);
    char name[16];
    const char *stmt = prepared(s, text, np, types, name);
    if (!stmt)
        return MAMORI_ERR_DB;
    PGresult *r = PQexecPrepared(conn(s), stmt, np, vals, lens, fmts, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        enum mamori_err rc = pg_fail(s, r, "statement");
        PQclear(r);
        return rc;
    }
    *out = r;
    return MAMORI_OK;
}

static enum mamori_err pg_exec(struct store *s, const char *sql, const struct db_arg *args, int n,
                               int64_t *changes, int64_t *rowid)
{
    PGresult *r;
    enum mamori_err rc = run(s, sql, args, n, rowid != NULL, &r);
    if (rc)
        return rc;
    if (changes)
        *changes = strtoll(PQcmdTuples(r), NULL, 10);
    if (rowid)
        *rowid = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return MAMORI_OK;
}

/* --- rows ------------------------------------------------------------------ */

static void row_clear(struct db_rows *q)
{
    PQfreemem(q->blob);
    q->blob = NULL;
}

static enum mamori_err pg_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                                struct db_rows *q)
{
    PGresult *r;
    enum mamori_err rc = run(s, sql, args, n, false, &r);
    q->row.res = (struct pg_result *)r;
    q->row.i = -1;
    q->r = r ? PQntuples(r) : 0;
    return rc;
}

static bool pg_next(struct db_rows *q)
{
    row_clear(q);
    if (q->row.i + 1 >= q->r)
        return false;
    q->row.i++;
    return true;
}

static enum mamori_err pg_done(struct db_rows *q)
{
    row_clear(q);
    PQclear((PGresult *)q->row.res);
    q->row.res = NULL;
    return MAMORI_OK; /* the whole result arrived in pg_query */
}

static const PGresult *res(const struct db_row *r)
{
    return (const PGresult *)r->res;
}

static bool pg_col_null(const struct db_row *r, int col)
{
    return PQgetisnull(res(r), r->i, col) != 0;
}

static int64_t pg_col_int(const struct db_row *r, int col)
{
    if (pg_col_null(r, col))
        return 0;
    const char *v = PQgetvalue(res(r), r->i, col);
    if (v[0] == 't' && !v[1])
        return 1; /* a boolean expression */
    return strtoll(v, NULL, 10);
}

static const char *pg_col_str(const struct db_row *r, int col, size_t *len)
{
    if (pg_col_null(r, col)) {
        *len = 0;
        return NULL;
    }
    *len = (size_t)PQgetlength(res(r), r->i, col);
    return PQgetvalue(res(r), r->i, col);
}

static const void *pg_col_blob(const struct db_row *r, int col, size_t *len)
{
    *len = 0;
    if (pg_col_null(r, col))
        return NULL;
    const char *v = PQgetvalue(res(r), r->i, col);
    if (PQftype(res(r), col) != BYTEAOID) {
        *len = (size_t)PQgetlength(res(r), r->i, col);
        return v;
    }
    /* its query keeps the decoded bytes until the next row */
    row_clear(r->q);
    r->q->blob = PQunescapeBytea((const unsigned char *)v, len);
    return r->q->blob;
}

/* --- the connection ---------------------------------------------------------- */

static bool pg_in_transaction(struct store *s)
{
    PGTransactionStatusType t = PQtransactionStatus(conn(s));
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static enum mamori_err pg_checkpoint(struct store *s)
{
    (void)s; /* the server checkpoints on its own */
    return MAMORI_OK;
}

static void pg_close(struct store *s)
{
    cache_clear(s);
    free(s->pg_cache);
    s->pg_cache = NULL;
    PQfinish(conn(s));
    s->pg = NULL;
}

/* The notifications the server sent on this connection (LISTEN), read
 * without waiting. */
static size_t pg_notices(struct store *s, store_notice_fn fn, void *arg)
{
    size_t n = 0;
    if (PQstatus(conn(s)) != CONNECTION_OK || !PQconsumeInput(conn(s)))
        return 0;
    PGnotify *note;
    int self = PQbackendPID(conn(s));
    while ((note = PQnotifies(conn(s))) != NULL) {
        if (note->be_pid != self) { /* its own are not handed back */
            fn(note->relname, note->extra ? note->extra : "", arg);
            n++;
        }
        PQfreemem(note);
    }
    return n;
}

static int pg_schema_version(struct store *s)
{
    int64_t v;
    return db_one_int(s, "SELECT coalesce(max(version),0) FROM schema_version", DB_NO_ARGS, &v)
               ? -1
               : (int)v;
}

const struct db_driver db_pg_driver = {
    .name = "postgresql",
    .query = pg_query,
    .next = pg_next,
    .done = pg_done,
    .exec = pg_exec,
    .script = pg_script,
    .in_transaction = pg_in_transaction,
    .begin_sql = "BEGIN",
    .rows_max = DB_ROWS_MAX,
    .committed = NULL,
    .checkpoint = pg_checkpoint,
    .close = pg_close,
    .schema_version = pg_schema_version,
    .serialize_sql = "SELECT pg_advisory_xact_lock(" PG_SERIAL_LOCK ")",
    .notices = pg_notices,
    .col_null = pg_col_null,
    .col_int = pg_col_int,
    .col_str = pg_col_str,
    .col_blob = pg_col_blob,
};

/* Runs the migrations this database has not had, each in its own
 * transaction under an advisory lock, so hubs starting together migrate
 * once (store_pg_schema.c). */
static enum mamori_err migrate(struct store *s)
{
    for (;;) {
        /* the lock first: two sessions creating one table collide */
        if (pg_script(s, "BEGIN; SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK "); "
                         "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")) {
            (void)pg_script(s, "ROLLBACK");
            return MAMORI_ERR_DB;
        }
        int v = pg_schema_version(s);
        const char *next = v >= 0 ? db_pg_migration(v) : NULL;
        if (v < 0 || v > db_pg_migrations()) {
            if (v > db_pg_migrations())
                log_err("database schema %d is newer than this binary (%d)", v, db_pg_migrations());
            (void)pg_script(s, "ROLLBACK");
            return v < 0 ? MAMORI_ERR_DB : MAMORI_ERR_STATE;
        }
        if (!next)
            return pg_script(s, "COMMIT");
        char bump[96];
        snprintf(bump, sizeof(bump),
                 "DELETE FROM schema_version; INSERT INTO schema_version "
                 "VALUES(%d)",
                 v + 1);
        if (pg_script(s, next) || pg_script(s, bump)) {
            (void)pg_script(s, "ROLLBACK");
            return MAMORI_ERR_DB;
        }
        if (pg_script(s, "COMMIT"))
            return MAMORI_ERR_DB;
        log_info("database migrated to schema %d", v + 1);
    }
}

enum mamori_err db_pg_open(struct store *s, const char *conninfo)
{
    s->drv = &db_pg_driver;
    if (!(s->pg_cache = calloc(1, sizeof(*s->pg_cache))))
        return MAMORI_ERR_NOMEM;
    /* defaults the URI may override: a connection attempt gives up after
     * 10 s, and a server gone silent is noticed within about half a
     * minute, not the system's two hours (the hub lock is held meanwhile) */
    static const char *const keys[] = {"connect_timeout",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "options",
                                       "dbname",
                                       NULL};
    /* ... and the server's side, at every (re)connection: a hub whose
     * machine dies leaves its session, and with it its leases (store.h),
     * to the server's TCP keepalive, two hours by the system's default;
     * the server gives up on it after about 25 s of silence instead */
    const char *const vals[] = {
        "10",
        "10",
        "5",
        "3",
        "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
        conninfo,
        NULL};
    s->pg = (struct pg_conn *)PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn(s)) != CONNECTION_OK) {
        /* the message, never the URI: it may hold a password */
        log_err("cannot connect to postgresql: %s", PQerrorMessage(conn(s)));
        return MAMORI_ERR_DB;
    }
    /* durable commits; notices of IF NOT EXISTS kept out of the log */
    if (pg_script(s, "SET synchronous_commit=on; SET client_min_messages=warning"))
        return MAMORI_ERR_DB;
    char coll[64] = "";
    if (db_one_text(s, "SELECT datcollate FROM pg_database WHERE datname=current_database()",
                    DB_NO_ARGS, coll, sizeof(coll)) == MAMORI_OK &&
        strcmp(coll, "C") != 0 && strcmp(coll, "POSIX") != 0)
        log_warn("postgresql database collation is %s: lists are ordered as text by it, not "
                 "byte by byte as with SQLite (create the database with LC_COLLATE 'C')",
                 coll);
    return migrate(s);
}
