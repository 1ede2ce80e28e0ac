/*
 * fuzz_notes: the broker plugin's parser of the hub's notes
 * (mamori/v1/ctl/notes, broker/notes.h). Invariants checked: every note
 * handed on has a valid device id and a message of 1 to PROTO_NOTE_MAX
 * bytes without LF, lying inside the input; every line is counted once.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "broker/notes.h"
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
    return 0;
}
