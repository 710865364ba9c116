/* Logging: the one piece of global mutable state kite allows (the levels
 * and the log file).
 *
 * Two sinks: stderr, where user-facing lines ("kite: ...") go as before,
 * gated by log_set_level; and an optional log file (the API's PUT /logger,
 * Firecracker's format: timestamp, [instance:thread], optional level and
 * origin, message), gated by its own level. */
#ifndef KITE_UTIL_LOG_H
#define KITE_UTIL_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define log_msg(level, ...) log_msg_at(level, __FILE__, __LINE__, __VA_ARGS__)

/* Also write lines at `level` or more severe to path (appended, created);
 * enabled false ("Off") writes nothing; path NULL keeps the current file.
 * 0 or a negative errno (the old file stays). Thread-safe. */
int log_set_file(const char *path, enum log_level level, bool enabled, bool show_level,
		 bool show_origin);
/* The instance id in file lines (default "anonymous-instance"). */
void log_set_instance_id(const char *id);
void log_close_file(void);

/* User-facing errors: one line on stderr, "kite: ...". */
#define kite_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define kite_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define kite_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define kite_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
