/*
 * hub/core/out.h - what the hub's domains send out, without knowing how.
 *
 * The MQTT session and the broker's supervision live in hub/io/, above the
 * domains; they register their senders here at start-up. Until they do
 * (and while the session is down) nothing is sent: the next snapshot of
 * the registry carries a device's access, and pending commands go again
 * when a device comes back.
 */
#ifndef MAMORI_HUB_CORE_OUT_H
#define MAMORI_HUB_CORE_OUT_H

#include <stddef.h>

struct hub;
struct device_rec;

struct hub_out {
    /* Publishes payload on the device's cmd topic at QoS qos (0 or 1). */
    void (*send_device)(struct hub *h, const char *id, const char *payload, size_t len, int qos);
    /* Sends a device's registry entry to the broker plugin (certificate,
     * next certificate during a rotation, access: an enum lc_access of
     * hub/device/lifecycle.h); a denied device is disconnected. */
    void (*push_device)(struct hub *h, const struct device_rec *d, int access);
    /* Restarts the broker so it reloads its trust store. */
    void (*reload_broker)(struct hub *h);
};

/* Lock held or not, as each function of hub_out says. hub_send_device
 * delivers at least once (QoS 1: commands). hub_note_device delivers at
 * most once (QoS 0), for notices the next one replaces and the device
 * recovers from on its own when one is lost: the cumulative acknowledgement
 * (a device sends again what stays unacknowledged, docs/protocol.md). It
 * keeps no per-message state in the session, whatever the rate. */
void hub_send_device(struct hub *h, const char *id, const char *payload, size_t len);
void hub_note_device(struct hub *h, const char *id, const char *payload, size_t len);
void hub_push_device(struct hub *h, const struct device_rec *d, int access);
void hub_reload_broker(struct hub *h);

#endif
