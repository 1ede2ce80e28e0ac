/*
 * hub/alerts/syslog_local.h - the local syslog(3) for alerts, apart from
 * <syslog.h> (whose LOG_* names common/log.h uses too).
 */
#ifndef MAMORI_HUB_SYSLOG_LOCAL_H
#define MAMORI_HUB_SYSLOG_LOCAL_H

void alerts_syslog_open(void);
void alerts_syslog_send(int priority, const char *msg);
void alerts_syslog_close(void);

#endif
