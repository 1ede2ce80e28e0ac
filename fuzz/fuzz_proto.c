/* fuzz_proto: MQTT topic parser, message envelope, claim-code normaliser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/json.h"
#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    char id[PROTO_DEVICE_ID_LEN + 1], canon[PROTO_CLAIM_CODE_CHARS + 1], h[65];
    enum proto_kind k;
    struct proto_envelope e;
    json_t *body = NULL;
    switch (data[0] % 3) {
    case 0:
        if (proto_topic_parse(p, n, id, &k) == MAMORI_OK && !proto_device_id_valid(id, strlen(id)))
            __builtin_trap(); /* a parsed topic always yields a valid id */
        break;
    case 1:
        if (proto_envelope_parse(p, n, &e, &body) == MAMORI_OK)
            json_decref(body);
        break;
    default:
        if (proto_claim_code_normalize(p, n, canon) == MAMORI_OK) {
            if (strlen(canon) != PROTO_CLAIM_CODE_CHARS)
                __builtin_trap();
            proto_claim_code_hash(canon, h);
        }
        break;
    }
    return 0;
}
