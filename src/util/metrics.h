/* Metrics: counters kept by the API and the VMM, written as one JSON
 * object per line (like Firecracker's metrics file) on FlushMetrics and
 * every 60 seconds. Counters are atomics so any thread may bump them. */
#ifndef KITE_UTIL_METRICS_H
#define KITE_UTIL_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define METRICS_PERIOD_SECS 60

struct json_object;

struct metrics {
	int fd;                    /* -1: no metrics path yet */
	uint64_t lines;            /* lines written */
	/* API */
	_Atomic uint64_t api_requests, api_errors, api_get, api_put, api_patch;
	_Atomic uint64_t actions, instance_starts, pauses, resumes, ctrl_alt_dels;
	_Atomic uint64_t flush_metrics, config_errors;
	_Atomic uint64_t logger_missed;
};

void metrics_init(struct metrics *m);
void metrics_close(struct metrics *m);
/* Open (create, append) the metrics file. 0 or -errno. */
int metrics_open(struct metrics *m, const char *path);
bool metrics_active(const struct metrics *m);
/* The API's counters as a JSON object, added to line under "api_server". */
void metrics_add_api(const struct metrics *m, struct json_object *line);
/* Write line (a JSON object) as one line; 0 or -errno. */
int metrics_write(struct metrics *m, struct json_object *line);

#endif
