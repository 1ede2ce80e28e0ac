/* hub/io/broker.h - one mosquitto with the mamori plugin: its
 * configuration and start (broker_spec.c), and the hub's supervision of
 * its own broker or its sessions to broker nodes apart from it (broker.c). */
#ifndef MAMORI_HUB_IO_BROKER_H
#define MAMORI_HUB_IO_BROKER_H

#include <stdbool.h>
#include <sys/types.h>

#include "hub/core/hub.h"

struct passwd;

/* What one broker is: whose directory, its TLS files, its listener, its
 * plugin's settings. */
struct broker_spec {
    char data_dir[HUB_PATH_MAX]; /* its log/, and broker/ (or a /run dir as root) */
    char tls_dir[HUB_PATH_MAX];  /* broker.crt, broker.key, device-trust.pem */
    char plugin[HUB_PATH_MAX];
    char mosquitto[HUB_PATH_MAX];
    char listen[64];
    char node[HUB_NODE_LEN + 1]; /* the node's name, in the plugin's reports */
    char hub_fp[65];             /* the hub client certificate's SHA-256 */
    int port, max_connections, max_payload, rate, burst;
};

/* Writes the broker's runtime directory (its copies of the TLS files and
 * of the plugin when it drops privileges) and mosquitto.conf; conf gets
 * the configuration's path. */
enum mamori_err broker_spec_config(const struct broker_spec *s, char *conf,
                                   size_t n) MAMORI_MUST_CHECK;
/* Starts mosquitto on conf as our child (it ends with us, whatever ends
 * us; as root, it runs as "mosquitto"); -1 on failure. Its output goes to
 * DATA/log/broker.log. */
pid_t broker_spawn(const struct broker_spec *s, const char *conf);
/* Removes the runtime copies of the key and configuration. */
void broker_spec_cleanup(const struct broker_spec *s);
/* The user the broker drops to (NULL when it runs as we do). */
const struct passwd *broker_user(void);
/* addr:port can be bound now (port 0: any); returns the port or -1. With
 * reuse (SO_REUSEADDR, as mosquitto binds its listener), connections a
 * dead broker left in TIME_WAIT do not count. */
int broker_try_port(const char *addr, int port, bool reuse);
/* A free port for a broker, outside the kernel's ephemeral range (a port
 * tested and released there can be handed out at once as the source port
 * of an outgoing connection, and the broker's bind would fail). */
int broker_pick_port(const char *addr);

/* "HOST:PORT" or "[IPv6]:PORT" into host (at most n - 1 bytes) and port
 * 1-65535; false when it is neither. */
bool broker_addr_parse(const char *s, char *host, size_t n, int *port);

/* The hub's broker: with --broker, sessions to broker nodes apart from the
 * hub; else its own mosquitto, started and supervised. Registers
 * hub_reload_broker. */
enum mamori_err broker_start(struct hub *h) MAMORI_MUST_CHECK;
void broker_stop(struct hub *h);

#endif
