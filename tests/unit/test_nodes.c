/* Unit tests: where each device is connected (hub/io/nodes.h), and the
 * broker addresses of --broker and --mqtt-public (broker_addr_parse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hub/io/broker.h"
#include "hub/io/nodes.h"

static int setup(void **st)
{
    struct hub *h = calloc(1, sizeof(*h));
    if (!h || nodes_init(h) != MAMORI_OK)
        return -1;
    h->n_nodes = 2;
    *st = h;
    return 0;
}

static int teardown(void **st)
{
    struct hub *h = *st;
    nodes_free(h);
    free(h);
    return 0;
}

static void a_device_moves_between_nodes(void **st)
{
    struct hub *h = *st;
    assert_int_equal(nodes_of(h, "MM0000000000000001"), -1);
    nodes_here(h, "MM0000000000000001", 0);
    nodes_here(h, "MM0000000000000002", 0);
    assert_int_equal(nodes_of(h, "MM0000000000000001"), 0);
    assert_int_equal(nodes_count(h, 0), 2);
    /* it reconnects on node 1 before node 0 reports its old session gone */
    nodes_here(h, "MM0000000000000001", 1);
    assert_int_equal(nodes_of(h, "MM0000000000000001"), 1);
    assert_int_equal(nodes_count(h, 0), 1);
    assert_int_equal(nodes_count(h, 1), 1);
    /* node 0's late report of the old session does not move it back */
    nodes_gone(h, "MM0000000000000001", 0);
    assert_int_equal(nodes_of(h, "MM0000000000000001"), 1);
    nodes_gone(h, "MM0000000000000001", 1);
    assert_int_equal(nodes_of(h, "MM0000000000000001"), -1);
    assert_int_equal(nodes_count(h, 1), 0);
    /* the same report twice counts once */
    nodes_here(h, "MM0000000000000002", 0);
    assert_int_equal(nodes_count(h, 0), 1);
}

static void bad_reports_change_nothing(void **st)
{
    struct hub *h = *st;
    nodes_here(h, "not a device id", 0);
    nodes_here(h, "MM0000000000000003", 2);  /* no such node */
    nodes_here(h, "MM0000000000000003", -1); /* no such node */
    nodes_gone(h, "MM0000000000000009", 0);  /* never here */
    assert_int_equal(nodes_of(h, "not a device id"), -1);
    assert_int_equal(nodes_of(h, "MM0000000000000003"), -1);
    assert_int_equal(nodes_count(h, 0), 0);
    assert_int_equal(nodes_count(h, 5), 0);
}

static void many_devices(void **st)
{
    struct hub *h = *st;
    char id[24];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "MM%016d", i);
        nodes_here(h, id, i % 2);
    }
    assert_int_equal(nodes_count(h, 0), 10000);
    assert_int_equal(nodes_count(h, 1), 10000);
    snprintf(id, sizeof(id), "MM%016d", 12345);
    assert_int_equal(nodes_of(h, id), 1);
}

static void broker_addresses(void **st)
{
    (void)st;
    char host[256];
    int port = 0;
    assert_true(broker_addr_parse("127.0.0.1:8883", host, sizeof(host), &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8883);
    assert_true(broker_addr_parse("mqtt.example.com:1", host, sizeof(host), &port));
    assert_string_equal(host, "mqtt.example.com");
    assert_true(broker_addr_parse("[::1]:65535", host, sizeof(host), &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    static const char *const bad[] = {
        "",
        ":8883",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:88x3",
        "::1:8883",
        "[::1]",
        "[::1:8883",
        "a b:1",
        "a,b:1",
        "[]:1",
        "host/x:1",
        "127.0.0.1:-1",
        "127.0.0.1: 1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = -7;
        if (broker_addr_parse(bad[i], host, sizeof(host), &port))
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(port, -7); /* untouched */
    }
    char small[4];
    assert_false(broker_addr_parse("abcd:1", small, sizeof(small), &port));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_device_moves_between_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_reports_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(many_devices, setup, teardown),
        cmocka_unit_test(broker_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
