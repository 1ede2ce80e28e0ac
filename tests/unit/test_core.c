/*
 * tests/unit/test_core.c - the hub's core: the event bus, the job table
 * and the replaceable clock; and, driven by that clock through the job
 * table, the domains' periodic work (liveness, stray devices, certificate
 * expiry, retention) without waiting real time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "common/proto.h"
#include "hub/alerts/alerts.h"
#include "hub/core/bus.h"
#include "hub/core/clock.h"
#include "hub/core/hub.h"
#include "hub/core/jobs.h"
#include "hub/core/out.h"
#include "hub/daemon.h"
#include "hub/device/ingest.h"
#include "hub/device/liveness.h"
#include "hub/device/seqwin.h"
#include "hub/device/telemetry.h"
#include "hub/store/store.h"
#include "testutil.h"

/* ---- the test's clock ---- */

static int64_t fake_ms;

static int64_t fake_now(void *arg)
{
    (void)arg;
    return fake_ms;
}

/* ---- a bare hub: state and a store, nothing registered ---- */

struct bare {
    char dir[64];
    struct hub h;
};

static int bare_setup(void **st)
{
    struct bare *b = calloc(1, sizeof(*b));
    snprintf(b->dir, sizeof(b->dir), "/tmp/mamori-core-XXXXXX");
    if (!b || !mkdtemp(b->dir))
        return -1;
    char db[128];
    snprintf(db, sizeof(db), "%s/t.db", b->dir);
    hub_config_defaults(&b->h.cfg);
    pthread_mutex_init(&b->h.lock, NULL);
    pthread_mutex_init(&b->h.live_mu, NULL);
    if (store_open(db, &b->h.store))
        return -1;
    fake_ms = 1700000000000LL;
    hub_clock_override(fake_now, NULL);
    *st = b;
    return 0;
}

static int bare_teardown(void **st)
{
    struct bare *b = *st;
    hub_clock_override(NULL, NULL);
    store_close(b->h.store);
    pthread_mutex_destroy(&b->h.lock);
    pthread_mutex_destroy(&b->h.live_mu);
    rm_rf(b->dir);
    free(b);
    return 0;
}

struct seen {
    char log[512];
};
static struct seen seen;

static void note(const char *what)
{
    size_t n = strlen(seen.log);
    snprintf(seen.log + n, sizeof(seen.log) - n, "%s;", what);
}

static void ev_a(struct hub *h, const char *dev, const char *kind, const char *sev, const char *d)
{
    (void)h;
    (void)sev;
    (void)d;
    char s[96];
    snprintf(s, sizeof(s), "a:%s:%s", dev ? dev : "-", kind);
    note(s);
}

static void ev_b(struct hub *h, const char *dev, const char *kind, const char *sev, const char *d)
{
    (void)h;
    (void)dev;
    (void)sev;
    (void)d;
    char s[64];
    snprintf(s, sizeof(s), "b:%s", kind);
    note(s);
}

static void devev_upd(struct hub *h, const char *dev, const char *type, const json_t *body)
{
    (void)h;
    (void)dev;
    (void)body;
    char s[64];
    snprintf(s, sizeof(s), "devev:%s", type);
    note(s);
}

static void res_update(struct hub *h, const struct command_rec *c, const char *status,
                       const char *error, json_t *detail)
{
    (void)h;
    (void)error;
    (void)detail;
    char s[96];
    snprintf(s, sizeof(s), "res:%s:%s", c->type, status);
    note(s);
}

static void view_add(struct hub *h, const struct device_rec *d, json_t *out)
{
    (void)h;
    json_object_set_new(out, "seen_by_view", json_string(d->id));
}

static bool count_kind(const struct event_rec *e, void *arg)
{
    struct {
        const char *kind;
        int n;
    } *c = arg;
    if (strcmp(e->kind, c->kind) == 0)
        c->n++;
    return true;
}

static int events_of(struct hub *h, const char *dev, const char *kind)
{
    struct {
        const char *kind;
        int n;
    } c = {kind, 0};
    assert_int_equal(store_event_list(h->store, dev, 0, 0, 1000, count_kind, &c), MAMORI_OK);
    return c.n;
}

/* Events are recorded, then handed to every subscriber in the order they
 * registered; with the rules off they are recorded only. */
static void bus_events(void **st)
{
    struct hub *h = &((struct bare *)*st)->h;
    seen.log[0] = '\0';
    assert_int_equal(hub_on_event(h, ev_a), MAMORI_OK);
    assert_int_equal(hub_on_event(h, ev_b), MAMORI_OK);
    hub_event(h, "MMAAAAAAAAAAAAAAAA", "offline", "alert", "{\"n\":%d}", 1);
    assert_string_equal(seen.log, "a:MMAAAAAAAAAAAAAAAA:offline;b:offline;");
    assert_int_equal(events_of(h, "MMAAAAAAAAAAAAAAAA", "offline"), 1);
    h->cfg.rules_off = true;
    seen.log[0] = '\0';
    hub_event(h, NULL, "hub_start", "info", "{}");
    assert_string_equal(seen.log, "");
    assert_int_equal(events_of(h, NULL, "hub_start"), 1);
}

/* Device events and command results reach only the handlers of their
 * type; views add to a device's JSON; the tables are bounded. */
static void bus_by_type(void **st)
{
    struct hub *h = &((struct bare *)*st)->h;
    seen.log[0] = '\0';
    assert_int_equal(hub_on_device_event(h, "update_status", devev_upd), MAMORI_OK);
    assert_int_equal(hub_on_result(h, "update", res_update), MAMORI_OK);
    assert_int_equal(hub_on_device_view(h, view_add), MAMORI_OK);
    json_t *body = json_pack("{s:s}", "type", "update_status");
    assert_int_equal(hub_device_event(h, "MMAAAAAAAAAAAAAAAA", "update_status", body), 1);
    assert_int_equal(hub_device_event(h, "MMAAAAAAAAAAAAAAAA", "log_access", body), 0);
    json_decref(body);
    struct command_rec c;
    memset(&c, 0, sizeof(c));
    snprintf(c.type, sizeof(c.type), "reboot");
    hub_command_result(h, &c, "ok", "", NULL);
    snprintf(c.type, sizeof(c.type), "update");
    hub_command_result(h, &c, "failed", "download", NULL);
    assert_string_equal(seen.log, "devev:update_status;res:update:failed;");
    struct device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "MMBBBBBBBBBBBBBBBB");
    json_t *o = json_object();
    hub_device_view(h, &d, o);
    assert_string_equal(json_string_value(json_object_get(o, "seen_by_view")), d.id);
    json_decref(o);
    enum mamori_err rc = MAMORI_OK;
    for (int i = 0; i < HUB_BUS_MAX + 1 && !rc; i++)
        rc = hub_on_event(h, ev_b);
    assert_int_equal(rc, MAMORI_ERR_TOOBIG);
}

static int runs_a, runs_b;

static void job_a(struct hub *h, int64_t now_ms)
{
    (void)h;
    (void)now_ms;
    runs_a++;
}

static void job_b(struct hub *h, int64_t now_ms)
{
    (void)h;
    (void)now_ms;
    runs_b++;
}

/* A job runs when the clock reaches it, then once a period; a clock that
 * jumps runs it once, not once per missed period; a session job waits for
 * the broker session. */
static void jobs_follow_the_clock(void **st)
{
    struct hub *h = &((struct bare *)*st)->h;
    int64_t t0 = fake_ms;
    runs_a = runs_b = 0;
    h->cluster.leader = 1; /* one hub: it leads (core/cluster.h) */
    assert_int_equal(hub_job_add(h, "a", 1000, 500, 0, job_a), MAMORI_OK);
    assert_int_equal(hub_job_add(h, "b", 1000, 0, HUB_JOB_LOCKED | HUB_JOB_SESSION, job_b),
                     MAMORI_OK);
    assert_int_equal(hub_job_add(h, "bad", 0, 0, 0, job_a), MAMORI_ERR_INVAL);
    assert_int_equal(hub_jobs_run_due(h, t0), 0); /* b: no session */
    assert_int_equal(hub_jobs_run_due(h, t0 + 499), 0);
    assert_int_equal(hub_jobs_run_due(h, t0 + 500), 1);
    assert_int_equal(runs_a, 1);
    assert_int_equal(hub_jobs_run_due(h, t0 + 1499), 0);
    assert_int_equal(hub_jobs_run_due(h, t0 + 1500), 1);
    h->mqtt_connected = true;
    assert_int_equal(hub_jobs_run_due(h, t0 + 60000), 2); /* once each after a jump */
    assert_int_equal(hub_jobs_run_due(h, t0 + 60500), 0);
    assert_true(runs_a == 3 && runs_b == 1);
    assert_int_equal(hub_job_named(h, "a")->runs, 3);
    assert_null(hub_job_named(h, "nope"));
}

/* With several hubs a job runs on the leader alone, unless it is one every
 * hub runs (core/cluster.h); a hub that takes the lead runs it within its
 * period. One hub (SQLite) leads and holds every partition from the
 * start. */
static void jobs_once_run_on_the_leader(void **st)
{
    struct hub *h = &((struct bare *)*st)->h;
    int64_t t0 = fake_ms;
    runs_a = runs_b = 0;
    assert_int_equal(hub_job_add(h, "once", 1000, 0, 0, job_a), MAMORI_OK);
    assert_int_equal(hub_job_add(h, "every", 1000, 0, HUB_JOB_EVERY_HUB, job_b), MAMORI_OK);
    assert_false(hub_leads(h));
    assert_int_equal(hub_jobs_run_due(h, t0), 1);
    assert_int_equal(hub_jobs_run_due(h, t0 + 1000), 1);
    assert_true(runs_a == 0 && runs_b == 2);
    assert_false(hub_owns(h, "d-0000000000000001"));
    assert_int_equal(hub_cluster_start(h), MAMORI_OK); /* SQLite: one hub */
    assert_true(hub_leads(h));
    assert_true(hub_owns(h, "d-0000000000000001"));
    assert_true(hub_cluster_current(h));
    assert_int_equal(hub_jobs_run_due(h, t0 + 2000), 3); /* once, every, the cluster's turn */
    assert_true(runs_a == 1 && runs_b == 3);
}

/* Device ids spread over every partition, each id always to the same. */
static void partitions_spread(void **st)
{
    (void)st;
    int count[HUB_PARTITIONS] = {0};
    char id[32];
    for (int i = 0; i < 6400; i++) {
        snprintf(id, sizeof(id), "d-%016x", (unsigned)i * 2654435761u);
        unsigned p = hub_partition(id);
        assert_true(p < HUB_PARTITIONS);
        assert_int_equal(hub_partition(id), p);
        count[p]++;
    }
    for (int p = 0; p < HUB_PARTITIONS; p++) /* 100 each on average */
        assert_true(count[p] > 50 && count[p] < 150);
}

/* ---- a whole hub (PKI, audit, every domain registered), not started:
 * the test turns the clock and runs the job table itself ---- */

struct full {
    char dir[64];
    struct hub h;
};

static int full_setup(void **st)
{
    struct full *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/mamori-core-XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    fake_ms = 1800000000000LL;
    hub_clock_override(fake_now, NULL);
    struct hub_config cfg;
    hub_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s/data", f->dir);
    cfg.heartbeat_s = 10;
    cfg.stray_after_s = 3600;
    cfg.data_retention_days = 2;
    if (hub_init(&f->h, &cfg))
        return -1;
    *st = f;
    return 0;
}

static int full_teardown(void **st)
{
    struct full *f = *st;
    ingest_stop(&f->h); /* a test that failed with the worker running */
    hub_free(&f->h);
    hub_clock_override(NULL, NULL);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void add_device(struct hub *h, const char *id, const char *state, char fp, int64_t not_after)
{
    struct device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.model, sizeof(d.model), "m");
    snprintf(d.state, sizeof(d.state), "%s", state);
    memset(d.cert_fp, fp, 64);
    d.hb_interval = 10;
    d.created_at = hub_now();
    d.cert_not_after = not_after;
    assert_int_equal(store_device_add(h->store, &d, "pem", NULL), MAMORI_OK);
    assert_int_equal(store_device_set_state(h->store, id, state, hub_now()), MAMORI_OK);
}

/* Moves the clock by ms and runs what is due then. */
static void advance(struct hub *h, int64_t ms)
{
    fake_ms += ms;
    (void)hub_jobs_run_due(h, fake_ms);
}

/* Liveness: silent for 1.5 heartbeat intervals is offline (one alert), not
 * before; then silent for the stray period, the device is stray; a stray
 * device seen again raises stray_returned. All on the test's clock. */
static void liveness_and_stray_on_the_clock(void **st)
{
    struct hub *h = &((struct full *)*st)->h;
    const char *id = "MMCCCCCCCCCCCCCCCC";
    add_device(h, id, "active", 'c', hub_now() + 400 * 86400LL);
    pthread_mutex_lock(&h->lock);
    live_heartbeat(h, id, hub_now_ms());
    pthread_mutex_unlock(&h->lock);
    advance(h, 14000); /* 1.4 intervals */
    assert_int_equal(events_of(h, id, "offline"), 0);
    advance(h, 2000); /* 1.6 */
    assert_int_equal(events_of(h, id, "offline"), 1);
    struct device_rec d;
    assert_int_equal(store_device_get(h->store, id, &d), MAMORI_OK);
    assert_false(d.online);
    assert_string_equal(d.state, "active");
    advance(h, 3000 * 1000LL); /* not yet the stray period */
    assert_int_equal(store_device_get(h->store, id, &d), MAMORI_OK);
    assert_string_equal(d.state, "active");
    advance(h, 700 * 1000LL);
    assert_int_equal(store_device_get(h->store, id, &d), MAMORI_OK);
    assert_string_equal(d.state, "stray");
    assert_int_equal(events_of(h, id, "device_stray"), 1);
    assert_int_equal(events_of(h, id, "offline"), 1); /* one alert, not one per sweep */
    /* back: the heartbeat brings it online; the owner must confirm it */
    pthread_mutex_lock(&h->lock);
    live_heartbeat(h, id, hub_now_ms());
    pthread_mutex_unlock(&h->lock);
    assert_int_equal(events_of(h, id, "stray_returned"), 1);
}

/* A certificate that expires within the renewal window is reported once
 * while its alert is live (the rotation policy renews it). */
static void expiry_on_the_clock(void **st)
{
    struct hub *h = &((struct full *)*st)->h;
    const char *soon = "MMDDDDDDDDDDDDDDDD", *later = "MMEEEEEEEEEEEEEEEE";
    add_device(h, soon, "active", 'd', hub_now() + 40 * 86400LL);
    add_device(h, later, "active", 'e', hub_now() + 400 * 86400LL);
    advance(h, 0);                                            /* the first sweep runs at once */
    assert_int_equal(events_of(h, soon, "cert_expiring"), 0); /* 40 days: outside 30 */
    advance(h, 11 * 86400 * 1000LL);
    assert_int_equal(events_of(h, soon, "cert_expiring"), 1);
    assert_int_equal(events_of(h, later, "cert_expiring"), 0);
    advance(h, (int64_t)h->cfg.rotation_check_s * 1000);
    assert_int_equal(events_of(h, soon, "cert_expiring"), 1); /* its alert is live */
}

/* Telemetry and events older than the retention period go, newer stay,
 * when the daily sweep comes round. */
static int64_t tm_rows(struct hub *h)
{
    pthread_mutex_lock(&h->lock); /* the alerts thread uses the store too */
    int64_t n = store_scalar(h->store, "SELECT count(*) FROM telemetry", NULL);
    pthread_mutex_unlock(&h->lock);
    return n;
}

static void retention_on_the_clock(void **st)
{
    struct hub *h = &((struct full *)*st)->h;
    assert_int_equal(alerts_start(h), MAMORI_OK); /* the sweep's state lives there */
    int64_t now = hub_now_ms();
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < 4; i++) {
        struct telemetry_rec t = {.seq = (uint64_t)i + 1,
                                  .ts = now - (i < 2 ? 5 : 1) * 86400000LL,
                                  .recv_at = now - (i < 2 ? 5 : 1) * 86400000LL,
                                  .body = "{}"};
        snprintf(t.device_id, sizeof(t.device_id), "MMFFFFFFFFFFFFFFFF");
        snprintf(t.digest, sizeof(t.digest), "%064d", i);
        if (store_telemetry_add(h->store, &t) != MAMORI_OK)
            break;
    }
    pthread_mutex_unlock(&h->lock);
    assert_int_equal(tm_rows(h), 4);
    advance(h, 1000);
    assert_int_equal(tm_rows(h), 2);
    /* the rest ages past the period: gone at the next daily sweep, not before */
    advance(h, 12 * 3600 * 1000LL);
    assert_int_equal(tm_rows(h), 2);
    advance(h, 13 * 3600 * 1000LL);
    advance(h, 1000);
    assert_int_equal(tm_rows(h), 0);
    h->stopping = 1;
    alerts_stop(h);
}

/* The acknowledgement never passes a number not dealt with: out of order
 * arrivals wait for the missing one; a device's own drop closes a gap; a
 * gap nobody fills is given up after the limit, not before; a number far
 * beyond the window gives up the oldest missing. */
static void seqwin_acks_only_what_is_contiguous(void **st)
{
    (void)st;
    struct seqwin w;
    memset(&w, 0, sizeof(w));
    seqwin_mark(&w, 1, 1000);
    seqwin_mark(&w, 2, 1000);
    assert_int_equal(w.acked, 2);
    seqwin_mark(&w, 5, 1000); /* 3 and 4 were dropped by the broker, say */
    seqwin_mark(&w, 6, 1000);
    assert_int_equal(w.acked, 2);
    assert_true(seqwin_seen(&w, 5) && seqwin_seen(&w, 2));
    assert_false(seqwin_seen(&w, 3) || seqwin_seen(&w, 4) || seqwin_seen(&w, 7));
    assert_int_equal(seqwin_top(&w), 6);
    assert_int_equal(w.gap_since_ms, 1000);
    seqwin_mark(&w, 4, 2000); /* the device sends again */
    assert_int_equal(w.acked, 2);
    seqwin_mark(&w, 3, 2000);
    assert_int_equal(w.acked, 6);
    assert_int_equal(w.gap_since_ms, 0);
    seqwin_mark(&w, 3, 2000); /* again: nothing changes */
    assert_int_equal(w.acked, 6);
    /* the device says it dropped 7..9 itself */
    seqwin_mark(&w, 10, 3000);
    assert_int_equal(w.acked, 6);
    seqwin_gone(&w, 7, 9, 3000);
    assert_int_equal(w.acked, 10);
    /* a report ahead of the numbers it covers holds until they come */
    seqwin_gone(&w, 12, 20, 3000);
    assert_int_equal(w.acked, 10);
    seqwin_mark(&w, 11, 3000);
    assert_int_equal(w.acked, 20);
    /* a gap nobody fills: given up after the limit, not before */
    seqwin_mark(&w, 23, 10000);
    uint64_t from = 0, to = 0;
    assert_false(seqwin_expire(&w, 10000 + 120000, 120000, &from, &to));
    assert_int_equal(w.acked, 20);
    assert_true(seqwin_expire(&w, 10000 + 120001, 120000, &from, &to));
    assert_true(from == 21 && to == 22);
    assert_int_equal(w.acked, 23);
    /* far beyond the window: the oldest missing make room */
    seqwin_mark(&w, 25, 20000);
    seqwin_mark(&w, 23 + SEQWIN_BITS + 5, 20000);
    assert_int_equal(w.acked, 28); /* 24..28 given up (25 had come) */
    assert_false(seqwin_seen(&w, 29));
    assert_int_equal(seqwin_top(&w), 23 + SEQWIN_BITS + 5);
}

/* ---- acknowledgements: paced, and only for what a commit covered ---- */

static struct {
    int n, qos;
    char last[200];
} acks;

static void capture_send(struct hub *h, const char *id, const char *payload, size_t len, int qos)
{
    (void)h;
    (void)id;
    acks.n++;
    acks.qos = qos;
    snprintf(acks.last, sizeof(acks.last), "%.*s", (int)len, payload);
}

/* One batch as the ingest worker records it: telemetry from..from+n-1,
 * then committed, or (commit false) the commit failed. */
static void tm_batch(struct hub *h, const char *id, uint64_t from, int n, bool commit)
{
    pthread_mutex_lock(&h->lock);
    assert_int_equal(store_begin(h->store), MAMORI_OK);
    for (int i = 0; i < n; i++) {
        char p[160];
        uint64_t seq = from + (uint64_t)i; /* the same number, the same message */
        int len = snprintf(p, sizeof(p), "{\"v\":1,\"seq\":%llu,\"ts\":%lld,\"body\":{\"t\":%d}}",
                           (unsigned long long)seq, (long long)hub_now_ms(), (int)(seq % 50));
        struct proto_envelope env;
        json_t *body = NULL;
        assert_int_equal(proto_envelope_parse(p, (size_t)len, &env, &body), MAMORI_OK);
        tm_ingest(h, id, STREAM_TM, &env, body, p, (size_t)len);
        json_decref(body);
    }
    tm_flush(h);
    if (commit)
        assert_int_equal(store_commit(h->store), MAMORI_OK);
    else
        store_abort(h->store);
    tm_settle(h, commit);
    pthread_mutex_unlock(&h->lock);
}

/* An active device of model "m" (schema: t, a number), online. */
static void tm_device(struct hub *h, const char *id, char fp)
{
    add_device(h, id, "active", fp, hub_now() + 400 * 86400LL);
    assert_int_equal(
        store_schema_set(
            h->store, "m",
            "{\"fields\": [{\"name\": \"t\", \"type\": \"number\", \"min\": -40, \"max\": 85}]}",
            hub_now()),
        MAMORI_OK);
    pthread_mutex_lock(&h->lock);
    live_heartbeat(h, id, hub_now_ms());
    pthread_mutex_unlock(&h->lock);
}

static void acks_send_owed(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    tm_acks_send(h);
    pthread_mutex_unlock(&h->lock);
}

static bool acked_tm(uint64_t n)
{
    char want[48];
    snprintf(want, sizeof(want), "\"tm\":%llu,", (unsigned long long)n);
    return strstr(acks.last, want) != NULL;
}

static void acks_are_paced_and_cover_only_commits(void **st)
{
    struct hub *h = &((struct full *)*st)->h;
    const char *id = "MMDDDDDDDDDDDDDDDD";
    tm_device(h, id, 'd');
    memset(&acks, 0, sizeof(acks));
    h->out.send_device = capture_send;

    tm_batch(h, id, 1, 3, true); /* a few: owed, not sent yet */
    assert_int_equal(acks.n, 0);
    assert_true(tm_acks_owed(h));
    acks_send_owed(h); /* the worker's pace */
    assert_int_equal(acks.n, 1);
    assert_int_equal(acks.qos, 0);
    assert_true(acked_tm(3));
    assert_false(tm_acks_owed(h));
    acks_send_owed(h); /* nothing owed: nothing sent */
    assert_int_equal(acks.n, 1);

    tm_batch(h, id, 4, 40, true); /* 40 ahead of the last: at once */
    assert_int_equal(acks.n, 2);
    assert_true(acked_tm(43));

    tm_batch(h, id, 44, 2, false); /* not committed: never acknowledged */
    acks_send_owed(h);
    assert_int_equal(acks.n, 2);

    tm_batch(h, id, 44, 2, true); /* the device sends them again */
    acks_send_owed(h);
    assert_int_equal(acks.n, 3);
    assert_true(acked_tm(45));

    tm_batch(h, id, 45, 1, true); /* a resend of what is held: told again */
    acks_send_owed(h);
    assert_int_equal(acks.n, 4);
    assert_true(acked_tm(45));
    assert_int_equal(store_scalar(h->store, "SELECT count(*) FROM telemetry WHERE device_id=?", id),
                     45);
    assert_int_equal(events_of(h, id, "telemetry_replay"), 0);
    h->out.send_device = NULL;
}

/* ---- the ingest worker's batches (device/ingest.h) ---- */

static void submit_tm(struct hub *h, const char *id, uint64_t from, int n)
{
    for (int i = 0; i < n; i++) {
        char p[160];
        int len = snprintf(p, sizeof(p), "{\"v\":1,\"seq\":%llu,\"ts\":%lld,\"body\":{\"t\":1}}",
                           (unsigned long long)(from + (uint64_t)i), (long long)hub_now_ms());
        assert_true(ingest_submit(h, id, PROTO_KIND_TM, p, (size_t)len));
    }
}

static bool acks_owed(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    bool owed = tm_acks_owed(h);
    pthread_mutex_unlock(&h->lock);
    return owed;
}

static bool is_gathering(const struct ingest_stats *s, uint64_t n)
{
    return s->gathering && s->queued == n;
}

static bool has_recorded(const struct ingest_stats *s, uint64_t n)
{
    return s->messages == n;
}

/* The worker's counters once done(n) holds, or after 30 s. */
static struct ingest_stats
ingest_when(struct hub *h, bool (*done)(const struct ingest_stats *, uint64_t), uint64_t n)
{
    struct ingest_stats s;
    for (int i = 0; i < 30000; i++) {
        ingest_stats(h, &s);
        if (done(&s, n))
            break;
        usleep(1000);
    }
    return s;
}

/* A short batch waits to fill (here far longer than the test runs) and
 * records nothing meanwhile; the message that fills it closes it at once,
 * every message in one transaction; acknowledgements owed end a gathering
 * when they are due; stopping records a gathering batch without waiting
 * out the gathering. */
static void ingest_batches_fill_then_close(void **st)
{
    struct hub *h = &((struct full *)*st)->h;
    const char *id = "MMEEEEEEEEEEEEEEEE";
    tm_device(h, id, 'e');
    h->cfg.ingest_gather_ms = 600000;
    assert_int_equal(ingest_start(h), MAMORI_OK);

    submit_tm(h, id, 1, 3);
    struct ingest_stats s = ingest_when(h, is_gathering, 3);
    assert_true(s.gathering);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.batches, 0);

    submit_tm(h, id, 4, INGEST_BATCH - 3); /* the batch is full: it closes */
    s = ingest_when(h, has_recorded, INGEST_BATCH);
    assert_int_equal(s.messages, INGEST_BATCH);
    assert_int_equal(s.batches, 1);
    assert_int_equal(s.largest, INGEST_BATCH);

    /* the acknowledgements that batch owes end a gathering at their time
     * (TM_ACK_PERIOD_MS), not the gathering's */
    submit_tm(h, id, INGEST_BATCH + 1, 2);
    s = ingest_when(h, has_recorded, INGEST_BATCH + 2);
    assert_int_equal(s.messages, INGEST_BATCH + 2);
    assert_int_equal(s.batches, 2);
    for (int i = 0; i < 30000 && acks_owed(h); i++)
        usleep(1000);
    assert_false(acks_owed(h)); /* sent: now only the stop can end one */

    submit_tm(h, id, INGEST_BATCH + 3, 2); /* a short batch, gathering */
    s = ingest_when(h, is_gathering, 2);
    assert_true(s.gathering);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ingest_stop(h); /* records them, now */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 30);
    assert_int_equal(store_scalar(h->store, "SELECT count(*) FROM telemetry WHERE device_id=?", id),
                     INGEST_BATCH + 4);
}

/* ---- notes: many to a message for the broker plugin (core/out.h) ---- */

static struct {
    int messages, lines;
    size_t largest;
    char first[128];
} notes;

static void capture_notes(struct hub *h, const char *lines, size_t len)
{
    (void)h;
    notes.messages++;
    if (len > notes.largest)
        notes.largest = len;
    for (size_t i = 0; i < len; i++)
        notes.lines += lines[i] == '\n';
    assert_int_equal(lines[len - 1], '\n'); /* whole lines only */
    if (notes.messages == 1)
        snprintf(notes.first, sizeof(notes.first), "%.*s", (int)(strchr(lines, '\n') - lines),
                 lines);
}

static void notes_go_many_to_a_message(void **st)
{
    struct hub *h = &((struct bare *)*st)->h;
    memset(&notes, 0, sizeof(notes));
    memset(&acks, 0, sizeof(acks));
    h->out.send_notes = capture_notes;
    h->out.send_device = capture_send;
    const char *ack = "{\"v\":1,\"ack\":{\"tm\":12345,\"ev\":0,\"log\":0}}";
    hub_note_device(h, "MM0000000000000001", ack, strlen(ack));
    hub_note_device(h, "MM0000000000000002", ack, strlen(ack));
    assert_int_equal(notes.messages, 0); /* gathered */
    hub_notes_flush(h);
    assert_int_equal(notes.messages, 1);
    assert_int_equal(notes.lines, 2);
    assert_string_equal(notes.first,
                        "MM0000000000000001 {\"v\":1,\"ack\":{\"tm\":12345,\"ev\":0,\"log\":0}}");
    hub_notes_flush(h); /* nothing gathered: nothing sent */
    assert_int_equal(notes.messages, 1);

    /* 1,000 devices' acknowledgements: a few messages, none above the cap */
    memset(&notes, 0, sizeof(notes));
    for (int i = 0; i < 1000; i++) {
        char id[PROTO_DEVICE_ID_LEN + 1];
        snprintf(id, sizeof(id), "MM%016d", i);
        hub_note_device(h, id, ack, strlen(ack));
    }
    hub_notes_flush(h);
    assert_int_equal(notes.lines, 1000);
    assert_true(notes.messages <= 1000 * 70 / HUB_NOTES_BYTES + 1);
    assert_true(notes.largest <= HUB_NOTES_BYTES);

    /* what cannot be a line goes on its own, to the device's topic */
    memset(&notes, 0, sizeof(notes));
    hub_note_device(h, "MM0000000000000003", "{\n}", 3);
    char big[PROTO_NOTE_MAX + 1];
    memset(big, 'x', sizeof(big));
    hub_note_device(h, "MM0000000000000003", big, sizeof(big));
    char long_id[HUB_NOTES_BYTES + 8]; /* never a device id; never past the buffer */
    memset(long_id, 'M', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    hub_note_device(h, long_id, "{}", 2);
    hub_notes_flush(h);
    assert_int_equal(notes.messages, 0);
    assert_int_equal(acks.n, 3);
    assert_int_equal(acks.qos, 0);
    h->out.send_notes = NULL;
    h->out.send_device = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seqwin_acks_only_what_is_contiguous),
        cmocka_unit_test_setup_teardown(bus_events, bare_setup, bare_teardown),
        cmocka_unit_test_setup_teardown(bus_by_type, bare_setup, bare_teardown),
        cmocka_unit_test_setup_teardown(notes_go_many_to_a_message, bare_setup, bare_teardown),
        cmocka_unit_test_setup_teardown(jobs_follow_the_clock, bare_setup, bare_teardown),
        cmocka_unit_test_setup_teardown(jobs_once_run_on_the_leader, bare_setup, bare_teardown),
        cmocka_unit_test(partitions_spread),
        cmocka_unit_test_setup_teardown(liveness_and_stray_on_the_clock, full_setup, full_teardown),
        cmocka_unit_test_setup_teardown(expiry_on_the_clock, full_setup, full_teardown),
        cmocka_unit_test_setup_teardown(retention_on_the_clock, full_setup, full_teardown),
        cmocka_unit_test_setup_teardown(acks_are_paced_and_cover_only_commits, full_setup,
                                        full_teardown),
        cmocka_unit_test_setup_teardown(ingest_batches_fill_then_close, full_setup, full_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
