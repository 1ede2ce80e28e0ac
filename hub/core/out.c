/* hub/core/out.c - see out.h. */
#include "hub/core/out.h"

#include <string.h>

#include "common/proto.h"
#include "hub/core/cluster.h"
#include "hub/core/hub.h"
#include "hub/store/store.h"

void hub_send_device(struct hub *h, const char *id, const char *payload, size_t len)
{
    if (h->out.send_device)
        h->out.send_device(h, id, payload, len, 1);
}

void hub_note_device(struct hub *h, const char *id, const char *payload, size_t len)
{
    struct hub_out *o = &h->out;
    size_t idlen = strlen(id), need = idlen + 1 + len + 1;
    if (!o->send_notes || len == 0 || len > PROTO_NOTE_MAX || need > sizeof(o->notes) ||
        memchr(payload, '\n', len)) {
        if (o->send_device) /* not a line: on its own */
            o->send_device(h, id, payload, len, 0);
        return;
    }
    if (o->notes_len + need > sizeof(o->notes))
        hub_notes_flush(h);
    char *p = o->notes + o->notes_len;
    memcpy(p, id, idlen);
    p[idlen] = ' ';
    memcpy(p + idlen + 1, payload, len);
    p[idlen + 1 + len] = '\n';
    o->notes_len += need;
}

void hub_notes_flush(struct hub *h)
{
    struct hub_out *o = &h->out;
    if (o->notes_len && o->send_notes)
        o->send_notes(h, o->notes, o->notes_len);
    o->notes_len = 0;
}

void hub_push_device(struct hub *h, const struct device_rec *d, int access)
{
    /* the leader keeps the nodes' view; the others hear of it (cluster.h) */
    hub_cluster_changed(h, d->id);
    if (hub_leads(h) && h->out.push_device)
        h->out.push_device(h, d, access);
}

void hub_reload_broker(struct hub *h)
{
    if (h->out.reload_broker)
        h->out.reload_broker(h);
}
