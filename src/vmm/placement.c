#include "vmm/placement.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

void placement_init(struct placement *p)
{
	memset(p, 0, sizeof(*p));
	CPU_ZERO(&p->io_cpus);
}

void placement_free(struct placement *p)
{
	free(p->pins);
	p->pins = NULL;
	p->nr_pins = 0;
}

bool placement_is_default(const struct placement *p)
{
	return !p->nr_pins && !p->io_pinned && p->sched == SCHED_KIND_DEFAULT;
}

/* A decimal number in [0, max] at *s, advancing *s: 0 or -1. */
static int number(const char **s, unsigned long max, unsigned long *out)
{
	if (**s < '0' || **s > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(*s, &end, 10);
	if (errno || v > max)
		return -1;
	*s = end;
	*out = v;
	return 0;
}

int placement_parse_cpulist(const char *text, cpu_set_t *set, char *err, size_t errlen)
{
	CPU_ZERO(set);
	const char *s = text;
	if (!*s)
		FAIL("empty CPU list");
	for (;;) {
		unsigned long lo, hi;
		if (number(&s, CPU_SETSIZE - 1, &lo))
			FAIL("bad CPU list '%s': expected CPU numbers below %d like 0-3,6", text,
			     CPU_SETSIZE);
		hi = lo;
		if (*s == '-') {
			s++;
			if (number(&s, CPU_SETSIZE - 1, &hi) || hi < lo)
				FAIL("bad CPU range in '%s': expected LOW-HIGH with LOW <= HIGH", text);
		}
		for (unsigned long c = lo; c <= hi; c++)
			CPU_SET(c, set);
		if (!*s)
			return 0;
		if (*s != ',')
			FAIL("bad CPU list '%s': unexpected '%c'", text, *s);
		s++;
	}
}

void placement_format_cpulist(const cpu_set_t *set, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, set))
			continue;
		int e = c;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
			e++;
		int n = e > c ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", c, e)
			      : snprintf(buf + used, len - used, "%s%d", used ? "," : "", c);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
		c = e;
	}
}

int placement_parse_cpu_affinity(struct placement *p, const char *text, char *err, size_t errlen)
{
	placement_free(p);
	char *copy = strdup(text);
	if (!copy)
		FAIL("out of memory");
	int ret = 0;
	char *rest = copy;
	for (char *rule; (rule = strsep(&rest, ":"));) {
		char *eq = strchr(rule, '=');
		const char *s = rule;
		unsigned long vcpu;
		if (!eq || (*eq = 0, number(&s, UINT_MAX, &vcpu)) || *s) {
			snprintf(err, errlen, "bad --cpu-affinity rule '%s': expected VCPU=CPULIST",
				 eq ? (*eq = '=', rule) : rule);
			ret = -EINVAL;
			break;
		}
		for (unsigned i = 0; i < p->nr_pins; i++)
			if (p->pins[i].vcpu == vcpu) {
				snprintf(err, errlen, "vCPU %lu is pinned twice in '%s'", vcpu, text);
				ret = -EINVAL;
				goto out;
			}
		struct vcpu_pin *n = realloc(p->pins, (p->nr_pins + 1) * sizeof(*n));
		if (!n) {
			snprintf(err, errlen, "out of memory");
			ret = -ENOMEM;
			break;
		}
		p->pins = n;
		n[p->nr_pins].vcpu = (unsigned)vcpu;
		if ((ret = placement_parse_cpulist(eq + 1, &n[p->nr_pins].cpus, err, errlen)))
			break;
		p->nr_pins++;
	}
	if (!ret && !p->nr_pins) {
		snprintf(err, errlen, "empty --cpu-affinity: expected VCPU=CPULIST[:VCPU=CPULIST...]");
		ret = -EINVAL;
	}
out:
	free(copy);
	if (ret)
		placement_free(p);
	return ret;
}

int placement_parse_io_affinity(struct placement *p, const char *text, char *err, size_t errlen)
{
	char why[192];
	int ret = placement_parse_cpulist(text, &p->io_cpus, why, sizeof(why));
	p->io_pinned = !ret;
	if (ret)
		snprintf(err, errlen, "invalid --io-affinity: %s", why);
	return ret;
}

int placement_weight_to_nice(unsigned weight)
{
	/* The kernel's nice-to-weight table steps by ~1.25 per nice level and
	 * maps cgroup v2's cpu.weight 100 to nice 0. */
	double n = -log((double)weight / 100.0) / log(1.25);
	long r = lround(n);
	return r < -20 ? -20 : r > 19 ? 19 : (int)r;
}

int placement_parse_sched(struct placement *p, const char *text, char *err, size_t errlen)
{
	const char *s;
	unsigned long v;
	if (!strncmp(text, "rt:", 3)) {
		s = text + 3;
		if (number(&s, 99, &v) || *s || v < 1)
			FAIL("bad --sched '%s': rt:PRIO takes a priority 1..99", text);
		p->sched = SCHED_KIND_RT;
		p->rt_priority = (int)v;
		return 0;
	}
	if (!strcmp(text, "normal")) {
		p->sched = SCHED_KIND_NORMAL;
		p->weight = 100;
		p->nice = 0;
		return 0;
	}
	if (!strncmp(text, "normal:", 7)) {
		s = text + 7;
		if (number(&s, 10000, &v) || *s || v < 1)
			FAIL("bad --sched '%s': normal:WEIGHT takes a weight 1..10000 (100 is the default share)",
			     text);
		p->sched = SCHED_KIND_NORMAL;
		p->weight = (unsigned)v;
		p->nice = placement_weight_to_nice(p->weight);
		return 0;
	}
	FAIL("bad --sched '%s': expected rt:PRIO or normal[:WEIGHT]", text);
}

/* A CPU named in set that kite may not run on, or -1. */
static int first_unavailable(const cpu_set_t *set, const cpu_set_t *allowed)
{
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, set) && !CPU_ISSET(c, allowed))
			return c;
	return -1;
}

int placement_check(const struct placement *p, unsigned nr_vcpus, const cpu_set_t *startup_cpus,
		    char *err, size_t errlen)
{
	char have[256];
	placement_format_cpulist(startup_cpus, have, sizeof(have));
	for (unsigned i = 0; i < p->nr_pins; i++) {
		if (p->pins[i].vcpu >= nr_vcpus)
			FAIL("--cpu-affinity names vCPU %u but the VM has %u vCPU%s", p->pins[i].vcpu,
			     nr_vcpus, nr_vcpus == 1 ? "" : "s");
		int c = first_unavailable(&p->pins[i].cpus, startup_cpus);
		if (c >= 0)
			FAIL("--cpu-affinity: host CPU %d (for vCPU %u) is not one kite may run on (%s)",
			     c, p->pins[i].vcpu, have);
	}
	if (p->io_pinned) {
		int c = first_unavailable(&p->io_cpus, startup_cpus);
		if (c >= 0)
			FAIL("--io-affinity: host CPU %d is not one kite may run on (%s)", c, have);
	}
	return 0;
}

int placement_vcpu_attr(const struct placement *p, unsigned vcpu, const cpu_set_t *startup_cpus,
			pthread_attr_t *attr)
{
	const cpu_set_t *set = startup_cpus;
	for (unsigned i = 0; i < p->nr_pins; i++)
		if (p->pins[i].vcpu == vcpu)
			set = &p->pins[i].cpus;
	int e = pthread_attr_setaffinity_np(attr, sizeof(*set), set);
	if (!e && p->sched == SCHED_KIND_RT) {
		struct sched_param sp = { .sched_priority = p->rt_priority };
		if (!(e = pthread_attr_setinheritsched(attr, PTHREAD_EXPLICIT_SCHED)) &&
		    !(e = pthread_attr_setschedpolicy(attr, SCHED_FIFO)))
			e = pthread_attr_setschedparam(attr, &sp);
	}
	return -e;
}

int placement_vcpu_self(const struct placement *p)
{
	if (p->sched != SCHED_KIND_NORMAL)
		return 0;
	/* nice is per thread on Linux: this sets the calling vCPU thread's. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), p->nice))
		return -errno;
	return 0;
}

int placement_io_self(const struct placement *p)
{
	if (!p->io_pinned)
		return 0;
	return -pthread_setaffinity_np(pthread_self(), sizeof(p->io_cpus), &p->io_cpus);
}
