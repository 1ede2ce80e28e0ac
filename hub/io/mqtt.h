/*
 * hub/io/mqtt.h - the hub's MQTT session with the broker: registry sync to
 * the plugin, device messages in (dispatched by kind), commands and
 * acknowledgements out (registered for hub_send_device, hub_note_device and
 * hub_push_device).
 */
#ifndef MAMORI_HUB_IO_MQTT_H
#define MAMORI_HUB_IO_MQTT_H

#include "hub/core/hub.h"

enum mamori_err mqtt_start(struct hub *h) MAMORI_MUST_CHECK;
void mqtt_stop(struct hub *h);

#endif
