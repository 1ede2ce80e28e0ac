/*
 * lib/logwatch.c - access detection on the device log's directory with
 * inotify (see logwatch.h for what it can and cannot see).
 */
#include "lib/logwatch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"

#define NOPS      12 /* bits in enum logwatch_op */
#define EXP_MAX   4  /* files the SDK itself writes */
#define READS_MAX 64 /* read(2) calls per poll: a flood cannot hold the caller */

#define WATCH_MASK                                                                                 \
    (IN_OPEN | IN_ACCESS | IN_MODIFY | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_ATTRIB | IN_CREATE | \
     IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |        \
     IN_DONT_FOLLOW)

struct expect {
    char name[LOGWATCH_NAME_MAX];
    unsigned n[NOPS]; /* events of each kind still to come */
};

struct logwatch {
    int fd; /* -1: detached (logwatch_feed only) */
    int wd;
    bool gone;
    struct expect exp[EXP_MAX];
    struct logwatch_access acc[LOGWATCH_FILES_MAX];
    size_t nacc;
};

/* One inotify mask bit and the op it is. */
static const struct {
    uint32_t in;
    unsigned op;
} OPS[] = {
    {IN_OPEN, LOGWATCH_OPEN},
    {IN_ACCESS, LOGWATCH_READ},
    {IN_MODIFY, LOGWATCH_WRITE},
    {IN_CLOSE_WRITE, LOGWATCH_CLOSE_WRITE},
    {IN_CLOSE_NOWRITE, LOGWATCH_CLOSE},
    {IN_ATTRIB, LOGWATCH_ATTRIB},
    {IN_CREATE, LOGWATCH_CREATE},
    {IN_DELETE, LOGWATCH_DELETE},
    {IN_MOVED_FROM, LOGWATCH_MOVE_FROM},
    {IN_MOVED_TO, LOGWATCH_MOVE_TO},
};

static const char *const OP_NAMES[NOPS] = {
    "open",   "read",   "write",     "close-write", "close",    "attrib",
    "create", "delete", "move-from", "move-to",     "dir-gone", "lost",
};

static unsigned op_index(unsigned op)
{
    unsigned i = 0;
    while (i < NOPS && !(op & (1u << i)))
        i++;
    return i;
}

static struct logwatch *alloc_watch(int fd, int wd)
{
    struct logwatch *w = calloc(1, sizeof(*w));
    if (w) {
        w->fd = fd;
        w->wd = wd;
    }
    return w;
}

enum mamori_err logwatch_open(const char *dir, struct logwatch **out)
{
    *out = NULL;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return errno == EMFILE || errno == ENFILE ? MAMORI_ERR_NOMEM : MAMORI_ERR_IO;
    int wd = inotify_add_watch(fd, dir, WATCH_MASK);
    struct logwatch *w = wd >= 0 ? alloc_watch(fd, wd) : NULL;
    if (!w) {
        enum mamori_err rc = wd < 0 ? MAMORI_ERR_IO : MAMORI_ERR_NOMEM;
        close(fd);
        return rc;
    }
    *out = w;
    return MAMORI_OK;
}

enum mamori_err logwatch_new_detached(int wd, struct logwatch **out)
{
    *out = alloc_watch(-1, wd);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

void logwatch_close(struct logwatch *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}

/* Printable ASCII only, cut to fit: the name comes from whoever made the
 * file and ends up in JSON and in logs. */
static void clean_name(const char *in, size_t len, char out[LOGWATCH_NAME_MAX])
{
    size_t j = 0;
    for (size_t i = 0; i < len && in[i] && j + 1 < LOGWATCH_NAME_MAX; i++)
        out[j++] = (in[i] > 0x20 && in[i] < 0x7f && in[i] != '"' && in[i] != '\\') ? in[i] : '?';
    out[j] = '\0';
}

void logwatch_expect(struct logwatch *w, const char *name, unsigned ops)
{
    char n[LOGWATCH_NAME_MAX];
    clean_name(name, strlen(name), n);
    struct expect *e = NULL;
    for (size_t i = 0; i < EXP_MAX && !e; i++)
        if (strcmp(w->exp[i].name, n) == 0)
            e = &w->exp[i];
    for (size_t i = 0; i < EXP_MAX && !e; i++)
        if (!w->exp[i].name[0]) {
            e = &w->exp[i];
            memcpy(e->name, n, sizeof(e->name));
        }
    if (!e)
        return; /* not discounted: reported, the safe side */
    for (unsigned i = 0; i < NOPS; i++)
        if (ops & (1u << i))
            e->n[i]++;
}

static void expect_clear(struct logwatch *w)
{
    memset(w->exp, 0, sizeof(w->exp));
}

static bool expected(struct logwatch *w, const char *name, unsigned op)
{
    unsigned i = op_index(op);
    for (size_t k = 0; k < EXP_MAX && i < NOPS; k++)
        if (w->exp[k].name[0] && strcmp(w->exp[k].name, name) == 0 && w->exp[k].n[i] > 0) {
            w->exp[k].n[i]--;
            return true;
        }
    return false;
}

static void record(struct logwatch *w, const char *name, unsigned op)
{
    struct logwatch_access *a = NULL;
    for (size_t i = 0; i < w->nacc && !a; i++)
        if (strcmp(w->acc[i].file, name) == 0)
            a = &w->acc[i];
    if (!a && w->nacc < LOGWATCH_FILES_MAX - 1) {
        a = &w->acc[w->nacc++];
        snprintf(a->file, sizeof(a->file), "%s", name);
    }
    if (!a) { /* the last entry stands for every further file */
        a = &w->acc[LOGWATCH_FILES_MAX - 1];
        if (w->nacc < LOGWATCH_FILES_MAX) {
            w->nacc = LOGWATCH_FILES_MAX;
            snprintf(a->file, sizeof(a->file), "*");
        }
    }
    a->ops |= op;
    if (a->events < UINT64_MAX)
        a->events++;
}

static void one_event(struct logwatch *w, const struct inotify_event *ev, const char *name)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        expect_clear(w); /* which events were the SDK's is no longer known */
        record(w, "", LOGWATCH_LOST);
        return;
    }
    if (ev->wd != w->wd)
        return; /* a watch we no longer hold */
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
        if (!w->gone)
            record(w, "", LOGWATCH_DIR_GONE);
        w->gone = true;
        return;
    }
    /* Listing the directory (open/read/close of the directory itself) is
     * not access to a log file. */
    if (!name[0] && !(ev->mask & IN_ATTRIB))
        return;
    for (size_t i = 0; i < sizeof(OPS) / sizeof(OPS[0]); i++)
        if ((ev->mask & OPS[i].in) && !expected(w, name, OPS[i].op))
            record(w, name, OPS[i].op);
}

enum mamori_err logwatch_feed(struct logwatch *w, const uint8_t *buf, size_t len)
{
    struct mbuf b = mbuf_init(buf, len);
    while (mbuf_left(&b)) {
        struct inotify_event ev;
        const uint8_t *np = NULL;
        if (mbuf_copy(&b, &ev, sizeof(ev)) || ev.len > 4096 || mbuf_take(&b, ev.len, &np))
            return MAMORI_ERR_PARSE;
        char name[LOGWATCH_NAME_MAX];
        clean_name((const char *)np, ev.len, name);
        one_event(w, &ev, name);
    }
    return MAMORI_OK;
}

enum mamori_err logwatch_poll(struct logwatch *w)
{
    if (w->fd < 0) {
        expect_clear(w);
        return w->gone ? MAMORI_ERR_IO : MAMORI_OK;
    }
    _Alignas(struct inotify_event) uint8_t buf[4096];
    bool drained = false;
    for (int i = 0; i < READS_MAX && !w->gone; i++) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            drained = n < 0 && errno == EAGAIN;
            break;
        }
        if (logwatch_feed(w, buf, (size_t)n))
            return MAMORI_ERR_IO; /* the kernel gave what it never gives */
    }
    /* Every event of the SDK's own operations was queued before it
     * announced them; any left unmatched once the queue is empty would
     * only hide someone else's access later. */
    if (drained)
        expect_clear(w);
    return w->gone ? MAMORI_ERR_IO : MAMORI_OK;
}

size_t logwatch_take(struct logwatch *w, struct logwatch_access *out, size_t max)
{
    size_t n = w->nacc < max ? w->nacc : max;
    memcpy(out, w->acc, n * sizeof(*out));
    memset(w->acc, 0, sizeof(w->acc));
    w->nacc = 0;
    return n;
}

void logwatch_ops_str(unsigned ops, char *buf, size_t n)
{
    size_t used = 0;
    if (n)
        buf[0] = '\0';
    for (unsigned i = 0; i < NOPS && n; i++) {
        if (!(ops & (1u << i)))
            continue;
        int k = snprintf(buf + used, n - used, "%s%s", used ? "," : "", OP_NAMES[i]);
        if (k < 0 || (size_t)k >= n - used) {
            buf[used] = '\0'; /* whole names only */
            break;
        }
        used += (size_t)k;
    }
}

enum mamori_err logwatch_append(struct logwatch *w, const char *dir, const char *data, size_t len,
                                size_t rotate_bytes)
{
    char cur[4200], old[4200];
    struct stat st;
    enum mamori_err rc;
    if ((rc = fs_path(cur, sizeof(cur), dir, "current.log")) ||
        (rc = fs_path(old, sizeof(old), dir, "log.1")))
        return rc;
    bool existed = lstat(cur, &st) == 0;
    if (existed && (size_t)st.st_size > rotate_bytes) {
        if (rename(cur, old) != 0)
            return MAMORI_ERR_IO;
        if (w) {
            logwatch_expect(w, "current.log", LOGWATCH_MOVE_FROM);
            logwatch_expect(w, "log.1", LOGWATCH_MOVE_TO);
        }
        existed = false;
    }
    int fd = open(cur, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return MAMORI_ERR_IO;
    ssize_t n = write(fd, data, len);
    bool ok = n == (ssize_t)len && fdatasync(fd) == 0;
    close(fd);
    if (w)
        logwatch_expect(w, "current.log",
                        LOGWATCH_OPEN | LOGWATCH_CLOSE_WRITE | (n > 0 ? LOGWATCH_WRITE : 0) |
                            (existed ? 0 : LOGWATCH_CREATE));
    return ok ? MAMORI_OK : MAMORI_ERR_IO;
}
