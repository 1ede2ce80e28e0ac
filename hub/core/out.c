/* hub/core/out.c - see out.h. */
#include "hub/core/out.h"

#include "hub/core/hub.h"

void hub_send_device(struct hub *h, const char *id, const char *payload, size_t len)
{
    if (h->out.send_device)
        h->out.send_device(h, id, payload, len, 1);
}

void hub_note_device(struct hub *h, const char *id, const char *payload, size_t len)
{
    if (h->out.send_device)
        h->out.send_device(h, id, payload, len, 0);
}

void hub_push_device(struct hub *h, const struct device_rec *d, int access)
{
    if (h->out.push_device)
        h->out.push_device(h, d, access);
}

void hub_reload_broker(struct hub *h)
{
    if (h->out.reload_broker)
        h->out.reload_broker(h);
}
