/*
 * mqtt-bench - load generator for bench/run-all.sh. Every client is a real
 * device identity (its own key and certificate) on its own mutual-TLS
 * connection, through libmosquitto. Loopback only; every loop is bounded in
 * count and time.
 *
 *   mqtt-bench connect IDDIR N THREADS PORT        full mTLS connect rate (to CONNACK)
 *   mqtt-bench publish IDDIR N QOS MSGS PORT       N connected clients publish MSGS each
 *   mqtt-bench hold    IDDIR N SECONDS PORT        hold N connections (for RSS readings)
 *   mqtt-bench stream  IDDIR N RATE SECONDS PORT [FIRST]
 *                                                  N clients send protocol telemetry (QoS 1,
 *                                                  envelopes with sequence numbers) at RATE
 *                                                  messages/s in all for SECONDS; each reads the
 *                                                  hub's acknowledgements on its cmd topic. The
 *                                                  identities FIRST.. of IDDIR (default 0), so
 *                                                  that several processes share a fleet;
 *                                                  MQTT_BENCH_KIND=ev: device events instead
 *   mqtt-bench revoke  IDDIR N PORT API CA TOKEN   revoke N devices one by one through the
 *                                                  API, time until each is disconnected
 */
#include <curl/curl.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/json.h"

#define DEADLINE_S 600 /* every phase stops after this, whatever happened */

struct cl {
    struct mosquitto *m;
    char id[32];
    volatile int connected, refused, lost;
    int acked;
    double t_lost;
    /* stream: sequence numbers base+1.. sent; the hub's highest ack */
    uint64_t base, next, hub_ack;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_connect(struct mosquitto *m, void *a, int rc)
{
    (void)m;
    struct cl *c = a;
    if (rc == 0)
        c->connected = 1;
    else
        c->refused = 1;
}

static void on_disconnect(struct mosquitto *m, void *a, int rc)
{
    (void)m;
    (void)rc;
    struct cl *c = a;
    if (c->connected && !c->lost) {
        c->lost = 1;
        c->t_lost = now_s();
    }
}

static void on_publish(struct mosquitto *m, void *a, int mid)
{
    (void)m;
    (void)mid;
    ((struct cl *)a)->acked++;
}

/* stream: what the clients send (MQTT_BENCH_KIND): telemetry, or device
 * events in the mix of bench/rules-mqtt.sh (1 client in 10 sends one that
 * matches a rule, config_drift; the rest a benign one). */
static const char *g_kind = "tm";

/* stream: the hub's acknowledgement {"v":1,"ack":{"tm":N,"ev":N,...}} on cmd */
static void on_message(struct mosquitto *m, void *a, const struct mosquitto_message *msg)
{
    (void)m;
    struct cl *c = a;
    json_t *j = NULL;
    uint64_t n = 0;
    if (json_parse_untrusted(msg->payload, (size_t)msg->payloadlen, 4096, &j, NULL, 0))
        return;
    if (json_get_u64(json_object_get(j, "ack"), g_kind, &n) && n > c->hub_ack)
        c->hub_ack = n;
    json_decref(j);
}

static const char *g_dir;
static int g_first; /* the first identity of IDDIR this process uses */
static int g_port;

static int setup(struct cl *c, int i)
{
    char d[4096], p[4096], crt[4096], key[4096], ca[4096], *txt = NULL;
    size_t len;
    json_t *j = NULL;
    const char *id;
    snprintf(d, sizeof(d), "%s/dev-%05d", g_dir, g_first + i);
    if (fs_path(p, sizeof(p), d, "device.json") || fs_read_file(p, 4096, &txt, &len) ||
        json_parse_untrusted(txt, len, 4096, &j, NULL, 0) ||
        !json_get_str(j, "device_id", 31, &id)) {
        free(txt);
        json_decref(j);
        return -1;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    free(txt);
    json_decref(j);
    if (fs_path(crt, sizeof(crt), d, "device.crt") || fs_path(key, sizeof(key), d, "device.key") ||
        fs_path(ca, sizeof(ca), d, "ca.crt"))
        return -1;
    c->m = mosquitto_new(c->id, true, c);
    if (!c->m)
        return -1;
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    if (mosquitto_tls_set(c->m, ca, NULL, crt, key, NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    return 0;
}

/* Connects (blocking TCP + TLS) and drives the socket until CONNACK. With
 * poll, not mosquitto_loop(): that one uses select(), which cannot watch a
 * descriptor above FD_SETSIZE (1024), and thousands of clients go above. */
static int connect_one(struct cl *c)
{
    if (mosquitto_connect(c->m, "127.0.0.1", g_port, 60) != MOSQ_ERR_SUCCESS)
        return -1;
    double end = now_s() + 10;
    while (!c->connected && !c->refused && now_s() < end) {
        struct pollfd p = {.fd = mosquitto_socket(c->m), .events = POLLIN};
        if (p.fd < 0)
            break;
        if (mosquitto_want_write(c->m))
            p.events |= POLLOUT;
        poll(&p, 1, 50);
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) &&
            mosquitto_loop_read(c->m, 1) != MOSQ_ERR_SUCCESS)
            break;
        if ((p.revents & POLLOUT) && mosquitto_loop_write(c->m, 1) != MOSQ_ERR_SUCCESS)
            break;
    }
    return c->connected ? 0 : -1;
}

/* Drives every client's socket once (poll over all of them). */
static void pump(struct cl *cs, int n, struct pollfd *pf, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        pf[i].fd = cs[i].m ? mosquitto_socket(cs[i].m) : -1;
        pf[i].events = POLLIN | (cs[i].m && mosquitto_want_write(cs[i].m) ? POLLOUT : 0);
        pf[i].revents = 0;
    }
    poll(pf, (nfds_t)n, timeout_ms);
    for (int i = 0; i < n; i++) {
        if (!cs[i].m || pf[i].fd < 0)
            continue;
        if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
            mosquitto_loop_read(cs[i].m, 1);
        if (pf[i].revents & POLLOUT)
            mosquitto_loop_write(cs[i].m, 1);
        mosquitto_loop_misc(cs[i].m);
    }
}

/* Connects n clients one after the other; the ones already connected are
 * kept serviced (keepalive) while the rest come up. */
static int connect_all(struct cl *cs, int n, struct pollfd *pf)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (setup(&cs[i], i) == 0 && connect_one(&cs[i]) == 0)
            ok++;
        if (i % 100 == 99)
            pump(cs, i + 1, pf, 0);
    }
    return ok;
}

/* n clients, connected one after the other, and their poll slots. */
struct fleet {
    struct cl *cs;
    struct pollfd *pf;
    int n, ok;
};

static int fleet_open(struct fleet *f, int n)
{
    f->n = n;
    f->cs = calloc((size_t)n, sizeof(*f->cs));
    f->pf = calloc((size_t)n, sizeof(*f->pf));
    if (!f->cs || !f->pf) {
        free(f->cs);
        free(f->pf);
        return -1;
    }
    f->ok = connect_all(f->cs, n, f->pf);
    return 0;
}

static void fleet_close(struct fleet *f)
{
    for (int i = 0; i < f->n; i++)
        if (f->cs && f->cs[i].m)
            mosquitto_destroy(f->cs[i].m);
    free(f->cs);
    free(f->pf);
}

struct conn_job {
    int from, to;
    double *lat;
    int ok;
};

static void *conn_worker(void *arg)
{
    struct conn_job *j = arg;
    for (int i = j->from; i < j->to; i++) {
        struct cl c;
        memset(&c, 0, sizeof(c));
        if (setup(&c, i) == 0) {
            double t0 = now_s();
            if (connect_one(&c) == 0) {
                j->lat[i] = now_s() - t0;
                j->ok++;
            }
            mosquitto_disconnect(c.m);
            mosquitto_loop_write(c.m, 1);
        }
        if (c.m)
            mosquitto_destroy(c.m);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void percentiles(double *v, int n, const char *what)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    if (n)
        printf("%s p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", what, v[n / 2] * 1e3,
               v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1] * 1e3, v[n - 1] * 1e3);
}

static int cmd_connect(int n, int threads)
{
    double *lat = calloc((size_t)n, sizeof(double));
    pthread_t th[64];
    struct conn_job jobs[64];
    if (!lat || threads < 1 || threads > 64)
        return 2;
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        jobs[t] =
            (struct conn_job){.from = n * t / threads, .to = n * (t + 1) / threads, .lat = lat};
        pthread_create(&th[t], NULL, conn_worker, &jobs[t]);
    }
    int ok = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        ok += jobs[t].ok;
    }
    double el = now_s() - t0;
    printf("connect: %d/%d ok in %.2f s = %.0f connects/s (%d threads)\n", ok, n, el, ok / el,
           threads);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (lat[i] > 0)
            lat[k++] = lat[i];
    percentiles(lat, k, "connect latency");
    free(lat);
    return ok == n ? 0 : 1;
}

static int cmd_publish(int n, int qos, int msgs)
{
    struct fleet f;
    if (fleet_open(&f, n))
        return 2;
    struct cl *cs = f.cs;
    struct pollfd *pf = f.pf;
    int ok = f.ok;
    printf("publish: %d/%d clients connected\n", ok, n);
    char topic[96], payload[128];
    double t0 = now_s(), deadline = t0 + DEADLINE_S;
    long sent = 0;
    for (int r = 0; r < msgs; r++) {
        for (int i = 0; i < n; i++) {
            if (!cs[i].connected || cs[i].lost)
                continue;
            snprintf(topic, sizeof(topic), "mamori/v1/d/%s/tm", cs[i].id);
            int len = snprintf(payload, sizeof(payload),
                               "{\"v\":1,\"seq\":%d,\"ts\":1,\"body\":{\"t\":21.5}}", r);
            if (mosquitto_publish(cs[i].m, NULL, topic, len, payload, qos, false) ==
                MOSQ_ERR_SUCCESS)
                sent++;
        }
        pump(cs, n, pf, 0);
    }
    /* Drain: QoS 1 until every PUBACK is in; QoS 0 until every socket has
     * flushed, then one QoS 1 barrier per client (the broker has processed
     * everything before it). */
    if (qos == 0) {
        for (int i = 0; i < n; i++)
            if (cs[i].connected && !cs[i].lost) {
                snprintf(topic, sizeof(topic), "mamori/v1/d/%s/hb", cs[i].id);
                mosquitto_publish(cs[i].m, NULL, topic, 2, "{}", 1, false);
            }
    }
    long want_acks = qos ? sent : ok;
    for (;;) {
        long acked = 0;
        for (int i = 0; i < n; i++)
            acked += cs[i].acked;
        if (acked >= want_acks || now_s() > deadline)
            break;
        pump(cs, n, pf, 5);
    }
    double el = now_s() - t0;
    long lost = 0;
    for (int i = 0; i < n; i++)
        lost += cs[i].lost;
    printf("publish: QoS%d %ld messages from %d clients in %.2f s = %.0f msgs/s (%ld clients "
           "dropped)\n",
           qos, sent, ok, el, sent / el, lost);
    fleet_close(&f);
    return 0;
}

static int cmd_hold(int n, int seconds)
{
    struct fleet f;
    if (fleet_open(&f, n))
        return 2;
    struct cl *cs = f.cs;
    struct pollfd *pf = f.pf;
    int ok = f.ok;
    printf("hold: %d/%d connected\n", ok, n);
    fflush(stdout);
    double end = now_s() + (seconds < DEADLINE_S ? seconds : DEADLINE_S);
    while (now_s() < end)
        pump(cs, n, pf, 200);
    fleet_close(&f);
    return 0;
}

static size_t sink(char *p, size_t s, size_t n, void *a)
{
    (void)p;
    (void)a;
    return s * n;
}

static int cmd_revoke(int n, const char *api, const char *ca, const char *token)
{
    struct fleet f;
    double *lat = calloc((size_t)n, sizeof(double));
    if (!lat || fleet_open(&f, n))
        return 2;
    struct cl *cs = f.cs;
    struct pollfd *pf = f.pf;
    int ok = f.ok;
    printf("revoke: %d/%d connected\n", ok, n);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[160], url[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"reason\":\"benchmark\"}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    int measured = 0;
    for (int i = 0; i < n; i++) {
        if (!cs[i].connected)
            continue;
        snprintf(url, sizeof(url), "%s/api/v1/devices/%s/revoke", api, cs[i].id);
        curl_easy_setopt(c, CURLOPT_URL, url);
        double t0 = now_s();
        /* The API call and the disconnect race: keep pumping the client
         * while the request is in flight, on this thread, in small steps. */
        if (curl_easy_perform(c) != CURLE_OK)
            continue;
        double end = t0 + 5;
        while (!cs[i].lost && now_s() < end)
            pump(&cs[i], 1, &pf[i], 1);
        if (cs[i].lost) {
            lat[measured++] = (cs[i].t_lost > t0 ? cs[i].t_lost : now_s()) - t0;
        }
        pump(cs, n, pf, 0); /* keep the others alive */
    }
    printf("revoke: %d/%d disconnected after revocation\n", measured, ok);
    percentiles(lat, measured, "revocation-to-disconnect (API call start to socket closed)");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    fleet_close(&f);
    free(lat);
    return 0;
}

/* Sums the clients' sent and acknowledged telemetry. */
static void stream_totals(const struct cl *cs, int n, uint64_t *sent, uint64_t *acked)
{
    *sent = *acked = 0;
    for (int i = 0; i < n; i++) {
        *sent += cs[i].next - cs[i].base;
        *acked += cs[i].hub_ack > cs[i].base ? cs[i].hub_ack - cs[i].base : 0;
    }
}

/* n clients send rate messages/s in all for secs seconds, paced in 10 ms
 * steps, round robin; then up to 10 s more for the acknowledgements. The
 * sequence numbers start above the clock in ms, so a later run (the hub
 * keeps each device's last one) never looks like a replay. */
static int cmd_stream(int n, long rate, int secs)
{
    struct fleet f;
    if (rate < 1 || secs < 1 || secs > DEADLINE_S || fleet_open(&f, n))
        return 2;
    struct cl *cs = f.cs;
    char topic[96], payload[256];
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t base = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
    for (int i = 0; i < n; i++) {
        cs[i].base = cs[i].next = base;
        snprintf(topic, sizeof(topic), "mamori/v1/d/%s/cmd", cs[i].id);
        if (cs[i].connected)
            mosquitto_subscribe(cs[i].m, NULL, topic, 1);
    }
    pump(cs, n, f.pf, 100);
    printf("stream: %d/%d clients connected; %ld msgs/s for %d s\n", f.ok, n, rate, secs);
    /* Several processes sharing a fleet start together: each waits for
     * the file its script creates once every process is connected. */
    const char *go = getenv("MQTT_BENCH_START_FILE");
    for (double until = now_s() + DEADLINE_S; go && access(go, F_OK) != 0 && now_s() < until;)
        pump(cs, n, f.pf, 20);
    double t0 = now_s(), end = t0 + secs;
    long due = 0, done = 0;
    int rr = 0;
    while (now_s() < end) {
        due = (long)((now_s() - t0) * (double)rate);
        for (; done < due; done++, rr = (rr + 1) % n) {
            struct cl *c = &cs[rr];
            if (!c->connected || c->lost)
                continue;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            snprintf(topic, sizeof(topic), "mamori/v1/d/%s/%s", c->id, g_kind);
            const char *body = strcmp(g_kind, "ev") != 0 ? "{\"t\":21.5}"
                               : rr % 10 == 0
                                   ? "{\"type\":\"config_changed\",\"path\":\"/etc/app.conf\","
                                     "\"old\":\"0a1b2c3d\",\"new\":\"4e5f6a7b\"}"
                                   : "{\"type\":\"sim_tick\"}";
            int len =
                snprintf(payload, sizeof(payload), "{\"v\":1,\"seq\":%llu,\"ts\":%lld,\"body\":%s}",
                         (unsigned long long)(c->next + 1), ms, body);
            if (mosquitto_publish(c->m, NULL, topic, len, payload, 1, false) == MOSQ_ERR_SUCCESS)
                c->next++;
        }
        pump(cs, n, f.pf, 10);
    }
    double el = now_s() - t0;
    uint64_t sent, acked;
    stream_totals(cs, n, &sent, &acked);
    uint64_t acked_in = acked;
    for (double until = now_s() + 10; acked < sent && now_s() < until;) {
        pump(cs, n, f.pf, 20);
        stream_totals(cs, n, &sent, &acked);
    }
    long lost = 0;
    for (int i = 0; i < n; i++)
        lost += cs[i].lost;
    printf("stream: sent %llu in %.1f s = %.0f msgs/s; acknowledged by the hub within the window "
           "%llu = %.0f msgs/s, after it %llu (%ld clients dropped)\n",
           (unsigned long long)sent, el, (double)sent / el, (unsigned long long)acked_in,
           (double)acked_in / el, (unsigned long long)acked, lost);
    fleet_close(&f);
    return 0;
}

int main(int argc, char **argv)
{
    /* Each libmosquitto client holds 3 descriptors (socket + wake-up pair). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (argc < 5) {
        fprintf(stderr, "see the comment at the top of bench/mqtt_bench.c\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* scripts time their windows by these lines */
    mosquitto_lib_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_dir = argv[2];
    const char *kind = getenv("MQTT_BENCH_KIND");
    if (kind && strcmp(kind, "ev") == 0)
        g_kind = "ev";
    int n = (int)strtol(argv[3], NULL, 10), rc = 2;
    if (n < 1 || n > 100000)
        return 2;
    if (strcmp(argv[1], "connect") == 0 && argc == 6) {
        g_port = (int)strtol(argv[5], NULL, 10);
        rc = cmd_connect(n, (int)strtol(argv[4], NULL, 10));
    } else if (strcmp(argv[1], "publish") == 0 && argc == 7) {
        g_port = (int)strtol(argv[6], NULL, 10);
        rc = cmd_publish(n, (int)strtol(argv[4], NULL, 10), (int)strtol(argv[5], NULL, 10));
    } else if (strcmp(argv[1], "stream") == 0 && (argc == 7 || argc == 8)) {
        g_port = (int)strtol(argv[6], NULL, 10);
        g_first = argc == 8 ? (int)strtol(argv[7], NULL, 10) : 0;
        if (g_first < 0 || g_first > 100000)
            return 2;
        rc = cmd_stream(n, strtol(argv[4], NULL, 10), (int)strtol(argv[5], NULL, 10));
    } else if (strcmp(argv[1], "hold") == 0 && argc == 6) {
        g_port = (int)strtol(argv[5], NULL, 10);
        rc = cmd_hold(n, (int)strtol(argv[4], NULL, 10));
    } else if (strcmp(argv[1], "revoke") == 0 && argc == 8) {
        g_port = (int)strtol(argv[4], NULL, 10);
        rc = cmd_revoke(n, argv[5], argv[6], argv[7]);
    }
    curl_global_cleanup();
    mosquitto_lib_cleanup();
    return rc;
}
