/*
 * broker/notes.h - notes the hub hands the plugin to deliver, many in one
 * message (mamori/v1/ctl/notes).
 *
 * The broker reads one MQTT packet per connection per turn of its loop
 * (more only while the same TLS record holds them), so thousands of small
 * publishes from the hub's one session, each to its own device, waited
 * behind every device's traffic: under load, acknowledgements reached
 * devices only once the load stopped. One packet of notes is read in one
 * turn and fanned out here.
 *
 * Format: lines "DEVICE_ID SP MESSAGE LF", MESSAGE being 1 to
 * PROTO_NOTE_MAX bytes without LF. Each good line is handed to the
 * caller; a bad one is counted and skipped, and the lines after it are
 * still delivered. Pure logic, no mosquitto types.
 */
#ifndef MAMORI_BROKER_NOTES_H
#define MAMORI_BROKER_NOTES_H

#include <stddef.h>

#include "common/proto.h"

struct notes_result {
    size_t delivered, refused;
};

/* Calls fn(id, message, length, arg) for every good line of p[0..len). */
struct notes_result notes_apply(const void *p, size_t len,
                                void (*fn)(const char *id, const char *msg, size_t n, void *arg),
                                void *arg);

#endif
