/*
 * Unit tests: access detection on the device log directory
 * (lib/logwatch.c) against the real kernel inotify.
 *
 * The SDK's own appends and rotations, announced as it announces them,
 * report nothing; any other process's read, write, chmod, delete or
 * creation is reported, also when it lands in the middle of one of the
 * SDK's own writes; the directory going away and a queue overflow are
 * reported; malformed event buffers are refused.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"

#include "lib/logwatch.h"

struct fx {
    char dir[64];
    char cur[128], old[128];
    struct logwatch *w;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/mamori-lw-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->cur, sizeof(f->cur), "%s/current.log", f->dir);
    snprintf(f->old, sizeof(f->old), "%s/log.1", f->dir);
    assert_int_equal(logwatch_open(f->dir, &f->w), MAMORI_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    logwatch_close(f->w);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* The SDK's own writer; a tiny rotation size makes every append after the
 * first rotate. */
static void own_append(struct fx *f, const char *line)
{
    assert_int_equal(logwatch_append(f->w, f->dir, line, strlen(line), 1u << 20), MAMORI_OK);
}

static void own_append_rotating(struct fx *f, const char *line)
{
    assert_int_equal(logwatch_append(f->w, f->dir, line, strlen(line), 1), MAMORI_OK);
}

static size_t take(struct fx *f, struct logwatch_access *a)
{
    (void)logwatch_poll(f->w);
    return logwatch_take(f->w, a, LOGWATCH_FILES_MAX);
}

/* The entry for file (the test fails without one). */
static struct logwatch_access find(const struct logwatch_access *a, size_t n, const char *file)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].file, file) == 0)
            return a[i];
    fail_msg("no report for \"%s\"", file);
    return (struct logwatch_access){{0}, 0, 0};
}

static void own_operations_are_not_reported(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    own_append(f, "one\n");
    own_append(f, "two\n");
    assert_int_equal(take(f, a), 0);
    /* Rotation, then rotation onto an existing log.1. */
    own_append_rotating(f, "three\n");
    own_append_rotating(f, "four\n");
    own_append(f, "five\n");
    assert_int_equal(take(f, a), 0);
    struct stat st;
    assert_int_equal(stat(f->old, &st), 0);
    assert_int_equal(st.st_size, 6); /* "three\n" */
    assert_int_equal(stat(f->cur, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 10); /* "four\nfive\n" */
}

static void foreign_read_is_reported(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    char buf[16];
    own_append(f, "secret record\n");
    assert_int_equal(take(f, a), 0);
    int fd = open(f->cur, O_RDONLY);
    assert_true(fd >= 0);
    assert_true(read(fd, buf, sizeof(buf)) > 0);
    close(fd);
    size_t n = take(f, a);
    assert_int_equal(n, 1);
    assert_string_equal(a[0].file, "current.log");
    assert_int_equal(a[0].ops, LOGWATCH_OPEN | LOGWATCH_READ | LOGWATCH_CLOSE);
    char s[64];
    logwatch_ops_str(a[0].ops, s, sizeof(s));
    assert_string_equal(s, "open,read,close");
    /* Reported once: the next poll is quiet. */
    assert_int_equal(take(f, a), 0);
}

/* Someone else's write lands between the SDK's open and its write: the
 * events of both are in the queue and the surplus is still seen. */
static void foreign_write_inside_own_append_is_reported(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    own_append(f, "first\n");
    int mine = open(f->cur, O_WRONLY | O_APPEND);
    assert_true(mine >= 0);
    int theirs = open(f->cur, O_WRONLY | O_APPEND);
    assert_true(theirs >= 0);
    assert_int_equal(write(theirs, "forged\n", 7), 7);
    close(theirs);
    assert_int_equal(write(mine, "second\n", 7), 7);
    close(mine);
    logwatch_expect(f->w, "current.log", LOGWATCH_OPEN | LOGWATCH_WRITE | LOGWATCH_CLOSE_WRITE);
    size_t n = take(f, a);
    assert_int_equal(n, 1);
    assert_string_equal(a[0].file, "current.log");
    /* The two opens follow each other and the kernel merged them; the
     * other process's write and close are the surplus. */
    assert_int_equal(a[0].ops, LOGWATCH_WRITE | LOGWATCH_CLOSE_WRITE);
    assert_int_equal(a[0].events, 2);
}

static void chmod_delete_create_are_reported(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    char p[160];
    own_append(f, "x\n");
    own_append_rotating(f, "y\n");
    assert_int_equal(take(f, a), 0);
    assert_int_equal(chmod(f->cur, 0644), 0);
    assert_int_equal(unlink(f->old), 0);
    snprintf(p, sizeof(p), "%s/evil\"name\x01", f->dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    size_t n = take(f, a);
    assert_int_equal(n, 3);
    assert_true(find(a, n, "current.log").ops & LOGWATCH_ATTRIB);
    assert_true(find(a, n, "log.1").ops & LOGWATCH_DELETE);
    /* the name is cleaned before it goes into JSON */
    assert_true(find(a, n, "evil?name?").ops & LOGWATCH_CREATE);
}

/* An announcement the kernel never matched must not hide a later access. */
static void stale_expectation_is_dropped(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    own_append(f, "x\n");
    assert_int_equal(take(f, a), 0);
    logwatch_expect(f->w, "current.log", LOGWATCH_OPEN | LOGWATCH_READ | LOGWATCH_CLOSE);
    assert_int_equal(take(f, a), 0);
    int fd = open(f->cur, O_RDONLY);
    assert_true(fd >= 0);
    close(fd);
    size_t n = take(f, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].ops, LOGWATCH_OPEN | LOGWATCH_CLOSE);
}

static void directory_removed_is_reported(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    own_append(f, "x\n");
    assert_int_equal(take(f, a), 0);
    assert_int_equal(unlink(f->cur), 0);
    assert_int_equal(rmdir(f->dir), 0);
    assert_int_equal(logwatch_poll(f->w), MAMORI_ERR_IO);
    size_t n = logwatch_take(f->w, a, LOGWATCH_FILES_MAX);
    assert_true(find(a, n, "current.log").ops & LOGWATCH_DELETE);
    assert_true(find(a, n, "").ops & LOGWATCH_DIR_GONE);
}

static void listing_the_directory_is_not_file_access(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    own_append(f, "x\n");
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    while (readdir(d))
        ;
    closedir(d);
    assert_int_equal(take(f, a), 0);
}

static void many_files_fold_into_one_entry(void **state)
{
    struct fx *f = *state;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    char p[160];
    for (int i = 0; i < 20; i++) {
        snprintf(p, sizeof(p), "%s/f%02d", f->dir, i);
        int fd = open(p, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
    }
    size_t n = take(f, a);
    assert_int_equal(n, LOGWATCH_FILES_MAX);
    struct logwatch_access rest = find(a, n, "*");
    /* 20 files, 3 events each (create, open, close-write); 7 have their own
     * entry. */
    assert_int_equal(rest.events, (20 - (LOGWATCH_FILES_MAX - 1)) * 3);
}

static size_t put_event(uint8_t *buf, int wd, uint32_t mask, const char *name, uint32_t len)
{
    struct inotify_event ev = {.wd = wd, .mask = mask, .len = len};
    memcpy(buf, &ev, sizeof(ev));
    memset(buf + sizeof(ev), 0, len);
    if (name)
        memcpy(buf + sizeof(ev), name, strlen(name));
    return sizeof(ev) + len;
}

static void overflow_and_malformed_buffers(void **state)
{
    (void)state;
    struct logwatch *w;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    uint8_t buf[512];
    assert_int_equal(logwatch_new_detached(1, &w), MAMORI_OK);
    /* An overflow clears what was expected and is reported as lost. */
    logwatch_expect(w, "current.log", LOGWATCH_OPEN);
    size_t len = put_event(buf, -1, IN_Q_OVERFLOW, NULL, 0);
    len += put_event(buf + len, 1, IN_OPEN, "current.log", 16);
    assert_int_equal(logwatch_feed(w, buf, len), MAMORI_OK);
    size_t n = logwatch_take(w, a, LOGWATCH_FILES_MAX);
    assert_int_equal(n, 2);
    assert_true(find(a, n, "").ops & LOGWATCH_LOST);
    assert_true(find(a, n, "current.log").ops & LOGWATCH_OPEN);
    /* Events of another watch descriptor are not ours. */
    len = put_event(buf, 7, IN_OPEN, "current.log", 16);
    assert_int_equal(logwatch_feed(w, buf, len), MAMORI_OK);
    assert_int_equal(logwatch_take(w, a, LOGWATCH_FILES_MAX), 0);
    /* Truncated header, truncated name, absurd name length. */
    len = put_event(buf, 1, IN_OPEN, "current.log", 16);
    assert_int_equal(logwatch_feed(w, buf, 10), MAMORI_ERR_PARSE);
    assert_int_equal(logwatch_feed(w, buf, len - 1), MAMORI_ERR_PARSE);
    struct inotify_event big = {.wd = 1, .mask = IN_OPEN, .len = 1u << 30};
    memcpy(buf, &big, sizeof(big));
    assert_int_equal(logwatch_feed(w, buf, sizeof(buf)), MAMORI_ERR_PARSE);
    /* Records before the bad one still count. */
    len = put_event(buf, 1, IN_ACCESS, "log.1", 8);
    assert_int_equal(logwatch_feed(w, buf, len + 3), MAMORI_ERR_PARSE);
    n = logwatch_take(w, a, LOGWATCH_FILES_MAX);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].ops, LOGWATCH_READ);
    logwatch_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(own_operations_are_not_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_read_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_write_inside_own_append_is_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(chmod_delete_create_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_expectation_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(directory_removed_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(listing_the_directory_is_not_file_access, setup, teardown),
        cmocka_unit_test_setup_teardown(many_files_fold_into_one_entry, setup, teardown),
        cmocka_unit_test(overflow_and_malformed_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
