/*
 * hub/core/bus.h - how the hub's domains hear of each other without
 * naming each other.
 *
 * A domain that has something to say raises it here; a domain that cares
 * registers a handler at start-up (before any thread runs: the tables are
 * read without a lock afterwards). Four kinds of message:
 *   - events (hub_event): observations and alerts, recorded in the events
 *     table, then handed to every subscriber (the alert rules);
 *   - notices (hub_notice): word for integrations (webhooks) of something a
 *     principal did to a device, not recorded as an event;
 *   - device events by type: what a device reported on its "ev" stream,
 *     handed to the handlers registered for that type;
 *   - command results by command type, after the hub has recorded them;
 *   - device views: what other domains add to a device as the API shows it.
 * Every hand-over happens on the caller's thread, with the hub lock held.
 */
#ifndef MAMORI_HUB_CORE_BUS_H
#define MAMORI_HUB_CORE_BUS_H

#include <jansson.h>
#include <stddef.h>

#include "mamori/error.h"

struct hub;
struct command_rec;
struct device_rec;

typedef void (*hub_event_fn)(struct hub *h, const char *device_id, const char *kind,
                             const char *severity, const char *detail);
typedef void (*hub_notice_fn)(struct hub *h, const char *event, const char *device_id,
                              const char *detail);
typedef void (*hub_devev_fn)(struct hub *h, const char *device_id, const char *type,
                             const json_t *body);
typedef void (*hub_result_fn)(struct hub *h, const struct command_rec *c, const char *status,
                              const char *error, json_t *detail);
typedef void (*hub_view_fn)(struct hub *h, const struct device_rec *d, json_t *out);

#define HUB_BUS_MAX 32 /* handlers of one kind */

struct hub_bus_typed {
    const char *type; /* a device event's "type", a command's type */
    union {
        hub_devev_fn devev;
        hub_result_fn result;
    } fn;
};

struct hub_bus {
    hub_event_fn events[HUB_BUS_MAX];
    size_t n_events;
    hub_notice_fn notices[HUB_BUS_MAX];
    size_t n_notices;
    struct hub_bus_typed devev[HUB_BUS_MAX];
    size_t n_devev;
    struct hub_bus_typed results[HUB_BUS_MAX];
    size_t n_results;
    hub_view_fn views[HUB_BUS_MAX];
    size_t n_views;
};

/* Registration (start-up only). MAMORI_ERR_TOOBIG past HUB_BUS_MAX. type
 * strings must outlive the hub (literals). */
enum mamori_err hub_on_event(struct hub *h, hub_event_fn fn) MAMORI_MUST_CHECK;
enum mamori_err hub_on_notice(struct hub *h, hub_notice_fn fn) MAMORI_MUST_CHECK;
enum mamori_err hub_on_device_event(struct hub *h, const char *type,
                                    hub_devev_fn fn) MAMORI_MUST_CHECK;
enum mamori_err hub_on_result(struct hub *h, const char *cmd_type,
                              hub_result_fn fn) MAMORI_MUST_CHECK;
enum mamori_err hub_on_device_view(struct hub *h, hub_view_fn fn) MAMORI_MUST_CHECK;

/* Records an event (alert or observation) and hands it to the
 * subscribers (unless the rules are off: --rules off). Lock held. */
void hub_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
               const char *detail_fmt, ...) __attribute__((format(printf, 5, 6)));
/* Hands a notice to its subscribers. detail: a JSON object. Lock held. */
void hub_notice(struct hub *h, const char *event, const char *device_id, const char *detail);
/* Hands a device's event to the handlers of its type; returns how many
 * there were. Lock held. */
size_t hub_device_event(struct hub *h, const char *device_id, const char *type, const json_t *body);
/* Hands a recorded command result to the handlers of its type. Lock held. */
void hub_command_result(struct hub *h, const struct command_rec *c, const char *status,
                        const char *error, json_t *detail);
/* Lets every view handler add to out (a device's JSON). Lock held. */
void hub_device_view(struct hub *h, const struct device_rec *d, json_t *out);

#endif
