/*
 * mamori-sim - many simulated devices in one process, each with its own
 * identity and its own real mTLS connection, driven by one poll() loop.
 *
 *   mamori-sim --identities DIR [--first K] [--devices N] [--heartbeat S]
 *              [--telemetry S] [--telemetry-ms MS [--telemetry-count K]]
 *              [--duration S] [--status FILE]
 *              [--broker-host HOST] [--broker-port PORT] [--state DIR] [--updates DIR]
 *              [--events MS] [--event-body JSON] [--alt-every K --alt-body JSON]
 *
 * --state DIR gives each device a state directory under DIR (its outbox is
 * kept there and sent again until the hub acknowledges it, as on a real
 * device); without it, a reading is sent once, and only while connected.
 *
 * --updates DIR gives each device a state directory and A/B update slots
 * under DIR (its identity needs update-root.json): the devices then take
 * signed updates, and a device that asks for a reboot is freed and made
 * again, which is its boot.
 *
 * --telemetry-ms MS has each device queue a reading ({"temp_c":21.5}) every
 * MS milliseconds, the devices spread evenly over the period (with --state,
 * whether or not it is connected at that moment: its outbox keeps it); with
 * --telemetry-count K each stops after K readings. The status
 * JSON then says how many readings the devices took, how many wait in
 * their outboxes, how many they dropped, and the sum of their highest
 * acknowledged sequence numbers.
 *
 * --events MS has each connected device send a device event (--event-body,
 * default {"type":"sim_tick"}) every MS milliseconds, the devices spread
 * evenly over the period (a steady load, not bursts); with --alt-every K
 * every K-th device sends --alt-body instead (a mixed fleet).
 *
 * DIR holds identity directories (as written by `mamorictl factory batch`);
 * in name order, from the K-th (0: the first) N of them (default all) are
 * run: a large fleet is split over several processes, each within its
 * open-file limit (three descriptors per device). Every second a status line is printed
 * (and written to --status FILE as JSON, for tests and scripts).
 */
#include <dirent.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "mamori/device.h"

static volatile sig_atomic_t g_stop;

static void on_sig(int s)
{
    (void)s;
    g_stop = 1;
}

/* A device's reboot: set by its on_command, done by the main loop. */
static void on_command(struct mamori_device *dev, enum mamori_command c, void *arg)
{
    (void)dev;
    if (c == MAMORI_CMD_UPDATE || c == MAMORI_CMD_REBOOT)
        *(bool *)arg = true;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the command line ---- */

struct sim_opts {
    const char *dir, *status, *broker_host, *updates, *state, *ev_body, *alt_body;
    long n, first, hb, tm, duration, broker_port, ev_ms, alt_every, tm_ms, tm_count;
};

/* --NAME VALUE: where the value goes, as text or as a number (strtol). */
static const struct sim_opt {
    const char *name;
    size_t off;
    bool number;
} OPTS[] = {
    {"identities", offsetof(struct sim_opts, dir), false},
    {"first", offsetof(struct sim_opts, first), true},
    {"devices", offsetof(struct sim_opts, n), true},
    {"heartbeat", offsetof(struct sim_opts, hb), true},
    {"telemetry", offsetof(struct sim_opts, tm), true},
    {"telemetry-ms", offsetof(struct sim_opts, tm_ms), true},
    {"telemetry-count", offsetof(struct sim_opts, tm_count), true},
    {"duration", offsetof(struct sim_opts, duration), true},
    {"status", offsetof(struct sim_opts, status), false},
    {"broker-port", offsetof(struct sim_opts, broker_port), true},
    {"broker-host", offsetof(struct sim_opts, broker_host), false},
    {"updates", offsetof(struct sim_opts, updates), false},
    {"state", offsetof(struct sim_opts, state), false},
    {"events", offsetof(struct sim_opts, ev_ms), true},
    {"event-body", offsetof(struct sim_opts, ev_body), false},
    {"alt-every", offsetof(struct sim_opts, alt_every), true},
    {"alt-body", offsetof(struct sim_opts, alt_body), false},
};
#define N_OPTS (sizeof(OPTS) / sizeof(OPTS[0]))

static const char USAGE[] =
    "usage: mamori-sim --identities DIR [--first K] [--devices N] [--heartbeat S] "
    "[--telemetry S] [--telemetry-ms MS [--telemetry-count K]] [--duration S] [--status FILE]\n"
    "                  [--broker-host HOST] [--broker-port PORT] "
    "[--state DIR] [--updates DIR]\n"
    "                  [--events MS] [--event-body JSON] "
    "[--alt-every K --alt-body JSON]\n";

static void set_opt(struct sim_opts *o, const struct sim_opt *d, const char *v)
{
    char *p = (char *)o + d->off;
    if (d->number)
        *(long *)(void *)p = strtol(v, NULL, 10);
    else
        *(const char **)(void *)p = v;
}

/* Options in pairs, --NAME VALUE, each written out in full; a last word
 * with nothing after it is not read. Exit status 2 when the command line
 * is wrong (said), else -1. */
static int parse_opts(int argc, char **argv, struct sim_opts *o)
{
    struct option lo[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++)
        lo[i] = (struct option){OPTS[i].name, required_argument, NULL, 256 + (int)i};
    lo[N_OPTS] = (struct option){NULL, 0, NULL, 0};
    *o = (struct sim_opts){.ev_body = "{\"type\":\"sim_tick\"}", .hb = 30};
    opterr = 0;
    while (optind + 1 < argc) {
        const char *w = argv[optind];
        int idx = -1, ch = getopt_long(argc, argv, "-", lo, &idx);
        if (ch < 256 || idx < 0 || strncmp(w, "--", 2) != 0 || strcmp(w + 2, OPTS[idx].name)) {
            fprintf(stderr, "mamori-sim: unknown option %s\n", w);
            return 2;
        }
        set_opt(o, &OPTS[idx], optarg);
    }
    int port = (int)o->broker_port;
    if (!o->dir || o->n < 0 || o->first < 0 || o->hb <= 0 || o->hb > 3600 || o->tm < 0 ||
        o->duration < 0 || port < 0 || port > 65535 || o->ev_ms < 0 || o->ev_ms > 3600000 ||
        o->alt_every < 0 || !o->alt_every != !o->alt_body || o->tm_ms < 0 || o->tm_ms > 3600000 ||
        o->tm_count < 0) {
        fputs(USAGE, stderr);
        return 2;
    }
    return -1;
}

/* The names in dir (hidden ones aside), sorted; NULL when dir cannot be
 * read (said) or memory runs out. */
static char **list_identities(const char *dir, size_t *count)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        perror(dir);
        return NULL;
    }
    size_t cap = 64;
    char **names = malloc(cap * sizeof(*names));
    struct dirent *de;
    *count = 0;
    while (names && (de = readdir(dh)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (*count == cap) {
            char **nn = realloc(names, (cap *= 2) * sizeof(*names));
            if (!nn)
                break;
            names = nn;
        }
        names[(*count)++] = strdup(de->d_name);
    }
    closedir(dh);
    if (names)
        qsort(names, *count, sizeof(*names), cmp);
    return names;
}

/* ---- the fleet ---- */

struct fleet {
    long n, ok; /* devices run, and made at the start */
    struct mamori_device **devs;
    struct pollfd *pfd;
    struct mamori_device_opts *opts;
    char (*paths)[3][4096]; /* identity, state, slots */
    bool *reboot;
    uint64_t *next_ev, *next_tm;
    long *tm_left; /* --telemetry-count: readings still to take (-1: no end) */
    uint64_t events_sent, events_failed;
};

static bool fleet_alloc(struct fleet *f, long n)
{
    *f = (struct fleet){.n = n};
    f->devs = calloc((size_t)n, sizeof(*f->devs));
    f->pfd = calloc((size_t)n, sizeof(*f->pfd));
    f->opts = calloc((size_t)n, sizeof(*f->opts));
    f->paths = calloc((size_t)n, sizeof(*f->paths));
    f->reboot = calloc((size_t)n, sizeof(*f->reboot));
    f->next_ev = calloc((size_t)n, sizeof(*f->next_ev));
    f->next_tm = calloc((size_t)n, sizeof(*f->next_tm));
    f->tm_left = calloc((size_t)n, sizeof(*f->tm_left));
    return f->devs && f->pfd && f->opts && f->paths && f->reboot && f->next_ev && f->next_tm &&
           f->tm_left;
}

static void fleet_free(struct fleet *f)
{
    for (long i = 0; i < f->n; i++)
        mamori_device_free(f->devs[i]);
    free(f->devs);
    free(f->pfd);
    free(f->opts);
    free(f->paths);
    free(f->reboot);
    free(f->next_ev);
    free(f->next_tm);
    free(f->tm_left);
}

/* Makes device i of names[i] under o->dir (with its update state and slots
 * under o->updates). */
static void fleet_start(struct fleet *f, const struct sim_opts *o, char **names)
{
    for (long i = 0; i < f->n; i++) {
        if (fs_path(f->paths[i][0], sizeof(f->paths[i][0]), o->dir, names[i]))
            continue;
        f->opts[i] = (struct mamori_device_opts){.identity_dir = f->paths[i][0],
                                                 .heartbeat_interval_s = (unsigned)o->hb,
                                                 .backoff_min_ms = 200,
                                                 .backoff_max_ms = 10000,
                                                 .host_override = o->broker_host,
                                                 .port_override = (int)o->broker_port,
                                                 .on_command = on_command,
                                                 .on_command_arg = &f->reboot[i]};
        if (o->state && !o->updates) { /* a state directory: the outbox is kept */
            snprintf(f->paths[i][1], sizeof(f->paths[i][1]), "%s/state-%s", o->state, names[i]);
            f->opts[i].state_dir = f->paths[i][1];
        }
        if (o->updates) {
            snprintf(f->paths[i][1], sizeof(f->paths[i][1]), "%s/state-%s", o->updates, names[i]);
            snprintf(f->paths[i][2], sizeof(f->paths[i][2]), "%s/slots-%s", o->updates, names[i]);
            f->opts[i].state_dir = f->paths[i][1];
            f->opts[i].update_slots_dir = f->paths[i][2];
        }
        enum mamori_err rc = mamori_device_new(&f->opts[i], &f->devs[i]);
        if (rc)
            fprintf(stderr, "mamori-sim: %s: %s\n", f->paths[i][0], mamori_strerror(rc));
        else
            f->ok++;
    }
}

/* One step of every device, then one poll() over them all. */
static void fleet_step(struct fleet *f, bool paced)
{
    int timeout = paced ? 20 : 1000; /* paced events and readings are due every few ms */
    uint64_t now = mamori_now_ms();
    for (long i = 0; i < f->n; i++) {
        f->pfd[i].fd = -1;
        if (!f->devs[i])
            continue;
        int t = mamori_device_step(f->devs[i], now, false, false);
        if (t < timeout)
            timeout = t < 0 ? 0 : t;
        f->pfd[i].fd = mamori_device_fd(f->devs[i]);
        f->pfd[i].events = POLLIN | (mamori_device_want_write(f->devs[i]) ? POLLOUT : 0);
        f->pfd[i].revents = 0;
    }
    if (poll(f->pfd, (nfds_t)f->n, timeout) > 0) {
        now = mamori_now_ms();
        for (long i = 0; i < f->n; i++)
            if (f->devs[i] && f->pfd[i].fd >= 0 && f->pfd[i].revents)
                (void)mamori_device_step(f->devs[i], now,
                                         f->pfd[i].revents & (POLLIN | POLLHUP | POLLERR),
                                         f->pfd[i].revents & POLLOUT);
    }
}

/* Reboots asked for by updates: the device is made again. */
static void fleet_reboot(struct fleet *f)
{
    for (long i = 0; i < f->n; i++) {
        if (!f->reboot[i] || !f->devs[i])
            continue;
        f->reboot[i] = false;
        /* what the device still has to say (its command result) goes
         * out first, as the agent does before it reboots */
        for (int k = 0; k < 10 && mamori_device_want_write(f->devs[i]); k++) {
            struct pollfd wp = {.fd = mamori_device_fd(f->devs[i]), .events = POLLOUT};
            if (poll(&wp, 1, 50) > 0)
                (void)mamori_device_step(f->devs[i], mamori_now_ms(), false, true);
        }
        mamori_device_free(f->devs[i]);
        f->devs[i] = NULL;
        enum mamori_err rc = mamori_device_new(&f->opts[i], &f->devs[i]);
        if (rc)
            fprintf(stderr, "mamori-sim: %s: boot: %s\n", f->paths[i][0], mamori_strerror(rc));
    }
}

/* The device events due by now, each device on its own schedule. */
static void fleet_events(struct fleet *f, const struct sim_opts *o, uint64_t now)
{
    for (long i = 0; o->ev_ms && i < f->n; i++) {
        if (now < f->next_ev[i])
            continue;
        f->next_ev[i] += (uint64_t)o->ev_ms;
        if (f->next_ev[i] <= now) /* fell behind: the next period, not a burst */
            f->next_ev[i] = now + (uint64_t)o->ev_ms;
        if (!f->devs[i] || mamori_device_state(f->devs[i]) != MAMORI_DEV_CONNECTED)
            continue;
        const char *body = o->alt_every && i % o->alt_every == 0 ? o->alt_body : o->ev_body;
        if (mamori_device_send_event(f->devs[i], body) == MAMORI_OK)
            f->events_sent++;
        else
            f->events_failed++;
    }
}

/* --telemetry-ms: each device's readings on its own schedule, queued
 * whether connected or not (the outbox keeps them). */
static void fleet_readings(struct fleet *f, const struct sim_opts *o, uint64_t now)
{
    for (long i = 0; o->tm_ms && i < f->n; i++) {
        if (!f->devs[i] || now < f->next_tm[i] || f->tm_left[i] == 0)
            continue;
        f->next_tm[i] += (uint64_t)o->tm_ms;
        if (f->next_tm[i] <= now) /* fell behind: the next period, not a burst */
            f->next_tm[i] = now + (uint64_t)o->tm_ms;
        if (mamori_device_send_telemetry(f->devs[i], "{\"temp_c\":21.5}") == MAMORI_OK) {
            if (f->tm_left[i] > 0)
                f->tm_left[i]--;
        } else {
            fprintf(stderr, "mamori-sim: %s: reading not queued\n", mamori_device_id(f->devs[i]));
        }
    }
}

static void fleet_telemetry(struct fleet *f)
{
    /* a device that dropped in between just misses this round */
    for (long i = 0; i < f->n; i++)
        if (f->devs[i] && mamori_device_state(f->devs[i]) == MAMORI_DEV_CONNECTED &&
            mamori_device_send_telemetry(f->devs[i], "{\"temp_c\":21.5}") != MAMORI_OK)
            fprintf(stderr, "mamori-sim: %s: telemetry not sent\n", mamori_device_id(f->devs[i]));
}

/* The status line on stdout, and as JSON in status (when given). */
static void fleet_status(const struct fleet *f, const char *status)
{
    long connected = 0;
    struct mamori_device_stats s, tot = {0};
    long committed = 0;
    for (long i = 0; i < f->n; i++) {
        if (!f->devs[i])
            continue;
        connected += mamori_device_state(f->devs[i]) == MAMORI_DEV_CONNECTED;
        mamori_device_get_stats(f->devs[i], &s);
        tot.connects += s.connects;
        tot.refused += s.refused;
        tot.disconnects += s.disconnects;
        tot.heartbeats_sent += s.heartbeats_sent;
        tot.telemetry_sent += s.telemetry_sent;
        tot.outbox_queued += s.outbox_queued;
        tot.outbox_dropped += s.outbox_dropped;
        tot.acked += s.acked;
        committed += s.updates_committed;
    }
    printf("mamori-sim: %ld/%ld connected, connects %llu, refused %llu, drops %llu, "
           "heartbeats %llu, telemetry %llu, events %llu (%llu not queued)\n",
           connected, f->ok, (unsigned long long)tot.connects, (unsigned long long)tot.refused,
           (unsigned long long)tot.disconnects, (unsigned long long)tot.heartbeats_sent,
           (unsigned long long)tot.telemetry_sent, (unsigned long long)f->events_sent,
           (unsigned long long)f->events_failed);
    fflush(stdout);
    if (!status)
        return;
    char js[768];
    int len = snprintf(
        js, sizeof(js),
        "{\"devices\":%ld,\"connected\":%ld,\"connects\":%llu,\"refused\":%llu,"
        "\"disconnects\":%llu,\"heartbeats\":%llu,\"updates_committed\":%ld,"
        "\"events\":%llu,\"events_failed\":%llu,\"telemetry\":%llu,"
        "\"outbox_queued\":%llu,\"outbox_dropped\":%llu,\"acked\":%llu}\n",
        f->ok, connected, (unsigned long long)tot.connects, (unsigned long long)tot.refused,
        (unsigned long long)tot.disconnects, (unsigned long long)tot.heartbeats_sent, committed,
        (unsigned long long)f->events_sent, (unsigned long long)f->events_failed,
        (unsigned long long)tot.telemetry_sent, (unsigned long long)tot.outbox_queued,
        (unsigned long long)tot.outbox_dropped, (unsigned long long)tot.acked);
    if (fs_write_atomic(status, js, (size_t)len, 0644))
        fprintf(stderr, "mamori-sim: cannot write %s\n", status);
}

/* Runs the fleet until a signal, or for o->duration seconds. */
static void fleet_run(struct fleet *f, const struct sim_opts *o)
{
    uint64_t start = mamori_now_ms(), next_status = start, next_tm = start + (uint64_t)o->tm * 1000;
    for (long i = 0; i < f->n; i++) {
        f->next_ev[i] = start + (uint64_t)o->ev_ms * (uint64_t)i / (uint64_t)f->n;
        f->next_tm[i] = start + (uint64_t)o->tm_ms * (uint64_t)i / (uint64_t)f->n;
        f->tm_left[i] = o->tm_count ? o->tm_count : -1;
    }
    while (!g_stop &&
           (o->duration == 0 || mamori_now_ms() - start < (uint64_t)o->duration * 1000)) {
        fleet_step(f, o->ev_ms || o->tm_ms);
        fleet_reboot(f);
        uint64_t now = mamori_now_ms();
        fleet_events(f, o, now);
        fleet_readings(f, o, now);
        if (o->tm && now >= next_tm) {
            fleet_telemetry(f);
            next_tm = now + (uint64_t)o->tm * 1000;
        }
        if (now >= next_status) {
            fleet_status(f, o->status);
            next_status = now + 1000;
        }
    }
}

int main(int argc, char **argv)
{
    struct sim_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGPIPE, SIG_IGN);
    size_t total = 0;
    char **all = list_identities(o.dir, &total);
    if (!all)
        return 1;
    /* from the K-th, N of them (0: all) */
    size_t first = (size_t)o.first > total ? total : (size_t)o.first;
    size_t count = total - first;
    long n = o.n == 0 || (size_t)o.n > count ? (long)count : o.n;
    if (mamori_sdk_init())
        return 1;
    struct fleet f;
    if (!fleet_alloc(&f, n))
        return 1;
    fleet_start(&f, &o, all + first);
    printf("mamori-sim: running %ld devices from %s (heartbeat %ld s)\n", f.ok, o.dir, o.hb);
    fflush(stdout);
    fleet_run(&f, &o);
    fleet_free(&f);
    for (size_t i = 0; i < total; i++)
        free(all[i]);
    free(all);
    mamori_sdk_cleanup();
    return 0;
}
