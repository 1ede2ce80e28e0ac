/* tests/unit/testutil.h - small helpers the unit tests share. */
#ifndef MAMORI_TESTS_UNIT_TESTUTIL_H
#define MAMORI_TESTS_UNIT_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Removes dir and everything under it (a test's temporary directory). */
static inline void rm_rf(const char *dir)
{
    char p[512];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int n = snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(p))
            continue;
        if (unlink(p))
            rm_rf(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

#endif
