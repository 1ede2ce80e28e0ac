/*
 * lib/logwatch.h - detects access to the device log's files by anyone but
 * the SDK itself (T12-L2a, T12-L4a), through Linux inotify.
 *
 * The directory STATE/log is watched for every kind of access to the
 * entries in it (open, read, write, attribute change, create, delete,
 * rename) and for the directory itself going away. inotify does not say
 * who made an access, so the SDK announces each of its own operations
 * (logwatch_expect) right after making it: its events are matched and
 * discounted, and whatever is left over was someone else. An event queue
 * overflow (accesses lost) is reported as an access of unknown kind: the
 * watcher fails closed.
 *
 * Limits, by inotify's nature: a process that maps a file it opened before
 * the watch began, or one whose single event is exactly the same as one of
 * the SDK's and lands right before it in the queue (the kernel merges the
 * two), is not seen; listing the directory is not reported (file access
 * is). Every instance takes one of the user's inotify instances
 * (fs.inotify.max_user_instances).
 */
#ifndef MAMORI_LIB_LOGWATCH_H
#define MAMORI_LIB_LOGWATCH_H

#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

/* What was done to a file (bits). */
enum logwatch_op {
    LOGWATCH_OPEN = 1u << 0,
    LOGWATCH_READ = 1u << 1,
    LOGWATCH_WRITE = 1u << 2,       /* contents modified */
    LOGWATCH_CLOSE_WRITE = 1u << 3, /* closed after opening for writing */
    LOGWATCH_CLOSE = 1u << 4,       /* closed after opening read-only */
    LOGWATCH_ATTRIB = 1u << 5,      /* mode, owner, times, links */
    LOGWATCH_CREATE = 1u << 6,
    LOGWATCH_DELETE = 1u << 7,
    LOGWATCH_MOVE_FROM = 1u << 8,
    LOGWATCH_MOVE_TO = 1u << 9,
    LOGWATCH_DIR_GONE = 1u << 10, /* the directory was removed or moved away */
    LOGWATCH_LOST = 1u << 11,     /* the queue overflowed: accesses were lost */
};
#define LOGWATCH_NAME_MAX  64 /* file names longer than this are cut */
#define LOGWATCH_FILES_MAX 8  /* distinct files per report; more go to "*" */

/* Accesses to one file since the last report. file "" is the directory
 * itself; "*" stands for files beyond LOGWATCH_FILES_MAX. */
struct logwatch_access {
    char file[LOGWATCH_NAME_MAX];
    unsigned ops;    /* enum logwatch_op bits */
    uint64_t events; /* how many events */
};

struct logwatch;

/* Watches dir (which must exist). On success *out is the caller's; free it
 * with logwatch_close(). */
enum mamori_err logwatch_open(const char *dir, struct logwatch **out) MAMORI_MUST_CHECK;
void logwatch_close(struct logwatch *w);

/* The SDK made one operation producing the events in ops (one each) on
 * name; call it right after the operation, before the next logwatch_poll. */
void logwatch_expect(struct logwatch *w, const char *name, unsigned ops);

/* Reads what the kernel queued and adds every access that was not
 * expected to the pending report. Never blocks. Returns MAMORI_ERR_IO when
 * the watch ended (the directory is gone: reported as LOGWATCH_DIR_GONE);
 * the caller may open a new watcher once the directory is back. */
enum mamori_err logwatch_poll(struct logwatch *w);

/* Feeds raw inotify records (struct inotify_event, each followed by its
 * name) as read(2) returned them; logwatch_poll uses it, and the tests and
 * the fuzz target drive it directly. Malformed or truncated input is
 * refused with MAMORI_ERR_PARSE after the whole records before it. */
enum mamori_err logwatch_feed(struct logwatch *w, const uint8_t *buf, size_t len);

/* Moves the pending report to out (up to max entries, most entries first
 * come first) and clears it; returns the number of entries. */
size_t logwatch_take(struct logwatch *w, struct logwatch_access *out, size_t max);

/* "open,read,write" for a set of ops, into buf (always terminated). */
void logwatch_ops_str(unsigned ops, char *buf, size_t n);

/* The device log's writer, which announces its own operations to w (NULL:
 * no watcher): appends len bytes to DIR/current.log (created 0600, never
 * through a symlink) and syncs them; a current.log already larger than
 * rotate_bytes is first renamed to log.1, replacing it. */
enum mamori_err logwatch_append(struct logwatch *w, const char *dir, const char *data, size_t len,
                                size_t rotate_bytes) MAMORI_MUST_CHECK;

/* For logwatch_feed without a kernel watch (tests, fuzzing): a watcher
 * with no inotify instance whose directory has watch descriptor wd. */
enum mamori_err logwatch_new_detached(int wd, struct logwatch **out) MAMORI_MUST_CHECK;

#endif
