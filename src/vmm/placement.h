/* Where kite's threads run and how the host scheduler treats them:
 * --cpu-affinity VCPU=CPULIST[:VCPU=CPULIST...], --io-affinity CPULIST and
 * --sched rt:PRIO | normal[:WEIGHT] (the API takes the same strings as
 * machine-config extension fields). Parsed once into struct placement;
 * applied when the VM's threads start, failing the start with the host's
 * reason when the host refuses (never silently ignored). */
#ifndef KITE_VMM_PLACEMENT_H
#define KITE_VMM_PLACEMENT_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

enum sched_kind {
	SCHED_KIND_DEFAULT, /* leave the host's defaults alone */
	SCHED_KIND_RT,      /* SCHED_FIFO at rt_priority for the vCPU threads */
	SCHED_KIND_NORMAL,  /* SCHED_OTHER with a relative weight (nice value) */
};

struct vcpu_pin {
	unsigned vcpu;
	cpu_set_t cpus;
};

struct placement {
	struct vcpu_pin *pins;   /* one per VCPU=CPULIST rule, malloc'ed */
	unsigned nr_pins;
	bool io_pinned;
	cpu_set_t io_cpus;       /* the event loop, block workers, the main thread */
	enum sched_kind sched;
	int rt_priority;         /* 1..99 */
	unsigned weight;         /* 1..10000, cgroup v2 cpu.weight scale (100 = default) */
	int nice;                /* the nice value weight maps to */
};

void placement_init(struct placement *p);
void placement_free(struct placement *p);
bool placement_is_default(const struct placement *p);

/* Parsers; each returns 0 or -EINVAL having written why to err (a later
 * call replaces what an earlier one set). */
int placement_parse_cpu_affinity(struct placement *p, const char *text, char *err, size_t errlen);
int placement_parse_io_affinity(struct placement *p, const char *text, char *err, size_t errlen);
int placement_parse_sched(struct placement *p, const char *text, char *err, size_t errlen);
/* A CPU list as Linux writes one ("0-3,6"): 0 or -EINVAL. */
int placement_parse_cpulist(const char *text, cpu_set_t *set, char *err, size_t errlen);
/* The nice value closest to a cgroup v2 cpu.weight (100 -> 0, each nice step
 * is a factor of ~1.25 in the kernel's weight table). */
int placement_weight_to_nice(unsigned weight);

/* Once the vCPU count is known: every pinned vCPU exists, and every CPU
 * named is one kite may run on (startup_cpus). 0 or -EINVAL with why. */
int placement_check(const struct placement *p, unsigned nr_vcpus, const cpu_set_t *startup_cpus,
		    char *err, size_t errlen);

/* Thread attributes for vCPU vcpu: its CPU set (or the set kite had at
 * start, so vCPUs do not inherit --io-affinity) and, for rt, SCHED_FIFO.
 * 0 or a negative errno. */
int placement_vcpu_attr(const struct placement *p, unsigned vcpu, const cpu_set_t *startup_cpus,
			pthread_attr_t *attr);
/* Called by a vCPU thread on itself: the nice value of `normal:WEIGHT`.
 * 0 or a negative errno. */
int placement_vcpu_self(const struct placement *p);
/* Pin the calling (main) thread to --io-affinity so every I/O thread created
 * after it inherits the set. 0 or a negative errno. */
int placement_io_self(const struct placement *p);

/* A cpu set as a list ("0-1,4") into buf. */
void placement_format_cpulist(const cpu_set_t *set, char *buf, size_t len);

#endif
