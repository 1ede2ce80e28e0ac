/* Unit tests: hub/lifecycle, hub/audit, hub/auth throttling, store - on a
 * real SQLite file, or with MAMORI_TEST_STORE set to a PostgreSQL URI
 * (tests/unit/with_pg.sh) on a real PostgreSQL database, emptied before
 * each test. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "common/crypto.h"
#include "hub/core/audit.h"
#include "hub/core/auth.h"
#include "hub/device/lifecycle.h"
#include "hub/io/route.h"
#include "hub/store/store.h"
#include "hub/store/store_priv.h" /* the statement cache */

static void lifecycle_table(void **st)
{
    (void)st;
    enum lc_state to;
    assert_int_equal(lc_next(LC_MANUFACTURED, LC_CLAIM, &to), MAMORI_OK);
    assert_int_equal(to, LC_CLAIMED);
    assert_int_equal(lc_next(LC_CLAIMED, LC_ACTIVATE, &to), MAMORI_OK);
    assert_int_equal(lc_next(LC_ACTIVE, LC_LOCK, &to), MAMORI_OK);
    assert_int_equal(to, LC_LOCKED);
    assert_int_equal(lc_next(LC_LOCKED, LC_UNLOCK, &to), MAMORI_OK);
    assert_int_equal(to, LC_ACTIVE);
    /* illegal transitions are refused, never applied */
    assert_int_equal(lc_next(LC_MANUFACTURED, LC_ACTIVATE, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_ACTIVE, LC_CLAIM, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_ACTIVE, LC_UNLOCK, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_REVOKED, LC_UNLOCK, &to), MAMORI_ERR_STATE);
    /* decommissioned is terminal: no action leaves it */
    for (int a = 0; a < LC_N_ACTIONS; a++)
        assert_int_equal(lc_next(LC_DECOMMISSIONED, (enum lc_action)a, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next((enum lc_state)99, LC_LOCK, &to), MAMORI_ERR_INVAL);
    /* only claimed/active may work; quarantined and locked keep the
     * management channel (to receive commands); fail closed otherwise */
    for (int s = 0; s < LC_N_STATES; s++) {
        enum lc_access a = lc_access((enum lc_state)s);
        if (s == LC_CLAIMED || s == LC_ACTIVE)
            assert_int_equal(a, LC_ACCESS_FULL);
        else if (s == LC_QUARANTINED || s == LC_LOCKED || s == LC_STRAY)
            assert_int_equal(a, LC_ACCESS_RESTRICTED);
        else
            assert_int_equal(a, LC_ACCESS_DENY);
    }
    /* stray: only from claimed/active, back only through confirm */
    assert_int_equal(lc_next(LC_ACTIVE, LC_STRAY_MARK, &to), MAMORI_OK);
    assert_int_equal(to, LC_STRAY);
    assert_int_equal(lc_next(LC_STRAY, LC_UNLOCK, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_STRAY, LC_RELEASE, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_STRAY, LC_CONFIRM, &to), MAMORI_OK);
    assert_int_equal(to, LC_ACTIVE);
    assert_int_equal(lc_next(LC_LOCKED, LC_STRAY_MARK, &to), MAMORI_ERR_STATE);
    assert_int_equal(lc_next(LC_ACTIVE, LC_CONFIRM, &to), MAMORI_ERR_STATE);
    enum lc_state ps;
    enum lc_action pa;
    assert_true(lc_state_parse("locked", &ps) && ps == LC_LOCKED);
    assert_false(lc_state_parse("LOCKED", &ps));
    assert_true(lc_action_parse("decommission", &pa) && pa == LC_DECOMMISSION);
}

/* MAMORI_TEST_STORE: the PostgreSQL database the store tests run on;
 * NULL: a SQLite file in a temporary directory per test. */
static const char *g_pg;

/* Runs sql on the fixture's database beside the store, as an attacker with
 * the database's credentials (PostgreSQL) or its file (SQLite) would. */
static bool raw_exec(const char *db, const char *sql)
{
    if (g_pg) {
        PGconn *c = PQconnectdb(g_pg);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            print_message("postgresql: %s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        return ok;
    }
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        print_message("sqlite: %s\n", err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(h);
    return rc == SQLITE_OK;
}

struct fx {
    char dir[64];
    char db[128];
    struct store *s;
    struct audit a;
};

static int fx_setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/mamori-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/t.db", f->dir);
    if (g_pg)
        assert_true(raw_exec(NULL, "SET client_min_messages=warning; DROP SCHEMA public CASCADE; "
                                   "CREATE SCHEMA public"));
    assert_int_equal(store_open(g_pg ? g_pg : f->db, &f->s), MAMORI_OK);
    f->a.store = f->s;
    snprintf(f->a.head_path, sizeof(f->a.head_path), "%s/audit.head", f->dir);
    assert_int_equal(crypto_random(f->a.key, sizeof(f->a.key)), MAMORI_OK);
    for (int i = 0; i < 6; i++) {
        char target[16];
        snprintf(target, sizeof(target), "dev%d", i);
        assert_int_equal(store_begin(f->s), MAMORI_OK);
        assert_int_equal(
            audit_append(&f->a, 1000 + i, "admin:root", "device_lock", target, "why", "{}"),
            MAMORI_OK);
        assert_int_equal(store_commit(f->s), MAMORI_OK);
        assert_int_equal(audit_anchor(&f->a), MAMORI_OK);
    }
    *st = f;
    return 0;
}

static int fx_teardown(void **st)
{
    struct fx *f = *st;
    store_close(f->s);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Tampering happens below SQL's append-only triggers, as an attacker with
 * the file (or the database owner's login) would do it. */
static void raw_sql(struct fx *f, const char *sql)
{
    assert_true(raw_exec(f->db, g_pg ? "ALTER TABLE audit DISABLE TRIGGER USER"
                                     : "DROP TRIGGER IF EXISTS audit_no_update; "
                                       "DROP TRIGGER IF EXISTS audit_no_delete;"));
    assert_true(raw_exec(f->db, sql));
}

static void audit_intact(void **st)
{
    struct fx *f = *st;
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_INTACT);
    assert_int_equal(v.entries, 6);
    assert_int_equal(v.head_seq, 6);
}

static void audit_refuses_sql_update(void **st)
{
    struct fx *f = *st;
    assert_false(raw_exec(f->db, "UPDATE audit SET reason='x' WHERE seq=2"));
    assert_false(raw_exec(f->db, "DELETE FROM audit WHERE seq=2"));
    if (g_pg)
        assert_false(raw_exec(f->db, "TRUNCATE audit"));
    int64_t n = store_scalar(f->s, "SELECT count(*) FROM audit", NULL);
    assert_int_equal(n, 6);
}

static void audit_detects_modification(void **st)
{
    struct fx *f = *st;
    raw_sql(f, "UPDATE audit SET reason='nothing to see' WHERE seq=3");
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_MODIFIED);
    assert_int_equal(v.first_bad_seq, 3);
}

static void audit_detects_removal(void **st)
{
    struct fx *f = *st;
    raw_sql(f, "DELETE FROM audit WHERE seq=4");
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_REMOVED);
    assert_int_equal(v.first_bad_seq, 4);
}

static void audit_detects_reorder(void **st)
{
    struct fx *f = *st;
    raw_sql(f, "UPDATE audit SET seq=100 WHERE seq=2; UPDATE audit SET seq=2 WHERE seq=3;"
               "UPDATE audit SET seq=3 WHERE seq=100;");
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_REORDERED);
    assert_int_equal(v.first_bad_seq, 2);
}

static void audit_detects_truncation(void **st)
{
    struct fx *f = *st;
    raw_sql(f, "DELETE FROM audit WHERE seq>=5");
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_TRUNCATED);
    assert_int_equal(v.first_bad_seq, 5);
}

static void audit_truncation_survives_new_entries(void **st)
{
    struct fx *f = *st;
    /* cut two entries off the end, then the hub keeps appending */
    raw_sql(f, "DELETE FROM audit WHERE seq>=5");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_begin(f->s), MAMORI_OK);
        assert_int_equal(audit_append(&f->a, 2000 + i, "hub", "hub_start", "", "", ""), MAMORI_OK);
        assert_int_equal(store_commit(f->s), MAMORI_OK);
        /* the anchor refuses to move onto a chain that lost its entry */
        assert_int_equal(audit_anchor(&f->a), MAMORI_ERR_VERIFY);
    }
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_TRUNCATED);
    assert_int_equal(v.first_bad_seq, 6);
}

static void audit_detects_reforged_chain_without_key(void **st)
{
    struct fx *f = *st;
    /* An attacker recomputing plain SHA-256 links cannot produce HMACs. */
    raw_sql(f,
            "UPDATE audit SET "
            "hash='0000000000000000000000000000000000000000000000000000000000000000' WHERE seq=6");
    struct audit_verdict v;
    assert_int_equal(audit_verify(&f->a, &v), MAMORI_OK);
    assert_int_equal(v.problem, AUDIT_MODIFIED);
    assert_int_equal(v.first_bad_seq, 6);
}

static void throttle_policy(void **st)
{
    (void)st;
    struct throttle_rec t = {0, 0, 0};
    int64_t now = 1000, retry = 0;
    const struct throttle_policy *p = &THROTTLE_LOGIN; /* 3 free, lock at 10 */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(throttle_check(&t, now, &retry), MAMORI_OK);
        throttle_fail(p, &t, now);
    }
    assert_int_equal(throttle_check(&t, now, &retry), MAMORI_OK);
    throttle_fail(p, &t, now); /* 3rd failure: slowed from now on */
    assert_int_equal(throttle_check(&t, now, &retry), MAMORI_ERR_RATELIMIT);
    assert_int_equal(retry, 1);
    int64_t prev = 1;
    for (int i = 4; i < 10; i++) {
        now = t.next_try_at;
        assert_int_equal(throttle_check(&t, now, &retry), MAMORI_OK);
        throttle_fail(p, &t, now);
        assert_int_equal(throttle_check(&t, now, &retry), MAMORI_ERR_RATELIMIT);
        assert_true(retry >= prev); /* delays grow */
        prev = retry;
    }
    now = t.next_try_at;
    throttle_fail(p, &t, now); /* 10th: locked */
    assert_int_equal(throttle_check(&t, now + 899, &retry), MAMORI_ERR_RATELIMIT);
    assert_int_equal(throttle_check(&t, now + 900, &retry), MAMORI_OK);
    throttle_fail(p, &t, now + 900); /* after the lock a fresh count starts */
    assert_int_equal(t.failed, 1);
}

static void passwords(void **st)
{
    (void)st;
    char h[256];
    assert_int_equal(auth_password_policy("short"), MAMORI_ERR_INVAL);
    assert_int_equal(auth_password_policy("long enough passphrase"), MAMORI_OK);
    assert_int_equal(auth_password_hash("long enough passphrase", h), MAMORI_OK);
    assert_true(strncmp(h, "$argon2id$", 10) == 0);
    assert_true(auth_password_verify(h, "long enough passphrase"));
    assert_false(auth_password_verify(h, "long enough passphrasE"));
    char t1[AUTH_TOKEN_TEXT], t2[AUTH_TOKEN_TEXT], th[65];
    assert_int_equal(auth_token_new("mms_", t1), MAMORI_OK);
    assert_int_equal(auth_token_new("mms_", t2), MAMORI_OK);
    assert_string_not_equal(t1, t2);
    assert_int_equal(strlen(t1), AUTH_TOKEN_TEXT - 1);
    auth_token_hash(t1, th);
    assert_string_not_equal(th, t1);
}

/* A registry entry of model "m" whose fingerprint is 64 x fp. */
static void device_init(struct device_rec *d, const char *id, const char *state, char fp)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->model, sizeof(d->model), "m");
    snprintf(d->state, sizeof(d->state), "%s", state);
    memset(d->cert_fp, fp, 64);
    d->hb_interval = 30;
}

static void store_basics(void **st)
{
    struct fx *f = *st;
    assert_int_equal(store_schema_version(f->s), 15);
    assert_int_equal(db_pg_migrations(), 15); /* the engines' migrations match */
    assert_string_equal(store_engine(f->s), g_pg ? "postgresql" : "sqlite");
    /* reopening runs no migration twice */
    struct store *s2 = NULL;
    assert_int_equal(store_open(g_pg ? g_pg : f->db, &s2), MAMORI_OK);
    assert_int_equal(store_schema_version(s2), 15);
    store_close(s2);
    int64_t uid = 0;
    assert_int_equal(store_user_add(f->s, "bob", ROLE_OWNER, "$argon2id$x", 1, &uid), MAMORI_OK);
    assert_int_equal(store_user_add(f->s, "bob", ROLE_ADMIN, "$argon2id$x", 1, NULL),
                     MAMORI_ERR_EXISTS);
    struct device_rec d;
    device_init(&d, "MM0123456789ABCDEF", "manufactured", 'a');
    assert_int_equal(store_device_add(f->s, &d, "pem", "claimhash"), MAMORI_OK);
    /* same certificate twice: refused */
    snprintf(d.id, sizeof(d.id), "MM0123456789ABCDEG");
    assert_int_equal(store_device_add(f->s, &d, "pem", "claimhash2"), MAMORI_ERR_EXISTS);
    struct device_rec got;
    assert_int_equal(store_device_by_claim(f->s, "claimhash", &got), MAMORI_OK);
    assert_int_equal(store_device_claim(f->s, got.id, uid, 5), MAMORI_OK);
    /* a claim code works once: the device now has an owner, and the code
     * still finds it so the second use gets "already claimed" */
    assert_int_equal(store_device_by_claim(f->s, "claimhash", &got), MAMORI_OK);
    assert_int_equal(got.owner_id, uid);
    assert_int_equal(store_device_claim(f->s, "MM0123456789ABCDEF", uid, 6), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_device_set_state(f->s, "MMNOSUCHDEVICE0000", "active", 1),
                     MAMORI_ERR_NOTFOUND);
}

static bool count_due(const struct device_rec *d, void *arg)
{
    (void)d;
    (*(int *)arg)++;
    return true;
}

static int due(struct fx *f, int64_t now, int64_t renew_s, int64_t max_age_s)
{
    int n = 0;
    assert_int_equal(
        store_device_rotation_due(f->s, now, renew_s, max_age_s, 100, 10, count_due, &n),
        MAMORI_OK);
    return n;
}

static void store_rotation(void **st)
{
    struct fx *f = *st;
    struct device_rec d, got;
    char *pem = NULL;
    device_init(&d, "MM0123456789ABCDEF", "active", 'a');
    d.cert_not_after = 10000;
    d.created_at = 1000;
    assert_int_equal(store_device_add(f->s, &d, "pem-a", NULL), MAMORI_OK);
    /* the policy: due when expiring within the window or older than the age */
    assert_int_equal(due(f, 5000, 1000, 0), 0);
    assert_int_equal(due(f, 9500, 1000, 0), 1);
    assert_int_equal(due(f, 5000, 1000, 3000), 1);
    assert_int_equal(due(f, 5000, 1000, 5000), 0);
    /* asked: not again within the retry period (100 s here) */
    assert_int_equal(store_device_rotation_asked(f->s, d.id, 9450), MAMORI_OK);
    assert_int_equal(due(f, 9500, 1000, 0), 0);
    assert_int_equal(due(f, 9600, 1000, 0), 1);
    /* a next certificate equal to the current one is refused */
    char fp_a[65], fp_b[65];
    memset(fp_a, 'a', 64);
    fp_a[64] = '\0';
    memset(fp_b, 'b', 64);
    fp_b[64] = '\0';
    assert_int_equal(store_device_rotation_begin(f->s, d.id, fp_a, "pem-a", 9600),
                     MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_device_cert_at(f->s, d.id, STORE_CERT_NEXT, &pem), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_device_rotation_begin(f->s, d.id, fp_b, "pem-b", 9600), MAMORI_OK);
    assert_int_equal(store_device_get(f->s, d.id, &got), MAMORI_OK);
    assert_string_equal(got.cert_next_fp, fp_b);
    assert_int_equal(store_device_cert_at(f->s, d.id, STORE_CERT_NEXT, &pem), MAMORI_OK);
    assert_string_equal(pem, "pem-b");
    free(pem);
    /* only the certificate under way can be committed */
    assert_int_equal(store_device_rotation_commit(f->s, d.id, fp_a, "01", 20000, 9700),
                     MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_device_rotation_commit(f->s, d.id, fp_b, "02", 20000, 9700), MAMORI_OK);
    assert_int_equal(store_device_get(f->s, d.id, &got), MAMORI_OK);
    assert_string_equal(got.cert_fp, fp_b);
    assert_string_equal(got.cert_next_fp, "");
    assert_string_equal(got.cert_serial, "02");
    assert_int_equal(got.cert_not_after, 20000);
    assert_int_equal(got.cert_rotated_at, 9700);
    assert_int_equal(store_device_cert_at(f->s, d.id, STORE_CERT_CURRENT, &pem), MAMORI_OK);
    assert_string_equal(pem, "pem-b");
    free(pem);
    assert_int_equal(store_device_cert_at(f->s, d.id, STORE_CERT_PREVIOUS, &pem), MAMORI_OK);
    assert_string_equal(pem, "pem-a");
    free(pem);
    /* committed twice: nothing under way any more */
    assert_int_equal(store_device_rotation_commit(f->s, d.id, fp_b, "02", 20000, 9800),
                     MAMORI_ERR_NOTFOUND);
    /* the age counts from the rotation now */
    assert_int_equal(due(f, 12000, 1000, 3000), 0);
    assert_int_equal(due(f, 12800, 1000, 3000), 1);
    /* the old fingerprint is free again; the new one is taken */
    snprintf(d.id, sizeof(d.id), "MM0123456789ABCDEG");
    assert_int_equal(store_device_add(f->s, &d, "pem-a2", NULL), MAMORI_OK);
    memcpy(d.cert_fp, fp_b, 65);
    snprintf(d.id, sizeof(d.id), "MM0123456789ABCDEH");
    assert_int_equal(store_device_add(f->s, &d, "pem-b2", NULL), MAMORI_ERR_EXISTS);
}

static void routes(void **st)
{
    (void)st;
    struct route rt;
    assert_true(route_split("/api/v1/devices/MM0123456789ABCDEF/lock", &rt));
    assert_int_equal(rt.n, 3);
    assert_true(route_is(&rt, 0, "devices") && route_is(&rt, 2, "lock"));
    assert_false(route_is(&rt, 3, "x"));
    assert_string_equal(rt.seg[1], "MM0123456789ABCDEF");
    const char *bad[] = {
        "/api/v2/devices",           "/api/v1/", "/api/v1", "/api/v1//devices", "/api/v1/devices/",
        "/api/v1/a/b/c/d/e/f/g/h/i", "devices",  ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(route_split(bad[i], &rt));
    char longurl[600];
    memset(longurl, 'a', sizeof(longurl) - 1);
    memcpy(longurl, "/api/v1/", 8);
    longurl[sizeof(longurl) - 1] = '\0';
    assert_false(route_split(longurl, &rt));
    assert_int_equal(route_int("42", 7, 1, 100), 42);
    assert_int_equal(route_int("4200", 7, 1, 100), 100);
    assert_int_equal(route_int("0", 7, 1, 100), 1);
    assert_int_equal(route_int("-5", 7, 1, 100), 7);
    assert_int_equal(route_int("12abc", 7, 1, 100), 7);
    assert_int_equal(route_int("99999999999999999999", 7, 1, 100), 7);
    assert_int_equal(route_int(NULL, 7, 1, 100), 7);
}

/* Alerts: one live alert per rule and device, counted; the lifecycle only
 * moves forward; a model's policy before the default. */
static void store_alerts_lifecycle(void **st)
{
    struct fx *f = *st;
    struct alert_rec a, b;
    bool created = false;
    assert_int_equal(store_alert_raise(f->s, "heartbeat_loss", "MMAAAAAAAAAAAAAAAA", "alert", "{}",
                                       100, &a, &created),
                     MAMORI_OK);
    assert_true(created);
    assert_int_equal(a.count, 1);
    assert_string_equal(a.state, "open");
    assert_int_equal(store_alert_raise(f->s, "heartbeat_loss", "MMAAAAAAAAAAAAAAAA", "alert",
                                       "{\"n\":2}", 200, &b, &created),
                     MAMORI_OK);
    assert_false(created); /* deduplicated */
    assert_int_equal(b.id, a.id);
    assert_int_equal(b.count, 2);
    assert_int_equal(b.last_at, 200);
    /* another device, another rule: their own alerts */
    assert_int_equal(store_alert_raise(f->s, "heartbeat_loss", "MMBBBBBBBBBBBBBBBB", "alert", "{}",
                                       300, &b, &created),
                     MAMORI_OK);
    assert_true(created && b.id != a.id);
    assert_int_equal(store_alert_set(f->s, a.id, "acknowledged", "op", "looking"), MAMORI_OK);
    assert_int_equal(store_alert_set(f->s, a.id, "acknowledged", "op", ""), MAMORI_ERR_STATE);
    /* acknowledged is still live: it keeps counting */
    assert_int_equal(store_alert_raise(f->s, "heartbeat_loss", "MMAAAAAAAAAAAAAAAA", "alert", "{}",
                                       400, &b, &created),
                     MAMORI_OK);
    assert_true(!created && b.id == a.id && b.count == 3);
    assert_int_equal(store_alert_set(f->s, a.id, "resolved", "op", "found"), MAMORI_OK);
    assert_int_equal(store_alert_set(f->s, a.id, "resolved", "op", ""), MAMORI_ERR_STATE);
    assert_int_equal(store_alert_set(f->s, a.id, "acknowledged", "op", ""), MAMORI_ERR_STATE);
    /* resolved: the next event opens a new alert */
    assert_int_equal(store_alert_raise(f->s, "heartbeat_loss", "MMAAAAAAAAAAAAAAAA", "alert", "{}",
                                       500, &b, &created),
                     MAMORI_OK);
    assert_true(created && b.id != a.id && b.count == 1);
    /* policies: the model's own, else the default, else none */
    struct policy_rec p = {"auth_failures", "", "quarantine", 2}, got;
    assert_int_equal(store_policy_get(f->s, "auth_failures", "cam", &got), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_policy_set(f->s, &p, "admin", 1), MAMORI_OK);
    snprintf(p.model, sizeof(p.model), "cam");
    snprintf(p.action, sizeof(p.action), "lock");
    assert_int_equal(store_policy_set(f->s, &p, "admin", 1), MAMORI_OK);
    assert_int_equal(store_policy_get(f->s, "auth_failures", "cam", &got), MAMORI_OK);
    assert_string_equal(got.action, "lock");
    assert_int_equal(store_policy_get(f->s, "auth_failures", "doorbell", &got), MAMORI_OK);
    assert_string_equal(got.action, "quarantine");
}

/* Retention: only resolved alerts and finished deliveries older than the
 * cut go; live alerts and pending deliveries stay whatever their age. */
static void store_alert_retention(void **st)
{
    struct fx *f = *st;
    struct alert_rec old_res, old_open, new_res;
    bool created;
    const char *dev = "MMAAAAAAAAAAAAAAAA";
    assert_int_equal(
        store_alert_raise(f->s, "config_drift", dev, "warning", "{}", 100, &old_res, &created),
        MAMORI_OK);
    assert_int_equal(store_alert_set(f->s, old_res.id, "resolved", "op", ""), MAMORI_OK);
    assert_int_equal(
        store_alert_raise(f->s, "heartbeat_loss", dev, "alert", "{}", 100, &old_open, &created),
        MAMORI_OK);
    assert_int_equal(
        store_alert_raise(f->s, "config_drift", dev, "warning", "{}", 5000, &new_res, &created),
        MAMORI_OK);
    assert_int_equal(store_alert_set(f->s, new_res.id, "resolved", "op", ""), MAMORI_OK);
    struct webhook_rec w = {.created_at = 1};
    snprintf(w.url, sizeof(w.url), "https://hooks.example/x");
    snprintf(w.secret, sizeof(w.secret), "s");
    snprintf(w.created_by, sizeof(w.created_by), "admin");
    assert_int_equal(store_webhook_add(f->s, &w), MAMORI_OK);
    assert_int_equal(store_delivery_add(f->s, w.id, old_res.id, "{}", 100), MAMORI_OK);
    assert_int_equal(store_delivery_add(f->s, w.id, old_open.id, "{}", 100), MAMORI_OK);
    assert_int_equal(store_delivery_set(f->s, 1, "sent", 1, 0, ""), MAMORI_OK);
    int64_t na = -1, nd = -1;
    assert_int_equal(store_alerts_prune(f->s, 1000, &na, &nd), MAMORI_OK);
    assert_int_equal(na, 1);
    assert_int_equal(nd, 1);
    struct alert_rec got;
    assert_int_equal(store_alert_get(f->s, old_res.id, &got), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_alert_get(f->s, old_open.id, &got), MAMORI_OK);
    assert_int_equal(store_alert_get(f->s, new_res.id, &got), MAMORI_OK);
    assert_int_equal(
        store_scalar(f->s, "SELECT count(*) FROM deliveries WHERE state='pending'", NULL), 1);
    /* nothing left to cut: a second sweep removes nothing */
    assert_int_equal(store_alerts_prune(f->s, 1000, &na, &nd), MAMORI_OK);
    assert_true(na == 0 && nd == 0);
}

/* Data retention: old telemetry and events go a chunk at a time, the
 * oldest first; newer rows stay; a sweep that finds nothing old stops. */
static void store_data_retention(void **st)
{
    struct fx *f = *st;
    for (int i = 0; i < 5; i++) {
        struct telemetry_rec t = {.seq = (uint64_t)i + 1,
                                  .ts = 1000 * i,
                                  .recv_at = i < 3 ? 1000 : 9000000,
                                  .body = "{}"};
        snprintf(t.device_id, sizeof(t.device_id), "MMAAAAAAAAAAAAAAAA");
        snprintf(t.digest, sizeof(t.digest), "%064d", i);
        assert_int_equal(store_telemetry_add(f->s, &t), MAMORI_OK);
        assert_int_equal(
            store_event_add(f->s, i < 3 ? 1 : 9000, "MMAAAAAAAAAAAAAAAA", "online", "info", "{}"),
            MAMORI_OK);
    }
    int64_t tm = 0, ev = 0;
    /* cut at 5,000 s: three of each are older; two per call */
    assert_int_equal(store_data_prune(f->s, 5000000, 2, &tm, &ev), MAMORI_OK);
    assert_true(tm == 2 && ev == 2);
    assert_int_equal(store_data_prune(f->s, 5000000, 2, &tm, &ev), MAMORI_OK);
    assert_true(tm == 1 && ev == 1); /* fewer than a chunk: caught up */
    assert_int_equal(store_data_prune(f->s, 5000000, 2, &tm, &ev), MAMORI_OK);
    assert_true(tm == 0 && ev == 0);
    assert_int_equal(store_scalar(f->s, "SELECT count(*) FROM telemetry", NULL), 2);
    assert_int_equal(store_scalar(f->s, "SELECT count(*) FROM events", NULL), 2);
    assert_int_equal(store_scalar(f->s, "SELECT min(recv_at) FROM telemetry", NULL), 9000000);
}

/* An account goes with what is only its; a name once used is never given
 * out again; an account that still owns a device is not deleted. */
static void store_user_deletion(void **st)
{
    struct fx *f = *st;
    int64_t carol = 0, dave = 0, uid = 0;
    assert_int_equal(store_user_add(f->s, "carol", ROLE_OWNER, "$argon2id$x", 1, &carol),
                     MAMORI_OK);
    assert_int_equal(store_user_add(f->s, "dave", ROLE_OWNER, "$argon2id$x", 1, &dave), MAMORI_OK);
    assert_int_equal(store_session_add(f->s, "th-carol", carol, 1, 1000), MAMORI_OK);
    assert_int_equal(store_session_add(f->s, "th-dave", dave, 1, 1000), MAMORI_OK);
    assert_int_equal(store_export_add(f->s, carol, "MMAAAAAAAAAAAAAAAA", "{}", 2, NULL), MAMORI_OK);
    struct device_rec d;
    device_init(&d, "MMDDDDDDDDDDDDDDDD", "manufactured", 'd');
    assert_int_equal(store_device_add(f->s, &d, "pem", NULL), MAMORI_OK);
    assert_int_equal(store_device_claim(f->s, d.id, dave, 3), MAMORI_OK);

    assert_int_equal(store_begin(f->s), MAMORI_OK);
    assert_int_equal(store_user_delete(f->s, carol, 10), MAMORI_OK);
    assert_int_equal(store_commit(f->s), MAMORI_OK);
    struct user_rec u;
    assert_int_equal(store_user_get(f->s, "carol", &u), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_session_get(f->s, "th-carol", 5, &uid), MAMORI_ERR_AUTH);
    assert_int_equal(store_scalar(f->s, "SELECT count(*) FROM exports", NULL), 0);
    assert_true(store_name_retired(f->s, "carol"));
    assert_false(store_name_retired(f->s, "dave"));
    /* dave still owns a device: refused, nothing of his goes */
    assert_int_equal(store_begin(f->s), MAMORI_OK);
    assert_int_equal(store_user_delete(f->s, dave, 10), MAMORI_ERR_STATE);
    store_rollback(f->s);
    assert_int_equal(store_user_get(f->s, "dave", &u), MAMORI_OK);
    assert_int_equal(store_session_get(f->s, "th-dave", 5, &uid), MAMORI_OK);
    assert_false(store_name_retired(f->s, "dave"));
    /* no such account */
    assert_int_equal(store_begin(f->s), MAMORI_OK);
    assert_int_equal(store_user_delete(f->s, 999, 10), MAMORI_ERR_NOTFOUND);
    store_rollback(f->s);
}

/* A stream's window is kept without its trailing zero bytes, and read
 * back whole: all zero, one bit low, one bit at the very end. */
static void store_stream_window_roundtrip(void **st)
{
    struct fx *f = *st;
    struct stream_rec w[3], got;
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++) {
        w[i].last_seq = 100 + (uint64_t)i;
        w[i].last_ts = 5000;
        w[i].has_acked = true;
        w[i].acked = 90;
        w[i].gap_since_ms = i ? 4000 : 0;
    }
    w[1].window[0] = 0x05;
    w[2].window[STORE_STREAM_WINDOW - 1] = 0x80;
    for (int i = 0; i < 3; i++) {
        char stream[8];
        snprintf(stream, sizeof(stream), "s%d", i);
        assert_int_equal(store_stream_set(f->s, "MM0123456789ABCDEF", stream, &w[i]), MAMORI_OK);
        assert_int_equal(store_stream_get(f->s, "MM0123456789ABCDEF", stream, &got), MAMORI_OK);
        assert_memory_equal(&got, &w[i], sizeof(got));
    }
    assert_int_equal(
        store_scalar(f->s, "SELECT length(\"window\") FROM stream_state WHERE stream='s0'", NULL),
        0);
    assert_int_equal(
        store_scalar(f->s, "SELECT length(\"window\") FROM stream_state WHERE stream='s1'", NULL),
        1);
}

/* Prepared statements are kept and reused by their SQL text: never
 * mistaken for another text, never shared between two uses at once, and
 * all finalized when the store closes (LeakSanitizer and valgrind see the
 * connection close). */
static void store_statement_cache(void **st)
{
    struct fx *f = *st;
    struct store *s = f->s;
    if (g_pg)
        skip(); /* SQLite's statement cache */
    assert_int_equal(store_meta_set(s, "k", "v1"), MAMORI_OK);
    uint64_t compiled = s->stmt_prepared;
    for (int i = 0; i < 50; i++)
        assert_int_equal(store_meta_set(s, "k", "v2"), MAMORI_OK);
    assert_true(s->stmt_prepared == compiled); /* the same text: compiled once */
    char v[16];
    assert_int_equal(store_meta_get(s, "k", v, sizeof(v)), MAMORI_OK);
    assert_string_equal(v, "v2");

    /* one buffer, two texts: each gets its own statement */
    char sql[64];
    int64_t n = 0;
    snprintf(sql, sizeof(sql), "SELECT %d", 7);
    assert_int_equal(db_one_int(s, sql, DB_NO_ARGS, &n), MAMORI_OK);
    assert_int_equal(n, 7);
    snprintf(sql, sizeof(sql), "SELECT %d", 8);
    assert_int_equal(db_one_int(s, sql, DB_NO_ARGS, &n), MAMORI_OK);
    assert_int_equal(n, 8);

    /* the same query inside a loop over its own rows */
    static const char *const Q = "SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2) "
                                 "WHERE value>=? ORDER BY value";
    struct db_rows q;
    int64_t outer = 0, inner = 0;
    assert_int_equal(db_query(s, Q, DB_ARGS(db_int(1)), &q), MAMORI_OK);
    while (db_next(&q)) {
        outer += db_col_int(&q.row, 0);
        int64_t x = 0;
        assert_int_equal(db_one_int(s, Q, DB_ARGS(db_int(2)), &x), MAMORI_OK);
        inner += x;
    }
    assert_int_equal(db_done(&q), MAMORI_OK);
    assert_int_equal(outer, 3);
    assert_int_equal(inner, 4);

    /* a text of two statements runs its first, and is never kept */
    compiled = s->stmt_prepared;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(db_one_int(s, "SELECT 5; SELECT 6", DB_NO_ARGS, &n), MAMORI_OK);
        assert_int_equal(n, 5);
    }
    assert_true(s->stmt_prepared == compiled + 3);

    /* more texts than slots: all answer, the cache makes room */
    for (int i = 0; i < 3 * STORE_STMT_CACHE; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d + ?", i);
        assert_int_equal(db_one_int(s, sql, DB_ARGS(db_int(1)), &n), MAMORI_OK);
        assert_int_equal(n, i + 1);
    }
    /* a refused text is an error, and leaves nothing behind */
    assert_int_equal(db_one_int(s, "SELEC nonsense", DB_NO_ARGS, &n), MAMORI_ERR_DB);
    /* fewer arguments than parameters: the statement goes back unused */
    assert_int_equal(db_one_int(s, "SELECT ?1 + ?2", DB_ARGS(db_int(1)), &n), MAMORI_ERR_INTERNAL);
    assert_int_equal(db_one_int(s, "SELECT ?1 + ?2", DB_ARGS(db_int(1), db_int(2)), &n), MAMORI_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < STORE_STMT_CACHE; i++)
        assert_false(s->stmts[i].busy);
}

/* A batch's rows, many to a statement: every row once, whatever the
 * chunking (none, one, a whole chunk, one past it, several). */
static void tm_row_fill(size_t i, void *ctx, struct telemetry_rec *out)
{
    (void)ctx;
    snprintf(out->device_id, sizeof(out->device_id), "MMBATCH%06zu", i % 7);
    out->seq = 1000 + i;
    out->ts = out->recv_at = 5000 + (int64_t)i;
    snprintf(out->digest, sizeof(out->digest), "%064zu", i);
    out->body = "{\"t\":1}";
}

static void stream_row_fill(size_t i, void *ctx, const char **device_id, const char **stream,
                            struct stream_rec *out)
{
    static char ids[200][24];
    (void)ctx;
    snprintf(ids[i], sizeof(ids[i]), "MMSTREAM%06zu", i);
    *device_id = ids[i];
    *stream = i % 2 ? "ev" : "tm";
    memset(out, 0, sizeof(*out));
    out->last_seq = out->acked = i + 1;
    out->last_ts = (int64_t)i;
    out->window[i % STORE_STREAM_WINDOW] = (uint8_t)(i | 1);
}

static void store_batched_rows(void **st)
{
    struct fx *f = *st;
    static const size_t N[] = {0, 1, 64, 65, 130};
    size_t total = 0;
    for (size_t k = 0; k < sizeof(N) / sizeof(N[0]); k++) {
        assert_int_equal(store_begin(f->s), MAMORI_OK);
        assert_int_equal(store_telemetry_add_many(f->s, N[k], tm_row_fill, NULL), MAMORI_OK);
        assert_int_equal(store_commit(f->s), MAMORI_OK);
        total += N[k];
        assert_int_equal(store_scalar(f->s, "SELECT count(*) FROM telemetry", NULL),
                         (int64_t)total);
    }
    /* 130 rows numbered 1000..1129, each once */
    assert_int_equal(store_scalar(f->s, "SELECT count(DISTINCT seq) FROM telemetry", NULL), 130);
    assert_int_equal(store_scalar(f->s, "SELECT max(seq) FROM telemetry", NULL), 1129);
    assert_int_equal(store_scalar(f->s,
                                  "SELECT count(*) FROM telemetry WHERE device_id='MMBATCH000003' "
                                  "AND body='{\"t\":1}' AND ts=recv_at",
                                  NULL),
                     0 + 9 + 9 + 19); /* i % 7 == 3, batch by batch */
    assert_int_equal(store_stream_set_many(f->s, 130, stream_row_fill, NULL), MAMORI_OK);
    assert_int_equal(store_stream_set_many(f->s, 70, stream_row_fill, NULL), MAMORI_OK); /* again */
    assert_int_equal(store_scalar(f->s, "SELECT count(*) FROM stream_state", NULL), 130);
    for (size_t i = 0; i < 130; i += 43) {
        const char *id, *stream;
        struct stream_rec want, got;
        stream_row_fill(i, NULL, &id, &stream, &want);
        want.has_acked = true;
        assert_int_equal(store_stream_get(f->s, id, stream, &got), MAMORI_OK);
        assert_memory_equal(&got, &want, sizeof(got));
    }
}

/* Hubs starting together on one empty database: each migrates only what
 * another has not, and none fails. */
struct opener {
    const char *where;
    enum mamori_err rc;
    int version;
};

static void *open_one(void *arg)
{
    struct opener *o = arg;
    struct store *s = NULL;
    o->rc = store_open(o->where, &s);
    o->version = s ? store_schema_version(s) : -1;
    store_close(s);
    return NULL;
}

static void store_opened_together(void **st)
{
    struct fx *f = *st;
    char path[160];
    snprintf(path, sizeof(path), "%s/together.db", f->dir);
    if (g_pg) {
        store_close(f->s);
        f->s = NULL;
        assert_true(raw_exec(NULL, "SET client_min_messages=warning; DROP SCHEMA public CASCADE; "
                                   "CREATE SCHEMA public"));
    }
    struct opener o[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        o[i] = (struct opener){g_pg ? g_pg : path, MAMORI_ERR_INTERNAL, -1};
        assert_int_equal(pthread_create(&t[i], NULL, open_one, &o[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(o[i].rc, MAMORI_OK);
        assert_int_equal(o[i].version, 15);
    }
}

/* The server ends the hub's connection: outside a transaction the store
 * reconnects (a call may fail on the way); inside one it never does, so
 * nothing of the transaction is written without the rest. */
static int64_t backend_of(struct store *s)
{
    return store_scalar(s, "SELECT pg_backend_pid()", NULL);
}

static void terminate(int64_t pid)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld, 10000)", (long long)pid);
    assert_true(raw_exec(NULL, sql));
}

static void store_pg_reconnects(void **st)
{
    struct fx *f = *st;
    if (!g_pg)
        skip();
    int64_t pid = backend_of(f->s), now = -1;
    assert_true(pid > 0);
    terminate(pid);
    for (int i = 0; i < 3 && now <= 0; i++) /* the first call finds the connection gone */
        now = backend_of(f->s);
    assert_true(now > 0 && now != pid);

    assert_int_equal(store_begin(f->s), MAMORI_OK);
    assert_int_equal(store_meta_set(f->s, "before", "x"), MAMORI_OK);
    terminate(now);
    assert_int_not_equal(store_meta_set(f->s, "after", "y"), MAMORI_OK);
    assert_int_not_equal(store_meta_set(f->s, "after", "y"), MAMORI_OK); /* still not */
    assert_int_not_equal(store_commit(f->s), MAMORI_OK);
    store_rollback(f->s);
    assert_false(store_in_transaction(f->s));
    char v[8];
    assert_int_equal(store_meta_get(f->s, "before", v, sizeof(v)), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_meta_get(f->s, "after", v, sizeof(v)), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_meta_set(f->s, "later", "z"), MAMORI_OK);
    assert_int_equal(store_meta_get(f->s, "later", v, sizeof(v)), MAMORI_OK);
    assert_string_equal(v, "z");
}

static int notices_seen;
static char notice_last[64];

static void on_notice(const char *channel, const char *payload, void *arg)
{
    (void)arg;
    if (strcmp(channel, "mamori_test") == 0) {
        notices_seen++;
        snprintf(notice_last, sizeof(notice_last), "%s", payload);
    }
}

/* Waits (bounded) until s has received want notices in all. */
static bool notices_reach(struct store *s, int want)
{
    for (int i = 0; i < 500 && notices_seen < want; i++) {
        (void)store_notices(s, on_notice, NULL);
        if (notices_seen < want)
            usleep(10 * 1000);
    }
    return notices_seen == want;
}

/* Leases and notices between hubs (hub/core/cluster.h): two connections
 * to one database stand for two hubs. */
static void store_leases(void **st)
{
    struct fx *f = *st;
    struct store *s2 = NULL;
    bool got = false;
    int64_t n = 0;
    char big[STORE_NOTICE_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(store_open(g_pg ? g_pg : f->db, &s2), MAMORI_OK);
    assert_int_equal(store_shared(f->s), g_pg != NULL);
    assert_int_equal(store_lease_take(f->s, -1, 0, false, &got), MAMORI_ERR_INVAL);
    assert_int_equal(store_listen(f->s, "Bad; DROP TABLE audit"), MAMORI_ERR_INVAL);
    assert_int_equal(store_notify(f->s, "mamori_test", big), MAMORI_ERR_INVAL);
    if (!g_pg) { /* one hub: every lease is its own, and nobody to tell */
        assert_int_equal(store_lease_take(f->s, 9, 1, false, &got), MAMORI_OK);
        assert_true(got);
        assert_int_equal(store_lease_holders(f->s, 9, 1, &n), MAMORI_OK);
        assert_int_equal(n, 1);
        assert_int_equal(store_notify(f->s, "mamori_test", "x"), MAMORI_OK);
        assert_int_equal(store_notices(f->s, on_notice, NULL), 0);
        store_close(s2);
        return;
    }
    /* the server gives up on a silent hub's session (and its leases) after
     * about 25 s, not the system's two hours */
    assert_int_equal(store_scalar(f->s, "SELECT current_setting('tcp_keepalives_idle')::int", NULL),
                     10);
    /* exclusive: one holder; shared: every session */
    assert_int_equal(store_lease_take(f->s, 9, 1, false, &got), MAMORI_OK);
    assert_true(got);
    assert_int_equal(store_lease_take(s2, 9, 1, false, &got), MAMORI_OK);
    assert_false(got);
    assert_int_equal(store_lease_take(f->s, 9, 0, true, &got), MAMORI_OK);
    assert_true(got);
    assert_int_equal(store_lease_take(s2, 9, 0, true, &got), MAMORI_OK);
    assert_true(got);
    assert_int_equal(store_lease_holders(s2, 9, 0, &n), MAMORI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_lease_holders(s2, 9, 1, &n), MAMORI_OK);
    assert_int_equal(n, 1);
    /* a notice reaches the listener when the transaction it was sent in commits */
    notices_seen = 0;
    assert_int_equal(store_listen(f->s, "mamori_test"), MAMORI_OK);
    assert_int_equal(store_notify(s2, "mamori_test", "first"), MAMORI_OK);
    assert_true(notices_reach(f->s, 1));
    assert_string_equal(notice_last, "first");
    assert_int_equal(store_begin(s2), MAMORI_OK);
    assert_int_equal(store_notify(s2, "mamori_test", "rolled-back"), MAMORI_OK);
    store_rollback(s2);
    assert_int_equal(store_begin(s2), MAMORI_OK);
    assert_int_equal(store_notify(s2, "mamori_test", "committed"), MAMORI_OK);
    assert_int_equal(store_commit(s2), MAMORI_OK);
    assert_true(notices_reach(f->s, 2));
    assert_string_equal(notice_last, "committed"); /* never "rolled-back" */
    /* given back, another takes it; dropped twice is an error */
    assert_int_equal(store_lease_drop(f->s, 9, 1), MAMORI_OK);
    assert_int_equal(store_lease_drop(f->s, 9, 1), MAMORI_ERR_NOTFOUND);
    assert_int_equal(store_lease_take(s2, 9, 1, false, &got), MAMORI_OK);
    assert_true(got);
    /* a session that ends lets go of everything it held, and its store
     * knows: the session grows when the connection is opened again */
    uint64_t sess = store_session(s2);
    terminate(backend_of(s2));
    assert_int_equal(store_lease_take(f->s, 9, 1, false, &got), MAMORI_OK);
    assert_true(got);
    assert_int_equal(store_lease_holders(f->s, 9, 0, &n), MAMORI_OK);
    assert_int_equal(n, 1);
    for (int i = 0; i < 3 && store_session(s2) == sess; i++)
        (void)backend_of(s2); /* the first call finds the connection gone */
    assert_true(store_session(s2) > sess);
    store_close(s2);
}

int main(void)
{
    g_pg = getenv("MAMORI_TEST_STORE");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lifecycle_table),
        cmocka_unit_test(routes),
        cmocka_unit_test_setup_teardown(audit_intact, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_rotation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_refuses_sql_update, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_detects_modification, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_detects_removal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_detects_reorder, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_detects_truncation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(audit_truncation_survives_new_entries, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(audit_detects_reforged_chain_without_key, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(throttle_policy),
        cmocka_unit_test(passwords),
        cmocka_unit_test_setup_teardown(store_basics, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_statement_cache, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_stream_window_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_alerts_lifecycle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_alert_retention, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_user_deletion, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_data_retention, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_batched_rows, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_opened_together, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_pg_reconnects, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(store_leases, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("hub", tests, NULL, NULL);
}
