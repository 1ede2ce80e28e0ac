/*
 * Unit tests: the device's remote settings store (lib/cfgstore.c).
 *
 * An apply and a rollback are stopped after each of their durable steps,
 * as kill -9 would stop them. After reopening (and the SDK's rule that a
 * version still on probation at start is rolled back), the store holds a
 * whole version: the one before the apply, or the known-good one.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"

#include "lib/cfgstore.h"

#define V1 "{\"heartbeat_s\":10}"
#define V2 "{\"heartbeat_s\":20}"
#define V3 "{\"heartbeat_s\":30}"

static int setup(void **state)
{
    char *dir = malloc(64);
    snprintf(dir, 64, "/tmp/mamori-cfg-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    rm_rf(*state);
    free(*state);
    return 0;
}

/* What the SDK does at start. */
static void reopen(const char *dir, struct cfgstore *s)
{
    assert_int_equal(cfgstore_open(dir, s), MAMORI_OK);
    if (s->pending) {
        enum mamori_err rc = cfgstore_rollback(s, 0);
        assert_true(rc == MAMORI_OK || rc == MAMORI_ERR_NOTFOUND);
    }
}

static void apply_commit_rollback(void **state)
{
    struct cfgstore s;
    assert_int_equal(cfgstore_open(*state, &s), MAMORI_OK);
    assert_int_equal(s.version, 0);
    assert_int_equal(cfgstore_apply(&s, 1, V1, 1000, 0), MAMORI_OK);
    assert_true(s.pending);
    assert_int_equal(s.deadline_ms, 1000);
    assert_int_equal(cfgstore_commit(&s), MAMORI_OK);
    assert_int_equal(cfgstore_apply(&s, 2, V2, 2000, 0), MAMORI_OK);
    assert_int_equal(s.version, 2);
    assert_int_equal(s.good_version, 1);
    assert_string_equal(s.settings, V2);
    assert_int_equal(cfgstore_commit(&s), MAMORI_OK);
    /* reopened: committed, nothing pending */
    assert_int_equal(cfgstore_open(*state, &s), MAMORI_OK);
    assert_false(s.pending);
    assert_int_equal(s.version, 2);
    /* rollback on command: back to the known-good version */
    assert_int_equal(cfgstore_rollback(&s, 0), MAMORI_OK);
    assert_int_equal(s.version, 1);
    assert_string_equal(s.settings, V1);
    /* nothing older is kept */
    assert_int_equal(cfgstore_rollback(&s, 0), MAMORI_ERR_NOTFOUND);
    assert_int_equal(s.version, 1);
    /* a settings text that is not an object is refused */
    assert_int_equal(cfgstore_apply(&s, 3, "[1]", 0, 0), MAMORI_ERR_INVAL);
    assert_int_equal(s.version, 1);
}

static void crash_at_every_apply_step(void **state)
{
    for (int step = 1; step <= CFG_N_APPLY_STEPS; step++) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s/a%d", (char *)*state, step);
        struct cfgstore s;
        assert_int_equal(cfgstore_open(sub, &s), MAMORI_OK);
        assert_int_equal(cfgstore_apply(&s, 1, V1, 0, 0), MAMORI_OK);
        assert_int_equal(cfgstore_commit(&s), MAMORI_OK);
        assert_int_equal(cfgstore_apply(&s, 2, V2, 0, 0), MAMORI_OK);
        assert_int_equal(cfgstore_commit(&s), MAMORI_OK);
        /* version 3 is cut short at step */
        assert_int_equal(cfgstore_apply(&s, 3, V3, 0, step), MAMORI_OK);
        reopen(sub, &s);
        if (s.version != 2 || strcmp(s.settings, V2) != 0)
            fail_msg("apply stopped after step %d: version %llu, not the one before", step,
                     (unsigned long long)s.version);
        assert_false(s.pending);
        /* and the store still works */
        assert_int_equal(cfgstore_apply(&s, 3, V3, 0, 0), MAMORI_OK);
        assert_int_equal(s.version, 3);
        assert_int_equal(s.good_version, 2);
    }
}

static void crash_at_every_rollback_step(void **state)
{
    for (int step = 1; step <= CFG_N_ROLLBACK_STEPS; step++) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s/r%d", (char *)*state, step);
        struct cfgstore s;
        assert_int_equal(cfgstore_open(sub, &s), MAMORI_OK);
        assert_int_equal(cfgstore_apply(&s, 1, V1, 0, 0), MAMORI_OK);
        assert_int_equal(cfgstore_commit(&s), MAMORI_OK);
        assert_int_equal(cfgstore_apply(&s, 2, V2, 0, 0), MAMORI_OK); /* on probation */
        assert_int_equal(cfgstore_rollback(&s, step), MAMORI_OK);
        reopen(sub, &s);
        if (s.version != 1 || strcmp(s.settings, V1) != 0)
            fail_msg("rollback stopped after step %d: version %llu, not the known-good one", step,
                     (unsigned long long)s.version);
        assert_false(s.pending);
    }
}

static void damaged_files_are_not_settings(void **state)
{
    char p[256];
    struct cfgstore s;
    assert_int_equal(cfgstore_open(*state, &s), MAMORI_OK);
    snprintf(p, sizeof(p), "%s/config/current.json", (char *)*state);
    FILE *f = fopen(p, "w");
    fputs("{\"version\":7,\"settings\":", f); /* torn by hand */
    fclose(f);
    assert_int_equal(cfgstore_open(*state, &s), MAMORI_OK);
    assert_int_equal(s.version, 0);
    assert_string_equal(s.settings, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(apply_commit_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_at_every_apply_step, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_at_every_rollback_step, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_files_are_not_settings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
