/* common/log.h - leveled logging to stderr (daemons redirect it). */
#ifndef MAMORI_COMMON_LOG_H
#define MAMORI_COMMON_LOG_H

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level lvl);
void log_set_tag(const char *tag);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* For calls whose failure must not abort the caller but must not go
 * unnoticed either (e.g. a liveness flag write): logs it with its site. */
#define log_if_err(expr)                                                                           \
    do {                                                                                           \
        int log_rc_ = (int)(expr);                                                                 \
        if (log_rc_)                                                                               \
            log_msg(LOG_ERR, "%s:%d: %s failed (%d)", __FILE__, __LINE__, #expr, log_rc_);         \
    } while (0)

#endif
