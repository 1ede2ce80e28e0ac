/* common/log.c - see log.h. One line per message, with UTC time and level. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level g_level = LOG_INFO;
static const char *g_tag = "mamori";

void log_set_level(enum log_level lvl)
{
    g_level = lvl;
}

void log_set_tag(const char *tag)
{
    g_tag = tag;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (lvl > g_level)
        return;
    char line[1024];
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", ts, now.tv_nsec / 1000000, g_tag, names[lvl], line);
}
