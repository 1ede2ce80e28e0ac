/*
 * acl-bench - the plugin's per-message work in isolation, side by side with
 * a baseline in the same process: how long acl_decide() (identity lookup by
 * user name, subtree check, payload cap, token bucket) takes per message,
 * against a loop doing the same lookups' memory traffic with a no-op
 * decision. Single thread, bounded iteration count; prints ns/message.
 *
 *   acl-bench [DEVICES] [MESSAGES]      (defaults 5000, 20000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/table.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long ndev = argc > 1 ? strtol(argv[1], NULL, 10) : 5000;
    long nmsg = argc > 2 ? strtol(argv[2], NULL, 10) : 20000000;
    if (ndev < 1 || ndev > 1000000 || nmsg < 1 || nmsg > 1000000000)
        return 2;
    struct dev_table t;
    if (table_init(&t, 8192) != MAMORI_OK)
        return 1;
    char(*ids)[24] = calloc((size_t)ndev, sizeof(*ids));
    char(*topics)[64] = calloc((size_t)ndev, sizeof(*topics));
    if (!ids || !topics)
        return 1;
    for (long i = 0; i < ndev; i++) {
        char fp[65];
        snprintf(ids[i], sizeof(ids[i]), "MM%016lX", (unsigned long)i);
        for (int k = 0; k < 16; k++) /* Crockford-safe digits only */
            if (ids[i][2 + k] == 'I' || ids[i][2 + k] == 'L' || ids[i][2 + k] == 'O' ||
                ids[i][2 + k] == 'U')
                ids[i][2 + k] = '0';
        snprintf(fp, sizeof(fp), "%064lx", (unsigned long)i);
        if (table_set(&t, fp, ids[i], MODE_FULL, NULL) != MAMORI_OK)
            return 1;
        snprintf(topics[i], sizeof(topics[i]), "mamori/v1/d/%s/tm", ids[i]);
    }
    struct limits lim = {.max_payload = 16384, .rate = 1e9, .burst = 1e9, .kick_after = 1000000};
    volatile unsigned sink = 0;
    /* baseline: pick the device and touch its topic, decide nothing */
    double t0 = now_ns();
    for (long m = 0; m < nmsg; m++) {
        long i = m % ndev;
        sink += (unsigned)topics[i][12] + (unsigned)ids[i][3];
    }
    double base = (now_ns() - t0) / (double)nmsg;
    /* the plugin's work per published message */
    t0 = now_ns();
    for (long m = 0; m < nmsg; m++) {
        long i = m % ndev;
        struct dev *d = table_by_id(&t, ids[i]);
        sink += (unsigned)acl_decide(d, &lim, ACL_WRITE, topics[i], 40, (int64_t)(m / 1000));
    }
    double acl = (now_ns() - t0) / (double)nmsg;
    printf("acl-bench: %ld devices, %ld messages\n", ndev, nmsg);
    printf("baseline (no decision):          %6.1f ns/message\n", base);
    printf("plugin lookup + acl_decide:      %6.1f ns/message\n", acl);
    printf("plugin cost per message:         %6.1f ns (%.2f M decisions/s on one core)\n",
           acl - base, 1e3 / (acl - base > 0 ? acl - base : 1e-9));
    table_free(&t);
    free(ids);
    free(topics);
    return sink == 42 ? 3 : 0;
}
