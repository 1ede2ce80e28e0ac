/*
 * Unit tests: the device outbox (lib/outbox.c), including crash injection.
 *
 * A SQLite VFS shim counts every write step (xWrite, xTruncate, xSync,
 * xDelete) of a workload run in a child process and ends the child at step
 * K, for every K the workload has, in three ways:
 *   kill   - the write at step K is torn (half of it lands), then _exit
 *            (what kill -9 leaves: everything written so far is in the
 *            page cache and survives);
 *   power  - every write since the file's last sync is undone, then _exit
 *            (power loss: the page cache is gone);
 *   partial- every other unsynced write is undone (power loss with the disk
 *            having written some of the queue, out of order).
 * The parent then reopens the outbox and checks that it opens, passes
 * SQLite's integrity check, and holds exactly the state after the last
 * operation that returned, or after the one that was running (atomicity and
 * durability), compared with a reference run of the same operations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "common/buf.h"
#include "lib/outbox.h"

/* ---- the crash-injecting VFS ---- */

enum crash_mode { CRASH_KILL, CRASH_POWER, CRASH_PARTIAL };

struct undo {
    sqlite3_int64 off;
    int len; /* bytes of old content (may be < the write) */
    sqlite3_int64 old_size;
    char *old;
    struct undo *next;
};

struct cfile {
    sqlite3_file base;
    struct cfile *next_open;
    struct undo *undo;   /* newest first */
    sqlite3_file real[]; /* the default VFS's file follows */
};

static sqlite3_vfs *g_real;
static sqlite3_vfs g_vfs;
static sqlite3_io_methods g_io;
static long g_steps, g_crash_at = -1;
static enum crash_mode g_mode;
static struct cfile *g_open;

static void undo_clear(struct cfile *f)
{
    while (f->undo) {
        struct undo *u = f->undo;
        f->undo = u->next;
        free(u->old);
        free(u);
    }
}

static void crash_now(void)
{
    if (g_mode != CRASH_KILL) {
        for (struct cfile *f = g_open; f; f = f->next_open) {
            int i = 0;
            sqlite3_int64 size0 = -1;
            for (struct undo *u = f->undo; u; u = u->next, i++) {
                size0 = u->old_size;
                if (g_mode == CRASH_PARTIAL && (i % 2) == 0)
                    continue; /* this one reached the disk */
                if (u->len > 0)
                    f->real->pMethods->xWrite(f->real, u->old, u->len, u->off);
            }
            if (size0 >= 0 && g_mode == CRASH_POWER)
                f->real->pMethods->xTruncate(f->real, size0);
        }
    }
    _exit(75);
}

static void step(void)
{
    if (++g_steps == g_crash_at)
        crash_now();
}

static int c_close(sqlite3_file *pf)
{
    struct cfile *f = (struct cfile *)pf;
    for (struct cfile **pp = &g_open; *pp; pp = &(*pp)->next_open)
        if (*pp == f) {
            *pp = f->next_open;
            break;
        }
    undo_clear(f);
    return f->real->pMethods->xClose(f->real);
}
static int c_read(sqlite3_file *pf, void *b, int n, sqlite3_int64 off)
{
    struct cfile *f = (struct cfile *)pf;
    return f->real->pMethods->xRead(f->real, b, n, off);
}
static int c_write(sqlite3_file *pf, const void *b, int n, sqlite3_int64 off)
{
    struct cfile *f = (struct cfile *)pf;
    if (g_steps + 1 == g_crash_at && g_mode == CRASH_KILL) {
        f->real->pMethods->xWrite(f->real, b, n / 2, off); /* torn */
        crash_now();
    }
    if (g_mode != CRASH_KILL && g_crash_at > 0) {
        struct undo *u = calloc(1, sizeof(*u));
        sqlite3_int64 size = 0;
        f->real->pMethods->xFileSize(f->real, &size);
        u->off = off;
        u->old_size = size;
        u->len = off < size ? (int)((size - off) < n ? (size - off) : n) : 0;
        if (u->len) {
            u->old = malloc((size_t)u->len);
            f->real->pMethods->xRead(f->real, u->old, u->len, off);
        }
        u->next = f->undo;
        f->undo = u;
    }
    step();
    return f->real->pMethods->xWrite(f->real, b, n, off);
}
static int c_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    struct cfile *f = (struct cfile *)pf;
    step();
    return f->real->pMethods->xTruncate(f->real, size);
}
static int c_sync(sqlite3_file *pf, int flags)
{
    struct cfile *f = (struct cfile *)pf;
    step();
    int rc = f->real->pMethods->xSync(f->real, flags);
    if (rc == SQLITE_OK)
        undo_clear(f); /* on the disk now */
    return rc;
}
#define FWD(name, sig, args)                                                                       \
    static int c_##name sig                                                                        \
    {                                                                                              \
        struct cfile *f = (struct cfile *)pf;                                                      \
        return f->real->pMethods->x##name args;                                                    \
    }
FWD(FileSize, (sqlite3_file * pf, sqlite3_int64 *s), (f->real, s))
FWD(Lock, (sqlite3_file * pf, int l), (f->real, l))
FWD(Unlock, (sqlite3_file * pf, int l), (f->real, l))
FWD(CheckReservedLock, (sqlite3_file * pf, int *r), (f->real, r))
FWD(FileControl, (sqlite3_file * pf, int op, void *a), (f->real, op, a))
FWD(SectorSize, (sqlite3_file * pf), (f->real))
FWD(DeviceCharacteristics, (sqlite3_file * pf), (f->real))
FWD(ShmMap, (sqlite3_file * pf, int i, int sz, int e, void volatile **pp), (f->real, i, sz, e, pp))
FWD(ShmLock, (sqlite3_file * pf, int o, int n, int fl), (f->real, o, n, fl))
FWD(ShmUnmap, (sqlite3_file * pf, int d), (f->real, d))
static void c_ShmBarrier(sqlite3_file *pf)
{
    struct cfile *f = (struct cfile *)pf;
    f->real->pMethods->xShmBarrier(f->real);
}

static int c_open(sqlite3_vfs *v, const char *name, sqlite3_file *pf, int flags, int *out)
{
    (void)v;
    struct cfile *f = (struct cfile *)pf;
    memset(f, 0, sizeof(*f));
    int rc = g_real->xOpen(g_real, name, f->real, flags, out);
    if (rc != SQLITE_OK)
        return rc;
    f->base.pMethods = &g_io;
    f->next_open = g_open;
    g_open = f;
    return SQLITE_OK;
}
static int c_delete(sqlite3_vfs *v, const char *name, int dirsync)
{
    (void)v;
    step();
    return g_real->xDelete(g_real, name, dirsync);
}
static int c_access(sqlite3_vfs *v, const char *n, int fl, int *r)
{
    (void)v;
    return g_real->xAccess(g_real, n, fl, r);
}
static int c_fullpath(sqlite3_vfs *v, const char *n, int len, char *out)
{
    (void)v;
    return g_real->xFullPathname(g_real, n, len, out);
}

static void vfs_register(void)
{
    if (g_real)
        return;
    g_real = sqlite3_vfs_find(NULL);
    g_vfs = *g_real;
    g_vfs.zName = "crashvfs";
    g_vfs.szOsFile = (int)sizeof(struct cfile) + g_real->szOsFile;
    g_vfs.xOpen = c_open;
    g_vfs.xDelete = c_delete;
    g_vfs.xAccess = c_access;
    g_vfs.xFullPathname = c_fullpath;
    g_io = (sqlite3_io_methods){.iVersion = 2,
                                .xClose = c_close,
                                .xRead = c_read,
                                .xWrite = c_write,
                                .xTruncate = c_truncate,
                                .xSync = c_sync,
                                .xFileSize = c_FileSize,
                                .xLock = c_Lock,
                                .xUnlock = c_Unlock,
                                .xCheckReservedLock = c_CheckReservedLock,
                                .xFileControl = c_FileControl,
                                .xSectorSize = c_SectorSize,
                                .xDeviceCharacteristics = c_DeviceCharacteristics,
                                .xShmMap = c_ShmMap,
                                .xShmLock = c_ShmLock,
                                .xShmBarrier = c_ShmBarrier,
                                .xShmUnmap = c_ShmUnmap};
    sqlite3_vfs_register(&g_vfs, 0);
}

/* ---- the workload and its reference ---- */

#define N_OPS  16
#define OB_MAX 12

/* Runs operation i; returns its result. */
static enum mamori_err run_op(struct outbox *ob, int i)
{
    char b0[64], b1[64], b2[64];
    const char *v[3] = {b0, b1, b2};
    snprintf(b0, sizeof(b0), "{\"op\":%d,\"k\":0}", i);
    snprintf(b1, sizeof(b1), "{\"op\":%d,\"k\":1}", i);
    snprintf(b2, sizeof(b2), "{\"op\":%d,\"k\":2}", i);
    bool q;
    switch (i % 5) {
    case 4:
        return outbox_ack(ob, OUTBOX_TM, (uint64_t)i); /* an acknowledgement */
    case 3:
        return outbox_put(ob, OUTBOX_EV, v, 1, 1000 + (uint64_t)i, NULL);
    case 2:
        return outbox_report_drops(ob, 1000 + (uint64_t)i, &q);
    default:
        return outbox_put(ob, OUTBOX_TM, v, (size_t)(i % 3) + 1, 1000 + (uint64_t)i, NULL);
    }
}

static bool dump_one(int64_t id, enum outbox_stream s, uint64_t seq, const void *p, size_t len,
                     void *arg)
{
    (void)id;
    struct dbuf *d = arg;
    return dbuf_printf(d, "%d:%llu:%.*s\n", (int)s, (unsigned long long)seq, (int)len,
                       (const char *)p) == MAMORI_OK;
}

/* The outbox's whole observable state as text (malloc'd). */
static char *dump(struct outbox *ob)
{
    struct dbuf d;
    struct outbox_stats st;
    dbuf_init(&d, 1 << 20);
    assert_int_equal(outbox_peek(ob, 0, 100000, dump_one, &d), MAMORI_OK);
    assert_int_equal(outbox_stats(ob, &st), MAMORI_OK);
    assert_int_equal(
        dbuf_printf(&d, "q=%llu seq=%llu,%llu,%llu drop=%llu/%llu %llu-%llu\n",
                    (unsigned long long)st.queued, (unsigned long long)st.next_seq[0],
                    (unsigned long long)st.next_seq[1], (unsigned long long)st.next_seq[2],
                    (unsigned long long)st.dropped_total, (unsigned long long)st.dropped_unreported,
                    (unsigned long long)st.dropped_first_seq,
                    (unsigned long long)st.dropped_last_seq),
        MAMORI_OK);
    return dbuf_take(&d);
}

static char g_dir[] = "/tmp/mamori-outbox-XXXXXX";

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static void rm_db(const char *name)
{
    char p[256], q[300];
    path_of(p, sizeof(p), name);
    unlink(p);
    snprintf(q, sizeof(q), "%s-wal", p);
    unlink(q);
    snprintf(q, sizeof(q), "%s-shm", p);
    unlink(q);
}

/* ref[k]: the state after the first k operations. */
static char *g_ref[N_OPS + 1];

static void build_reference(void)
{
    char p[256];
    rm_db("ref.db");
    path_of(p, sizeof(p), "ref.db");
    struct outbox *ob;
    assert_int_equal(outbox_open(p, OB_MAX, NULL, &ob), MAMORI_OK);
    g_ref[0] = dump(ob);
    for (int i = 0; i < N_OPS; i++) {
        assert_int_equal(run_op(ob, i), MAMORI_OK);
        g_ref[i + 1] = dump(ob);
    }
    outbox_close(ob);
}

static bool integrity_ok(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    bool ok = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return false;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
        ok = sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

/* Runs the workload in a child that crashes at step k. Returns the number of
 * operations that completed, or -1 when the child ran to the end. */
static int crash_run(long k, enum crash_mode mode)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        g_steps = 0;
        g_crash_at = k;
        g_mode = mode;
        char p[256];
        path_of(p, sizeof(p), "crash.db");
        struct outbox *ob;
        if (outbox_open(p, OB_MAX, "crashvfs", &ob) != MAMORI_OK)
            _exit(3);
        for (int i = 0; i < N_OPS; i++) {
            if (run_op(ob, i) != MAMORI_OK)
                _exit(4);
            unsigned char done = (unsigned char)(i + 1);
            if (write(fds[1], &done, 1) != 1)
                _exit(5);
        }
        outbox_close(ob);
        _exit(0);
    }
    close(fds[1]);
    int completed = 0;
    unsigned char c;
    while (read(fds[0], &c, 1) == 1)
        completed = c;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 0)
        return -1;
    assert_int_equal(WEXITSTATUS(status), 75); /* crashed where we said, nothing else */
    return completed;
}

static void crash_at_every_step(enum crash_mode mode)
{
    long k;
    int crashes = 0;
    for (k = 1; k < 5000; k++) {
        rm_db("crash.db");
        int completed = crash_run(k, mode);
        if (completed < 0)
            break; /* no step k: every step has been tried */
        crashes++;
        char p[256];
        path_of(p, sizeof(p), "crash.db");
        struct outbox *ob;
        /* It opens (recovery), is intact, and holds the state after the
         * last operation that returned or after the one in progress. */
        assert_int_equal(outbox_open(p, OB_MAX, NULL, &ob), MAMORI_OK);
        char *got = dump(ob);
        outbox_close(ob);
        assert_true(integrity_ok(p));
        bool match = strcmp(got, g_ref[completed]) == 0 ||
                     (completed < N_OPS && strcmp(got, g_ref[completed + 1]) == 0);
        if (!match)
            fprintf(stderr, "mode %d step %ld after %d ops:\n--- got\n%s--- want\n%s", (int)mode, k,
                    completed, got, g_ref[completed]);
        assert_true(match);
        free(got);
    }
    assert_true(crashes > 50); /* the workload really has that many write steps */
    fprintf(stderr, "crash mode %d: %d crash points, all recovered\n", (int)mode, crashes);
}

static void crash_kill(void **st)
{
    (void)st;
    crash_at_every_step(CRASH_KILL);
}
static void crash_power(void **st)
{
    (void)st;
    crash_at_every_step(CRASH_POWER);
}
static void crash_partial(void **st)
{
    (void)st;
    crash_at_every_step(CRASH_PARTIAL);
}

/* ---- behaviour ---- */

static bool last_id(int64_t id, enum outbox_stream s, uint64_t seq, const void *p, size_t len,
                    void *arg)
{
    (void)s, (void)seq, (void)p, (void)len;
    *(int64_t *)arg = id;
    return true;
}

static void order_ack_and_bounds(void **st)
{
    (void)st;
    char p[256];
    rm_db("b.db");
    path_of(p, sizeof(p), "b.db");
    struct outbox *ob;
    assert_int_equal(outbox_open(p, 16, NULL, &ob), MAMORI_OK);
    const char *one[] = {"{\"t\":1}"};
    uint64_t first;
    for (int i = 0; i < 10; i++)
        assert_int_equal(outbox_put(ob, OUTBOX_TM, one, 1, 1, &first), MAMORI_OK);
    assert_int_equal(first, 10);
    const char *ev[] = {"{\"e\":1}"};
    for (int i = 0; i < 20; i++)
        assert_int_equal(outbox_put(ob, OUTBOX_EV, ev, 1, 1, NULL), MAMORI_OK);
    struct outbox_stats s;
    assert_int_equal(outbox_stats(ob, &s), MAMORI_OK);
    /* all 10 telemetry rows went to make room; no event was dropped */
    assert_int_equal(s.dropped_total, 10);
    assert_int_equal(s.queued, 20);
    assert_int_equal(s.dropped_first_seq, 1);
    assert_int_equal(s.dropped_last_seq, 10);
    /* events may use up to twice the bound, never more */
    for (int i = 0; i < 12; i++)
        assert_int_equal(outbox_put(ob, OUTBOX_EV, ev, 1, 1, NULL), MAMORI_OK);
    assert_int_equal(outbox_put(ob, OUTBOX_EV, ev, 1, 1, NULL), MAMORI_ERR_TOOBIG);
    /* telemetry cannot push events out */
    assert_int_equal(outbox_put(ob, OUTBOX_TM, one, 1, 1, NULL), MAMORI_ERR_TOOBIG);
    assert_int_equal(outbox_ack(ob, OUTBOX_EV, 30), MAMORI_OK);
    assert_int_equal(outbox_stats(ob, &s), MAMORI_OK);
    assert_int_equal(s.queued, 2);
    bool q;
    assert_int_equal(outbox_report_drops(ob, 5, &q), MAMORI_OK);
    assert_true(q);
    assert_int_equal(outbox_report_drops(ob, 5, &q), MAMORI_OK);
    assert_false(q); /* reported once */
    /* bad input */
    const char *big_body[1];
    char *big = malloc(OUTBOX_BODY_MAX + 10);
    memset(big, 'a', OUTBOX_BODY_MAX + 9);
    big[0] = '"';
    big[OUTBOX_BODY_MAX + 9] = '\0';
    big_body[0] = big;
    assert_int_equal(outbox_put(ob, OUTBOX_TM, big_body, 1, 1, NULL), MAMORI_ERR_TOOBIG);
    free(big);
    assert_int_equal(outbox_put(ob, (enum outbox_stream)7, one, 1, 1, NULL), MAMORI_ERR_INVAL);
    assert_int_equal(outbox_put(ob, OUTBOX_TM, one, 0, 1, NULL), MAMORI_ERR_INVAL);
    /* ids only grow, even once the outbox was emptied: a sender that
     * remembers the last id it sent must see every later message */
    int64_t last = 0;
    assert_int_equal(outbox_ack(ob, OUTBOX_EV, 1000), MAMORI_OK);
    assert_int_equal(outbox_ack(ob, OUTBOX_TM, 1000), MAMORI_OK);
    assert_int_equal(outbox_peek(ob, 0, 10, last_id, &last), MAMORI_OK);
    assert_int_equal(last, 0); /* empty */
    assert_int_equal(outbox_put(ob, OUTBOX_TM, one, 1, 1, NULL), MAMORI_OK);
    assert_int_equal(outbox_peek(ob, 0, 10, last_id, &last), MAMORI_OK);
    int64_t first_id = last;
    assert_int_equal(outbox_ack(ob, OUTBOX_TM, 1000), MAMORI_OK);
    assert_int_equal(outbox_put(ob, OUTBOX_TM, one, 1, 1, NULL), MAMORI_OK);
    last = 0;
    assert_int_equal(outbox_peek(ob, first_id, 10, last_id, &last), MAMORI_OK);
    assert_true(last > first_id);
    for (int i = 0; i < 2; i++)
        assert_int_equal(outbox_put(ob, OUTBOX_EV, ev, 1, 1, NULL), MAMORI_OK);
    outbox_close(ob);
    /* state survives a reopen, sequence numbers keep counting */
    assert_int_equal(outbox_open(p, 16, NULL, &ob), MAMORI_OK);
    assert_int_equal(outbox_stats(ob, &s), MAMORI_OK);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.next_seq[OUTBOX_TM], 13);
    outbox_close(ob);
}

static int setup(void **st)
{
    (void)st;
    if (!mkdtemp(g_dir))
        return -1;
    vfs_register();
    build_reference();
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i <= N_OPS; i++)
        free(g_ref[i]);
    rm_db("ref.db");
    rm_db("crash.db");
    rm_db("b.db");
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(order_ack_and_bounds),
        cmocka_unit_test(crash_kill),
        cmocka_unit_test(crash_power),
        cmocka_unit_test(crash_partial),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
