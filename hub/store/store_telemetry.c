/*
 * hub/store/store_telemetry.c - device data: the telemetry schema of each
 * model, the sequence state of each device's streams, the accepted
 * telemetry (append-only: a trigger refuses UPDATE), and the retention of
 * telemetry and events.
 */
#include <stdio.h>
#include <string.h>

#include "hub/store/store_priv.h"

enum mamori_err store_schema_set(struct store *s, const char *model, const char *doc, int64_t now)
{
    return db_exec(s,
                   "INSERT INTO schemas(model,doc,updated_at) VALUES(?,?,?) ON CONFLICT(model) "
                   "DO UPDATE SET doc=excluded.doc, updated_at=excluded.updated_at",
                   DB_ARGS(db_text(model), db_text(doc), db_int(now)), NULL);
}

enum mamori_err store_schema_get(struct store *s, const char *model, char **doc_out)
{
    return db_one_dup(s, "SELECT doc FROM schemas WHERE model=?", DB_ARGS(db_text(model)), doc_out);
}

/* --- stream state -------------------------------------------------------------- */

static void stream_row(const struct db_row *st, void *out)
{
    struct stream_rec *r = out;
    r->last_seq = (uint64_t)db_col_int(st, 0);
    r->last_ts = db_col_int(st, 1);
    r->has_acked = !db_col_null(st, 2);
    r->acked = r->has_acked ? (uint64_t)db_col_int(st, 2) : r->last_seq;
    /* kept without its trailing zero bytes (store_stream_set); none at
     * all, as before the window was kept: nothing above acked */
    size_t n;
    const void *w = db_col_blob(st, 3, &n);
    memset(r->window, 0, STORE_STREAM_WINDOW);
    if (w && n > 0)
        memcpy(r->window, w, n < STORE_STREAM_WINDOW ? n : STORE_STREAM_WINDOW);
    r->gone_from = (uint64_t)db_col_int(st, 4);
    r->gone_to = (uint64_t)db_col_int(st, 5);
    r->gap_since_ms = db_col_int(st, 6);
}

enum mamori_err store_stream_get(struct store *s, const char *device_id, const char *stream,
                                 struct stream_rec *out)
{
    enum mamori_err rc =
        db_one(s,
               "SELECT last_seq,last_ts,acked,\"window\",gone_from,gone_to,gap_since"
               " FROM stream_state WHERE device_id=? AND stream=?",
               DB_ARGS(db_text(device_id), db_text(stream)), stream_row, out, sizeof(*out));
    return rc == MAMORI_ERR_NOTFOUND ? MAMORI_OK : rc; /* all zero when none yet */
}

#define STREAM_COLS "device_id,stream,last_seq,last_ts,acked,\"window\",gone_from,gone_to,gap_since"
#define STREAM_UPSERT                                                                              \
    "ON CONFLICT(device_id,stream) DO UPDATE SET last_seq=excluded.last_seq,"                      \
    " last_ts=excluded.last_ts, acked=excluded.acked, \"window\"=excluded.\"window\","             \
    " gone_from=excluded.gone_from, gone_to=excluded.gone_to,"                                     \
    " gap_since=excluded.gap_since"
#define STREAM_NCOLS 9

/* r's columns for the statements above, into a[0..STREAM_NCOLS). The window
 * goes without its trailing zero bytes: with no gap open it is empty, and
 * a row a third of the size puts three times as many devices in each page
 * a batch rewrites. */
static void stream_args(const char *device_id, const char *stream, const struct stream_rec *r,
                        struct db_arg *a)
{
    size_t wlen = STORE_STREAM_WINDOW;
    while (wlen > 0 && r->window[wlen - 1] == 0)
        wlen--;
    a[0] = db_text(device_id);
    a[1] = db_text(stream);
    a[2] = db_u64(r->last_seq);
    a[3] = db_int(r->last_ts);
    a[4] = db_u64(r->acked);
    a[5] = db_blob(r->window, wlen);
    a[6] = db_u64(r->gone_from);
    a[7] = db_u64(r->gone_to);
    a[8] = db_int(r->gap_since_ms);
}

enum mamori_err store_stream_set(struct store *s, const char *device_id, const char *stream,
                                 const struct stream_rec *r)
{
    struct db_arg a[STREAM_NCOLS];
    stream_args(device_id, stream, r, a);
    return db_exec(
        s, "INSERT INTO stream_state(" STREAM_COLS ") VALUES(?,?,?,?,?,?,?,?,?) " STREAM_UPSERT, a,
        STREAM_NCOLS, NULL);
}

struct stream_many {
    store_stream_row_fn row;
    void *ctx;
};

static void stream_fill(size_t i, void *ctx, struct db_arg *args, void *scratch)
{
    const struct stream_many *m = ctx;
    const char *id = NULL, *stream = NULL;
    m->row(i, m->ctx, &id, &stream, scratch);
    stream_args(id, stream, scratch, args);
}

enum mamori_err store_stream_set_many(struct store *s, size_t n, store_stream_row_fn row, void *ctx)
{
    struct stream_rec rec[DB_ROWS_MAX];
    struct stream_many m = {row, ctx};
    return db_insert_rows(s, "INSERT INTO stream_state(" STREAM_COLS ")", STREAM_NCOLS,
                          STREAM_UPSERT, n, stream_fill, &m, rec, sizeof(rec[0]));
}

/* --- telemetry ------------------------------------------------------------------ */

#define TM_COLS  "device_id,seq,ts,recv_at,digest,body"
#define TM_NCOLS 6

static void tm_args(const struct telemetry_rec *t, struct db_arg *a)
{
    a[0] = db_text(t->device_id);
    a[1] = db_u64(t->seq);
    a[2] = db_int(t->ts);
    a[3] = db_int(t->recv_at);
    a[4] = db_text(t->digest);
    a[5] = db_text(t->body);
}

enum mamori_err store_telemetry_add(struct store *s, const struct telemetry_rec *t)
{
    struct db_arg a[TM_NCOLS];
    tm_args(t, a);
    return db_exec(s, "INSERT INTO telemetry(" TM_COLS ") VALUES(?,?,?,?,?,?)", a, TM_NCOLS, NULL);
}

struct tm_many {
    store_telemetry_row_fn row;
    void *ctx;
};

static void tm_fill(size_t i, void *ctx, struct db_arg *args, void *scratch)
{
    const struct tm_many *m = ctx;
    struct telemetry_rec *rec = scratch;
    memset(rec, 0, sizeof(*rec));
    m->row(i, m->ctx, rec);
    tm_args(rec, args);
}

enum mamori_err store_telemetry_add_many(struct store *s, size_t n, store_telemetry_row_fn row,
                                         void *ctx)
{
    struct telemetry_rec rec[DB_ROWS_MAX];
    struct tm_many m = {row, ctx};
    return db_insert_rows(s, "INSERT INTO telemetry(" TM_COLS ")", TM_NCOLS, "", n, tm_fill, &m,
                          rec, sizeof(rec[0]));
}

bool store_telemetry_has(struct store *s, const char *device_id, int64_t ts, uint64_t seq,
                         const char *digest)
{
    int64_t one;
    return db_one_int(s,
                      "SELECT 1 FROM telemetry WHERE device_id=? AND ts=? AND seq=? AND "
                      "digest=? LIMIT 1",
                      DB_ARGS(db_text(device_id), db_int(ts), db_u64(seq), db_text(digest)),
                      &one) == MAMORI_OK;
}

bool store_telemetry_seq_near(struct store *s, const char *device_id, uint64_t seq, int64_t ts_lo,
                              int64_t ts_hi)
{
    int64_t one;
    return db_one_int(s,
                      "SELECT 1 FROM telemetry WHERE device_id=? AND ts BETWEEN ? AND ? AND seq=? "
                      "LIMIT 1",
                      DB_ARGS(db_text(device_id), db_int(ts_lo), db_int(ts_hi), db_u64(seq)),
                      &one) == MAMORI_OK;
}

enum mamori_err store_telemetry_list(struct store *s, const char *device_id, int64_t from_ts,
                                     int64_t to_ts, int64_t after_id, int limit,
                                     bool (*cb)(const struct telemetry_rec *, void *), void *arg)
{
    /* The cursor is a row id; the rows after it are those after its ts, or
     * at its ts with a greater id. */
    int64_t after_ts = from_ts - 1;
    if (after_id > 0) {
        int64_t ts;
        enum mamori_err rc =
            db_one_int(s, "SELECT ts FROM telemetry WHERE id=?", DB_ARGS(db_int(after_id)), &ts);
        if (rc && rc != MAMORI_ERR_NOTFOUND)
            return rc;
        if (!rc)
            after_ts = ts;
    }
    struct db_rows q;
    /* (device_id, ts) index; id breaks ties so the cursor is stable. */
    enum mamori_err rc =
        db_query(s,
                 "SELECT id,seq,ts,recv_at,digest,body FROM telemetry WHERE device_id=?1 "
                 "AND ts>=?2 AND ts<=?3 AND (ts>?5 OR (ts=?5 AND id>?4)) ORDER BY ts,id LIMIT ?6",
                 DB_ARGS(db_text(device_id), db_int(from_ts), db_int(to_ts), db_int(after_id),
                         db_int(after_ts), db_int(limit)),
                 &q);
    if (rc)
        return rc;
    struct telemetry_rec t;
    while (db_next(&q)) {
        memset(&t, 0, sizeof(t));
        snprintf(t.device_id, sizeof(t.device_id), "%s", device_id);
        t.id = db_col_int(&q.row, 0);
        t.seq = (uint64_t)db_col_int(&q.row, 1);
        t.ts = db_col_int(&q.row, 2);
        t.recv_at = db_col_int(&q.row, 3);
        db_col_text(&q.row, 4, t.digest, sizeof(t.digest));
        t.body = db_col_str(&q.row, 5);
        if (!t.body || !cb(&t, arg))
            break;
    }
    return db_done(&q);
}

int64_t store_telemetry_count(struct store *s, const char *device_id)
{
    int64_t n;
    return db_one_int(s, "SELECT count(*) FROM telemetry WHERE device_id=?",
                      DB_ARGS(db_text(device_id)), &n)
               ? -1
               : n;
}

/* --- retention ------------------------------------------------------------------- */

enum mamori_err store_data_prune(struct store *s, int64_t before_ms, int chunk, int64_t *telemetry,
                                 int64_t *events)
{
    /* the oldest rows first (ids grow with time), a chunk at a time, so
     * no sweep holds the store long; a chunk with none old costs little */
    *events = 0;
    enum mamori_err rc =
        db_exec(s,
                "DELETE FROM telemetry WHERE id IN (SELECT id FROM telemetry ORDER BY "
                "id LIMIT ?2) AND recv_at < ?1",
                DB_ARGS(db_int(before_ms), db_int(chunk)), telemetry);
    if (!rc)
        rc = db_exec(s,
                     "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY "
                     "id LIMIT ?2) AND ts < ?1 / 1000",
                     DB_ARGS(db_int(before_ms), db_int(chunk)), events);
    if (rc)
        *telemetry = 0;
    else if (*telemetry || *events)
        s->erased = true;
    return rc;
}
