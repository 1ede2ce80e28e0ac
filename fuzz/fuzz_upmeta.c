/* fuzz_upmeta: signed update metadata (common/upmeta.c), root and release
 * documents as a device receives them from the network. A fixed trusted
 * root (one key, made once) stands behind the release and next-root
 * checks; a fresh parse as a first root runs on every input too. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/upmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct upmeta_root g_root;

static void init_root(void)
{
    struct crypto_key *k = NULL;
    uint8_t spki[CRYPTO_SPKI_MAX];
    size_t n;
    if (crypto_key_generate(&k) || crypto_key_spki(k, spki, &n))
        abort();
    memset(&g_root, 0, sizeof(g_root));
    g_root.version = 1;
    g_root.expires = INT64_MAX;
    g_root.nkeys = 1;
    crypto_key_id(spki, n, g_root.keys[0].id);
    memcpy(g_root.keys[0].spki, spki, n);
    g_root.keys[0].spki_len = n;
    g_root.root.nkeyids = g_root.release.nkeyids = 1;
    memcpy(g_root.root.keyids[0], g_root.keys[0].id, CRYPTO_FP_HEX_LEN);
    memcpy(g_root.release.keyids[0], g_root.keys[0].id, CRYPTO_FP_HEX_LEN);
    g_root.root.threshold = g_root.release.threshold = 1;
    crypto_key_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once++)
        init_root();
    struct upmeta_root r;
    struct upmeta_release m;
    char why[160], *text = NULL;
    if (upmeta_root_first(data, size, 0, &r, why, sizeof(why)) == MAMORI_OK &&
        (r.root.threshold == 0 || r.root.threshold > r.root.nkeyids || r.nkeys > UPMETA_KEYS_MAX))
        __builtin_trap();
    (void)upmeta_root_next(&g_root, data, size, true, 0, &r, why, sizeof(why));
    if (upmeta_release_verify(&g_root, data, size, 0, &m, why, sizeof(why)) == MAMORI_OK &&
        (m.floor > m.security_version || m.size == 0 || strlen(m.sha256) != 64))
        __builtin_trap();
    if (upmeta_signed_text(data, size, &text) == MAMORI_OK && strlen(text) > UPMETA_SIGNED_MAX)
        __builtin_trap();
    free(text);
    return 0;
}
