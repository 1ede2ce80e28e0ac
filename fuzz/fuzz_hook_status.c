/* fuzz_hook_status: the update hook's answer to `status` (lib/update.c,
 * upd_hook_status_parse), at most UPHOOK_OUT_MAX bytes as the engine keeps
 * them. Accepted answers name a valid slot, and a second parse agrees. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "lib/uphook.h"
#include "lib/update.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[UPHOOK_OUT_MAX + 1], booted[2], primary[2], b2[2], p2[2];
    if (size > UPHOOK_OUT_MAX)
        size = UPHOOK_OUT_MAX;
    memcpy(text, data, size);
    text[size] = '\0';
    if (upd_hook_status_parse(text, booted, primary) != MAMORI_OK)
        return 0;
    assert(strcmp(booted, "a") == 0 || strcmp(booted, "b") == 0);
    assert(!primary[0] || strcmp(primary, "a") == 0 || strcmp(primary, "b") == 0);
    assert(upd_hook_status_parse(text, b2, p2) == MAMORI_OK);
    assert(strcmp(booted, b2) == 0 && strcmp(primary, p2) == 0);
    return 0;
}
