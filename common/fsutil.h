/* common/fsutil.h - bounded file reads, atomic durable writes, permission checks. */
#ifndef MAMORI_COMMON_FSUTIL_H
#define MAMORI_COMMON_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "mamori/error.h"

/* Reads at most max bytes of path into a malloc'd, NUL-terminated buffer.
 * A larger file fails with MAMORI_ERR_TOOBIG; nothing is returned. */
enum mamori_err fs_read_file(const char *path, size_t max, char **out,
                             size_t *len) MAMORI_MUST_CHECK;
/* Writes data to path.tmp, fsyncs, renames over path and fsyncs the directory:
 * after a crash path holds either the old or the new content, never a mix. */
enum mamori_err fs_write_atomic(const char *path, const void *data, size_t n,
                                mode_t mode) MAMORI_MUST_CHECK;
/* Copies at most max bytes of from to to (fs_write_atomic, mode), wiping
 * the bytes it held: keys are copied with it. */
enum mamori_err fs_copy(const char *from, const char *to, size_t max,
                        mode_t mode) MAMORI_MUST_CHECK;
/* rename(2) and fsync of the target's directory: durable once it returns. */
enum mamori_err fs_rename_durable(const char *from, const char *to) MAMORI_MUST_CHECK;
/* unlink(2) (ENOENT is fine) and fsync of the directory. */
enum mamori_err fs_unlink_durable(const char *path) MAMORI_MUST_CHECK;
enum mamori_err fs_mkdir_p(const char *path, mode_t mode) MAMORI_MUST_CHECK;
/* MAMORI_OK when path is owned by the effective user and has no group/other
 * permission bits beyond those in allowed (e.g. 0 for a private key). */
enum mamori_err fs_check_private(const char *path, mode_t allowed) MAMORI_MUST_CHECK;
/* snprintf into out; MAMORI_ERR_TOOBIG when it would not fit. */
enum mamori_err fs_path(char *out, size_t outlen, const char *dir,
                        const char *name) MAMORI_MUST_CHECK;

/* Reads a small file into buf (NUL-terminated, at most n - 1 bytes) with
 * read(2) until its end: /proc files report a size of 0, so fs_read_file
 * cannot read them. False when it cannot be opened or is empty. */
bool fs_read_small(const char *path, char *buf, size_t n);

/* Creates path (mode 0600, never through a symlink) if it does not exist,
 * so a database opened on it next is private from its first byte. */
enum mamori_err fs_create_private(const char *path) MAMORI_MUST_CHECK;
/* Overwrites a regular file with zeros, syncs and unlinks it (ENOENT is
 * fine). On flash with wear levelling the old blocks may survive: real
 * erasure of keys needs them to live in hardware (TPM) or encrypted. */
enum mamori_err fs_shred(const char *path) MAMORI_MUST_CHECK;
/* Opens path (0600, created if needed, never through a symlink) and takes
 * an exclusive lock on it without waiting; *fd holds it (close to release;
 * it also ends with the process, however it ends). MAMORI_ERR_BUSY when
 * another process holds it. *fd is -1 unless the file was opened. */
enum mamori_err fs_lock_file(const char *path, int *fd) MAMORI_MUST_CHECK;

#endif
