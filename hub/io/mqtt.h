/*
 * hub/io/mqtt.h - the hub's MQTT sessions with the broker: registry sync to
 * the plugin, device messages in (dispatched by kind, each kind of stream
 * read by its own session), commands and acknowledgements out (registered
 * for hub_send_device, hub_note_device and hub_push_device).
 */
#ifndef MAMORI_HUB_IO_MQTT_H
#define MAMORI_HUB_IO_MQTT_H

#include "hub/core/hub.h"

enum mamori_err mqtt_start(struct hub *h) MAMORI_MUST_CHECK;
void mqtt_stop(struct hub *h);
/* Data session i (< HUB_DATA_SESSIONS) is connected; *client_id: its
 * client id (GET /health). */
bool mqtt_data_connected(struct hub *h, size_t i, const char **client_id);
/* Every node's plugin has taken over the hub's last snapshot. Lock held. */
bool mqtt_synced(struct hub *h);
/* Every node must take a new snapshot (a broker restart). Lock held. */
void mqtt_unsync(struct hub *h);

#endif
