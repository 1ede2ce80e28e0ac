/*
 * outbox-bench - the device outbox's persistence rate and crash recovery,
 * side by side with the floor the disk sets: appending the same bytes to a
 * plain file with fdatasync under the same policy (one sync per message,
 * or one per batch). Loopback-free; bounded counts.
 *
 *   outbox-bench [DIR] [N_SINGLE=2000] [N_BATCH=100000] [BATCH=100]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/outbox.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *BODY = "{\"temp_c\":21.5,\"door_open\":false,\"count\":42}";

/* The floor: the envelope appended to a file, fdatasync per `per` msgs. */
static double raw_file(const char *path, long n, long per)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0)
        return 0;
    char env[256];
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        int len =
            snprintf(env, sizeof(env), "{\"v\":1,\"seq\":%ld,\"ts\":1,\"body\":%s}\n", i, BODY);
        if (write(fd, env, (size_t)len) != len)
            break;
        if ((i + 1) % per == 0 && fdatasync(fd))
            break;
    }
    double dt = now_s() - t0;
    close(fd);
    unlink(path);
    return (double)n / dt;
}

static double outbox_rate(const char *path, long n, long per, struct outbox **keep)
{
    struct outbox *ob;
    if (outbox_open(path, (size_t)n + 10, NULL, &ob))
        return 0;
    const char **v = malloc((size_t)per * sizeof(*v));
    for (long i = 0; i < per; i++)
        v[i] = BODY;
    double t0 = now_s();
    for (long i = 0; i < n; i += per)
        if (outbox_put(ob, OUTBOX_TM, v, (size_t)per, 1, NULL))
            break;
    double dt = now_s() - t0;
    free(v);
    if (keep)
        *keep = ob;
    else
        outbox_close(ob);
    return (double)n / dt;
}

static bool count_cb(int64_t id, enum outbox_stream s, uint64_t seq, const void *p, size_t len,
                     void *arg)
{
    (void)id, (void)s, (void)seq, (void)p, (void)len;
    ++*(long *)arg;
    return true;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/mamori-outbox-bench.XXXXXX";
    const char *base = argc > 1 ? argv[1] : mkdtemp(dir);
    long n1 = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    long n2 = argc > 3 ? strtol(argv[3], NULL, 10) : 100000;
    long batch = argc > 4 ? strtol(argv[4], NULL, 10) : 100;
    if (!base || n1 < 10 || n1 > 1000000 || n2 < batch || n2 > 10000000 || batch < 1)
        return 2;
    char ob[512], raw[512];
    snprintf(ob, sizeof(ob), "%s/outbox.db", base);
    snprintf(raw, sizeof(raw), "%s/raw.log", base);
    printf("# outbox-bench %s %ld %ld %ld\n", base, n1, n2, batch);
    printf("policy: every put is on disk when it returns (SQLite WAL, synchronous=FULL)\n");
    printf("%-44s %12s %12s\n", "", "outbox msg/s", "file+fdatasync msg/s");
    double a = outbox_rate(ob, n1, 1, NULL);
    unlink(ob);
    double b = raw_file(raw, n1, 1);
    printf("%-44s %12.0f %12.0f\n", "one message per put (sync each)", a, b);
    struct outbox *keep = NULL;
    snprintf(ob, sizeof(ob), "%s/outbox2.db", base);
    a = outbox_rate(ob, n2, batch, &keep);
    b = raw_file(raw, n2, batch);
    char lab[64];
    snprintf(lab, sizeof(lab), "batches of %ld (one sync per batch)", batch);
    printf("%-44s %12.0f %12.0f\n", lab, a, b);
    outbox_close(keep);
    /* Recovery: reopen with everything queued and reach the first send. */
    double t0 = now_s();
    struct outbox *r;
    long seen = 0;
    if (outbox_open(ob, (size_t)n2 + 10, NULL, &r) == MAMORI_OK &&
        outbox_peek(r, 0, 64, count_cb, &seen) == MAMORI_OK) {
        struct outbox_stats st;
        if (outbox_stats(r, &st) == MAMORI_OK)
            printf("recovery: reopen with %llu queued and read the first %ld to send: %.1f ms\n",
                   (unsigned long long)st.queued, seen, (now_s() - t0) * 1000);
        outbox_close(r);
    }
    char p[600];
    snprintf(p, sizeof(p), "%s/outbox2.db", base);
    unlink(p);
    snprintf(p, sizeof(p), "%s/outbox2.db-wal", base);
    unlink(p);
    snprintf(p, sizeof(p), "%s/outbox2.db-shm", base);
    unlink(p);
    snprintf(p, sizeof(p), "%s/outbox.db-wal", base);
    unlink(p);
    snprintf(p, sizeof(p), "%s/outbox.db-shm", base);
    unlink(p);
    if (base == dir)
        rmdir(dir);
    return 0;
}
