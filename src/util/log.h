/* Logging: the one piece of global mutable state kite allows (the level). */
#ifndef KITE_UTIL_LOG_H
#define KITE_UTIL_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* User-facing errors: one line on stderr, "kite: ...". */
#define kite_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define kite_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define kite_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define kite_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
