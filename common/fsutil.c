/* common/fsutil.c - see fsutil.h. */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum mamori_err fs_path(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= outlen) ? MAMORI_ERR_TOOBIG : MAMORI_OK;
}

enum mamori_err fs_read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_IO;
    enum mamori_err rc = MAMORI_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode))
        goto out_close;
    if ((size_t)st.st_size > max) {
        rc = MAMORI_ERR_TOOBIG;
        goto out_close;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = MAMORI_ERR_NOMEM;
        goto out_close;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    rc = MAMORI_OK;
out_close:
    close(fd);
    return rc;
}

static enum mamori_err fsync_dir_of(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof(tmp))
        return MAMORI_ERR_TOOBIG;
    memcpy(tmp, path, strlen(path) + 1);
    int dfd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return MAMORI_ERR_IO;
    int r = fsync(dfd);
    close(dfd);
    return r ? MAMORI_ERR_IO : MAMORI_OK;
}

enum mamori_err fs_rename_durable(const char *from, const char *to)
{
    if (rename(from, to))
        return errno == ENOENT ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_IO;
    return fsync_dir_of(to);
}

enum mamori_err fs_unlink_durable(const char *path)
{
    if (unlink(path) && errno != ENOENT)
        return MAMORI_ERR_IO;
    return fsync_dir_of(path);
}

enum mamori_err fs_copy(const char *from, const char *to, size_t max, mode_t mode)
{
    char *data = NULL;
    size_t len = 0;
    enum mamori_err rc = fs_read_file(from, max, &data, &len);
    if (rc)
        return rc;
    rc = fs_write_atomic(to, data, len, mode);
    explicit_bzero(data, len);
    free(data);
    return rc;
}

enum mamori_err fs_write_atomic(const char *path, const void *data, size_t n, mode_t mode)
{
    char tmp[4096];
    int len = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (len < 0 || (size_t)len >= sizeof(tmp))
        return MAMORI_ERR_TOOBIG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return MAMORI_ERR_IO;
    enum mamori_err rc = MAMORI_ERR_IO;
    if (fchmod(fd, mode))
        goto out_unlink;
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out_unlink;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd))
        goto out_unlink;
    close(fd);
    fd = -1;
    if (rename(tmp, path))
        goto out_unlink;
    return fsync_dir_of(path);
out_unlink:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

enum mamori_err fs_mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return MAMORI_ERR_INVAL;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, mode) && errno != EEXIST)
                return MAMORI_ERR_IO;
            tmp[i] = c;
        }
    }
    return MAMORI_OK;
}

enum mamori_err fs_check_private(const char *path, mode_t allowed)
{
    struct stat st;
    if (lstat(path, &st))
        return errno == ENOENT ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_IO;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return MAMORI_ERR_PERM;
    if (st.st_uid != geteuid())
        return MAMORI_ERR_PERM;
    if ((st.st_mode & 077) & ~allowed)
        return MAMORI_ERR_PERM;
    return MAMORI_OK;
}

enum mamori_err fs_shred(const char *path)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? MAMORI_OK : MAMORI_ERR_IO;
    struct stat st;
    enum mamori_err rc = MAMORI_OK;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return MAMORI_ERR_IO;
    }
    static const char zeros[4096];
    for (off_t off = 0; off < st.st_size && !rc;) {
        size_t n =
            (size_t)(st.st_size - off) < sizeof(zeros) ? (size_t)(st.st_size - off) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, off);
        if (w <= 0)
            rc = MAMORI_ERR_IO;
        else
            off += w;
    }
    if (fsync(fd))
        rc = MAMORI_ERR_IO;
    close(fd);
    if (unlink(path))
        rc = MAMORI_ERR_IO;
    return rc;
}

enum mamori_err fs_create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return MAMORI_ERR_IO;
    close(fd);
    return MAMORI_OK;
}

enum mamori_err fs_lock_file(const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0)
        return MAMORI_ERR_IO;
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? MAMORI_ERR_BUSY : MAMORI_ERR_IO;
    return MAMORI_OK;
}

bool fs_read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || n == 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, n - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (got += (size_t)r) == n - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    return got > 0;
}
