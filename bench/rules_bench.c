/*
 * rules-bench - the hub's rule evaluation (hub/alerts/alerts.c) over the events of
 * N simulated devices, side by side with the same events recorded with the
 * rules off, in one process on the hub's real SQLite store (WAL,
 * synchronous=FULL, one commit per event as the hub records them). Prints
 * events/s and the process CPU of each run.
 *
 *   rules-bench [DIR=/tmp] [DEVICES=10000] [EVENTS_PER_DEVICE=5]
 *
 * Each device's events: a device_event (no rule), two broker_acl_deny (the
 * unexpected_topic rule counts them in its window), a telemetry_rejected
 * and an offline (heartbeat_loss: an alert opened). No delivery targets:
 * what is measured is the rules and the alerts they write.
 */
#define _XOPEN_SOURCE 700
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "common/log.h"
#include "hub/alerts/alerts.h"
#include "hub/core/hub.h"
#include "hub/store/store.h"

static const char *const KINDS[] = {"device_event", "broker_acl_deny", "broker_acl_deny",
                                    "telemetry_rejected", "offline"};
static const char *const SEVS[] = {"info", "warning", "warning", "alert", "alert"};

/* One run; rules: through hub_event (recorded, then the rules), else the
 * event recorded alone. */
static int run(const char *dir, const char *name, long ndev, long per, bool rules)
{
    char db[600];
    struct hub h;
    memset(&h, 0, sizeof(h));
    hub_config_defaults(&h.cfg);
    h.cfg.stray_after_s = 0;
    snprintf(h.cfg.data_dir, sizeof(h.cfg.data_dir), "%s", dir);
    snprintf(db, sizeof(db), "%s/%s.db", dir, name);
    pthread_mutex_init(&h.lock, NULL);
    pthread_mutex_init(&h.live_mu, NULL);
    if (store_open(db, &h.store))
        return 1;
    /* the rules subscribe to the hub's events (core/bus.h); the alerts
     * thread runs too, as in the hub (no targets) */
    if (rules && (alerts_register(&h) || alerts_start(&h)))
        return 1;
    double t0 = bench_now_s(), c0 = bench_cpu_s();
    long n = 0;
    for (long e = 0; e < per; e++) {
        for (long d = 0; d < ndev; d++) {
            char id[24], detail[96];
            snprintf(id, sizeof(id), "MMBENCH%011ld", d % 100000000000L);
            snprintf(detail, sizeof(detail), "{\"type\":\"bench\",\"n\":%ld}", e);
            const char *kind = KINDS[e % 5], *sev = SEVS[e % 5];
            pthread_mutex_lock(&h.lock);
            if (rules)
                hub_event(&h, id, kind, sev, "%s", detail);
            else if (store_event_add(h.store, hub_now(), id, kind, sev, detail))
                log_err("event not recorded");
            pthread_mutex_unlock(&h.lock);
            n++;
        }
    }
    double t1 = bench_now_s(), c1 = bench_cpu_s();
    int64_t alerts = 0;
    struct alert_rec a;
    if (store_alert_get(h.store, 1, &a) == MAMORI_OK) {
        /* count them: the last id is the number opened */
        for (int64_t lo = 1, hi = 10000000; lo <= hi;) {
            int64_t mid = (lo + hi) / 2;
            if (store_alert_get(h.store, mid, &a) == MAMORI_OK) {
                alerts = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
    }
    h.stopping = 1;
    alerts_stop(&h);
    store_close(h.store);
    printf("%-34s %9ld %9.1f %12.0f %11.2f %9lld\n", name, n, t1 - t0, (double)n / (t1 - t0),
           c1 - c0, (long long)alerts);
    return 0;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp";
    long ndev = argc > 2 ? strtol(argv[2], NULL, 10) : 10000;
    long per = argc > 3 ? strtol(argv[3], NULL, 10) : 5;
    char dir[512];
    if (ndev < 1 || ndev > 1000000 || per < 1 || per > 100)
        return 2;
    snprintf(dir, sizeof(dir), "%s/mamori-rules-bench.XXXXXX", base);
    if (!mkdtemp(dir))
        return 1;
    log_set_level(LOG_ERR); /* the hub logs every alert; not what is measured */
    printf("# rules-bench %s %ld %ld   (%ld devices x %ld events; one commit per event)\n", base,
           ndev, per, ndev, per);
    printf("%-34s %9s %9s %12s %11s %9s\n", "run", "events", "seconds", "events/s", "CPU s",
           "alerts");
    int bad = run(dir, "rules off (events recorded only)", ndev, per, false) ||
              run(dir, "rules on (14 rules, alerts)", ndev, per, true) ||
              run(dir, "rules off (again)", ndev, per, false) ||
              run(dir, "rules on (again)", ndev, per, true);
    bench_rm_tree(dir);
    return bad;
}
