/*
 * mamori/device.h - libmamori, the device SDK: identity and mutual TLS with
 * the broker pinned to the platform CA, heartbeats, telemetry checked
 * against the model's schema, a crash-safe outbox delivered exactly once,
 * the hub's signed remote commands, reconnects with jittered exponential
 * backoff. Link with `pkg-config --libs mamori`; examples/sensor.c is a
 * complete program. Ownership: what a function returns through an out
 * pointer is the caller's unless it says "owned by dev"; strings passed in
 * are copied.
 *
 * A device identity is a directory written by the factory tooling:
 *   device.key   private key (PEM, mode 0600, never leaves the device)
 *   device.crt   device certificate
 *   ca.crt       platform CA bundle the broker certificate must chain to
 *   device.json  {"device_id": "...", "mqtt_host": "...", "mqtt_port": N}
 *
 * Threading: a struct mamori_device is not thread-safe; drive it from one
 * thread. Many devices can share one thread through mamori_device_fd() and
 * mamori_device_step() (that is how mamori-sim runs thousands of them).
 */
#ifndef MAMORI_DEVICE_H
#define MAMORI_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mamori_device;

/* Remote commands the hub may send (signed, single-use, with an expiry;
 * docs/protocol.md). The SDK verifies and records each one and applies the
 * state it owns (lock, quarantine, wipe) before the application hears of
 * it through on_command. */
enum mamori_command {
    MAMORI_CMD_LOCK = 0, /* stop functions until unlocked (survives reboot) */
    MAMORI_CMD_UNLOCK = 1,
    MAMORI_CMD_WIPE = 2,       /* keys and state erased; the device stops */
    MAMORI_CMD_REBOOT = 3,     /* result sent; the application reboots */
    MAMORI_CMD_QUARANTINE = 4, /* only the management channel runs */
    MAMORI_CMD_RELEASE = 5,
    MAMORI_CMD_SELF_TEST = 6,        /* the SDK runs its checks and reports them */
    MAMORI_CMD_ROTATE = 7,           /* the SDK made a new key and sent its CSR */
    MAMORI_CMD_CERT = 8,             /* the SDK switched to its new certificate */
    MAMORI_CMD_CONFIG = 9,           /* the SDK applied new settings from the hub */
    MAMORI_CMD_CONFIG_ROLLBACK = 10, /* the SDK went back to its known-good settings */
    MAMORI_CMD_UPDATE = 11,          /* an update needs a reboot now (installed, or rolled back) */
    MAMORI_CMD_NOTICE = 12,          /* new advisories or support end: mamori_device_notice */
};
typedef void (*mamori_command_cb)(struct mamori_device *dev, enum mamori_command cmd, void *arg);

struct mamori_device_opts {
    const char *identity_dir;      /* required */
    const char *host_override;     /* NULL: use device.json */
    int port_override;             /* 0: use device.json */
    unsigned heartbeat_interval_s; /* 0: 30 s */
    unsigned backoff_min_ms;       /* 0: 500 ms */
    unsigned backoff_max_ms;       /* 0: 60 s */
    /* Directory for persistent state (created 0700; must be ours alone):
     * the outbox lives here. NULL: nothing persists and telemetry can only
     * be sent while connected (simulators). */
    const char *state_dir;
    /* The model's telemetry schema (common/schema.h document); when set,
     * values outside it are refused before they are queued. NULL: none. */
    const char *schema_json;
    size_t outbox_max; /* messages; 0: 100000 */
    /* Called after a command was accepted and its result queued. For
     * MAMORI_CMD_WIPE it runs before the erase. NULL: none. */
    mamori_command_cb on_command;
    void *on_command_arg;
    /* Where the device key lives: "file" (NULL: the default; device.key is
     * a PEM file, mode 0600) or "tpm2" (device.key is a TPM blob loaded
     * through OpenSSL's tpm2 provider; the private key never leaves the
     * TPM, and keys made by a rotation are made in it too). A key that is
     * not in the configured store is refused. */
    const char *keystore;
    const char *tpm_tcti; /* tpm2: e.g. "device:/dev/tpmrm0"; NULL: tpm2-openssl's default */
    /* Firmware updates (docs/updates.md): the A/B slot directory of the
     * built-in backend (NULL: updates refused). Needs state_dir, the
     * factory's root in identity_dir/update-root.json and "model" in
     * device.json. The SDK plays the boot loader's part for these slots at
     * each start. A new slot is committed once the device is connected and
     * its self-test passes within update_trial_s (0: 120 s); otherwise it
     * is rolled back. When an update needs a reboot, on_command gets
     * MAMORI_CMD_UPDATE: reboot the board (or restart the program). */
    const char *update_slots_dir;
    unsigned update_trial_s;
    /* While idle and connected, the device reports its update status
     * every update_check_s (0: 6 h); the hub answers with any update
     * command still pending for it (a periodic check). */
    unsigned update_check_s;
    /* Or the hook backend (instead of update_slots_dir): an executable
     * that drives the board's installer and boot loader, called as HOOK
     * status | install FILE | commit | rollback (docs/updates.md; RAUC:
     * scripts/hooks/rauc). Its install may run update_install_s (0: 1800 s);
     * the device stays connected meanwhile. */
    const char *update_hook;
    unsigned update_install_s;
    /* Update downloads take at most this many KiB/s (0: as fast as the
     * link goes), so a device on a slow or shared link keeps room for its
     * own traffic. */
    unsigned update_rate_kbps;
};

enum mamori_device_state {
    MAMORI_DEV_DISCONNECTED = 0,
    MAMORI_DEV_CONNECTING = 1,
    MAMORI_DEV_CONNECTED = 2,
    MAMORI_DEV_WIPED = 3, /* erased by a wipe command: nothing more to do */
};

/* Process-wide init/cleanup (wraps libmosquitto's). Call once each. */
enum mamori_err mamori_sdk_init(void) MAMORI_MUST_CHECK;
void mamori_sdk_cleanup(void);

/* Loads the identity (checks key file mode is 0600 or stricter) and
 * prepares a client. On success *out is owned by the caller, release it
 * with mamori_device_free(). On error *out is left NULL. */
enum mamori_err mamori_device_new(const struct mamori_device_opts *opts,
                                  struct mamori_device **out) MAMORI_MUST_CHECK;
/* Disconnects and frees dev; key material in memory is wiped. NULL is ok. */
void mamori_device_free(struct mamori_device *dev);

/* The management number read from device.json. Owned by dev. */
const char *mamori_device_id(const struct mamori_device *dev);
enum mamori_device_state mamori_device_state(const struct mamori_device *dev);

/* Socket to poll for dev, or -1 when not connected. */
int mamori_device_fd(const struct mamori_device *dev);
bool mamori_device_want_write(const struct mamori_device *dev);

/* Does all due work without blocking: (re)connect when the backoff timer has
 * expired, read/write when the socket is ready, send the heartbeat when due.
 * now_ms is a monotonic clock in milliseconds. Returns the number of
 * milliseconds until the next timer is due (for poll's timeout). */
int mamori_device_step(struct mamori_device *dev, uint64_t now_ms, bool readable, bool writable);

/* Queues telemetry: body_json must be a JSON object (copied), checked
 * against the schema when one was given (MAMORI_ERR_INVAL out of range,
 * MAMORI_ERR_PARSE unknown field or wrong type, MAMORI_ERR_RATELIMIT faster
 * than the field's max_rate_hz). It is wrapped in the envelope
 * {"v":1,"seq":N,"ts":ms,"body":...}. With a state directory the message is
 * on disk when this returns and is delivered, in order and once, whenever
 * the hub is reachable; without one, MAMORI_ERR_CONN when not connected. */
enum mamori_err mamori_device_send_telemetry(struct mamori_device *dev,
                                             const char *body_json) MAMORI_MUST_CHECK;
/* As above for n bodies, written to disk together (one sync): the way to
 * sustain high rates without giving up durability. All or none are queued. */
enum mamori_err mamori_device_send_telemetry_batch(struct mamori_device *dev,
                                                   const char *const *bodies,
                                                   size_t n) MAMORI_MUST_CHECK;
/* Queues a device event (a JSON object). Events are never dropped to make
 * room in the outbox. */
enum mamori_err mamori_device_send_event(struct mamori_device *dev,
                                         const char *body_json) MAMORI_MUST_CHECK;

/* Appends a record to the device's tamper-evident log (signed with the
 * device key, hash-chained, shipped to the hub, never dropped): for the
 * application's own security events. type: 1-32 of [a-z0-9_]; data_json: a
 * JSON object (copied). MAMORI_ERR_STATE without a state directory. */
enum mamori_err mamori_device_log(struct mamori_device *dev, const char *type,
                                  const char *data_json) MAMORI_MUST_CHECK;

/* Durable flags set by the hub's commands (false without a state dir). */
bool mamori_device_locked(const struct mamori_device *dev);
bool mamori_device_quarantined(const struct mamori_device *dev);

/* Counters for tests and the simulator. */
struct mamori_device_stats {
    uint64_t connects;    /* successful CONNACKs */
    uint64_t refused;     /* CONNACKs refused or TLS failures */
    uint64_t disconnects; /* connection losses after CONNACK */
    uint64_t heartbeats_sent;
    uint64_t telemetry_sent;
    unsigned last_backoff_ms;   /* last delay chosen before a reconnect */
    uint64_t telemetry_refused; /* refused locally (schema, rate, size) */
    uint64_t events_sent;
    uint64_t outbox_published; /* publishes from the outbox, resends included */
    uint64_t outbox_queued;    /* waiting for the hub's acknowledgement */
    uint64_t outbox_dropped;   /* telemetry dropped to make room, ever */
    uint64_t acked;            /* highest telemetry sequence number acknowledged */
    uint64_t outbox_errors;    /* storage errors while sending (retried) */
    uint64_t commands_received;
    uint64_t commands_accepted;
    uint64_t commands_refused; /* bad signature, expired, other device, replay */
    uint64_t command_results;
    uint64_t log_records;      /* device log records written and queued */
    uint64_t rotations;        /* key and certificate switches completed */
    uint64_t tls_resumed;      /* connections that resumed a TLS session */
    uint64_t config_version;   /* remote settings in force (0: none) */
    uint64_t config_rollbacks; /* returns to known-good settings */
    uint64_t log_access;       /* reports of others' access to the log files */
    uint64_t tls_full;         /* full TLS handshakes (each signed by the device key) */
    uint64_t update_phase;     /* 0 idle, 1 downloading, 2 installed (reboot), 3 on trial */
    uint64_t updates_committed;
    uint64_t update_rollbacks;
    uint64_t advisories;  /* advisories on the firmware running (the hub's last notice) */
    uint64_t support_end; /* the model's security-support end, Unix s (0: not announced) */
};
void mamori_device_get_stats(const struct mamori_device *dev, struct mamori_device_stats *out);

/* The firmware version running ("" when unknown: no update committed yet,
 * or updates not configured). Owned by dev. */
const char *mamori_device_fw_version(const struct mamori_device *dev);

/* The hub's last notice to this device: the security advisories on the
 * firmware it runs and its model's security-support end, as JSON text
 * {"fw_version", "support_end" (Unix s, 0: not announced), "advisories":
 * [{"id", "severity", "title", "fixed_version"}], "more"} (docs/updates.md);
 * "" when none came yet. Kept in the state directory across restarts; a new
 * one raises MAMORI_CMD_NOTICE. Owned by dev. */
const char *mamori_device_notice(const struct mamori_device *dev);

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t mamori_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
