/*
 * hub/alerts/alerts_priv.h - what the alerts room's files share: the rules
 * table, the counting windows and the delivery state. Included only by
 * hub/alerts/ sources.
 */
#ifndef MAMORI_HUB_ALERTS_PRIV_H
#define MAMORI_HUB_ALERTS_PRIV_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hub/alerts/alerts.h"

/* --- the rules ------------------------------------------------------------ */

struct rule {
    const char *name, *what;
    const char *kinds[4]; /* events that count */
    const char *type;     /* for device_event: the device's event type */
    unsigned n, window_s; /* n of them within window_s raise the alert */
    const char *severity; /* NULL: the event's own */
    const char *clears;   /* an event that resolves the device's live alert */
};
/* Counting windows of rules that need n > 1 events: a small table, keyed
 * by rule and device; a slot taken by another key starts over (lossy only
 * beyond WIN_SLOTS devices counting at the same moment). */
#define WIN_SLOTS 4096
struct win {
    const struct rule *rule;
    char dev[24];
    int64_t start;
    unsigned n;
};

#define DELIVER_BATCH 16
#define DELIVER_TRIES 8

struct alerts_state {
    struct win win[WIN_SLOTS];
    pthread_t thread;
    bool running;
    int syslog_fd; /* udp:// target (-1: none) */
    struct sockaddr_in syslog_to;
    bool syslog_local;
    int64_t data_at;   /* last data retention sweep started (ms; 0: at once) */
    bool data_pruning; /* a sweep of telemetry and events is under way */
    /* woken when something is queued, so a delivery leaves at once */
    pthread_mutex_t wake_mu;
    pthread_cond_t wake;
    bool woken;
};
extern const struct rule RULES[];
extern const size_t N_RULES;
extern const struct principal RULES_WHO;
const struct rule *alerts_rule_named(const char *name);
json_t *alerts_json(const struct alert_rec *a);
/* Queues "event" about a for every target; the delivery thread sends. */
void alerts_deliver(struct hub *h, const struct alert_rec *a, const char *event);
/* Wakes the delivery thread (something to deliver, or a response due). */
void alerts_wake(struct hub *h);

#endif
