#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vmm/placement.h"

static char err[256];

static void list_is(const char *text, const char *canonical)
{
	cpu_set_t s;
	cr_assert_eq(placement_parse_cpulist(text, &s, err, sizeof(err)), 0, "'%s': %s", text, err);
	char back[64];
	placement_format_cpulist(&s, back, sizeof(back));
	cr_assert_str_eq(back, canonical, "'%s' -> '%s'", text, back);
}

Test(placement, cpulists)
{
	list_is("0", "0");
	list_is("0-3,6", "0-3,6");
	list_is("3,1,2", "1-3");
	list_is("5-5", "5");
	list_is("0,2,4-7", "0,2,4-7");
}

Test(placement, bad_cpulists)
{
	const char *bad[] = { "", "-1", "3-1", "a", "1,", ",1", "1-", "0-99999", "1;2", "1 2" };
	cpu_set_t s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(placement_parse_cpulist(bad[i], &s, err, sizeof(err)), -EINVAL,
			     "'%s' accepted", bad[i]);
}

Test(placement, cpu_affinity_rules)
{
	struct placement p;
	placement_init(&p);
	cr_assert_eq(placement_parse_cpu_affinity(&p, "0=1:2=0-1", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.nr_pins, 2);
	cr_assert_eq(p.pins[0].vcpu, 0);
	cr_assert(CPU_ISSET(1, &p.pins[0].cpus) && CPU_COUNT(&p.pins[0].cpus) == 1);
	cr_assert_eq(p.pins[1].vcpu, 2);
	cr_assert_eq(CPU_COUNT(&p.pins[1].cpus), 2);
	cr_assert_not(placement_is_default(&p));

	cpu_set_t allowed;
	CPU_ZERO(&allowed);
	CPU_SET(0, &allowed);
	CPU_SET(1, &allowed);
	cr_assert_eq(placement_check(&p, 3, &allowed, err, sizeof(err)), 0, "%s", err);
	/* vCPU 2 does not exist in a 2-vCPU VM */
	cr_assert_eq(placement_check(&p, 2, &allowed, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "vCPU 2"), "%s", err);
	/* a CPU kite may not run on */
	CPU_CLR(1, &allowed);
	cr_assert_eq(placement_check(&p, 3, &allowed, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "host CPU 1"), "%s", err);
	placement_free(&p);
}

Test(placement, bad_cpu_affinity)
{
	const char *bad[] = { "", "0", "=1", "x=1", "0=", "0=1:0=1", "0=1::", "0=1:1", "-1=0" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct placement p;
		placement_init(&p);
		cr_assert_eq(placement_parse_cpu_affinity(&p, bad[i], err, sizeof(err)) < 0, true,
			     "'%s' accepted", bad[i]);
		cr_assert_eq(p.nr_pins, 0);
		placement_free(&p);
	}
}

Test(placement, sched)
{
	struct placement p;
	placement_init(&p);
	cr_assert_eq(placement_parse_sched(&p, "rt:10", err, sizeof(err)), 0);
	cr_assert_eq(p.sched, SCHED_KIND_RT);
	cr_assert_eq(p.rt_priority, 10);
	cr_assert_eq(placement_parse_sched(&p, "normal", err, sizeof(err)), 0);
	cr_assert_eq(p.sched, SCHED_KIND_NORMAL);
	cr_assert_eq(p.nice, 0);
	cr_assert_eq(placement_parse_sched(&p, "normal:1000", err, sizeof(err)), 0);
	cr_assert_lt(p.nice, 0);
	const char *bad[] = { "rt", "rt:0", "rt:100", "rt:x", "normal:0", "normal:10001", "fifo",
			      "normal:", "rt:10x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(placement_parse_sched(&p, bad[i], err, sizeof(err)), -EINVAL,
			     "'%s' accepted", bad[i]);
}

Test(placement, weight_maps_to_nice)
{
	cr_assert_eq(placement_weight_to_nice(100), 0);
	/* the kernel's table: nice -5 is ~3.05x nice 0, nice 5 ~0.33x */
	cr_assert_eq(placement_weight_to_nice(305), -5);
	cr_assert_eq(placement_weight_to_nice(33), 5);
	cr_assert_eq(placement_weight_to_nice(10000), -20);
	cr_assert_eq(placement_weight_to_nice(1), 19);
}
