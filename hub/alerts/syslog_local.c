/*
 * hub/alerts/syslog_local.c - the local syslog(3) for alerts (hub/alerts/deliver.c), kept
 * apart: <syslog.h> defines LOG_* names that common/log.h uses too.
 */
#include "hub/alerts/syslog_local.h"

#include <syslog.h>

void alerts_syslog_open(void)
{
    openlog("mamorid", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void alerts_syslog_send(int priority, const char *msg)
{
    syslog(priority, "%s", msg);
}

void alerts_syslog_close(void)
{
    closelog();
}
