/*
 * hub/io/broker.c - generates mosquitto's configuration and supervises it.
 *
 * mosquitto runs as our child on loopback with the mamori plugin. If it
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

/* Bytes of messages one client's session may have waiting (the hub's, in
 * practice): 256 MiB, beside a count of twice the connection limit. */
#define BROKER_QUEUE_BYTES (256LL * 1024 * 1024)

/* Tests whether addr:port can be bound now (port 0: any); returns the port
 * or -1. With reuse (SO_REUSEADDR, as mosquitto binds its listener), the
 * connections a dead broker left in TIME_WAIT do not count: only a socket
 * that still listens (or is bound without it) holds the port. */
static int try_port(const char *addr, int port, bool reuse)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t sl = sizeof(sa);
    if ((reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
        inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* Reads a small file into buf (NUL-terminated) with read(2) until its end:
 * /proc files report a size of 0, so fs_read_file cannot read them. */
static bool read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, n - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (got += (size_t)r) == n - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    return got > 0;
}

/* The kernel's range for ephemeral (source) ports. */
static void ephemeral_range(int *lo, int *hi)
{
    char txt[64];
    if (!read_small("/proc/sys/net/ipv4/ip_local_port_range", txt, sizeof(txt)) ||
        sscanf(txt, "%d %d", lo, hi) != 2 || *lo < 1024 || *hi > 65535 || *lo > *hi) {
        *lo = 32768;
        *hi = 60999;
    }
}

/* mosquitto cannot report an ephemeral port, so we choose one. Not from the
 * kernel's ephemeral range: a port we test and release there can be handed
 * out at once as the source port of any outgoing connection, and the
 * broker's bind would then fail. */
static int pick_port(const char *addr)
{
    int lo, hi;
    ephemeral_range(&lo, &hi);
    for (int i = 0; i < 200; i++) {
        uint32_t r = 0;
        if (crypto_random(&r, sizeof(r)))
            break;
        int port = 10000 + (int)(r % 50000u);
        if (port >= lo && port <= hi)
            continue;
        if (try_port(addr, port, false) == port)
            return port;
    }
    return try_port(addr, 0, false); /* last resort */
}

/* Copies src to dir/name, owned by the broker's user. */
static enum mamori_err copy_file(const char *src, const char *dir, const char *name, mode_t mode,
                                 const struct passwd *pw)
{
    char dst[HUB_PATH_MAX];
    char *data = NULL;
    size_t len = 0;
    enum mamori_err rc;
    if ((rc = fs_path(dst, sizeof(dst), dir, name)) ||
        (rc = fs_read_file(src, 32 * 1024 * 1024, &data, &len)))
        return rc;
    rc = fs_write_atomic(dst, data, len, mode);
    crypto_wipe(data, len);
    free(data);
    if (!rc && pw && chown(dst, pw->pw_uid, pw->pw_gid))
        rc = MAMORI_ERR_PERM;
    return rc;
}

/* Copies pki/NAME into the broker's directory. */
static enum mamori_err copy_for_broker(struct hub *h, const char *dir, const char *name,
                                       mode_t mode, const struct passwd *pw)
{
    char src[HUB_PATH_MAX], pki[HUB_PATH_MAX];
    enum mamori_err rc;
    if ((rc = fs_path(pki, sizeof(pki), h->cfg.data_dir, "pki")) ||
        (rc = fs_path(src, sizeof(src), pki, name)))
        return rc;
    return copy_file(src, dir, name, mode, pw);
}

/* When we run as root, the broker runs as the "mosquitto" user. We switch
 * to it ourselves in the forked child before exec (so the plugin never runs
 * as root either, and so the parent-death signal, which the kernel clears
 * on a credential change, is set afterwards and holds). */
const struct passwd *broker_user(void)
{
    return geteuid() == 0 ? getpwnam("mosquitto") : NULL;
}

/* Where the broker's TLS files live. Dropping privileges, the broker cannot
 * be expected to traverse DATA's parents (DATA under /root, a 0700 temp
 * dir...), so its files go to a tmpfs runtime directory of its own,
 * /run/mamori/<first 16 hex of SHA-256(DATA)>, 0700 and owned by it; the
 * copies of its key never reach persistent storage outside DATA. Otherwise
 * DATA/broker. */
static enum mamori_err broker_dir(struct hub *h, const struct passwd *pw, char *out, size_t n)
{
    if (!pw)
        return fs_path(out, n, h->cfg.data_dir, "broker");
    uint8_t md[CRYPTO_SHA256_LEN];
    char hex[65];
    crypto_sha256(h->cfg.data_dir, strlen(h->cfg.data_dir), md);
    crypto_hex(md, sizeof(md), hex);
    hex[16] = '\0';
    /* chmod, not just mkdir: our umask is 077 */
    if (fs_mkdir_p("/run/mamori", 0755) || chmod("/run/mamori", 0755))
        return MAMORI_ERR_IO;
    return fs_path(out, n, "/run/mamori", hex);
}

enum mamori_err broker_write_config(struct hub *h)
{
    char dir[HUB_PATH_MAX], conf[HUB_PATH_MAX];
    enum mamori_err rc;
    const struct passwd *pw = broker_user();
    if ((rc = broker_dir(h, pw, dir, sizeof(dir))) || (rc = fs_mkdir_p(dir, 0700)) ||
        (rc = fs_path(conf, sizeof(conf), dir, "mosquitto.conf")))
        return rc;
    snprintf(h->broker_conf, sizeof(h->broker_conf), "%s", conf);
    if (pw && (chown(dir, pw->pw_uid, pw->pw_gid) || chmod(dir, 0700)))
        return MAMORI_ERR_PERM;
    if ((rc = copy_for_broker(h, dir, "broker.crt", 0644, pw)) ||
        (rc = copy_for_broker(h, dir, "broker.key", 0600, pw)) ||
        (rc = copy_for_broker(h, dir, "device-trust.pem", 0644, pw)))
        return rc;
    /* The broker, already unprivileged when it loads the plugin, may not be
     * able to reach the build or install tree (a 0700 home or temp dir):
     * it gets its own copy, next to its other files. */
    char plugin[HUB_PATH_MAX];
    snprintf(plugin, sizeof(plugin), "%s", h->cfg.plugin_path);
    if (pw && ((rc = copy_file(h->cfg.plugin_path, dir, "mamori_broker.so", 0644, pw)) ||
               (rc = fs_path(plugin, sizeof(plugin), dir, "mamori_broker.so"))))
        return rc;
    struct dbuf d;
    dbuf_init(&d, 64 * 1024);
    /* T01-L1b, T05-L1b, T05-L1c, T06-L1c, T11-L1d: TLS only, client certificate required, TLS
     * 1.2 floor with AEAD suites only; 1.3 suites are all AEAD. */
    rc = dbuf_printf(&d,
                     "# Generated by mamorid at every start; edits are overwritten.\n"
                     "per_listener_settings false\n"
                     "allow_anonymous false\n"
                     "persistence false\n"
                     "log_dest stderr\n"
                     "log_type error\nlog_type warning\nlog_type notice\n"
                     "connection_messages false\n"
                     "max_keepalive 300\n"
                     "max_packet_size %d\n"
                     "max_inflight_messages 20\n"
                     /* per client; what matters is the hub's own session,
                      * where every device's messages meet: a burst (a
                      * fleet rebooting after an update) must wait there,
                      * not be dropped after the device had its PUBACK */
                     "max_queued_messages %d\n"
                     "max_queued_bytes %lld\n"
                     "plugin %s\n"
                     "plugin_opt_hub_fp %s\n"
                     "plugin_opt_max_payload %d\n"
                     "plugin_opt_rate %d\n"
                     "plugin_opt_burst %d\n"
                     "listener %d %s\n"
                     "max_connections %d\n"
                     "set_tcp_nodelay true\n"
                     "cafile %s/device-trust.pem\n"
                     "certfile %s/broker.crt\n"
                     "keyfile %s/broker.key\n"
                     "require_certificate true\n"
                     "use_identity_as_username false\n"
                     "tls_version tlsv1.2\n"
                     "ciphers "
                     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-"
                     "CHACHA20-POLY1305\n"
                     "ciphers_tls1.3 "
                     "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\n",
                     h->cfg.max_payload + 1024,
                     h->cfg.max_connections < 2500 ? 10000 : 4 * h->cfg.max_connections,
                     (long long)BROKER_QUEUE_BYTES, plugin, h->hub_client_fp, h->cfg.max_payload,
                     h->cfg.msg_rate, h->cfg.msg_burst, h->broker_port, h->cfg.listen_addr,
                     h->cfg.max_connections, dir, dir, dir);
    if (!rc)
        rc = fs_write_atomic(conf, d.p, d.len, 0600);
    if (!rc && pw && chown(conf, pw->pw_uid, pw->pw_gid))
        rc = MAMORI_ERR_PERM;
    dbuf_free(&d);
    return rc;
}

static pid_t spawn(struct hub *h)
{
    char logp[HUB_PATH_MAX], logdir[HUB_PATH_MAX];
    /* Rewritten at each start, so a new trust bundle (a manufacturer CA
     * import) reaches the broker with its restart. */
    enum mamori_err rc = broker_write_config(h);
    if (rc) {
        log_err("cannot write broker configuration: %s", mamori_strerror(rc));
        return -1;
    }
    if (fs_path(logdir, sizeof(logdir), h->cfg.data_dir, "log") || fs_mkdir_p(logdir, 0700) ||
        fs_path(logp, sizeof(logp), logdir, "broker.log"))
        return -1;
    /* Everything the child needs is looked up before fork: after it, only
     * async-signal-safe calls. */
    const struct passwd *pw = broker_user();
    bool drop = pw != NULL;
    uid_t uid = drop ? pw->pw_uid : 0;
    gid_t gid = drop ? pw->pw_gid : 0;
    pid_t parent = getpid();
    int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_t pid = fork();
    if (pid != 0) {
        if (fd >= 0)
            close(fd);
        return pid;
    }
    /* child */
    if (drop && (setgroups(0, NULL) || setgid(gid) || setuid(uid)))
        _exit(126);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (nul >= 0)
        dup2(nul, 0);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    execl(h->cfg.mosquitto_bin, "mosquitto", "-c", h->broker_conf, (char *)NULL);
    _exit(127);
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
        !read_small(p, txt, sizeof(txt)))
        return false;
    char *end;
    long pid = strtol(txt, &end, 10);
    if (end == txt || (*end != '\n' && *end != '\0') || pid <= 1 || pid > 4194304)
        return false;
    /* only a mosquitto: the pid may have been reused by anything else */
    snprintf(p, sizeof(p), "/proc/%ld/comm", pid);
    if (!read_small(p, txt, sizeof(txt)) || strcmp(txt, "mosquitto\n") != 0 ||
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
        if (try_port(h->cfg.listen_addr, port, true) == port)
            return true;
        stop_orphan_broker(h);
        hub_sleep(h, 100);
    }
    return try_port(h->cfg.listen_addr, port, true) == port;
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
    port = pick_port(h->cfg.listen_addr);
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
    h->plugin_synced = false;
    if (h->broker_pid > 0)
        kill(h->broker_pid, SIGTERM);
}

enum mamori_err broker_start(struct hub *h)
{
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
    return pthread_create(&h->broker_thread, NULL, supervise, h) ? MAMORI_ERR_INTERNAL : MAMORI_OK;
}

void broker_stop(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    pid_t pid = h->broker_pid;
    pthread_mutex_unlock(&h->lock);
    if (pid > 0)
        kill(pid, SIGTERM);
    if (h->broker_thread)
        pthread_join(h->broker_thread, NULL);
    /* The runtime copies of the broker's key and configuration go with it
     * (after a crash they stay on tmpfs until reused or reboot). */
    const struct passwd *pw = broker_user();
    char dir[HUB_PATH_MAX], p[HUB_PATH_MAX];
    static const char *files[] = {"broker.key", "broker.crt", "device-trust.pem", "mosquitto.conf",
                                  "mamori_broker.so"};
    if (pw && broker_dir(h, pw, dir, sizeof(dir)) == MAMORI_OK) {
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            if (fs_path(p, sizeof(p), dir, files[i]) == MAMORI_OK)
                unlink(p);
        rmdir(dir);
    }
}
