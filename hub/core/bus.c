/* hub/core/bus.c - see bus.h. */
#include "hub/core/bus.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "hub/core/clock.h"
#include "hub/core/hub.h"

#define ADD(arr, n, v)                                                                             \
    do {                                                                                           \
        if ((n) == HUB_BUS_MAX)                                                                    \
            return MAMORI_ERR_TOOBIG;                                                              \
        (arr)[(n)++] = (v);                                                                        \
    } while (0)

enum mamori_err hub_on_event(struct hub *h, hub_event_fn fn)
{
    ADD(h->bus.events, h->bus.n_events, fn);
    return MAMORI_OK;
}

enum mamori_err hub_on_notice(struct hub *h, hub_notice_fn fn)
{
    ADD(h->bus.notices, h->bus.n_notices, fn);
    return MAMORI_OK;
}

enum mamori_err hub_on_device_event(struct hub *h, const char *type, hub_devev_fn fn)
{
    struct hub_bus_typed t = {.type = type, .fn.devev = fn};
    ADD(h->bus.devev, h->bus.n_devev, t);
    return MAMORI_OK;
}

enum mamori_err hub_on_result(struct hub *h, const char *cmd_type, hub_result_fn fn)
{
    struct hub_bus_typed t = {.type = cmd_type, .fn.result = fn};
    ADD(h->bus.results, h->bus.n_results, t);
    return MAMORI_OK;
}

enum mamori_err hub_on_device_view(struct hub *h, hub_view_fn fn)
{
    ADD(h->bus.views, h->bus.n_views, fn);
    return MAMORI_OK;
}

void hub_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
               const char *detail_fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof(detail), detail_fmt, ap);
    va_end(ap);
    if (store_event_add(h->store, hub_now(), device_id, kind, severity, detail))
        log_err("cannot record event %s", kind);
    if (strcmp(severity, "alert") == 0 || strcmp(severity, "warning") == 0)
        log_warn("event %s %s %s", kind, device_id ? device_id : "-", detail);
    if (h->cfg.rules_off)
        return;
    for (size_t i = 0; i < h->bus.n_events; i++)
        h->bus.events[i](h, device_id, kind, severity, detail);
}

void hub_notice(struct hub *h, const char *event, const char *device_id, const char *detail)
{
    for (size_t i = 0; i < h->bus.n_notices; i++)
        h->bus.notices[i](h, event, device_id, detail);
}

size_t hub_device_event(struct hub *h, const char *device_id, const char *type, const json_t *body)
{
    size_t n = 0;
    for (size_t i = 0; i < h->bus.n_devev; i++)
        if (strcmp(h->bus.devev[i].type, type) == 0) {
            h->bus.devev[i].fn.devev(h, device_id, type, body);
            n++;
        }
    return n;
}

void hub_command_result(struct hub *h, const struct command_rec *c, const char *status,
                        const char *error, json_t *detail)
{
    for (size_t i = 0; i < h->bus.n_results; i++)
        if (strcmp(h->bus.results[i].type, c->type) == 0)
            h->bus.results[i].fn.result(h, c, status, error, detail);
}

void hub_device_view(struct hub *h, const struct device_rec *d, json_t *out)
{
    for (size_t i = 0; i < h->bus.n_views; i++)
        h->bus.views[i](h, d, out);
}
