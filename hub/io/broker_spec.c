/*
 * hub/io/broker_spec.c - one mosquitto with the mamori plugin, from a
 * broker_spec: its configuration, its runtime directory, its start.
 *
 * Two owners use it: the hub's own supervisor (hub/io/broker.c, the broker
 * as the hub's child) and a broker node (hub/broker_node.c, `mamorid
 * broker`: a service of its own that outlives every hub restart).
 */
#include <ctype.h>
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

int broker_try_port(const char *addr, int port, bool reuse)
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

/* The kernel's range for ephemeral (source) ports. */
static void ephemeral_range(int *lo, int *hi)
{
    char txt[64];
    if (!fs_read_small("/proc/sys/net/ipv4/ip_local_port_range", txt, sizeof(txt)) ||
        sscanf(txt, "%d %d", lo, hi) != 2 || *lo < 1024 || *hi > 65535 || *lo > *hi) {
        *lo = 32768;
        *hi = 60999;
    }
}

int broker_pick_port(const char *addr)
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
        if (broker_try_port(addr, port, false) == port)
            return port;
    }
    return broker_try_port(addr, 0, false); /* last resort */
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

/* Copies the spec's TLS file NAME into the broker's directory. */
static enum mamori_err copy_tls(const struct broker_spec *s, const char *dir, const char *name,
                                mode_t mode, const struct passwd *pw)
{
    char src[HUB_PATH_MAX];
    enum mamori_err rc = fs_path(src, sizeof(src), s->tls_dir, name);
    return rc ? rc : copy_file(src, dir, name, mode, pw);
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
static enum mamori_err runtime_dir(const struct broker_spec *s, const struct passwd *pw, char *out,
                                   size_t n)
{
    if (!pw)
        return fs_path(out, n, s->data_dir, "broker");
    uint8_t md[CRYPTO_SHA256_LEN];
    char hex[65];
    crypto_sha256(s->data_dir, strlen(s->data_dir), md);
    crypto_hex(md, sizeof(md), hex);
    hex[16] = '\0';
    /* chmod, not just mkdir: our umask is 077 */
    if (fs_mkdir_p("/run/mamori", 0755) || chmod("/run/mamori", 0755))
        return MAMORI_ERR_IO;
    return fs_path(out, n, "/run/mamori", hex);
}

/* The configuration's text. */
static enum mamori_err config_text(const struct broker_spec *s, const char *dir, const char *plugin,
                                   struct dbuf *d)
{
    /* T01-L1b, T05-L1b, T05-L1c, T06-L1c, T11-L1d: TLS only, client certificate required, TLS
     * 1.2 floor with AEAD suites only; 1.3 suites are all AEAD. */
    return dbuf_printf(
        d,
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
        "plugin_opt_node %s\n"
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
        s->max_payload + 1024, s->max_connections < 2500 ? 10000 : 4 * s->max_connections,
        (long long)BROKER_QUEUE_BYTES, plugin, s->hub_fp, s->node, s->max_payload, s->rate,
        s->burst, s->port, s->listen, s->max_connections, dir, dir, dir);
}

enum mamori_err broker_spec_config(const struct broker_spec *s, char *conf, size_t n)
{
    char dir[HUB_PATH_MAX];
    enum mamori_err rc;
    const struct passwd *pw = broker_user();
    if ((rc = runtime_dir(s, pw, dir, sizeof(dir))) || (rc = fs_mkdir_p(dir, 0700)) ||
        (rc = fs_path(conf, n, dir, "mosquitto.conf")))
        return rc;
    if (pw && (chown(dir, pw->pw_uid, pw->pw_gid) || chmod(dir, 0700)))
        return MAMORI_ERR_PERM;
    if ((rc = copy_tls(s, dir, "broker.crt", 0644, pw)) ||
        (rc = copy_tls(s, dir, "broker.key", 0600, pw)) ||
        (rc = copy_tls(s, dir, "device-trust.pem", 0644, pw)))
        return rc;
    /* The broker, already unprivileged when it loads the plugin, may not be
     * able to reach the build or install tree (a 0700 home or temp dir):
     * it gets its own copy, next to its other files. */
    char plugin[HUB_PATH_MAX];
    snprintf(plugin, sizeof(plugin), "%s", s->plugin);
    if (pw && ((rc = copy_file(s->plugin, dir, "mamori_broker.so", 0644, pw)) ||
               (rc = fs_path(plugin, sizeof(plugin), dir, "mamori_broker.so"))))
        return rc;
    struct dbuf d;
    dbuf_init(&d, 64 * 1024);
    rc = config_text(s, dir, plugin, &d);
    if (!rc)
        rc = fs_write_atomic(conf, d.p, d.len, 0600);
    if (!rc && pw && chown(conf, pw->pw_uid, pw->pw_gid))
        rc = MAMORI_ERR_PERM;
    dbuf_free(&d);
    return rc;
}

pid_t broker_spawn(const struct broker_spec *s, const char *conf)
{
    char logp[HUB_PATH_MAX], logdir[HUB_PATH_MAX];
    if (fs_path(logdir, sizeof(logdir), s->data_dir, "log") || fs_mkdir_p(logdir, 0700) ||
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
    /* the broker ends with its supervisor, however that ends */
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
    execl(s->mosquitto, "mosquitto", "-c", conf, (char *)NULL);
    _exit(127);
}

void broker_spec_cleanup(const struct broker_spec *s)
{
    /* The runtime copies of the broker's key and configuration go with it
     * (after a crash they stay on tmpfs until reused or reboot). */
    const struct passwd *pw = broker_user();
    char dir[HUB_PATH_MAX], p[HUB_PATH_MAX];
    static const char *files[] = {"broker.key", "broker.crt", "device-trust.pem", "mosquitto.conf",
                                  "mamori_broker.so"};
    if (pw && runtime_dir(s, pw, dir, sizeof(dir)) == MAMORI_OK) {
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            if (fs_path(p, sizeof(p), dir, files[i]) == MAMORI_OK)
                unlink(p);
        rmdir(dir);
    }
}

bool broker_addr_parse(const char *s, char *host, size_t n, int *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s, *he = colon;
    if (!colon || colon == s)
        return false;
    if (*s == '[') { /* [IPv6]:PORT */
        h = s + 1;
        he = colon - 1;
        if (he < h || *he != ']')
            return false;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= n || hl > HUB_HOST_LEN || memchr(h, '[', hl) || memchr(h, ']', hl))
        return false;
    for (size_t i = 0; i < hl; i++)
        if (!(isalnum((unsigned char)h[i]) || strchr(".-:_", h[i])))
            return false;
    if (*s != '[' && memchr(h, ':', hl))
        return false; /* an IPv6 address needs its brackets */
    const char *digits = colon + 1;
    size_t nd = strspn(digits, "0123456789");
    if (nd == 0 || nd > 5 || digits[nd] != '\0')
        return false; /* digits only: no sign, no space */
    long p = strtol(digits, NULL, 10);
    if (p < 1 || p > 65535)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return true;
}
