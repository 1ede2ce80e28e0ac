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

/* Notes gathered for one message to the broker plugin (broker/notes.h). */
#define HUB_NOTES_BYTES (8 * 1024)

struct hub_out {
    /* Publishes payload on the device's cmd topic at QoS qos (0 or 1). */
    void (*send_device)(struct hub *h, const char *id, const char *payload, size_t len, int qos);
    /* Hands the broker plugin lines "ID SP MESSAGE LF" to deliver, each
     * MESSAGE on ID's cmd topic at QoS 0 (mamori/v1/ctl/notes). */
    void (*send_notes)(struct hub *h, const char *lines, size_t len);
    /* Sends a device's registry entry to the broker plugin (certificate,
     * next certificate during a rotation, access: an enum lc_access of
     * hub/device/lifecycle.h); a denied device is disconnected. */
    void (*push_device)(struct hub *h, const struct device_rec *d, int access);
    /* Restarts the broker so it reloads its trust store. */
    void (*reload_broker)(struct hub *h);
    /* hub_note_device's lines not yet sent (hub->lock) */
    char notes[HUB_NOTES_BYTES];
    size_t notes_len;
};

/* Lock held or not, as each function of hub_out says. hub_send_device
 * delivers at least once (QoS 1: commands). hub_note_device delivers at
 * most once (QoS 0), for notices the next one replaces and the device
 * recovers from on its own when one is lost: the cumulative acknowledgement
 * (a device sends again what stays unacknowledged, docs/protocol.md). It
 * keeps no per-message state in the session, whatever the rate: notes are
 * gathered (hub->lock held) and go to the broker plugin many to a message,
 * which fans them out, when HUB_NOTES_BYTES are gathered or at
 * hub_notes_flush. */
void hub_send_device(struct hub *h, const char *id, const char *payload, size_t len);
void hub_note_device(struct hub *h, const char *id, const char *payload, size_t len);
void hub_notes_flush(struct hub *h);
void hub_push_device(struct hub *h, const struct device_rec *d, int access);
void hub_reload_broker(struct hub *h);

#endif
