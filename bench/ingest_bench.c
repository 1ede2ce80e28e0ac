/*
 * ingest-bench - the hub's ingest worker (hub/device/ingest.c) on its own:
 * telemetry of N devices queued at a steady RATE for SECONDS, recorded in
 * batches on the hub's real SQLite store (WAL, synchronous=FULL), with
 * the batch's wait to fill (cfg.ingest_gather_ms) off and on, side by side
 * and alternated in one process. No broker and no TLS: what is measured is
 * the CPU the hub spends per message between the MQTT session and the
 * commit (envelope parse, checks, rows, sequence state, commit): the
 * process's CPU less that of the thread that queues the messages (it
 * stands for the MQTT session) and waits for them to be recorded.
 *
 *   ingest-bench [DIR=/tmp] [DEVICES=1000] [RATE=15000] [SECONDS=5] [GATHER_MS=10] [STORE]
 *
 * With STORE, a PostgreSQL URI (scripts/pg.sh start prints one), the runs
 * compare the engines instead: SQLite and PostgreSQL alternate, each with
 * the wait to fill on. A PostgreSQL run starts from an empty schema, and
 * its line adds the CPU of the database server (the postmaster and its
 * children, from /proc) to the hub's, per message.
 *
 * Every run must record every message it queued (rows counted in the store
 * afterwards); the process exits non-zero otherwise.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench/benchutil.h"
#include "common/log.h"
#include "hub/core/clock.h"
#include "hub/core/hub.h"
#include "hub/device/ingest.h"
#include "hub/device/telemetry.h"
#include "hub/store/store.h"

#define MODEL "bench-v1"

static void dev_id(char out[24], long d)
{
    snprintf(out, 24, "MMBENCH%011ld", d % 100000000000L);
}

/* N claimed devices of MODEL, whose schema takes {"t": number}. */
static int fleet(struct hub *h, long ndev)
{
    int64_t now = hub_now(), owner = 0;
    if (store_user_add(h->store, "bench-owner", ROLE_OWNER, "-", now, &owner) ||
        store_schema_set(
            h->store, MODEL,
            "{\"fields\":[{\"name\":\"t\",\"type\":\"number\",\"min\":-40,\"max\":85}]}", now) ||
        store_begin(h->store))
        return 1;
    for (long d = 0; d < ndev; d++) {
        struct device_rec r = {.created_at = now, .cert_not_after = now + 86400, .hb_interval = 30};
        dev_id(r.id, d);
        snprintf(r.model, sizeof(r.model), MODEL);
        snprintf(r.state, sizeof(r.state), "active");
        snprintf(r.cert_fp, sizeof(r.cert_fp), "%064ld", d);
        snprintf(r.cert_serial, sizeof(r.cert_serial), "%ld", d);
        if (store_device_add(h->store, &r, "-", NULL) ||
            store_device_claim(h->store, r.id, owner, now - 60)) {
            store_rollback(h->store);
            return 1;
        }
    }
    return store_commit(h->store) ? 1 : 0;
}

/* Empties the PostgreSQL database at uri (a fresh store for the run). */
static int pg_reset(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    PGresult *r = PQstatus(c) == CONNECTION_OK
                      ? PQexec(c, "SET client_min_messages=warning; DROP SCHEMA public CASCADE; "
                                  "CREATE SCHEMA public")
                      : NULL;
    int rc = r && PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : 1;
    if (rc)
        fprintf(stderr, "ingest-bench: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* User and system time of pid (from /proc), 0 when unknown; *ppid its parent. */
static double proc_cpu_s(long pid, long *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    long parent = 0;
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &parent, &ut,
                     &st) != 3)
        return 0;
    if (ppid)
        *ppid = parent;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU of the database server that runs backend: its postmaster and every
 * process the postmaster started. */
static double pg_server_cpu_s(long backend)
{
    long pm = 0;
    if (backend <= 0 || proc_cpu_s(backend, &pm) == 0 || pm <= 1)
        return 0;
    double sum = proc_cpu_s(pm, NULL);
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        long pid = strtol(e->d_name, NULL, 10), parent = 0;
        if (pid > 0) {
            double c = proc_cpu_s(pid, &parent);
            if (parent == pm)
                sum += c;
        }
    }
    if (d)
        closedir(d);
    return sum;
}

/* Queues RATE messages a second for SECONDS, a thousandth each millisecond,
 * devices in turn; returns how many were queued. */
static long long offer(struct hub *h, long ndev, long rate, long secs)
{
    long long sent = 0, total = (long long)rate * secs;
    uint64_t *seq = calloc((size_t)ndev, sizeof(*seq));
    if (!seq)
        return 0;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    for (long ms = 1; sent < total; ms++) {
        for (long long due = (long long)rate * ms / 1000; sent < due && sent < total; sent++) {
            long d = (long)(sent % ndev);
            char id[24], payload[160];
            dev_id(id, d);
            int len =
                snprintf(payload, sizeof(payload),
                         "{\"v\":1,\"seq\":%" PRIu64 ",\"ts\":%" PRId64 ",\"body\":{\"t\":21.5}}",
                         ++seq[d], hub_now_ms());
            if (!ingest_submit(h, id, PROTO_KIND_TM, payload, (size_t)len)) {
                free(seq);
                return sent; /* the worker stopped: the run fails its count */
            }
        }
        tick.tv_nsec += 1000000;
        if (tick.tv_nsec >= 1000000000) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000;
        }
        (void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL);
    }
    free(seq);
    return sent;
}

/* One run on a fresh store (SQLite in dir, or the PostgreSQL database at
 * pg); non-zero when a message queued was not stored. */
static int run(const char *dir, const char *pg, int nrun, long ndev, long rate, long secs,
               int gather_ms)
{
    char db[600];
    struct hub h;
    memset(&h, 0, sizeof(h));
    hub_config_defaults(&h.cfg);
    h.cfg.stray_after_s = 0;
    h.cfg.rate_window_s = 0;
    h.cfg.ingest_gather_ms = gather_ms;
    h.data_lock_fd = -1;
    snprintf(h.cfg.data_dir, sizeof(h.cfg.data_dir), "%s", dir);
    snprintf(db, sizeof(db), "%s/run%d.db", dir, nrun);
    pthread_mutex_init(&h.lock, NULL);
    pthread_mutex_init(&h.live_mu, NULL);
    if ((pg && pg_reset(pg)) || store_open(pg ? pg : db, &h.store) || fleet(&h, ndev) ||
        ingest_start(&h))
        return 1;
    long backend = pg ? (long)store_scalar(h.store, "SELECT pg_backend_pid()", NULL) : 0;
    double s0 = pg_server_cpu_s(backend);
    double t0 = bench_now_s(), c0 = bench_cpu_s(), q0 = bench_thread_cpu_s();
    long long sent = offer(&h, ndev, rate, secs);
    struct ingest_stats st;
    for (double until = bench_now_s() + 60;;) { /* drained, or a minute */
        ingest_stats(&h, &st);
        if ((long long)st.messages >= sent || bench_now_s() > until)
            break;
        (void)nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    double t1 = bench_now_s(), c1 = bench_cpu_s(), q1 = bench_thread_cpu_s();
    double hub_s = (c1 - c0) - (q1 - q0); /* the process less the thread that queues */
    double server_s = pg_server_cpu_s(backend) - s0;
    ingest_stop(&h);
    long long rows = store_scalar(h.store, "SELECT count(*) FROM telemetry", NULL);
    tm_free(&h);
    free(h.live);
    store_close(h.store);
    pthread_mutex_destroy(&h.lock);
    pthread_mutex_destroy(&h.live_mu);
    char name[48];
    snprintf(name, sizeof(name), "%s gather %2d (run %d)", pg ? "pg" : "sqlite", gather_ms, nrun);
    printf("%-24s %9lld %9lld %8.0f %8" PRIu64 " %7.0f %8.2f %8.2f %8.1f %9.1f %6" PRIu64 "\n",
           name, sent, rows, (double)sent / (t1 - t0), st.batches,
           st.batches ? (double)st.messages / (double)st.batches : 0.0, q1 - q0, hub_s,
           sent ? hub_s * 1e6 / (double)sent : 0.0,
           sent ? (hub_s + server_s) * 1e6 / (double)sent : 0.0, st.failed);
    return rows == sent && st.failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp";
    long ndev = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    long rate = argc > 3 ? strtol(argv[3], NULL, 10) : 15000;
    long secs = argc > 4 ? strtol(argv[4], NULL, 10) : 5;
    long gather = argc > 5 ? strtol(argv[5], NULL, 10) : 10;
    const char *pg = argc > 6 ? argv[6] : NULL;
    char dir[512];
    if (ndev < 1 || ndev > 100000 || rate < 1 || rate > 200000 || secs < 1 || secs > 120 ||
        gather < 1 || gather > 1000 || (pg && !store_is_postgresql(pg)))
        return 2;
    snprintf(dir, sizeof(dir), "%s/mamori-ingest-bench.XXXXXX", base);
    if (!mkdtemp(dir))
        return 1;
    log_set_level(LOG_ERR);
    printf("# ingest-bench %s %ld %ld %ld %ld%s   (%ld devices, %ld msgs/s offered for %ld s; "
           "hub = the process's CPU less the queuing thread's; +db adds the database server's)\n",
           base, ndev, rate, secs, gather, pg ? " STORE" : "", ndev, rate, secs);
    printf("%-24s %9s %9s %8s %8s %7s %8s %8s %8s %9s %6s\n", "run", "queued", "rows", "msgs/s",
           "batches", "avg", "queuer s", "hub s", "us/msg", "+db us/msg", "failed");
    int bad = 0;
    for (int i = 0; i < 4; i++)
        bad |= pg ? run(dir, i % 2 ? pg : NULL, i + 1, ndev, rate, secs, (int)gather)
                  : run(dir, NULL, i + 1, ndev, rate, secs, i % 2 ? (int)gather : 0);
    bench_rm_tree(dir);
    return bad;
}
