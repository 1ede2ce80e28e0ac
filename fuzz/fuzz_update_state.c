/* fuzz_update_state: the update engine's own files (lib/update.c) as they
 * may be after storage corruption: STATE/update/state.json and the boot
 * loader environment SLOTS/boot.json. The first input byte picks the file;
 * the engine must open or refuse, never misbehave. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/upmeta.h"
#include "lib/update.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_state[128], g_slots[128], g_anchor[128], g_file[2][160];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    (void)nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void init(void)
{
    struct crypto_key *k = NULL;
    uint8_t spki[CRYPTO_SPKI_MAX];
    size_t n;
    char id[65], b64[256], text[1024], *doc = NULL, *sig = NULL, p[200], booted[2];
    snprintf(g_dir, sizeof(g_dir), "/tmp/mamori-fuzz-upd-XXXXXX");
    if (!mkdtemp(g_dir) || crypto_key_generate(&k) || crypto_key_spki(k, spki, &n))
        abort();
    atexit(cleanup);
    crypto_key_id(spki, n, id);
    crypto_b64_encode(spki, n, b64, sizeof(b64));
    snprintf(text, sizeof(text),
             "{\"type\":\"root\",\"version\":1,\"expires\":4102444800000,\"keys\":{\"%s\":\"%s\"},"
             "\"roles\":{\"root\":{\"keyids\":[\"%s\"],\"threshold\":1},\"release\":{\"keyids\":"
             "[\"%s\"],\"threshold\":1}}}",
             id, b64, id, id);
    if (upmeta_wrap(text, &doc) || upmeta_sign(doc, strlen(doc), k, &sig))
        abort();
    snprintf(g_state, sizeof(g_state), "%s/state", g_dir);
    snprintf(g_slots, sizeof(g_slots), "%s/slots", g_dir);
    snprintf(g_anchor, sizeof(g_anchor), "%s/root.json", g_dir);
    snprintf(p, sizeof(p), "%s/update", g_state);
    if (fs_write_atomic(g_anchor, sig, strlen(sig), 0600) || fs_mkdir_p(p, 0700) ||
        upd_boot(g_slots, booted))
        abort();
    snprintf(g_file[0], sizeof(g_file[0]), "%s/update/state.json", g_state);
    snprintf(g_file[1], sizeof(g_file[1]), "%s/boot.json", g_slots);
    free(doc);
    free(sig);
    crypto_key_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once++)
        init();
    if (size < 1)
        return 0;
    const char *f = g_file[data[0] & 1];
    if (fs_write_atomic(f, data + 1, size - 1, 0600))
        return 0;
    struct upd_config c = {
        .state_dir = g_state, .slots_dir = g_slots, .anchor_path = g_anchor, .model = "fuzz"};
    struct upd *u = NULL;
    if (upd_open(&c, &u) == MAMORI_OK) {
        struct upd_status st;
        upd_get_status(u, &st);
        if (strcmp(st.booted, "a") != 0 && strcmp(st.booted, "b") != 0)
            __builtin_trap();
        upd_close(u);
    }
    /* the next input starts from a clean engine state */
    unlink(g_file[0]);
    unlink(g_file[1]);
    return 0;
}
