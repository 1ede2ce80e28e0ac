/*
 * fuzz_sync: the broker plugin's control-message parser and its ACL
 * decisions. Input: messages separated by newlines, applied in order; then
 * every device in the resulting table is asked about a few topics.
 * Invariant checked: a device the table denies is never allowed anything.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "broker/table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_kick(const char *id, void *arg)
{
    (void)id;
    (void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sync_state s;
    memset(&s, 0, sizeof(s));
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            (void)sync_apply(&s, data + start, i - start, no_kick, NULL);
            start = i + 1;
        }
    }
    struct limits lim = {.max_payload = 100, .rate = 5, .burst = 5, .kick_after = 3};
    static const char *topics[] = {"mamori/v1/d/MM000000000000000A/tm", "mamori/v1/d/+/tm", "#",
                                   "mamori/v1/ctl/sync"};
    for (size_t b = 0; b < s.active.nbuckets; b++) {
        for (struct dev *d = s.active.by_id[b]; d; d = d->next_id) {
            char own[64];
            snprintf(own, sizeof(own), "mamori/v1/d/%s/hb", d->id);
            for (int a = 1; a <= 8; a <<= 1) {
                enum acl_verdict v = acl_decide(d, &lim, a, own, 10, 1);
                if (d->mode == MODE_DENY && v == ACL_ALLOW)
                    __builtin_trap();
                for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++)
                    (void)acl_decide(d, &lim, a, topics[t], 10, 1);
            }
        }
    }
    sync_free(&s);
    return 0;
}
