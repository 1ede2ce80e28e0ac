/* broker/notes.c - see notes.h. */
#include "broker/notes.h"

#include <string.h>

#include "common/buf.h"
#include "common/proto.h"

/* One line (its LF taken off); true when it was delivered. */
static bool note_one(const uint8_t *line, size_t n,
                     void (*fn)(const char *id, const char *msg, size_t n, void *arg), void *arg)
{
    struct mbuf b = mbuf_init(line, n);
    const uint8_t *id, *msg;
    size_t idlen, msglen;
    mbuf_split(&b, ' ', &id, &idlen);
    if (idlen == n) /* no space */
        return false;
    if (idlen > PROTO_DEVICE_ID_LEN || !proto_device_id_valid((const char *)id, idlen))
        return false;
    msglen = mbuf_left(&b);
    if (msglen == 0 || msglen > PROTO_NOTE_MAX || mbuf_take(&b, msglen, &msg))
        return false;
    char dev[PROTO_DEVICE_ID_LEN + 1];
    memcpy(dev, id, idlen);
    dev[idlen] = '\0';
    fn(dev, (const char *)msg, msglen, arg);
    return true;
}

struct notes_result notes_apply(const void *p, size_t len,
                                void (*fn)(const char *id, const char *msg, size_t n, void *arg),
                                void *arg)
{
    struct notes_result r = {0, 0};
    struct mbuf b = mbuf_init(p, len);
    while (mbuf_left(&b) > 0) {
        const uint8_t *line;
        size_t n, before = mbuf_left(&b);
        mbuf_split(&b, '\n', &line, &n);
        bool terminated = n < before; /* a line without its LF is cut short */
        if (terminated && note_one(line, n, fn, arg))
            r.delivered++;
        else
            r.refused++;
    }
    return r;
}
