/*
 * hub/io/broker.c - the hub's broker.
 *
 * With --broker HOST:PORT the broker runs apart (broker nodes, `mamorid
 * broker`): the hub only connects, and a hub restart leaves every device
 * connected. Otherwise mosquitto runs as our child on loopback with the mamori plugin. If it
 * dies it is restarted (T10-L3a, T10-L3b) with exponential backoff (0.25 s doubling to 30 s,
 * reset after 60 s of good running); the plugin fails closed on each start
 * until the hub has re-sent the registry snapshot. PR_SET_PDEATHSIG ties the
 * broker's life to ours, so kill -9 of mamorid leaves no orphan broker.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <pwd.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "hub/io/broker.h"
#include "hub/io/mqtt.h"

/* The hub's own broker, from its configuration and its pki/. */
static enum mamori_err own_spec(struct hub *h, struct broker_spec *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->data_dir, sizeof(s->data_dir), "%s", h->cfg.data_dir);
    snprintf(s->plugin, sizeof(s->plugin), "%s", h->cfg.plugin_path);
    snprintf(s->mosquitto, sizeof(s->mosquitto), "%s", h->cfg.mosquitto_bin);
    snprintf(s->listen, sizeof(s->listen), "%s", h->cfg.listen_addr);
    snprintf(s->node, sizeof(s->node), "local");
    snprintf(s->hub_fp, sizeof(s->hub_fp), "%s", h->hub_client_fp);
    s->port = h->broker_port;
    s->max_connections = h->cfg.max_connections;
    s->max_payload = h->cfg.max_payload;
    s->rate = h->cfg.msg_rate;
    s->burst = h->cfg.msg_burst;
    return fs_path(s->tls_dir, sizeof(s->tls_dir), h->cfg.data_dir, "pki");
}

static pid_t spawn(struct hub *h)
{
    struct broker_spec s;
    /* Rewritten at each start, so a new trust bundle (a manufacturer CA
     * import) reaches the broker with its restart. */
    enum mamori_err rc = own_spec(h, &s);
    if (!rc)
        rc = broker_spec_config(&s, h->broker_conf, sizeof(h->broker_conf));
    if (rc) {
        log_err("cannot write broker configuration: %s", mamori_strerror(rc));
        return -1;
    }
    return broker_spawn(&s, h->broker_conf);
}

static void write_pidfile(struct hub *h, pid_t pid)
{
    char p[HUB_PATH_MAX], dir[HUB_PATH_MAX], line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)pid);
    if (fs_path(dir, sizeof(dir), h->cfg.data_dir, "run") || fs_mkdir_p(dir, 0700) ||
        fs_path(p, sizeof(p), dir, "broker.pid") || fs_write_atomic(p, line, (size_t)n, 0644))
        log_warn("cannot write the broker pid file");
}

static void *supervise(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-broker", 0, 0, 0); /* top -H, ps -L */
    struct hub *h = arg;
    unsigned backoff_ms = 250;
    while (!h->stopping) {
        int64_t started = hub_mono_ms();
        pid_t pid = spawn(h);
        if (pid < 0) {
            log_err("cannot start broker");
        } else {
            pthread_mutex_lock(&h->lock);
            h->broker_pid = pid;
            pthread_mutex_unlock(&h->lock);
            write_pidfile(h, pid);
            log_info("broker started (pid %d, mqtts://%s:%d)", (int)pid, h->cfg.listen_addr,
                     h->broker_port);
            int st = 0;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            pthread_mutex_lock(&h->lock);
            h->broker_pid = 0;
            if (!h->stopping) {
                h->broker_restarts++;
                hub_event(h, NULL, "broker_exit", "warning", "{\"status\":%d,\"restarts\":%d}",
                          WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), h->broker_restarts);
            }
            pthread_mutex_unlock(&h->lock);
            if (h->stopping)
                break;
            log_warn("broker exited (%s %d); restarting in %u ms",
                     WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), backoff_ms);
        }
        if (hub_mono_ms() - started > 60000)
            backoff_ms = 250;
        hub_backoff(h, &backoff_ms, 30000);
    }
    return NULL;
}

/* The broker left by a hub that ended abruptly (kill -9, power cut): the
 * parent-death signal normally takes it down with the hub, but it may
 * still be on its way out. We hold the data directory's lock (hub_init),
 * so no live hub owns a broker of this directory: one still running is an
 * orphan, and it is stopped. Returns true when one was signalled. */
static bool stop_orphan_broker(struct hub *h)
{
    char p[HUB_PATH_MAX], txt[64];
    if (fs_path(p, sizeof(p), h->cfg.data_dir, "run/broker.pid") ||
        !fs_read_small(p, txt, sizeof(txt)))
        return false;
    char *end;
    long pid = strtol(txt, &end, 10);
    if (end == txt || (*end != '\n' && *end != '\0') || pid <= 1 || pid > 4194304)
        return false;
    /* only a mosquitto: the pid may have been reused by anything else */
    snprintf(p, sizeof(p), "/proc/%ld/comm", pid);
    if (!fs_read_small(p, txt, sizeof(txt)) || strcmp(txt, "mosquitto\n") != 0 ||
        kill((pid_t)pid, SIGKILL))
        return false;
    log_warn("stopping the broker (pid %ld) left by a hub that ended abruptly", pid);
    return true;
}

/* How long a start waits for the platform's MQTT port to come free. */
#define BROKER_PORT_WAIT_MS 10000

/* Waits until the kept port can be listened on again; false when it
 * cannot be had within BROKER_PORT_WAIT_MS. */
static bool wait_port(struct hub *h, int port)
{
    for (unsigned waited = 0; waited < BROKER_PORT_WAIT_MS && !h->stopping; waited += 100) {
        if (broker_try_port(h->cfg.listen_addr, port, true) == port)
            return true;
        stop_orphan_broker(h);
        hub_sleep(h, 100);
    }
    return broker_try_port(h->cfg.listen_addr, port, true) == port;
}

/* An ephemeral MQTT port is chosen once and kept in the registry: it is
 * the platform's port from then on, the one every device dials. After a
 * crash it is reused (the old broker's connections in TIME_WAIT do not
 * hold it, and a broker the dead hub left is stopped); if another program
 * truly holds it, the hub says so and does not start, rather than move
 * and strand the fleet. */
static int stable_port(struct hub *h)
{
    char v[16];
    int port = 0;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_meta_get(h->store, "mqtt_port", v, sizeof(v));
    pthread_mutex_unlock(&h->lock);
    if (rc == MAMORI_OK) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n <= 0 || n >= 65536) {
            log_err("the registry's MQTT port '%s' is not a port; not starting", v);
            return -1;
        }
        if (!wait_port(h, (int)n)) {
            log_err("MQTT port %ld, the one the devices dial, is in use by another program; "
                    "not starting (free the port, or choose one with --mqtt-port)",
                    n);
            return -1;
        }
        return (int)n;
    }
    port = broker_pick_port(h->cfg.listen_addr);
    snprintf(v, sizeof(v), "%d", port);
    if (port > 0) {
        pthread_mutex_lock(&h->lock);
        log_if_err(store_meta_set(h->store, "mqtt_port", v));
        pthread_mutex_unlock(&h->lock);
    }
    return port;
}

static void broker_reload(struct hub *h)
{
    /* Restart: mosquitto 2.0 does not reload a listener's cafile on SIGHUP.
     * The supervisor brings it straight back; the plugin fails closed until
     * it has the snapshot again. Lock held. */
    mqtt_unsync(h);
    if (h->broker_pid > 0)
        kill(h->broker_pid, SIGTERM);
}

/* Broker nodes apart from the hub hold their own copy of the device trust
 * bundle (hub/broker_node.c); the hub cannot restart them. A node keeps
 * refusing devices of a newly imported CA until it is given the new bundle
 * (`mamorid broker-init` again) and restarted: fail closed, and said. */
static void nodes_reload(struct hub *h)
{
    log_warn("device trust changed: broker nodes need the new bundle (mamorid broker-init "
             "--from %s, then restart each node)",
             h->cfg.data_dir);
    hub_event(h, NULL, "broker_trust_changed", "warning",
              "{\"action\":\"run mamorid broker-init again for each broker node, then restart "
              "it\"}");
}

/* --broker HOST:PORT[,HOST:PORT...]: the nodes apart, each dialled by the
 * hub; devices are given --mqtt-public (a load balancer in front of the
 * nodes), or the first node. */
static enum mamori_err nodes_start(struct hub *h)
{
    char list[sizeof(h->cfg.broker)], *save = NULL;
    snprintf(list, sizeof(list), "%s", h->cfg.broker);
    h->n_nodes = 0;
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        struct hub_node *n = &h->nodes[h->n_nodes];
        if (h->n_nodes == HUB_NODES_MAX ||
            !broker_addr_parse(a, n->host, sizeof(n->host), &n->port)) {
            log_err("--broker %s: at most %d nodes, each HOST:PORT", h->cfg.broker, HUB_NODES_MAX);
            return MAMORI_ERR_INVAL;
        }
        /* the same node twice: two sessions under one client id, each
         * taking the other's over, forever */
        for (size_t i = 0; i < h->n_nodes; i++)
            if (h->nodes[i].port == n->port && strcmp(h->nodes[i].host, n->host) == 0) {
                log_err("--broker %s: %s given twice", h->cfg.broker, a);
                return MAMORI_ERR_INVAL;
            }
        h->n_nodes++;
    }
    const char *pub = h->cfg.mqtt_public[0] ? h->cfg.mqtt_public : NULL;
    if (h->n_nodes == 0 ||
        (pub && !broker_addr_parse(pub, h->broker_host, sizeof(h->broker_host), &h->broker_port))) {
        log_err("--broker %s --mqtt-public %s: not HOST:PORT", h->cfg.broker, pub ? pub : "");
        return MAMORI_ERR_INVAL;
    }
    if (!pub) {
        snprintf(h->broker_host, sizeof(h->broker_host), "%s", h->nodes[0].host);
        h->broker_port = h->nodes[0].port;
    }
    h->out.reload_broker = nodes_reload;
    log_info("%zu broker node(s) at %s, devices dial %s:%d: this hub starts no broker, and its "
             "restart drops no device",
             h->n_nodes, h->cfg.broker, h->broker_host, h->broker_port);
    return MAMORI_OK;
}

enum mamori_err broker_start(struct hub *h)
{
    if (h->cfg.broker[0])
        return nodes_start(h);
    snprintf(h->broker_host, sizeof(h->broker_host), "%s", h->cfg.listen_addr);
    h->out.reload_broker = broker_reload;
    if (access(h->cfg.mosquitto_bin, X_OK)) {
        log_err("mosquitto not found at %s", h->cfg.mosquitto_bin);
        return MAMORI_ERR_NOTFOUND;
    }
    if (access(h->cfg.plugin_path, R_OK)) {
        log_err("broker plugin not found at %s", h->cfg.plugin_path);
        return MAMORI_ERR_NOTFOUND;
    }
    if (!h->broker_port)
        h->broker_port = h->cfg.mqtt_port ? h->cfg.mqtt_port : stable_port(h);
    if (h->broker_port <= 0)
        return MAMORI_ERR_IO;
    h->n_nodes = 1; /* our own broker, dialled where it listens */
    snprintf(h->nodes[0].host, sizeof(h->nodes[0].host), "%s", h->cfg.listen_addr);
    h->nodes[0].port = h->broker_port;
    return pthread_create(&h->broker_thread, NULL, supervise, h) ? MAMORI_ERR_INTERNAL : MAMORI_OK;
}

void broker_stop(struct hub *h)
{
    if (h->cfg.broker[0])
        return; /* the nodes are not ours to stop */
    pthread_mutex_lock(&h->lock);
    pid_t pid = h->broker_pid;
    pthread_mutex_unlock(&h->lock);
    if (pid > 0)
        kill(pid, SIGTERM);
    if (h->broker_thread)
        pthread_join(h->broker_thread, NULL);
    struct broker_spec s;
    if (own_spec(h, &s) == MAMORI_OK)
        broker_spec_cleanup(&s);
}
