/* common/proto.c - see proto.h. */
#include "common/proto.h"

#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"

static const char B32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; /* Crockford */

static int b32_val(int c)
{
    if (c >= 'a' && c <= 'z')
        c -= 'a' - 'A';
    if (c == 'O')
        c = '0';
    if (c == 'I' || c == 'L')
        c = '1';
    const char *p = c ? strchr(B32, c) : NULL;
    return p ? (int)(p - B32) : -1;
}

/* Encodes nchars 5-bit groups from bytes (big-endian bit order). */
static void b32_encode(const uint8_t *in, size_t nchars, char *out)
{
    for (size_t i = 0; i < nchars; i++) {
        size_t bit = i * 5;
        unsigned v = (unsigned)(in[bit / 8] << 8) |
                     (bit / 8 + 1 < (nchars * 5 + 7) / 8 ? in[bit / 8 + 1] : 0);
        out[i] = B32[(v >> (11 - bit % 8)) & 31];
    }
    out[nchars] = '\0';
}

unsigned proto_partition(const char *id)
{
    uint32_t x = 2166136261u;
    for (; *id; id++)
        x = (x ^ (uint8_t)*id) * 16777619u;
    return x % PROTO_PARTITIONS;
}

bool proto_device_id_valid(const char *s, size_t n)
{
    if (n != PROTO_DEVICE_ID_LEN || s[0] != 'M' || s[1] != 'M')
        return false;
    for (size_t i = 2; i < n; i++)
        if (!strchr(B32, s[i]) || s[i] == '\0')
            return false;
    return true;
}

enum mamori_err proto_device_id_new(char out[PROTO_DEVICE_ID_LEN + 1])
{
    uint8_t r[10];
    enum mamori_err rc = crypto_random(r, sizeof(r));
    if (rc)
        return rc;
    out[0] = 'M';
    out[1] = 'M';
    b32_encode(r, 16, out + 2);
    return MAMORI_OK;
}

enum mamori_err proto_claim_code_new(char out[PROTO_CLAIM_CODE_TEXT + 1])
{
    uint8_t r[13]; /* 100 bits used */
    char raw[PROTO_CLAIM_CODE_CHARS + 1];
    enum mamori_err rc = crypto_random(r, sizeof(r));
    if (rc)
        return rc;
    b32_encode(r, PROTO_CLAIM_CODE_CHARS, raw);
    crypto_wipe(r, sizeof(r));
    size_t o = 0;
    for (size_t i = 0; i < PROTO_CLAIM_CODE_CHARS; i++) {
        if (i && i % 5 == 0)
            out[o++] = '-';
        out[o++] = raw[i];
    }
    out[o] = '\0';
    crypto_wipe(raw, sizeof(raw));
    return MAMORI_OK;
}

enum mamori_err proto_claim_code_normalize(const char *in, size_t n,
                                           char out[PROTO_CLAIM_CODE_CHARS + 1])
{
    size_t o = 0;
    if (n > 64)
        return MAMORI_ERR_PARSE;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '-' || c == ' ')
            continue;
        int v = b32_val((unsigned char)c);
        if (v < 0 || o >= PROTO_CLAIM_CODE_CHARS)
            return MAMORI_ERR_PARSE;
        out[o++] = B32[v];
    }
    if (o != PROTO_CLAIM_CODE_CHARS)
        return MAMORI_ERR_PARSE;
    out[o] = '\0';
    return MAMORI_OK;
}

void proto_claim_code_hash(const char canon[PROTO_CLAIM_CODE_CHARS + 1], char out_hex[65])
{
    uint8_t md[CRYPTO_SHA256_LEN];
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "mamori-claim-v1:%s", canon);
    crypto_sha256(tmp, (size_t)n, md);
    crypto_wipe(tmp, sizeof(tmp));
    crypto_hex(md, sizeof(md), out_hex);
}

static const char *kind_names[] = {"hb", "tm", "ev", "res", "cmd", "log"};

enum mamori_err proto_topic_parse(const char *topic, size_t n, char id_out[PROTO_DEVICE_ID_LEN + 1],
                                  enum proto_kind *kind)
{
    struct mbuf b = mbuf_init(topic, n);
    const uint8_t *seg;
    size_t len;
    static const char *prefix[] = {"mamori", "v1", "d"};
    for (size_t i = 0; i < 3; i++) {
        mbuf_split(&b, '/', &seg, &len);
        if (!mbuf_eq(seg, len, prefix[i]))
            return MAMORI_ERR_PARSE;
    }
    mbuf_split(&b, '/', &seg, &len);
    if (!proto_device_id_valid((const char *)seg, len))
        return MAMORI_ERR_PARSE;
    memcpy(id_out, seg, len);
    id_out[len] = '\0';
    mbuf_split(&b, '/', &seg, &len);
    if (mbuf_left(&b) != 0 || b.p[b.len - 1] == '/')
        return MAMORI_ERR_PARSE;
    for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++) {
        if (mbuf_eq(seg, len, kind_names[k])) {
            *kind = (enum proto_kind)k;
            return MAMORI_OK;
        }
    }
    return MAMORI_ERR_PARSE;
}

enum mamori_err proto_topic(char *out, size_t outlen, const char *id, enum proto_kind kind)
{
    int n = snprintf(out, outlen, PROTO_TOPIC_DEV_PREFIX "%s/%s", id, kind_names[kind]);
    return (n < 0 || (size_t)n >= outlen) ? MAMORI_ERR_TOOBIG : MAMORI_OK;
}

/* T11-L1e (envelope level; per-model value ranges come with the SDK). */
enum mamori_err proto_envelope_parse(const void *payload, size_t len, struct proto_envelope *env,
                                     json_t **body_out)
{
    json_t *root = NULL;
    if (body_out)
        *body_out = NULL;
    enum mamori_err rc = json_parse_untrusted(payload, len, PROTO_MAX_PAYLOAD, &root, NULL, 0);
    if (rc)
        return rc;
    uint64_t v = 0;
    json_t *body = json_object_get(root, "body");
    if (!json_get_u64(root, "v", &v) || v != 1 || !json_get_u64(root, "seq", &env->seq) ||
        !json_get_u64(root, "ts", &env->ts_ms) || (body && !json_is_object(body))) {
        json_decref(root);
        return MAMORI_ERR_PARSE;
    }
    if (body_out && body)
        *body_out = json_incref(body);
    json_decref(root);
    return MAMORI_OK;
}
