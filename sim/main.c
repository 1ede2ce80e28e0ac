/*
 * mamori-sim - many simulated devices in one process, each with its own
 * identity and its own real mTLS connection, driven by one poll() loop.
 *
 *   mamori-sim --identities DIR [--first K] [--devices N] [--heartbeat S]
 *              [--telemetry S] [--duration S] [--status FILE]
 *              [--broker-host HOST] [--broker-port PORT] [--updates DIR]
 *              [--events MS] [--event-body JSON] [--alt-every K --alt-body JSON]
 *
 * --updates DIR gives each device a state directory and A/B update slots
 * under DIR (its identity needs update-root.json): the devices then take
 * signed updates, and a device that asks for a reboot is freed and made
 * again, which is its boot.
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
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
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

int main(int argc, char **argv)
{
    const char *dir = NULL, *status = NULL, *broker_host = NULL, *updates = NULL;
    const char *ev_body = "{\"type\":\"sim_tick\"}", *alt_body = NULL;
    int broker_port = 0;
    long n = 0, first = 0, hb = 30, tm = 0, duration = 0, ev_ms = 0, alt_every = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--identities") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--first") == 0)
            first = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--devices") == 0)
            n = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--heartbeat") == 0)
            hb = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--telemetry") == 0)
            tm = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--status") == 0)
            status = argv[i + 1];
        else if (strcmp(argv[i], "--broker-port") == 0)
            broker_port = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--broker-host") == 0)
            broker_host = argv[i + 1];
        else if (strcmp(argv[i], "--updates") == 0)
            updates = argv[i + 1];
        else if (strcmp(argv[i], "--events") == 0)
            ev_ms = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--event-body") == 0)
            ev_body = argv[i + 1];
        else if (strcmp(argv[i], "--alt-every") == 0)
            alt_every = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--alt-body") == 0)
            alt_body = argv[i + 1];
        else {
            fprintf(stderr, "mamori-sim: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!dir || n < 0 || first < 0 || hb <= 0 || hb > 3600 || tm < 0 || duration < 0 ||
        broker_port < 0 || broker_port > 65535 || ev_ms < 0 || ev_ms > 3600000 || alt_every < 0 ||
        !alt_every != !alt_body) {
        fprintf(stderr,
                "usage: mamori-sim --identities DIR [--first K] [--devices N] [--heartbeat S] "
                "[--telemetry S] [--duration S] [--status FILE]\n"
                "                  [--broker-host HOST] [--broker-port PORT] "
                "[--updates DIR]\n"
                "                  [--events MS] [--event-body JSON] "
                "[--alt-every K --alt-body JSON]\n");
        return 2;
    }
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGPIPE, SIG_IGN);
    DIR *dh = opendir(dir);
    if (!dh) {
        perror(dir);
        return 1;
    }
    size_t cap = 64, count = 0;
    char **names = malloc(cap * sizeof(*names));
    struct dirent *de;
    while (names && (de = readdir(dh)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (count == cap) {
            char **nn = realloc(names, (cap *= 2) * sizeof(*names));
            if (!nn)
                break;
            names = nn;
        }
        names[count++] = strdup(de->d_name);
    }
    closedir(dh);
    if (!names)
        return 1;
    qsort(names, count, sizeof(*names), cmp);
    char **all = names;
    size_t total = count;
    if ((size_t)first > count)
        first = (long)count;
    names += first;
    count -= (size_t)first;
    if (n == 0 || (size_t)n > count)
        n = (long)count;
    if (mamori_sdk_init())
        return 1;
    struct mamori_device **devs = calloc((size_t)n, sizeof(*devs));
    struct pollfd *pfd = calloc((size_t)n, sizeof(*pfd));
    struct mamori_device_opts *opts = calloc((size_t)n, sizeof(*opts));
    char(*paths)[3][4096] = calloc((size_t)n, sizeof(*paths));
    bool *reboot = calloc((size_t)n, sizeof(*reboot));
    uint64_t *next_ev = calloc((size_t)n, sizeof(*next_ev));
    if (!devs || !pfd || !opts || !paths || !reboot || !next_ev)
        return 1;
    long ok = 0;
    for (long i = 0; i < n; i++) {
        if (fs_path(paths[i][0], sizeof(paths[i][0]), dir, names[i]))
            continue;
        opts[i] = (struct mamori_device_opts){.identity_dir = paths[i][0],
                                              .heartbeat_interval_s = (unsigned)hb,
                                              .backoff_min_ms = 200,
                                              .backoff_max_ms = 10000,
                                              .host_override = broker_host,
                                              .port_override = broker_port,
                                              .on_command = on_command,
                                              .on_command_arg = &reboot[i]};
        if (updates) {
            snprintf(paths[i][1], sizeof(paths[i][1]), "%s/state-%s", updates, names[i]);
            snprintf(paths[i][2], sizeof(paths[i][2]), "%s/slots-%s", updates, names[i]);
            opts[i].state_dir = paths[i][1];
            opts[i].update_slots_dir = paths[i][2];
        }
        enum mamori_err rc = mamori_device_new(&opts[i], &devs[i]);
        if (rc)
            fprintf(stderr, "mamori-sim: %s: %s\n", paths[i][0], mamori_strerror(rc));
        else
            ok++;
    }
    printf("mamori-sim: running %ld devices from %s (heartbeat %ld s)\n", ok, dir, hb);
    fflush(stdout);
    uint64_t start = mamori_now_ms(), next_status = start, next_tm = start + (uint64_t)tm * 1000;
    uint64_t events_sent = 0, events_failed = 0;
    for (long i = 0; i < n; i++)
        next_ev[i] = start + (uint64_t)ev_ms * (uint64_t)i / (uint64_t)n;
    while (!g_stop && (duration == 0 || mamori_now_ms() - start < (uint64_t)duration * 1000)) {
        int timeout = ev_ms ? 20 : 1000; /* paced events are due every few ms */
        uint64_t now = mamori_now_ms();
        for (long i = 0; i < n; i++) {
            pfd[i].fd = -1;
            if (!devs[i])
                continue;
            int t = mamori_device_step(devs[i], now, false, false);
            if (t < timeout)
                timeout = t < 0 ? 0 : t;
            pfd[i].fd = mamori_device_fd(devs[i]);
            pfd[i].events = POLLIN | (mamori_device_want_write(devs[i]) ? POLLOUT : 0);
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)n, timeout) > 0) {
            now = mamori_now_ms();
            for (long i = 0; i < n; i++)
                if (devs[i] && pfd[i].fd >= 0 && pfd[i].revents)
                    (void)mamori_device_step(devs[i], now,
                                             pfd[i].revents & (POLLIN | POLLHUP | POLLERR),
                                             pfd[i].revents & POLLOUT);
        }
        /* reboots asked for by updates: the device is made again */
        for (long i = 0; i < n; i++) {
            if (!reboot[i] || !devs[i])
                continue;
            reboot[i] = false;
            /* what the device still has to say (its command result) goes
             * out first, as the agent does before it reboots */
            for (int k = 0; k < 10 && mamori_device_want_write(devs[i]); k++) {
                struct pollfd wp = {.fd = mamori_device_fd(devs[i]), .events = POLLOUT};
                if (poll(&wp, 1, 50) > 0)
                    (void)mamori_device_step(devs[i], mamori_now_ms(), false, true);
            }
            mamori_device_free(devs[i]);
            devs[i] = NULL;
            enum mamori_err rc = mamori_device_new(&opts[i], &devs[i]);
            if (rc)
                fprintf(stderr, "mamori-sim: %s: boot: %s\n", paths[i][0], mamori_strerror(rc));
        }
        now = mamori_now_ms();
        for (long i = 0; ev_ms && i < n; i++) {
            if (now < next_ev[i])
                continue;
            next_ev[i] += (uint64_t)ev_ms;
            if (next_ev[i] <= now) /* fell behind: the next period, not a burst */
                next_ev[i] = now + (uint64_t)ev_ms;
            if (!devs[i] || mamori_device_state(devs[i]) != MAMORI_DEV_CONNECTED)
                continue;
            const char *body = alt_every && i % alt_every == 0 ? alt_body : ev_body;
            if (mamori_device_send_event(devs[i], body) == MAMORI_OK)
                events_sent++;
            else
                events_failed++;
        }
        if (tm && now >= next_tm) {
            /* a device that dropped in between just misses this round */
            for (long i = 0; i < n; i++)
                if (devs[i] && mamori_device_state(devs[i]) == MAMORI_DEV_CONNECTED &&
                    mamori_device_send_telemetry(devs[i], "{\"temp_c\":21.5}") != MAMORI_OK)
                    fprintf(stderr, "mamori-sim: %s: telemetry not sent\n",
                            mamori_device_id(devs[i]));
            next_tm = now + (uint64_t)tm * 1000;
        }
        if (now >= next_status) {
            long connected = 0;
            struct mamori_device_stats s, tot = {0};
            long committed = 0;
            for (long i = 0; i < n; i++) {
                if (!devs[i])
                    continue;
                connected += mamori_device_state(devs[i]) == MAMORI_DEV_CONNECTED;
                mamori_device_get_stats(devs[i], &s);
                tot.connects += s.connects;
                tot.refused += s.refused;
                tot.disconnects += s.disconnects;
                tot.heartbeats_sent += s.heartbeats_sent;
                tot.telemetry_sent += s.telemetry_sent;
                committed += s.updates_committed;
            }
            printf("mamori-sim: %ld/%ld connected, connects %llu, refused %llu, drops %llu, "
                   "heartbeats %llu, telemetry %llu, events %llu (%llu not queued)\n",
                   connected, ok, (unsigned long long)tot.connects, (unsigned long long)tot.refused,
                   (unsigned long long)tot.disconnects, (unsigned long long)tot.heartbeats_sent,
                   (unsigned long long)tot.telemetry_sent, (unsigned long long)events_sent,
                   (unsigned long long)events_failed);
            fflush(stdout);
            if (status) {
                char js[512];
                int len = snprintf(
                    js, sizeof(js),
                    "{\"devices\":%ld,\"connected\":%ld,\"connects\":%llu,\"refused\":%llu,"
                    "\"disconnects\":%llu,\"heartbeats\":%llu,\"updates_committed\":%ld,"
                    "\"events\":%llu,\"events_failed\":%llu}\n",
                    ok, connected, (unsigned long long)tot.connects,
                    (unsigned long long)tot.refused, (unsigned long long)tot.disconnects,
                    (unsigned long long)tot.heartbeats_sent, committed,
                    (unsigned long long)events_sent, (unsigned long long)events_failed);
                if (fs_write_atomic(status, js, (size_t)len, 0644))
                    fprintf(stderr, "mamori-sim: cannot write %s\n", status);
            }
            next_status = now + 1000;
        }
    }
    for (long i = 0; i < n; i++)
        mamori_device_free(devs[i]);
    for (size_t i = 0; i < total; i++)
        free(all[i]);
    free(all);
    free(devs);
    free(pfd);
    free(opts);
    free(paths);
    free(reboot);
    free(next_ev);
    mamori_sdk_cleanup();
    return 0;
}
