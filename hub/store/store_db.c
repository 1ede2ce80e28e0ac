/*
 * hub/store/store_db.c - what the store does the same on every engine: the
 * statement helpers of store_priv.h over the engine's driver, nested
 * transactions, and the calls that span several entities.
 *
 * store_open picks the engine from its argument: "postgresql://..." or
 * "postgres://..." (a libpq connection URI) is PostgreSQL (store_pg.c);
 * "sqlite:PATH" or a bare path is SQLite (store_sqlite.c), the embedded
 * default. Both run the same numbered migrations (each engine's SQL for
 * the same schema) and the same entity files (store_users.c, ...).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hub/store/store_priv.h"

/* --- opening -------------------------------------------------------------- */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

bool store_is_postgresql(const char *where)
{
    return where && (has_prefix(where, "postgresql://") || has_prefix(where, "postgres://"));
}

enum mamori_err store_open(const char *where, struct store **out)
{
    *out = NULL;
    if (!where || !*where)
        return MAMORI_ERR_INVAL;
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return MAMORI_ERR_NOMEM;
    s->session = 1;
    enum mamori_err rc;
    if (store_is_postgresql(where))
        rc = db_pg_open(s, where);
    else
        rc = db_sqlite_open(s, has_prefix(where, "sqlite:") ? where + strlen("sqlite:") : where);
    if (rc) {
        if (s->drv)
            s->drv->close(s);
        free(s);
        return rc;
    }
    *out = s;
    return MAMORI_OK;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->drv)
        s->drv->close(s);
    free(s);
}

const char *store_engine(const struct store *s)
{
    return s->drv->name;
}

enum mamori_err store_checkpoint(struct store *s)
{
    return s->drv->checkpoint(s);
}

/* --- statements ------------------------------------------------------------ */

size_t db_sql_hash(const char *sql)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

enum mamori_err db_script(struct store *s, const char *sql)
{
    return s->drv->script(s, sql);
}

enum mamori_err db_exec(struct store *s, const char *sql, const struct db_arg *args, int n,
                        int64_t *changes)
{
    if (changes)
        *changes = 0;
    return s->drv->exec(s, sql, args, n, changes, NULL);
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
    int64_t id = 0;
    enum mamori_err rc = s->drv->exec(s, sql, args, n, NULL, &id);
    if (rowid)
        *rowid = rc ? 0 : id;
    return rc;
}

enum mamori_err db_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                         struct db_rows *q)
{
    memset(q, 0, sizeof(*q));
    q->s = s;
    q->row.s = s;
    q->row.q = q;
    return s->drv->query(s, sql, args, n, q);
}

bool db_next(struct db_rows *q)
{
    return q->s->drv->next(q);
}

enum mamori_err db_done(struct db_rows *q)
{
    return q->s->drv->done(q);
}

/* The next chunk for left rows. */
static size_t rows_chunk(const struct store *s, size_t left)
{
    size_t k = s->drv->rows_max;
    while (k > left && k > 1)
        k /= 2;
    return k;
}

/* The statement text for rows tuples of cols parameters; false when it
 * does not fit in cap. */
static bool rows_sql(char *out, size_t cap, const char *head, int cols, size_t rows,
                     const char *tail)
{
    int o = snprintf(out, cap, "%s VALUES", head);
    for (size_t r = 0; o > 0 && (size_t)o < cap && r < rows; r++)
        for (int c = 0; o > 0 && (size_t)o < cap && c < cols; c++)
            o += snprintf(out + o, cap - (size_t)o, "%s?%s",
                          c   ? ","
                          : r ? ",("
                              : "(",
                          c == cols - 1 ? ")" : "");
    if (o > 0 && (size_t)o < cap)
        o += snprintf(out + o, cap - (size_t)o, " %s", tail);
    return o > 0 && (size_t)o < cap;
}

enum mamori_err db_insert_rows(struct store *s, const char *head, int cols, const char *tail,
                               size_t n, db_row_args_fn fill, void *ctx, void *scratch,
                               size_t scratch_size)
{
    struct db_arg a[DB_ROWS_MAX * DB_ROWS_COLS];
    char sql[DB_ROWS_SQL_MAX];
    size_t built = 0; /* the chunk sql is for */
    if (cols < 1 || cols > DB_ROWS_COLS)
        return MAMORI_ERR_INTERNAL;
    for (size_t done = 0; done < n;) {
        size_t k = rows_chunk(s, n - done);
        for (size_t i = 0; i < k; i++)
            fill(done + i, ctx, &a[i * (size_t)cols], (char *)scratch + i * scratch_size);
        if (k != built && !rows_sql(sql, sizeof(sql), head, cols, k, tail))
            return MAMORI_ERR_INTERNAL;
        built = k;
        enum mamori_err rc = db_exec(s, sql, a, (int)(k * (size_t)cols), NULL);
        if (rc)
            return rc;
        done += k;
    }
    return MAMORI_OK;
}

/* --- rows ------------------------------------------------------------------ */

/* The first row of a query, handed to take(row, ctx); MAMORI_ERR_NOTFOUND
 * without one. wipe(ctx) clears the output after binding (an argument may
 * point into it) and again on any error. */
static enum mamori_err first_row(struct store *s, const char *sql, const struct db_arg *args, int n,
                                 void (*take)(const struct db_row *r, void *ctx),
                                 void (*wipe)(void *ctx), void *ctx)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    wipe(ctx);
    if (rc)
        return rc;
    bool found = db_next(&q);
    if (found)
        take(&q.row, ctx);
    rc = db_done(&q);
    if (!rc && !found)
        rc = MAMORI_ERR_NOTFOUND;
    if (rc)
        wipe(ctx);
    return rc;
}

struct one_out {
    db_fill_fn fill;
    void *out;
    size_t size;
};

static void one_take(const struct db_row *r, void *ctx)
{
    struct one_out *o = ctx;
    o->fill(r, o->out);
}

static void one_wipe(void *ctx)
{
    struct one_out *o = ctx;
    memset(o->out, 0, o->size);
}

enum mamori_err db_one(struct store *s, const char *sql, const struct db_arg *args, int n,
                       db_fill_fn fill, void *out, size_t size)
{
    struct one_out o = {fill, out, size};
    return first_row(s, sql, args, n, one_take, one_wipe, &o);
}

static void fill_int(const struct db_row *r, void *out)
{
    *(int64_t *)out = db_col_int(r, 0);
}

enum mamori_err db_one_int(struct store *s, const char *sql, const struct db_arg *args, int n,
                           int64_t *out)
{
    return db_one(s, sql, args, n, fill_int, out, sizeof(*out));
}

struct text_out {
    char *out;
    size_t len;
};

static void text_take(const struct db_row *r, void *ctx)
{
    struct text_out *t = ctx;
    db_col_text(r, 0, t->out, t->len);
}

static void text_wipe(void *ctx)
{
    struct text_out *t = ctx;
    memset(t->out, 0, t->len);
}

enum mamori_err db_one_text(struct store *s, const char *sql, const struct db_arg *args, int n,
                            char *out, size_t outlen)
{
    struct text_out t = {out, outlen};
    return first_row(s, sql, args, n, text_take, text_wipe, &t);
}

enum mamori_err db_one_dup(struct store *s, const char *sql, const struct db_arg *args, int n,
                           char **out)
{
    struct db_rows q;
    *out = NULL;
    enum mamori_err rc = db_query(s, sql, args, n, &q);
    if (rc)
        return rc;
    const char *t = db_next(&q) ? db_col_str(&q.row, 0) : NULL;
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
        fill(&q.row, (char *)out + *count * size);
        (*count)++;
    }
    rc = db_done(&q);
    if (rc)
        *count = 0;
    return rc;
}

/* --- columns --------------------------------------------------------------- */

bool db_col_null(const struct db_row *r, int col)
{
    return r->s->drv->col_null(r, col);
}

int64_t db_col_int(const struct db_row *r, int col)
{
    return r->s->drv->col_int(r, col);
}

const char *db_col_str(const struct db_row *r, int col)
{
    size_t n;
    return r->s->drv->col_str(r, col, &n);
}

const void *db_col_blob(const struct db_row *r, int col, size_t *len)
{
    return r->s->drv->col_blob(r, col, len);
}

void db_col_text(const struct db_row *r, int col, char *out, size_t outlen)
{
    if (!outlen)
        return;
    size_t n = 0;
    const char *t = r->s->drv->col_str(r, col, &n);
    if (!t)
        n = 0;
    if (n >= outlen)
        n = outlen - 1;
    if (n)
        memcpy(out, t, n);
    out[n] = '\0';
}

void db_fill_id(const struct db_row *r, void *out)
{
    db_col_text(r, 0, out, 24);
}

/* --- transactions ------------------------------------------------------------ */

/* Transactions nest: the outermost is BEGIN ... COMMIT, the ones inside it
 * are savepoints, which become durable only with the outermost commit.
 * depth follows the engine's own view (a failed COMMIT leaves the
 * transaction open for the caller's rollback). */
enum mamori_err store_begin(struct store *s)
{
    if (!s->drv->in_transaction(s))
        s->depth = 0;
    enum mamori_err rc = s->depth ? db_exec(s, "SAVEPOINT nested", DB_NO_ARGS, NULL)
                                  : db_exec(s, s->drv->begin_sql, DB_NO_ARGS, NULL);
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
    if (!rc && s->depth == 0 && s->drv->committed)
        s->drv->committed(s);
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
    if (s->drv->in_transaction(s))
        (void)db_script(s, "ROLLBACK");
    s->depth = 0;
}

bool store_in_transaction(struct store *s)
{
    return s->drv->in_transaction(s);
}

int store_schema_version(struct store *s)
{
    return s->drv->schema_version(s);
}

/* --- small values ------------------------------------------------------------ */

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
