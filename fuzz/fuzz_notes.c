/*
 * fuzz_notes: the broker plugin's parsers of the hub's control messages:
 * notes (mamori/v1/ctl/notes, broker/notes.h) and partition lists
 * (mamori/v1/ctl/parts, broker/parts.h), each given the same input.
 * Invariants checked: every note handed on has a valid device id and a
 * message of 1 to PROTO_NOTE_MAX bytes without LF, lying inside the input;
 * every line is counted once; a partition list is taken only as 16 hex
 * digits, and then it is exactly what the data sessions are sent.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "broker/notes.h"
#include "broker/parts.h"
#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct span {
    const uint8_t *p;
    size_t n;
};

static void check(const char *id, const char *msg, size_t n, void *arg)
{
    const struct span *in = arg;
    if (!proto_device_id_valid(id, strlen(id)) || n == 0 || n > PROTO_NOTE_MAX ||
        memchr(msg, '\n', n) || (const uint8_t *)msg < in->p ||
        (const uint8_t *)msg + n > in->p + in->n)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct span in = {data, size};
    struct notes_result r = notes_apply(data, size, check, &in);
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (size && data[size - 1] != '\n')
        lines++; /* the last one, cut short */
    if (r.delivered + r.refused != lines)
        __builtin_trap();

    static struct parts p; /* kept across inputs: the table fills up */
    bool hex = size == 16;
    for (size_t i = 0; hex && i < size; i++)
        hex = (data[i] >= '0' && data[i] <= '9') || (data[i] >= 'a' && data[i] <= 'f');
    size_t before = p.n;
    enum mamori_err rc = parts_set(&p, "mamori-hub-a", data, size);
    if ((rc == MAMORI_OK) != hex || p.n > PARTS_HUBS || p.n < before)
        __builtin_trap();
    if (rc == MAMORI_OK) {
        char id[PROTO_DEVICE_ID_LEN + 1];
        size_t n = size < PROTO_DEVICE_ID_LEN ? size : PROTO_DEVICE_ID_LEN;
        memcpy(id, data, n);
        id[n] = '\0';
        unsigned part = proto_partition(id);
        unsigned nib = part / 4; /* the hex digit holding this partition's bit */
        char c = (char)data[15 - nib];
        unsigned v = c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
        if (parts_allow(&p, "mamori-hub-a-data", id) != (bool)((v >> (part % 4)) & 1u) ||
            !parts_allow(&p, "mamori-hub-a", id) || !parts_allow(&p, "mamori-hub-b-data", id))
            __builtin_trap();
    }
    return 0;
}
