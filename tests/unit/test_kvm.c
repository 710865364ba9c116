/* The kvm engine's standalone pieces: calibration and the raw exit loop.
 * They need /dev/kvm; without it they check the error message instead. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/kvm/kvm.h"

static bool have_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

Test(kvm_engine, probe_says_why)
{
	char why[256] = "";
	int ret = kvm_engine.probe(why, sizeof(why));
	if (have_kvm()) {
		cr_assert_eq(ret, 0, "%s", why);
	} else {
		cr_assert_lt(ret, 0);
		cr_assert(strstr(why, "/dev/kvm"), "%s", why);
	}
}

Test(kvm_engine, calibration)
{
	struct kvm_calibration c;
	char why[256] = "";
	if (!have_kvm()) {
		cr_assert_lt(kvm_calibrate(&c, why, sizeof(why)), 0);
		cr_assert(strstr(why, "/dev/kvm"), "%s", why);
		return;
	}
	cr_assert_eq(kvm_calibrate(&c, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(c.insns, 40000);
	cr_assert_gt(c.loop_ns, 0);
	cr_assert_gt(c.mips, 0.1, "%.2f MIPS", c.mips);
}

Test(kvm_engine, raw_exit_loop)
{
	double ns = 0;
	char why[256] = "";
	if (!have_kvm())
		cr_skip_test("no usable /dev/kvm");
	cr_assert_eq(kvm_raw_exit_bench(200, &ns, why, sizeof(why)), 0, "%s", why);
	cr_assert_gt(ns, 0.0);
	cr_assert_lt(ns, 10e6, "an exit should not take 10 ms: %.0f ns", ns);
}
