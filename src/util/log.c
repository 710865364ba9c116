#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level current_level = LOG_WARN;

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > current_level)
		return;
	static const char *const prefix[] = { "", "warning: ", "", "debug: " };
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so lines from different threads do not interleave;
	 * \r\n because stdout/stderr may be a terminal in raw mode. */
	fprintf(stderr, "kite: %s%s\r\n", prefix[level], line);
}
