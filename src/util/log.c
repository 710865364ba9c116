#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_WARN;

/* The log file, under file_lock. */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static int file_fd = -1;
static bool file_enabled;
static enum log_level file_level = LOG_INFO;
static bool file_show_level, file_show_origin;
static const char *instance_id = "anonymous-instance";

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

void log_set_instance_id(const char *id)
{
	pthread_mutex_lock(&file_lock);
	instance_id = id;
	pthread_mutex_unlock(&file_lock);
}

int log_set_file(const char *path, enum log_level level, bool enabled, bool show_level,
		 bool show_origin)
{
	int fd = -1;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (path)
		path = "/dev/null"; /* the fuzzer must not create files */
#endif
	if (path) {
		/* O_NONBLOCK: the path may be a FIFO whose reader is gone */
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
		if (fd < 0)
			return -errno;
	}
	pthread_mutex_lock(&file_lock);
	if (fd >= 0) {
		if (file_fd >= 0)
			close(file_fd);
		file_fd = fd;
	}
	file_enabled = enabled;
	file_level = level;
	file_show_level = show_level;
	file_show_origin = show_origin;
	pthread_mutex_unlock(&file_lock);
	return 0;
}

void log_close_file(void)
{
	pthread_mutex_lock(&file_lock);
	if (file_fd >= 0)
		close(file_fd);
	file_fd = -1;
	pthread_mutex_unlock(&file_lock);
}

static void file_line(enum log_level level, const char *file, int line, const char *msg)
{
	static const char *const names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	pthread_mutex_lock(&file_lock);
	if (file_fd < 0 || !file_enabled || level > file_level) {
		pthread_mutex_unlock(&file_lock);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char thread[16] = "";
	pthread_getname_np(pthread_self(), thread, sizeof(thread));
	char out[1400];
	int n = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s]",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec, instance_id, thread);
	if (file_show_level && n >= 0 && (size_t)n < sizeof(out))
		n += snprintf(out + n, sizeof(out) - (size_t)n, ":%s", names[level]);
	if (file_show_origin && n >= 0 && (size_t)n < sizeof(out))
		n += snprintf(out + n, sizeof(out) - (size_t)n, ":%s:%d", file, line);
	if (n >= 0 && (size_t)n < sizeof(out))
		n += snprintf(out + n, sizeof(out) - (size_t)n, " %s\n", msg);
	if (n > (int)sizeof(out) - 1) {
		n = (int)sizeof(out) - 1;
		out[n - 1] = '\n';
	}
	if (n > 0 && write(file_fd, out, (size_t)n) < 0) {
		/* a full FIFO drops the line, as Firecracker does */
	}
	pthread_mutex_unlock(&file_lock);
}

void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	bool to_stderr = level <= current_level;
	bool to_file = __atomic_load_n(&file_fd, __ATOMIC_RELAXED) >= 0;
	if (!to_stderr && !to_file)
		return;
	static const char *const prefix[] = { "", "warning: ", "", "debug: " };
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One write per line so lines from different threads do not interleave;
	 * \r\n because stdout/stderr may be a terminal in raw mode. */
	if (to_stderr)
		fprintf(stderr, "kite: %s%s\r\n", prefix[level], msg);
	if (to_file)
		file_line(level, file, line, msg);
}
