/*
 * examples/sensor.c - a device program on libmamori, to copy.
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L sensor.c $(pkg-config --cflags --libs mamori) -o sensor
 *   ./sensor IDENTITY_DIR STATE_DIR [SECONDS_BETWEEN_READINGS] [COUNT]
 *
 * IDENTITY_DIR is what the factory wrote (device.key, device.crt, ca.crt,
 * device.json); STATE_DIR is where the SDK keeps the outbox and the
 * device's durable state. The program reads a "sensor" every few seconds
 * and hands the value to the SDK, which checks it against the model's
 * schema (if given), keeps it on disk until the hub has it, and carries out
 * the hub's signed commands. All of it runs in one poll() loop.
 */
#include <mamori/device.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile sig_atomic_t stop;

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

/* The SDK has already applied the command (a lock is on disk, say); the
 * application does its part. */
static void on_command(struct mamori_device *dev, enum mamori_command cmd, void *arg)
{
    (void)arg;
    if (cmd == MAMORI_CMD_LOCK)
        printf("%s: locked by its owner; readings stop\n", mamori_device_id(dev));
    else if (cmd == MAMORI_CMD_UNLOCK)
        printf("%s: unlocked\n", mamori_device_id(dev));
    else if (cmd == MAMORI_CMD_REBOOT)
        stop = 1; /* a real device would reboot now */
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s IDENTITY_DIR STATE_DIR [SECONDS] [COUNT]\n", argv[0]);
        return 2;
    }
    long every_ms = argc > 3 ? strtol(argv[3], NULL, 10) * 1000 : 5000;
    long count = argc > 4 ? strtol(argv[4], NULL, 10) : -1;
    struct mamori_device_opts o = {
        .identity_dir = argv[1],
        .state_dir = argv[2],
        .heartbeat_interval_s = 30,
        .on_command = on_command,
    };
    struct mamori_device *dev = NULL;
    enum mamori_err rc = mamori_sdk_init();
    if (rc == MAMORI_OK)
        rc = mamori_device_new(&o, &dev); /* dev is ours: mamori_device_free */
    if (rc != MAMORI_OK) {
        fprintf(stderr, "cannot start: %s\n", mamori_strerror(rc));
        mamori_sdk_cleanup();
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint64_t next_reading = mamori_now_ms();
    long sent = 0;
    int timeout = 0;
    while (!stop && mamori_device_state(dev) != MAMORI_DEV_WIPED) {
        struct pollfd p = {.fd = mamori_device_fd(dev), .events = POLLIN};
        if (mamori_device_want_write(dev))
            p.events |= POLLOUT;
        poll(&p, 1, timeout);
        uint64_t now = mamori_now_ms();
        timeout = mamori_device_step(dev, now, p.revents & POLLIN, p.revents & POLLOUT);
        if (now >= next_reading && (count < 0 || sent < count)) {
            char body[64];
            snprintf(body, sizeof(body), "{\"temp_c\":%.1f}", 20.0 + (double)(sent % 50) / 10);
            rc = mamori_device_send_telemetry(dev, body); /* on disk when it returns */
            if (rc == MAMORI_OK)
                sent++;
            else
                fprintf(stderr, "reading not sent: %s\n", mamori_strerror(rc));
            next_reading = now + (uint64_t)every_ms;
        }
        int until = (int)(next_reading > now ? next_reading - now : 0);
        if (until < timeout)
            timeout = until;
        struct mamori_device_stats st;
        mamori_device_get_stats(dev, &st);
        if (count >= 0 && sent >= count && st.outbox_queued == 0)
            break; /* everything the hub acknowledged: done */
    }
    mamori_device_free(dev);
    mamori_sdk_cleanup();
    printf("sent %ld readings\n", sent);
    return 0;
}
